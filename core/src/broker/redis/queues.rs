//! [`QueueBroker`] on Redis: publishing jobs onto queue streams (one Lua script call per
//! batch, idempotent through the run hashes) and the queues' depths.

use super::*;

/// Jobs per publish script call: the script blocks Redis while it runs, so a large batch is cut
/// into calls of a few milliseconds each.
const PUBLISH_CHUNK: usize = 256;

#[async_trait]
impl QueueBroker for RedisBroker {
    async fn publish_many(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        // The `queued` hash keeps one line per attempt with the stream key last (a route
        // percent-encodes control characters in labels).
        if let Some(job) = jobs.iter().find(|j| j.queue.contains('\n')) {
            return Err(BrokerError::Corrupt(format!(
                "queue name {:?} contains a newline",
                job.queue
            )));
        }
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(PUBLISH_CHUNK) {
            let mut call = self.scripts.publish.prepare_invoke();
            call.key(&self.hot.runs)
                .key(&self.hot.queues)
                .key(&self.hot.cancels);
            for job in chunk {
                let route = job.route();
                call.key(self.queue_key(&route))
                    .arg(&job.run_id)
                    .arg(job.attempt)
                    .arg(to_json(job)?)
                    .arg(route.as_ref());
            }
            let added: Vec<i64> = call.invoke_async(&mut self.con()).await?;
            out.extend(added.into_iter().map(|a| a == 1));
        }
        Ok(out)
    }

    async fn holds(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        if jobs.is_empty() {
            return Ok(vec![]);
        }
        // What makes publish idempotent: the run's queued attempts and its leased one.
        let mut pipe = ::redis::pipe();
        for job in jobs {
            pipe.cmd("HMGET")
                .arg(self.run_key(&job.run_id))
                .arg("q")
                .arg("l");
        }
        let state: Vec<(Option<String>, Option<String>)> =
            pipe.query_async(&mut self.con()).await?;
        Ok(jobs
            .iter()
            .zip(&state)
            .map(|(job, (queued, leased))| {
                let attempt = job.attempt.to_string();
                queued
                    .as_deref()
                    .is_some_and(|q| lists_attempt(q, job.attempt))
                    || leased
                        .as_deref()
                        .and_then(leased_parts)
                        .is_some_and(|(_, a, _)| a == attempt)
            })
            .collect())
    }

    async fn reroute(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(PUBLISH_CHUNK) {
            let mut call = self.scripts.reroute.prepare_invoke();
            call.key(&self.hot.runs).key(&self.hot.queues);
            for job in chunk {
                let route = job.route();
                call.key(self.queue_key(&route))
                    .arg(&job.run_id)
                    .arg(job.attempt)
                    .arg(route.as_ref());
            }
            let moved: Vec<i64> = call.invoke_async(&mut self.con()).await?;
            out.extend(moved.into_iter().map(|m| m == 1));
        }
        Ok(out)
    }

    async fn queue_depths(&self) -> BrokerResult<Vec<(String, u64)>> {
        let mut queues: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(self.key("queues"))
            .query_async(&mut self.con())
            .await?;
        queues.sort();
        if queues.is_empty() {
            return Ok(vec![]);
        }
        let mut pipe = ::redis::pipe();
        for q in &queues {
            pipe.cmd("XLEN").arg(self.queue_key(q));
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.con()).await?;
        Ok(queues.into_iter().zip(lens).collect())
    }
}
