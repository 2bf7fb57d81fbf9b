//! [`RedisBroker`]: the `Broker` on Redis Streams, for split deployments.
//!
//! Every key lives under one hash tag, `{PREFIX}:…`, so the whole broker sits in one Redis Cluster
//! slot and every Lua script may touch any of its keys. The layout (`P` = `{antcode}` by default):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:q:QUEUE` | stream + group `runners` | jobs waiting on `QUEUE` (entries are deleted once leased, so `XLEN` is the depth) |
//! | `P:queues` | set | names of every queue ever published to |
//! | `P:r:RUN` | hash `q` → lines `ATTEMPT ENTRY-ID STREAM`, `l` → `TOKEN ATTEMPT WORKER-JSON`, `j` → job JSON | the run's queued attempts (what makes publish idempotent) and its live lease with the leased job as published; exists only while either is there (see `scripts.rs`) |
//! | `P:leases` | zset run → deadline ms | live leases; the reaper takes scores below now |
//! | `P:cancels` | zset run → expiry ms | pending cancel signals (24 h) |
//! | `P:events` | stream, one group per recorder | runner events, redelivered by `XAUTOCLAIM` when unacknowledged |
//! | `P:log:RUN` | stream, ids = chunk cursor | live log tail, trimmed to about `LIVE_LOG_CHUNKS`, expires after 24 h |
//! | `P:workers` / `P:wdata` | zset id → expiry ms / hash id → JSON | worker status with a TTL |
//! | `P:drain` | set | workers asked to drain |
//! | `P:leader:NAME` / `P:fence:NAME` | string holder (PX ttl) / counter | the leader lock and its fencing token |
//! | `P:changes` | pub/sub channel | change announcements, relayed by one subscriber per process |
//!
//! The Celery visibility-timeout trap does not apply: a stream entry is acknowledged the moment it
//! is leased, and liveness is the lease zset, which only the heartbeat extends and only the reaper
//! (atomically, in Lua) shortens. The consumer-group PEL is used only to recover entries read by a
//! lessee that died before it could record the lease; `reap_expired` puts those back after
//! [`ORPHAN_IDLE`].
//!
//! A lease with work waiting is one script call that reads and claims; only an empty queue
//! costs a blocking read, on a pooled connection of its own.
//!
//! An older layout kept the run state in three hashes, `P:queued`, `P:leased` and `P:ljobs`;
//! `connect` moves whatever it finds there into run hashes (one script, once), so an upgrade
//! keeps every queued attempt and live lease. Processes of the older layout must be stopped
//! first: what they write after the move is not read.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script, ScriptInvocation, Value};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

mod scripts;

use super::*;
use crate::ids::new_token;
use crate::time::now_ms;
use scripts::{leased_parts, lists_attempt, Scripts};

/// Key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "antcode";
/// The consumer group of every queue stream. All lessees share one consumer name: entries are
/// acknowledged right after they are read, so per-consumer PELs would only pile up names.
const GROUP: &str = "runners";
const LESSEE: &str = "lessee";
/// A queue entry read but not leased for this long belongs to a lessee that died mid-lease.
pub const ORPHAN_IDLE: Duration = Duration::from_secs(60);
/// Unacknowledged events are delivered again after this long (override per broker).
pub const DEFAULT_EVENT_REDELIVERY: Duration = Duration::from_secs(30);
/// The events stream is trimmed (approximately) to this many entries.
const EVENTS_MAXLEN: usize = 1_000_000;
const LOG_TTL: Duration = Duration::from_secs(24 * 3600);
const CANCEL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Idle dedicated connections kept for blocking reads.
const BLOCKING_POOL: usize = 16;
/// Leases taken per reaper round trip.
const REAP_BATCH: usize = 500;

impl From<RedisError> for BrokerError {
    fn from(e: RedisError) -> Self {
        BrokerError::Unavailable(format!("redis: {e}"))
    }
}

/// Jobs per publish script call: the script blocks Redis while it runs, so a large batch is cut
/// into calls of a few milliseconds each.
const PUBLISH_CHUNK: usize = 256;

/// The keys a job's round trip names, so the hot path does not format them per call.
struct HotKeys {
    /// `P:r:`, the prefix of run hashes (scripts append the run id).
    runs: String,
    leases: String,
    cancels: String,
    queues: String,
}

impl HotKeys {
    fn new(tag: &str) -> HotKeys {
        HotKeys {
            runs: format!("{tag}:r:"),
            leases: format!("{tag}:leases"),
            cancels: format!("{tag}:cancels"),
            queues: format!("{tag}:queues"),
        }
    }
}

pub struct RedisBroker {
    client: Client,
    /// Shared, multiplexed, reconnecting connection for every non-blocking command.
    conn: ConnectionManager,
    /// Dedicated connections for `BLOCK` reads: a blocked connection cannot serve anyone else.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// `{prefix}`: the hash tag every key starts with.
    tag: String,
    /// Keys of every job round trip, built once.
    hot: HotKeys,
    event_redelivery: Duration,
    orphan_idle: Duration,
    /// Consumer groups known to exist: stream key → groups (so the check every lease makes
    /// allocates nothing).
    groups_ready: Mutex<HashMap<String, HashSet<String>>>,
    scripts: Scripts,
    /// Announcements received on the `{prefix}:changes` channel, fanned out in this process.
    changes: tokio::sync::broadcast::Sender<String>,
    /// The subscriber that feeds `changes`, started by the first watcher (runners never need it).
    subscriber: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        if let Some(task) = self.subscriber.get() {
            task.abort();
        }
    }
}

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

/// Ids of the entries of an `XREADGROUP`/`XREAD`/`XAUTOCLAIM` reply, per stream key, with fields.
type Entries = Vec<(String, String, Vec<(String, String)>)>;

impl RedisBroker {
    /// Connects to `redis://[:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…` (TLS, checked against
    /// the webpki roots) and checks the server answers. `prefix` names this deployment's keys
    /// (`antcode` by default elsewhere); it must not contain `{` or `}`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBroker, BrokerError> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(BrokerError::Unavailable(format!(
                "invalid redis key prefix {prefix:?}: must be non-empty, without braces"
            )));
        }
        if url.starts_with("rediss://") {
            // redis builds rustls without choosing a crypto backend; install ours unless the
            // process already picked one.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client =
            Client::open(url).map_err(|e| BrokerError::Unavailable(format!("redis url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let tag = format!("{{{prefix}}}");
        let broker = RedisBroker {
            client,
            conn,
            blocking: Mutex::new(Vec::new()),
            hot: HotKeys::new(&tag),
            tag,
            event_redelivery: DEFAULT_EVENT_REDELIVERY,
            orphan_idle: ORPHAN_IDLE,
            groups_ready: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
            changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
            subscriber: std::sync::OnceLock::new(),
        };
        broker.ping().await?;
        broker.migrate_run_state().await?;
        Ok(broker)
    }

    /// Moves run state left by the layout before per-run hashes into run hashes (a no-op
    /// once done).
    async fn migrate_run_state(&self) -> BrokerResult<()> {
        let moved: i64 = self
            .scripts
            .migrate
            .key(self.key("queued"))
            .key(self.key("leased"))
            .key(self.key("ljobs"))
            .key(&self.hot.runs)
            .invoke_async(&mut self.con())
            .await?;
        if moved > 0 {
            tracing::info!(runs = moved, "redis: moved run state into per-run hashes");
        }
        Ok(())
    }

    /// The hash holding `run_id`'s queued attempts and lease.
    fn run_key(&self, run_id: &str) -> String {
        format!("{}{run_id}", self.hot.runs)
    }

    /// Connects with the key prefix taken from the URL's `prefix` query parameter (default
    /// [`DEFAULT_PREFIX`]), e.g. `redis://:secret@cache:6379/0?prefix=prod`.
    pub async fn open(url: &str) -> Result<RedisBroker, BrokerError> {
        let (url, prefix) = split_prefix(url);
        RedisBroker::connect(&url, prefix.as_deref().unwrap_or(DEFAULT_PREFIX)).await
    }

    /// Sets how long a read but unacknowledged event waits before `read_events` hands it out again.
    pub fn with_event_redelivery(mut self, after: Duration) -> RedisBroker {
        self.event_redelivery = after;
        self
    }

    /// Sets how long a queue entry may sit read-but-unleased before `reap_expired` assumes its
    /// lessee died and puts it back (default [`ORPHAN_IDLE`]).
    pub fn with_orphan_idle(mut self, after: Duration) -> RedisBroker {
        self.orphan_idle = after;
        self
    }

    /// The hash tag all keys share, e.g. `{antcode}`.
    pub fn key_tag(&self) -> &str {
        &self.tag
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.tag)
    }

    fn queue_key(&self, queue: &str) -> String {
        format!("{}:q:{queue}", self.tag)
    }

    fn con(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn blocking_conn(&self, wait: Duration) -> BrokerResult<MultiplexedConnection> {
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut con = match pooled {
            Some(c) => c,
            None => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?
            }
        };
        // The socket must outlive the server-side BLOCK.
        con.set_response_timeout(wait + Duration::from_secs(10));
        Ok(con)
    }

    /// Returns a blocking connection after a call that completed; one that failed or whose
    /// future was dropped mid-call is simply closed.
    fn return_conn(&self, con: MultiplexedConnection) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < BLOCKING_POOL {
            pool.push(con);
        }
    }

    /// Creates the consumer group `group` on `stream` (and the stream) unless known to exist.
    async fn ensure_group(&self, stream: &str, group: &str) -> BrokerResult<()> {
        if self
            .groups_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .is_some_and(|groups| groups.contains(group))
        {
            return Ok(());
        }
        let res: Result<(), RedisError> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.con())
            .await;
        match res {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        self.groups_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stream.to_string())
            .or_default()
            .insert(group.to_string());
        Ok(())
    }

    fn forget_groups(&self) {
        self.groups_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// `XREADGROUP` (blocking on a dedicated connection when `wait` > 0); `None` when the
    /// consumer group no longer exists.
    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        wait: Duration,
    ) -> BrokerResult<Option<Entries>> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        let block_ms = wait.as_millis() as u64;
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(streams);
        for _ in streams {
            cmd.arg(">");
        }
        let result: Result<Value, RedisError> = if block_ms > 0 {
            let mut con = self.blocking_conn(wait).await?;
            let reply = cmd.query_async(&mut con).await;
            if reply.is_ok() {
                self.return_conn(con);
            }
            reply
        } else {
            cmd.query_async(&mut self.con()).await
        };
        match result {
            Ok(reply) => Ok(Some(parse_read_reply(&reply))),
            // After a FLUSHALL the groups are gone: forget them so the caller recreates them.
            Err(e) if matches!(e.code(), Some("NOGROUP") | Some("UNBLOCKED")) => {
                self.forget_groups();
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts an invocation of a script built on `LUA_CLAIM_ENTRY` with its shared keys and
    /// arguments: up to `max` leases for `worker_id` lasting `ttl`, one fresh token for each.
    /// Also returns the leases' deadline, which [`parse_leases`] puts into them.
    fn claim_invocation<'a>(
        &self,
        script: &'a Script,
        streams: &[String],
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
        for s in streams {
            inv.key(s);
        }
        // Stored in the lease value as JSON, so `reap_expired` reads it back exactly.
        let worker_json = serde_json::Value::from(worker_id).to_string();
        inv.arg(GROUP)
            .arg(deadline)
            .arg(worker_json)
            .arg(max)
            .arg(max);
        for _ in 0..max {
            inv.arg(new_token("lt"));
        }
        (inv, deadline)
    }

    /// Runs the claim script over `(stream index, entry id)` pairs already read.
    async fn claim(
        &self,
        streams: &[String],
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
    async fn lease_now(
        &self,
        streams: &[String],
        req: &LeaseRequest,
        done: &[HeldLease],
    ) -> BrokerResult<Option<Vec<Lease>>> {
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
        match inv.invoke_async(&mut self.con()).await {
            Ok(raw) => parse_leases(raw, &req.worker_id, deadline).map(Some),
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
        streams: &[String],
        entries: Entries,
        req: &LeaseRequest,
    ) -> BrokerResult<Vec<Lease>> {
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<(usize, String)> = entries
            .into_iter()
            .filter_map(|(s, id, _)| streams.iter().position(|k| *k == s).map(|i| (i, id)))
            .collect();
        self.claim(streams, &ids, &req.worker_id, req.max, req.ttl)
            .await
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
                self.claim(
                    std::slice::from_ref(&stream),
                    &ids,
                    LESSEE,
                    0,
                    Duration::ZERO,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Removes the `prefix=NAME` query parameter (ours, unknown to the redis client) from `url`.
fn split_prefix(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut prefix = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("prefix=") {
            Some(p) => {
                prefix = Some(p.to_string());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, prefix)
}

fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// `[[id, [field, value, …]], …]` → entries (nil entries, left by trimming, are skipped).
fn parse_entries(stream: &str, v: &Value, out: &mut Entries) {
    for e in as_array(v) {
        let parts = as_array(e);
        let (Some(id), Some(fields)) = (parts.first().and_then(as_string), parts.get(1)) else {
            continue;
        };
        let kv = as_array(fields);
        let fields = kv
            .chunks(2)
            .filter_map(|c| Some((as_string(c.first()?)?, as_string(c.get(1)?)?)))
            .collect();
        out.push((stream.to_string(), id, fields));
    }
}

/// An `XREAD`/`XREADGROUP` reply in RESP2 (array of [key, entries]) or RESP3 (map) form.
fn parse_read_reply(v: &Value) -> Entries {
    let mut out = Vec::new();
    match v {
        Value::Array(streams) => {
            for s in streams {
                let parts = as_array(s);
                if let (Some(name), Some(entries)) =
                    (parts.first().and_then(as_string), parts.get(1))
                {
                    parse_entries(&name, entries, &mut out);
                }
            }
        }
        Value::Map(pairs) => {
            for (k, entries) in pairs {
                if let Some(name) = as_string(k) {
                    parse_entries(&name, entries, &mut out);
                }
            }
        }
        _ => {}
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

fn to_json<T: Serialize>(v: &T) -> BrokerResult<String> {
    serde_json::to_string(v).map_err(|e| BrokerError::Corrupt(e.to_string()))
}

#[async_trait]
impl Broker for RedisBroker {
    async fn ping(&self) -> BrokerResult<()> {
        let _: String = ::redis::cmd("PING").query_async(&mut self.con()).await?;
        Ok(())
    }

    async fn publish_many(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        // The `queued` hash keeps one line per attempt with the stream key last.
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
                call.key(self.queue_key(&job.queue))
                    .arg(&job.run_id)
                    .arg(job.attempt)
                    .arg(to_json(job)?)
                    .arg(&job.queue);
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

    async fn lease(&self, req: &LeaseRequest, wait: Duration) -> BrokerResult<Vec<Lease>> {
        self.release_and_lease(&[], req, wait).await
    }

    async fn release_and_lease(
        &self,
        done: &[HeldLease],
        req: &LeaseRequest,
        wait: Duration,
    ) -> BrokerResult<Vec<Lease>> {
        let mut streams: Vec<String> = Vec::new();
        for q in &req.queues {
            let k = self.queue_key(q);
            if !streams.contains(&k) {
                streams.push(k);
            }
        }
        if req.max == 0 || streams.is_empty() {
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
        loop {
            for s in &streams {
                self.ensure_group(s, GROUP).await?;
            }
            // Work waiting: one call releases, reads and claims it. Otherwise block, then claim.
            let mut leases = self.lease_now(&streams, req, done).await?;
            // The script released `done` before it read, whatever the read found.
            done = &[];
            let remaining = until.saturating_duration_since(tokio::time::Instant::now());
            if leases.as_ref().is_some_and(|l| l.is_empty()) && !remaining.is_zero() {
                leases = match self
                    .read_group(GROUP, LESSEE, &streams, req.max, remaining)
                    .await?
                {
                    Some(entries) => Some(self.claim_read(&streams, entries, req).await?),
                    None => None,
                };
            }
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
        let _: i64 = self
            .scripts
            .hand_back
            .key(&self.hot.runs)
            .key(&self.hot.leases)
            .key(self.queue_key(&job.queue))
            .key(&self.hot.queues)
            .key(&self.hot.cancels)
            .arg(run_id)
            .arg(lease_token)
            .arg(job.attempt)
            .arg(GROUP)
            .arg(&job.queue)
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
                .key(&self.hot.leases)
                .key(&self.hot.runs)
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

#[cfg(test)]
mod tests {
    use super::split_prefix;

    #[test]
    fn prefix_parameter_is_taken_out_of_the_url() {
        assert_eq!(
            split_prefix("redis://h:6379"),
            ("redis://h:6379".to_string(), None)
        );
        assert_eq!(
            split_prefix("redis://:pw@h/2?prefix=prod"),
            ("redis://:pw@h/2".to_string(), Some("prod".to_string()))
        );
        assert_eq!(
            split_prefix("rediss://h?protocol=resp3&prefix=x"),
            (
                "rediss://h?protocol=resp3".to_string(),
                Some("x".to_string())
            )
        );
    }
}
