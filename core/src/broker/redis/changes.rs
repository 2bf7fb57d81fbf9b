//! [`ChangeBroker`] on Redis: run change announcements on the `P:changes` pub/sub channel,
//! relayed into an in-process broadcast by one subscriber per broker.

use super::*;

/// Relays the changes channel into `tx` for as long as the broker lives, reconnecting with
/// backoff: while it is down watchers simply fall back to re-reading SQL on their own timer.
async fn relay_changes(
    client: Client,
    channel: String,
    tx: tokio::sync::broadcast::Sender<String>,
) {
    use futures::StreamExt;
    let mut backoff = Duration::from_millis(200);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                backoff = Duration::from_millis(200);
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(run_id) = msg.get_payload::<String>() {
                        let _ = tx.send(run_id);
                    }
                }
            }
        }
        tracing::debug!(%channel, "redis: change announcements interrupted; resubscribing");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait]
impl ChangeBroker for RedisBroker {
    async fn announce_change(&self, run_id: &str) -> BrokerResult<()> {
        let _: i64 = ::redis::cmd("PUBLISH")
            .arg(self.key("changes"))
            .arg(run_id)
            .query_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn announce_changes(&self, run_ids: &[String]) -> BrokerResult<()> {
        if run_ids.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for id in run_ids {
            pipe.cmd("PUBLISH")
                .arg(self.key("changes"))
                .arg(id)
                .ignore();
        }
        let () = pipe.query_async(&mut self.con()).await?;
        Ok(())
    }

    fn watch_changes(&self) -> RunChanges {
        let rx = self.changes.subscribe();
        self.subscriber.get_or_init(|| {
            tokio::spawn(relay_changes(
                self.client.clone(),
                self.key("changes"),
                self.changes.clone(),
            ))
        });
        rx
    }
}
