//! [`LeaseBroker`] on Redis: leasing queued entries (one script call that reads and claims, or
//! a blocking read on a pooled connection when the queues are empty), heartbeats, release, hand
//! back, and the reaper, which also puts back entries stranded by a lessee that died.

use ::redis::{Script, ScriptInvocation};

use super::*;
use crate::ids::new_token;

/// Leases taken per reaper round trip.
const REAP_BATCH: usize = 500;
/// How long a read of the known routes is reused.
const ROUTES_FRESH: Duration = Duration::from_secs(1);
/// The longest a parked lease blocks before it looks for routes first published meanwhile.
const PARK_SLICE: Duration = Duration::from_secs(5);
/// Queue lists whose resolutions are kept at once (a runner has one; an edge one per label set).
const MAX_RESOLVED: usize = 1024;
/// How often a parked lease looks again while a route it skipped, its gates full, has jobs
/// waiting: a slot frees when a lease ends, which wakes no blocking read.
pub const GATE_POLL: Duration = Duration::from_millis(200);

impl RedisBroker {
    /// The stream keys a lease request reads: its queues and the routes of them it matches
    /// ([`routing`]), from the set of queues published to, read at most every
    /// [`ROUTES_FRESH`]. What a request resolves to is kept until that set is read again, so a
    /// runner's every lease costs a lookup, not a resolution.
    async fn streams_for(&self, req: &LeaseRequest) -> BrokerResult<Arc<Streams>> {
        let fresh = self
            .known()
            .read_at
            .is_some_and(|at| at.elapsed() < ROUTES_FRESH);
        if !fresh {
            let read: Vec<String> = ::redis::cmd("SMEMBERS")
                .arg(&self.hot.queues)
                .query_async(&mut self.con())
                .await?;
            *self.known() = KnownRoutes {
                read_at: Some(std::time::Instant::now()),
                routes: read,
                resolved: HashMap::new(),
            };
        }
        let mut known = self.known();
        if let Some((_, streams)) = known
            .resolved
            .get(&req.queues)
            .and_then(|list| list.iter().find(|(labels, _)| *labels == req.labels))
        {
            return Ok(streams.clone());
        }
        let streams = Arc::new(Streams::of(
            &routing::routes_for(&known.routes, &req.queues, &req.labels),
            &known.routes,
            |r| self.queue_key(r),
        ));
        if known.resolved.len() >= MAX_RESOLVED {
            known.resolved.clear();
        }
        known
            .resolved
            .entry(req.queues.clone())
            .or_default()
            .push((req.labels.clone(), streams.clone()));
        Ok(streams)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, KnownRoutes> {
        self.known_routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an invocation of a script built on `LUA_CLAIM_ENTRY` with its shared keys and
    /// arguments: up to `max` leases for `worker_id` lasting `ttl`, one fresh token for each.
    /// Also returns the leases' deadline, which [`parse_leases`] puts into them.
    fn claim_invocation<'a>(
        &self,
        script: &'a Script,
        streams: &Streams,
        worker_id: &str,
        max: usize,
        ttl: Duration,
    ) -> (ScriptInvocation<'a>, i64) {
        let now = now_ms();
        let deadline = now + ttl.as_millis() as i64;
        let mut inv = script.prepare_invoke();
        inv.key(&self.hot.runs)
            .key(&self.hot.leases)
            .key(&self.hot.cancels);
        for s in &streams.keys {
            inv.key(s);
        }
        // Stored in the lease value as JSON, so `reap_expired` reads it back exactly.
        let worker_json = serde_json::Value::from(worker_id).to_string();
        inv.arg(GROUP)
            .arg(deadline)
            .arg(worker_json)
            .arg(max)
            .arg(max)
            .arg(streams.gates.len());
        for (group, spec) in &streams.gates {
            inv.arg(group).arg(spec);
        }
        for _ in 0..max {
            inv.arg(new_token("lt"));
        }
        (inv, deadline)
    }

    /// Runs the claim script over `(stream index, entry id)` pairs already read.
    async fn claim(
        &self,
        streams: &Streams,
        entries: &[(usize, String)],
        worker_id: &str,
        max: usize,
        ttl: Duration,
    ) -> BrokerResult<Vec<Lease>> {
        let (mut inv, deadline) =
            self.claim_invocation(&self.scripts.claim, streams, worker_id, max, ttl);
        for (idx, id) in entries {
            // Lua indexes KEYS from 1 and the streams follow the three fixed keys.
            inv.arg(idx + 4).arg(id);
        }
        parse_leases(
            inv.invoke_async(&mut self.con()).await?,
            worker_id,
            deadline,
        )
    }

    /// Releases `done`, then reads and claims, in one script call, without blocking; `None`
    /// when a consumer group is missing (FLUSHALL; the releases ran before the read failed).
    /// Besides the leases, the script's flags of the streams it skipped as gated and full
    /// (see `LUA_LEASE`).
    async fn lease_now(
        &self,
        streams: &Streams,
        req: &LeaseRequest,
        done: &[HeldLease],
    ) -> BrokerResult<Option<(Vec<Lease>, String)>> {
        let (mut inv, deadline) = self.claim_invocation(
            &self.scripts.lease,
            streams,
            &req.worker_id,
            req.max,
            req.ttl,
        );
        inv.arg(LESSEE);
        for h in done {
            inv.arg(&h.run_id).arg(&h.lease_token);
        }
        match inv.invoke_async::<Vec<String>>(&mut self.con()).await {
            Ok(mut raw) => {
                let skipped = if raw.is_empty() {
                    String::new()
                } else {
                    raw.remove(0)
                };
                let leases = parse_leases(raw, &req.worker_id, deadline)?;
                Ok(Some((leases, skipped)))
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                self.forget_groups();
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims entries a blocking read returned.
    async fn claim_read(
        &self,
        streams: &Streams,
        entries: Entries,
        req: &LeaseRequest,
    ) -> BrokerResult<Vec<Lease>> {
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<(usize, String)> = entries
            .into_iter()
            .filter_map(|(s, id, _)| streams.keys.iter().position(|k| *k == s).map(|i| (i, id)))
            .collect();
        self.claim(streams, &ids, &req.worker_id, req.max, req.ttl)
            .await
    }

    /// Waits up to `remaining` for jobs on the streams the lease script read (`skipped` flags
    /// the others: their gates were full) and claims what comes; `None` when a consumer group
    /// is missing. While a skipped stream has jobs waiting, waits [`GATE_POLL`] at most, so the
    /// caller looks again soon after a slot frees.
    async fn park(
        &self,
        streams: &Streams,
        skipped: &str,
        req: &LeaseRequest,
        remaining: Duration,
    ) -> BrokerResult<Option<Vec<Lease>>> {
        let slice = remaining.min(if skipped.contains('2') {
            GATE_POLL
        } else {
            PARK_SLICE
        });
        let open = if skipped.contains(['1', '2']) {
            std::borrow::Cow::Owned(streams.open(skipped))
        } else {
            std::borrow::Cow::Borrowed(streams)
        };
        if open.keys.is_empty() {
            tokio::time::sleep(slice).await;
            return Ok(Some(vec![]));
        }
        // One entry per stream when gates are read: what a wake brings stays within their room
        // (the claim re-checks it; an entry past a full gate would go back to its stream's tail).
        let count = if open.gates.is_empty() { req.max } else { 1 };
        match self
            .read_group(GROUP, LESSEE, &open.keys, count, slice)
            .await?
        {
            Some(entries) => Ok(Some(self.claim_read(&open, entries, req).await?)),
            None => Ok(None),
        }
    }

    /// Puts back queue entries that a lessee read but never turned into leases (it died between
    /// the two steps), so nothing published is stranded in a consumer-group PEL.
    async fn recover_orphans(&self) -> BrokerResult<()> {
        let queues: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(self.key("queues"))
            .query_async(&mut self.con())
            .await?;
        for q in queues {
            let stream = self.queue_key(&q);
            let reply: Result<Value, RedisError> = ::redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(LESSEE)
                .arg(self.orphan_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(100)
                .arg("JUSTID")
                .query_async(&mut self.con())
                .await;
            let reply = match reply {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(e.into()),
            };
            let ids: Vec<(usize, String)> = match &reply {
                Value::Array(parts) if parts.len() >= 2 => as_array(&parts[1])
                    .iter()
                    .filter_map(as_string)
                    .map(|id| (0, id))
                    .collect(),
                _ => Vec::new(),
            };
            if !ids.is_empty() {
                tracing::warn!(queue = %q, count = ids.len(), "re-queueing jobs stranded by a lessee that died");
                let one = Streams {
                    keys: vec![stream],
                    gates: vec![],
                };
                self.claim(&one, &ids, LESSEE, 0, Duration::ZERO).await?;
            }
        }
        Ok(())
    }
}

/// The lease the reap script returned as (job JSON, `leased` value, deadline score).
fn expired_lease(job: &str, leased: &str, score: &str) -> BrokerResult<Lease> {
    let corrupt = |what: &str| BrokerError::Corrupt(format!("expired lease: {what}"));
    let (token, _, worker) = leased_parts(leased).ok_or_else(|| corrupt("leased value"))?;
    Ok(Lease {
        job: serde_json::from_str(job).map_err(|e| corrupt(&e.to_string()))?,
        lease_token: token.to_string(),
        worker_id: serde_json::from_str(worker).map_err(|e| corrupt(&e.to_string()))?,
        deadline_ms: score.parse::<f64>().map_err(|e| corrupt(&e.to_string()))? as i64,
    })
}

/// Leases from a claim script's (job JSON, token) pairs.
fn parse_leases(raw: Vec<String>, worker_id: &str, deadline_ms: i64) -> BrokerResult<Vec<Lease>> {
    raw.chunks(2)
        .map(|pair| {
            let [job, token] = pair else {
                return Err(BrokerError::Corrupt("lease reply of odd length".into()));
            };
            Ok(Lease {
                job: serde_json::from_str(job)
                    .map_err(|e| BrokerError::Corrupt(format!("leased job: {e}")))?,
                lease_token: token.clone(),
                worker_id: worker_id.to_string(),
                deadline_ms,
            })
        })
        .collect()
}

#[async_trait]
impl LeaseBroker for RedisBroker {
    async fn lease(&self, req: &LeaseRequest, wait: Duration) -> BrokerResult<Vec<Lease>> {
        self.release_and_lease(&[], req, wait).await
    }

    async fn release_and_lease(
        &self,
        done: &[HeldLease],
        req: &LeaseRequest,
        wait: Duration,
    ) -> BrokerResult<Vec<Lease>> {
        let mut streams = self.streams_for(req).await?;
        if req.max == 0 || streams.keys.is_empty() {
            for h in done {
                self.release(&h.run_id, &h.lease_token).await?;
            }
            return Ok(vec![]);
        }
        if !done.is_empty() {
            metrics::counter!("antcode_broker_releases_in_lease_total")
                .increment(done.len() as u64);
        }
        let mut done = done;
        let until = tokio::time::Instant::now() + wait;
        let mut regrouped = false;
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                // A route first published to while this call waited is read from now on.
                streams = self.streams_for(req).await?;
            }
            for s in &streams.keys {
                self.ensure_group(s, GROUP).await?;
            }
            // Work waiting: one call releases, reads and claims it. Otherwise block, then claim.
            let now = self.lease_now(&streams, req, done).await?;
            // The script released `done` before it read, whatever the read found.
            done = &[];
            let remaining = until.saturating_duration_since(tokio::time::Instant::now());
            let leases = match now {
                Some((leases, skipped)) if leases.is_empty() && !remaining.is_zero() => {
                    self.park(&streams, &skipped, req, remaining).await?
                }
                other => other.map(|(leases, _)| leases),
            };
            let Some(leases) = leases else {
                // The groups vanished (FLUSHALL): recreate them and read again, once per call.
                if regrouped {
                    return Err(BrokerError::Unavailable(
                        "redis: queue consumer group keeps vanishing".into(),
                    ));
                }
                regrouped = true;
                continue;
            };
            if !leases.is_empty() {
                metrics::counter!("antcode_broker_leases_total").increment(leases.len() as u64);
                return Ok(leases);
            }
            if tokio::time::Instant::now() >= until {
                return Ok(vec![]);
            }
        }
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        held: &[HeldLease],
        ttl: Duration,
    ) -> BrokerResult<HeartbeatReply> {
        let now = now_ms();
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.key(&self.hot.runs)
            .key(&self.hot.leases)
            .key(&self.hot.cancels)
            .key(self.key("drain"))
            .arg(worker_id)
            .arg(now + ttl.as_millis() as i64)
            .arg(now);
        for h in held {
            inv.arg(&h.run_id).arg(&h.lease_token);
        }
        let (cancels, lost, drain): (Vec<String>, Vec<String>, i64) =
            inv.invoke_async(&mut self.con()).await?;
        Ok(HeartbeatReply {
            cancels,
            lost,
            drain: drain == 1,
        })
    }

    async fn release(&self, run_id: &str, lease_token: &str) -> BrokerResult<()> {
        let _: i64 = self
            .scripts
            .release
            .key(&self.hot.runs)
            .key(&self.hot.leases)
            .key(&self.hot.cancels)
            .arg(run_id)
            .arg(lease_token)
            .invoke_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn hand_back(&self, run_id: &str, lease_token: &str) -> BrokerResult<()> {
        // Read the lease first to learn its queue; the script re-checks the token, so a lease
        // that changed in between is left alone.
        let (raw, job_json): (Option<String>, Option<String>) = ::redis::cmd("HMGET")
            .arg(self.run_key(run_id))
            .arg("l")
            .arg("j")
            .query_async(&mut self.con())
            .await?;
        let Some((token, _, _)) = raw.as_deref().and_then(leased_parts) else {
            return Ok(());
        };
        let Some(job_json) = job_json.filter(|_| token == lease_token) else {
            return Ok(());
        };
        let job: Job = serde_json::from_str(&job_json)
            .map_err(|e| BrokerError::Corrupt(format!("leased job: {e}")))?;
        let route = job.route();
        let _: i64 = self
            .scripts
            .hand_back
            .key(&self.hot.runs)
            .key(&self.hot.leases)
            .key(self.queue_key(&route))
            .key(&self.hot.queues)
            .key(&self.hot.cancels)
            .arg(run_id)
            .arg(lease_token)
            .arg(job.attempt)
            .arg(GROUP)
            .arg(route.as_ref())
            .arg(now_ms())
            .invoke_async(&mut self.con())
            .await?;
        Ok(())
    }

    async fn reap_expired(&self, now: i64) -> BrokerResult<Vec<Lease>> {
        let mut out = Vec::new();
        loop {
            let raw: Vec<String> = self
                .scripts
                .reap
                .key(&self.hot.runs)
                .key(&self.hot.leases)
                .arg(now)
                .arg(REAP_BATCH)
                .invoke_async(&mut self.con())
                .await?;
            let n = raw.len() / 3;
            for triple in raw.chunks(3) {
                let [job, leased, score] = triple else {
                    continue;
                };
                match expired_lease(job, leased, score) {
                    Ok(lease) => out.push(lease),
                    // The lease is already removed; the run is found by SQL as lost anyway.
                    Err(e) => tracing::warn!(error = %e, "dropping an unreadable expired lease"),
                }
            }
            if n < REAP_BATCH {
                break;
            }
        }
        if !out.is_empty() {
            metrics::counter!("antcode_broker_leases_reaped_total").increment(out.len() as u64);
        }
        self.recover_orphans().await?;
        Ok(out)
    }

    async fn lease_alive(&self, run_id: &str, lease_token: &str) -> BrokerResult<bool> {
        let (leased, deadline): (Option<String>, Option<f64>) = ::redis::pipe()
            .cmd("HGET")
            .arg(self.run_key(run_id))
            .arg("l")
            .cmd("ZSCORE")
            .arg(&self.hot.leases)
            .arg(run_id)
            .query_async(&mut self.con())
            .await?;
        let token = leased.as_deref().and_then(leased_parts).map(|(t, _, _)| t);
        Ok(token == Some(lease_token) && deadline.is_some_and(|d| d as i64 >= now_ms()))
    }
}
