//! [`RedisBroker`]: the `Broker` on Redis Streams, for split deployments.
//!
//! This file holds the struct, connecting (and the liveness check), key naming, the pooled
//! connections for blocking reads, consumer groups and reply parsing; each sub-trait's
//! implementation is in a file of its own (`queues.rs`, `leases.rs`, `cancels.rs`, `events.rs`,
//! `changes.rs`, `logs.rs`, `workers.rs`, `leader.rs`), and the Lua scripts in `scripts.rs`.
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
//! | `P:g:GATE` | set of runs | runs whose live lease holds the gate (its size is the gate's count; see `scripts.rs`) |
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
//! costs a blocking read, on a pooled connection of its own. That read leaves out the routes
//! whose gates were full; while such a route has jobs waiting, the parked lease looks again
//! every `GATE_POLL` (`leases.rs`) instead of waiting for a publish, since a slot frees by a lease
//! ending, which no stream announces.
//!
//! An older layout kept the run state in three hashes, `P:queued`, `P:leased` and `P:ljobs`;
//! `connect` moves whatever it finds there into run hashes (one script, once), so an upgrade
//! keeps every queued attempt and live lease. Processes of the older layout must be stopped
//! first: what they write after the move is not read.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Value};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod cancels;
mod changes;
mod events;
mod leader;
mod leases;
mod logs;
mod queues;
mod scripts;
mod workers;

use super::*;
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
/// Idle dedicated connections kept for blocking reads.
const BLOCKING_POOL: usize = 16;

impl From<RedisError> for BrokerError {
    fn from(e: RedisError) -> Self {
        BrokerError::Unavailable(format!("redis: {e}"))
    }
}

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
    /// The queues and routes published to, as last read (see [`routing`]).
    known_routes: Mutex<KnownRoutes>,
}

/// The queues and routes published to, when they were read, and the stream keys lease
/// requests resolved to among them: by the request's queues, then its labels.
#[derive(Default)]
struct KnownRoutes {
    read_at: Option<std::time::Instant>,
    routes: Vec<String>,
    resolved: HashMap<Vec<String>, Vec<Resolved>>,
}

/// A runner's labels and the streams its lease reads.
type Resolved = (BTreeMap<String, String>, Arc<Streams>);

/// The stream keys a lease reads, in order, and the route group and gates of each (see
/// [`routing`]).
#[derive(Debug, Default, Clone, PartialEq)]
struct Streams {
    keys: Vec<String>,
    /// Per key, a number shared by consecutive keys of one route group (`routing::group_of`)
    /// and its route's gates as `NAME=LIMIT,…` (empty when ungated); empty as a whole when no
    /// key is gated, so an ungated lease passes none to its script.
    gates: Vec<(usize, String)>,
}

impl Streams {
    /// The streams of `routes` (as `routing::routes_for` orders them), with `key` naming each
    /// stream. A plain queue never published to (not in `known`) is left out of its group: it
    /// is empty, and leaving it out spares the group's oldest-first reads a look at it.
    fn of(routes: &[String], known: &[String], key: impl Fn(&str) -> String) -> Streams {
        let keys = routes.iter().map(|r| key(r)).collect();
        if routes.iter().all(|r| routing::gates_of(r).is_empty()) {
            return Streams {
                keys,
                gates: vec![],
            };
        }
        let mut gates: Vec<(usize, String)> = Vec::with_capacity(routes.len());
        let mut group: Option<&str> = None;
        for (i, r) in routes.iter().enumerate() {
            let joins = group == Some(routing::group_of(r)) && known.contains(r);
            if !joins {
                group = Some(routing::group_of(r));
            }
            let n = if joins { gates[i - 1].0 } else { i };
            gates.push((n, routing::gates_of(r).to_string()));
        }
        Streams { keys, gates }
    }

    /// Those streams whose flag in `skipped` (a lease script's, one character per stream) is
    /// `0`: the ones whose gates had room.
    fn open(&self, skipped: &str) -> Streams {
        let flags = skipped.as_bytes();
        let mut out = Streams::default();
        for (i, key) in self.keys.iter().enumerate() {
            if flags.get(i).is_none_or(|f| *f == b'0') {
                out.keys.push(key.clone());
                if let Some(g) = self.gates.get(i) {
                    out.gates.push(g.clone());
                }
            }
        }
        if out.gates.iter().all(|(_, spec)| spec.is_empty()) {
            out.gates.clear();
        }
        out
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        if let Some(task) = self.subscriber.get() {
            task.abort();
        }
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
            known_routes: Mutex::default(),
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

fn to_json<T: Serialize>(v: &T) -> BrokerResult<String> {
    serde_json::to_string(v).map_err(|e| BrokerError::Corrupt(e.to_string()))
}

#[async_trait]
impl HealthBroker for RedisBroker {
    async fn ping(&self) -> BrokerResult<()> {
        let _: String = ::redis::cmd("PING").query_async(&mut self.con()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{split_prefix, Streams};

    #[test]
    fn streams_of_one_group_share_a_number_and_an_unpublished_queue_stands_alone() {
        let routes: Vec<String> = ["q@@key:a=1", "q@@key:b=1", "q", "r"]
            .map(String::from)
            .to_vec();
        let key = |r: &str| format!("k:{r}");
        let gated = routes[..2].to_vec();
        let of = |known: &[String]| Streams::of(&routes, known, key).gates;
        let spec = |n: usize, s: &str| (n, s.to_string());
        assert_eq!(
            of(&gated),
            [
                spec(0, "key:a=1"),
                spec(0, "key:b=1"),
                spec(2, ""),
                spec(3, "")
            ]
        );
        assert_eq!(
            of(&routes),
            [
                spec(0, "key:a=1"),
                spec(0, "key:b=1"),
                spec(0, ""),
                spec(3, "")
            ]
        );
        let plain = Streams::of(&routes[2..], &routes, key);
        assert_eq!(plain.keys, ["k:q", "k:r"]);
        assert!(plain.gates.is_empty(), "no gates, nothing passed");
        let open = Streams::of(&routes, &routes, key).open("2000");
        assert_eq!(open.keys, ["k:q@@key:b=1", "k:q", "k:r"]);
        assert_eq!(open.gates[0], spec(0, "key:b=1"));
    }

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
