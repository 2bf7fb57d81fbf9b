//! [`WorkerBroker`] on Redis: worker status in `P:workers` (expiry zset) and `P:wdata` (JSON),
//! and the drain flags in the `P:drain` set.

use super::*;

#[async_trait]
impl WorkerBroker for RedisBroker {
    async fn put_worker(&self, status: &WorkerStatus, ttl: Duration) -> BrokerResult<()> {
        let _: () = ::redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.key("wdata"))
            .arg(&status.id)
            .arg(to_json(status)?)
            .ignore()
            .cmd("ZADD")
            .arg(self.key("workers"))
            .arg(now_ms() + ttl.as_millis() as i64)
            .arg(&status.id)
            .ignore()
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn workers(&self) -> BrokerResult<Vec<WorkerStatus>> {
        let raw: Vec<String> = self
            .scripts
            .workers
            .key(self.key("workers"))
            .key(self.key("wdata"))
            .arg(now_ms())
            .invoke_async(&mut self.con())
            .await?;
        let mut out = raw
            .iter()
            .map(|w| {
                serde_json::from_str::<WorkerStatus>(w)
                    .map_err(|e| BrokerError::Corrupt(format!("worker: {e}")))
            })
            .collect::<BrokerResult<Vec<_>>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn set_drain(&self, worker_id: &str, drain: bool) -> BrokerResult<()> {
        let _: i64 = ::redis::cmd(if drain { "SADD" } else { "SREM" })
            .arg(self.key("drain"))
            .arg(worker_id)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }
}
