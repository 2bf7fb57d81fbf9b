//! [`CancelBroker`] on Redis: cancel signals in the `P:cancels` zset (24 h), with the run's
//! queued entries dropped from their streams.

use super::*;

const CANCEL_TTL: Duration = Duration::from_secs(24 * 3600);

#[async_trait]
impl CancelBroker for RedisBroker {
    async fn cancel(&self, run_id: &str) -> BrokerResult<()> {
        let now = now_ms();
        let dropped: Vec<String> = self
            .scripts
            .cancel
            .key(&self.hot.runs)
            .key(&self.hot.cancels)
            .arg(run_id)
            .arg(now + CANCEL_TTL.as_millis() as i64)
            .arg(now)
            .invoke_async(&mut self.con())
            .await?;
        for pair in dropped.chunks(2) {
            if let [stream, id] = pair {
                let _: i64 = ::redis::cmd("XDEL")
                    .arg(stream)
                    .arg(id)
                    .query_async(&mut self.con())
                    .await?;
            }
        }
        Ok(())
    }

    async fn cancels_for(&self, run_ids: &[String]) -> BrokerResult<Vec<String>> {
        if run_ids.is_empty() {
            return Ok(vec![]);
        }
        let scores: Vec<Option<f64>> = ::redis::cmd("ZMSCORE")
            .arg(self.key("cancels"))
            .arg(run_ids)
            .query_async(&mut self.con())
            .await?;
        let now = now_ms() as f64;
        Ok(run_ids
            .iter()
            .zip(scores)
            .filter(|(_, s)| s.is_some_and(|s| s > now))
            .map(|(r, _)| r.clone())
            .collect())
    }
}
