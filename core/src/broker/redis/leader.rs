//! [`LeaderBroker`] on Redis: the leader lock `P:leader:NAME` (holder, with a PX time to live)
//! and its fencing counter `P:fence:NAME`, each step one Lua script.

use super::*;

#[async_trait]
impl LeaderBroker for RedisBroker {
    async fn acquire_leader(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> BrokerResult<Option<u64>> {
        let token: Option<String> = self
            .scripts
            .acquire
            .key(self.key(&format!("leader:{name}")))
            .key(self.key(&format!("fence:{name}")))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.con())
            .await?;
        token
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|e| BrokerError::Corrupt(format!("fencing token {t:?}: {e}")))
            })
            .transpose()
    }

    async fn renew_leader(&self, name: &str, holder: &str, ttl: Duration) -> BrokerResult<bool> {
        let renewed: i64 = self
            .scripts
            .renew
            .key(self.key(&format!("leader:{name}")))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.con())
            .await?;
        Ok(renewed == 1)
    }

    async fn release_leader(&self, name: &str, holder: &str) -> BrokerResult<()> {
        let _: i64 = self
            .scripts
            .release_leader
            .key(self.key(&format!("leader:{name}")))
            .arg(holder)
            .invoke_async(&mut self.con())
            .await?;
        Ok(())
    }
}
