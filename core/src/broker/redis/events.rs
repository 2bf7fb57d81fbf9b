//! [`EventBroker`] on Redis: runner events on the `P:events` stream, one consumer group per
//! recorder; unacknowledged events are claimed again with `XAUTOCLAIM`.

use super::*;

/// The events stream is trimmed (approximately) to this many entries.
const EVENTS_MAXLEN: usize = 1_000_000;

#[async_trait]
impl EventBroker for RedisBroker {
    async fn publish_event(&self, event: &RunEvent) -> BrokerResult<()> {
        let _: String = ::redis::cmd("XADD")
            .arg(self.key("events"))
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENTS_MAXLEN)
            .arg("*")
            .arg("e")
            .arg(to_json(event)?)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn read_events(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> BrokerResult<Vec<(String, RunEvent)>> {
        let stream = self.key("events");
        let max = max.max(1);
        self.ensure_group(&stream, group).await?;
        // First whatever another consumer (or this one, earlier) read and never acknowledged.
        let claimed: Result<Value, RedisError> = ::redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(group)
            .arg(consumer)
            .arg(self.event_redelivery.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.con())
            .await;
        let claimed = match claimed {
            Ok(v) => v,
            // The group vanished (FLUSHALL): recreate it; a new group has nothing to redeliver.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.forget_groups();
                self.ensure_group(&stream, group).await?;
                Value::Nil
            }
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::new();
        if let Some(list) = as_array(&claimed).get(1) {
            parse_entries(&stream, list, &mut entries);
        }
        if entries.is_empty() {
            // A vanished group reads as nothing this time and is recreated on the next call.
            entries = self
                .read_group(group, consumer, std::slice::from_ref(&stream), max, wait)
                .await?
                .unwrap_or_default();
        }
        let mut out = Vec::with_capacity(entries.len());
        for (_, id, fields) in entries {
            match field(&fields, "e").map(serde_json::from_str::<RunEvent>) {
                Some(Ok(ev)) => out.push((id, ev)),
                _ => {
                    // A poison entry would otherwise be redelivered forever.
                    tracing::warn!(id = %id, "acknowledging an unreadable runner event");
                    let _: i64 = ::redis::cmd("XACK")
                        .arg(&stream)
                        .arg(group)
                        .arg(&id)
                        .query_async(&mut self.con())
                        .await?;
                }
            }
        }
        Ok(out)
    }

    async fn ack_events(&self, group: &str, ids: &[String]) -> BrokerResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = ::redis::cmd("XACK")
            .arg(self.key("events"))
            .arg(group)
            .arg(ids)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }
}
