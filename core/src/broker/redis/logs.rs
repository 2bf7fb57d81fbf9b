//! [`LogBroker`] on Redis: each run's live log tail in a `P:log:RUN` stream whose ids are the
//! chunks' cursors, trimmed to about `LIVE_LOG_CHUNKS` and expiring after 24 h.

use super::*;

const LOG_TTL: Duration = Duration::from_secs(24 * 3600);

#[async_trait]
impl LogBroker for RedisBroker {
    async fn append_log(&self, run_id: &str, chunks: &[LogChunk]) -> BrokerResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.append_log.prepare_invoke();
        inv.key(self.key(&format!("log:{run_id}")))
            .arg(LIVE_LOG_CHUNKS)
            .arg(LOG_TTL.as_millis() as u64);
        for c in chunks {
            // The chunk's cursor is its stream id, so Redis itself refuses a chunk sent twice.
            inv.arg(format!("{}-0", c.cursor())).arg(to_json(c)?);
        }
        let _: i64 = inv.invoke_async(&mut self.con()).await?;
        Ok(())
    }

    async fn read_log(
        &self,
        run_id: &str,
        after: u64,
        wait: Duration,
    ) -> BrokerResult<Vec<LogChunk>> {
        let key = self.key(&format!("log:{run_id}"));
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT").arg(LIVE_LOG_CHUNKS);
        let block_ms = wait.as_millis() as u64;
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&key).arg(format!("{after}-0"));
        let reply: Value = if block_ms > 0 {
            let mut con = self.blocking_conn(wait).await?;
            let reply = cmd.query_async(&mut con).await?;
            self.return_conn(con);
            reply
        } else {
            cmd.query_async(&mut self.con()).await?
        };
        parse_read_reply(&reply)
            .into_iter()
            .filter_map(|(_, _, fields)| field(&fields, "c").map(serde_json::from_str::<LogChunk>))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BrokerError::Corrupt(format!("log chunk: {e}")))
    }
}
