//! One conformance suite for the `Broker` seam, run against the in-process `MemoryBroker` and the
//! `RedisBroker` on a real Redis (`ANTCODE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! Each Redis test gets its own random key prefix, so tests run in parallel on one server, and
//! deletes its keys when it ends (pass or fail). An unreachable Redis fails the Redis tests with
//! a message naming the variable: CI starts the server, so a missing one is a broken environment.
//!
//! Timing: waits are short (hundreds of ms) and the only time bounds asserted are "returned well
//! before the long wait it was given", i.e. a blocked call was woken rather than timing out.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::redis::RedisBroker;
use antcode_core::broker::{prelude::*, Broker, HeldLease, LeaseRequest, LogChunk};
use antcode_core::model::{
    BundleFormat, BundleRef, Job, Outcome, RunEvent, RunEventKind, RunState, WorkerStatus,
};
use antcode_core::time::now_ms;

const REDIS_ENV: &str = "ANTCODE_TEST_REDIS_URL";
const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";
/// Short enough for the events test to wait it out, long enough that a fast re-read does not
/// see a redelivery.
const REDELIVERY: Duration = Duration::from_millis(800);

/// The broker under test, a second handle on the same broker (a second connection for Redis,
/// the same object in process) and what to clean up.
struct Subject {
    broker: Arc<dyn Broker>,
    twin: Arc<dyn Broker>,
    redis: Option<(String, String)>,
}

impl Subject {
    fn memory() -> Subject {
        let b: Arc<dyn Broker> = Arc::new(MemoryBroker::with_event_redelivery(REDELIVERY));
        Subject {
            broker: b.clone(),
            twin: b,
            redis: None,
        }
    }

    async fn redis() -> Subject {
        let url = std::env::var(REDIS_ENV).unwrap_or_else(|_| REDIS_DEFAULT.to_string());
        let prefix = format!("antcode-test-{}", uuid::Uuid::new_v4().simple());
        let open = || async {
            RedisBroker::connect(&url, &prefix)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "Redis is not reachable at {url} (set {REDIS_ENV} to point elsewhere): {e}"
                    )
                })
                .with_event_redelivery(REDELIVERY)
        };
        let broker: Arc<dyn Broker> = Arc::new(open().await);
        let twin: Arc<dyn Broker> = Arc::new(open().await);
        Subject {
            broker,
            twin,
            redis: Some((url, prefix)),
        }
    }
}

impl Drop for Subject {
    /// Best-effort removal of the test's keys, on a plain blocking connection (no runtime needed).
    fn drop(&mut self) {
        let Some((url, prefix)) = self.redis.take() else {
            return;
        };
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(format!("{{{prefix}}}:*"))
            .query(&mut con)
        {
            Ok(k) => k,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

fn job(run_id: &str, queue: &str) -> Job {
    Job {
        run_id: run_id.to_string(),
        attempt: 1,
        queue: queue.to_string(),
        task_id: format!("task-{run_id}"),
        project_id: "proj-1".into(),
        // Large integers must survive the broker unchanged (Lua numbers are doubles).
        project_version: (1_i64 << 60) + 7,
        bundle: BundleRef {
            key: "bundles/ab/abcdef".into(),
            sha256: "ab".repeat(32),
            format: BundleFormat::Zip,
            size_bytes: 9_007_199_254_740_993,
            file_name: None,
        },
        entrypoint: "main.py".into(),
        requirements: "requests==2.32.3\n".into(),
        python_version: Some("3.11".into()),
        args: vec!["--name".into(), "héllo \"wörld\" {x}".into()],
        env: BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]),
        timeout_s: 3600,
        secrets: vec![],
        secret_env: Default::default(),
        warm: false,
        limits: Default::default(),
        network: Default::default(),
    }
}

fn run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn req(worker: &str, queues: &[&str], max: usize, ttl: Duration) -> LeaseRequest {
    LeaseRequest {
        worker_id: worker.to_string(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        max,
        ttl,
    }
}

fn held(l: &antcode_core::model::Lease) -> HeldLease {
    HeldLease {
        run_id: l.job.run_id.clone(),
        lease_token: l.lease_token.clone(),
    }
}

fn event(run: &str, n: u32) -> RunEvent {
    RunEvent {
        run_id: run.to_string(),
        attempt: n,
        lease_token: format!("lt_{n}"),
        worker_id: "w1".into(),
        at_ms: 1_700_000_000_000 + n as i64,
        kind: if n.is_multiple_of(2) {
            RunEventKind::Started
        } else {
            RunEventKind::Finished(Outcome {
                state: RunState::Succeeded,
                exit_code: Some(0),
                signal: None,
                error: None,
                duration_ms: 12,
                peak_rss_kb: Some(2048),
                log_key: Some("logs/x".into()),
                result: Some(serde_json::json!({"ok": true})),
            })
        },
    }
}

fn chunk(attempt: u32, seq: u64) -> LogChunk {
    LogChunk {
        attempt,
        seq,
        stream: if seq.is_multiple_of(2) {
            "stderr"
        } else {
            "stdout"
        }
        .into(),
        data: format!("line {seq} of attempt {attempt} ✓\n"),
        at_ms: 1_700_000_000_000 + seq as i64,
    }
}

fn worker(id: &str) -> WorkerStatus {
    WorkerStatus {
        id: id.to_string(),
        name: format!("name-{id}"),
        mode: "direct".into(),
        queues: vec!["default".into()],
        labels: BTreeMap::from([("gpu".to_string(), "no".to_string())]),
        slots: 4,
        running: 1,
        cpu_percent: 12.5,
        memory_percent: 40.0,
        disk_percent: 3.0,
        version: "0.1.0".into(),
        draining: false,
        held_leases: vec![],
        last_seen_ms: now_ms(),
    }
}

async fn depth(b: &dyn Broker, queue: &str) -> u64 {
    b.queue_depths()
        .await
        .expect("queue_depths")
        .into_iter()
        .find(|(q, _)| q == queue)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

const TTL: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The test bodies.

async fn publish_lease_round_trip(s: &Subject) {
    let b = &*s.broker;
    b.ping().await.expect("ping");
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap(), "first publish adds the job");
    assert_eq!(depth(b, "default").await, 1);

    let before = now_ms();
    let leases = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    assert_eq!(l.job, j, "the job comes back exactly as published");
    assert_eq!(l.worker_id, "w1");
    assert!(!l.lease_token.is_empty());
    assert!(
        l.deadline_ms >= before + TTL.as_millis() as i64 - 1000
            && l.deadline_ms <= now_ms() + TTL.as_millis() as i64 + 1000
    );
    assert_eq!(
        depth(b, "default").await,
        0,
        "a leased job is no longer waiting"
    );
    assert!(b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());
    assert!(!b.lease_alive(&j.run_id, "lt_wrong").await.unwrap());

    b.release(&j.run_id, &l.lease_token).await.unwrap();
    assert!(!b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());
    let none = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::ZERO)
        .await
        .unwrap();
    assert!(none.is_empty(), "a released job is gone");
}

async fn publish_is_idempotent(s: &Subject) {
    let b = &*s.broker;
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap());
    assert!(
        !b.publish(&j).await.unwrap(),
        "same (run, attempt) while queued"
    );
    assert!(
        !s.twin.publish(&j).await.unwrap(),
        "same (run, attempt) from another connection"
    );
    assert_eq!(depth(b, "default").await, 1);

    let leases = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        leases.len(),
        1,
        "a job published three times is leased once"
    );
    assert!(
        !b.publish(&j).await.unwrap(),
        "same (run, attempt) while leased"
    );
    assert_eq!(depth(b, "default").await, 0);

    let next = Job {
        attempt: 2,
        ..j.clone()
    };
    assert!(
        b.publish(&next).await.unwrap(),
        "a new attempt is a new job"
    );
}

async fn publish_many_is_publish_per_job(s: &Subject) {
    let b = &*s.broker;
    let queued = job(&run_id(), "batch-a");
    assert!(b.publish(&queued).await.unwrap());
    // More jobs than one Redis script call takes, over two queues, one already queued and one
    // repeated within the batch.
    let mut jobs = vec![queued.clone()];
    for i in 0..300 {
        jobs.push(job(
            &run_id(),
            if i % 2 == 0 { "batch-a" } else { "batch-b" },
        ));
    }
    jobs.push(jobs[1].clone());
    let added = b.publish_many(&jobs).await.unwrap();
    assert_eq!(added.len(), jobs.len(), "one answer per job, in order");
    assert!(!added[0], "already queued");
    assert!(added[1..301].iter().all(|a| *a), "new jobs are added");
    assert!(!added[301], "a job repeated in the batch is added once");
    assert_eq!(depth(b, "batch-a").await, 151);
    assert_eq!(depth(b, "batch-b").await, 150);
    assert!(b.publish_many(&[]).await.unwrap().is_empty());
    let leased = b
        .lease(&req("w1", &["batch-b"], 500, TTL), Duration::ZERO)
        .await
        .unwrap();
    let want: HashSet<String> = jobs[1..301]
        .iter()
        .filter(|j| j.queue == "batch-b")
        .map(|j| j.run_id.clone())
        .collect();
    let got: HashSet<String> = leased.iter().map(|l| l.job.run_id.clone()).collect();
    assert_eq!(got, want, "each batch job is leased as published");
    assert!(leased.iter().all(|l| jobs.contains(&l.job)));
    assert_eq!(
        b.publish_many(&[leased[0].job.clone()]).await.unwrap(),
        [false],
        "a leased job is not published again"
    );
}

async fn holds_is_what_publish_would_skip(s: &Subject) {
    let b = &*s.broker;
    let (queued, leased, never) = (
        job(&run_id(), "holds"),
        job(&run_id(), "holds"),
        job(&run_id(), "holds"),
    );
    b.publish(&leased).await.unwrap();
    let lease = b
        .lease(&req("w1", &["holds"], 1, TTL), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    b.publish(&queued).await.unwrap();
    let next_attempt = Job {
        attempt: 2,
        ..queued.clone()
    };
    let asked = [queued.clone(), leased.clone(), never.clone(), next_attempt];
    assert_eq!(
        b.holds(&asked).await.unwrap(),
        [true, true, false, false],
        "queued and leased are held; another run or attempt is not"
    );
    assert_eq!(s.twin.holds(&asked[..1]).await.unwrap(), [true]);
    b.release(&leased.run_id, &lease.lease_token).await.unwrap();
    assert_eq!(b.holds(&[leased]).await.unwrap(), [false], "released");
    assert!(b.holds(&[]).await.unwrap().is_empty());
}

async fn lease_wakes_when_a_job_is_published(s: &Subject) {
    let b = s.broker.clone();
    // Nothing queued: a short wait returns empty-handed.
    let empty = b
        .lease(&req("w1", &["wake"], 1, TTL), Duration::from_millis(200))
        .await
        .unwrap();
    assert!(empty.is_empty());

    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.lease(&req("w1", &["wake"], 1, TTL), wait).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = job(&run_id(), "wake");
    assert!(s.twin.publish(&j).await.unwrap());
    let leases = tokio::time::timeout(wait + Duration::from_secs(5), waiter)
        .await
        .expect("lease did not return")
        .expect("lease task")
        .expect("lease");
    let took = started.elapsed();
    assert_eq!(leases.len(), 1, "the parked lessee got the job");
    assert_eq!(leases[0].job.run_id, j.run_id);
    assert!(
        took < wait - Duration::from_secs(3),
        "lease was not woken by the publish (took {took:?} of {wait:?})"
    );
}

async fn lease_respects_max_and_isolates_queues(s: &Subject) {
    let b = &*s.broker;
    for _ in 0..5 {
        assert!(b.publish(&job(&run_id(), "a")).await.unwrap());
    }
    for _ in 0..2 {
        assert!(b.publish(&job(&run_id(), "b")).await.unwrap());
    }
    let first = b
        .lease(&req("w1", &["a"], 3, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|l| l.job.queue == "a"));
    let second = b
        .lease(&req("w1", &["a"], 10, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|l| l.job.queue == "a"));
    assert!(b
        .lease(&req("w1", &["a"], 10, TTL), Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(depth(b, "b").await, 2, "leasing queue a left queue b alone");
    let from_b = b
        .lease(&req("w2", &["b"], 10, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(from_b.len(), 2);
    let all: HashSet<String> = first
        .iter()
        .chain(&second)
        .chain(&from_b)
        .map(|l| l.job.run_id.clone())
        .collect();
    assert_eq!(all.len(), 7, "every job leased exactly once");

    // Several queues at once: `max` is the total, and what is not taken stays leasable.
    for q in ["c", "d", "c", "d"] {
        assert!(b.publish(&job(&run_id(), q)).await.unwrap());
    }
    let three = b
        .lease(&req("w3", &["c", "d"], 3, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(three.len(), 3);
    let rest = b
        .lease(&req("w3", &["c", "d"], 3, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    let cd: HashSet<String> = three
        .iter()
        .chain(&rest)
        .map(|l| l.job.run_id.clone())
        .collect();
    assert_eq!(cd.len(), 4);
    assert!(b
        .lease(&req("w3", &["c", "d"], 3, TTL), Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn expired_leases_are_reaped_exactly_once(s: &Subject) {
    let b = &*s.broker;
    let ids: Vec<String> = (0..3).map(|_| run_id()).collect();
    for id in &ids {
        b.publish(&job(id, "default")).await.unwrap();
    }
    let leases = b
        .lease(
            &req("w1", &["default"], 10, Duration::from_millis(300)),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(leases.len(), 3);
    assert!(
        b.reap_expired(now_ms()).await.unwrap().is_empty(),
        "nothing expired yet"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;

    let now = now_ms();
    let (r1, r2) = tokio::join!(s.broker.reap_expired(now), s.twin.reap_expired(now));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let mut reaped: Vec<String> = r1.iter().chain(&r2).map(|l| l.job.run_id.clone()).collect();
    reaped.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        reaped, expected,
        "two concurrent reapers together return each expired lease once"
    );
    for l in r1.iter().chain(&r2) {
        let original = leases
            .iter()
            .find(|o| o.job.run_id == l.job.run_id)
            .unwrap();
        assert_eq!(l.lease_token, original.lease_token);
        assert_eq!(l.job, original.job);
        assert_eq!(l.worker_id, "w1");
        assert!(l.deadline_ms < now);
    }
    assert!(
        b.reap_expired(now_ms()).await.unwrap().is_empty(),
        "reaped once only"
    );

    for l in &leases {
        assert!(!b.lease_alive(&l.job.run_id, &l.lease_token).await.unwrap());
    }
    let hb = b
        .heartbeat("w1", &leases.iter().map(held).collect::<Vec<_>>(), TTL)
        .await
        .unwrap();
    let lost: HashSet<&String> = hb.lost.iter().collect();
    assert_eq!(
        lost.len(),
        3,
        "heartbeats on reaped leases report them lost"
    );
    // Compensation may publish the run's next attempt.
    assert!(b
        .publish(&Job {
            attempt: 2,
            ..job(&ids[0], "default")
        })
        .await
        .unwrap());
}

async fn heartbeats_keep_a_lease_alive(s: &Subject) {
    let b = &*s.broker;
    let j = job(&run_id(), "default");
    b.publish(&j).await.unwrap();
    let ttl = Duration::from_millis(400);
    let l = b
        .lease(&req("w1", &["default"], 1, ttl), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);

    // Heartbeat well inside the ttl for three times the original ttl, reaping all along. The
    // reaper is asked about the instant the heartbeat was sent: whatever a loaded machine does
    // between the two calls, a lease a heartbeat renewed at that instant must not be reclaimed
    // then, and one the heartbeat failed to renew would be once the first ttl has passed.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        let beat_at = now_ms();
        let hb = b.heartbeat("w1", &[held(&l)], ttl).await.unwrap();
        assert!(hb.lost.is_empty(), "a heartbeated lease is not lost");
        assert!(hb.cancels.is_empty());
        assert!(!hb.drain);
        let reaped = s.twin.reap_expired(beat_at).await.unwrap();
        assert!(
            reaped.is_empty(),
            "a lease whose heartbeats arrive is never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A last, long heartbeat: the lease is alive however long the checks below take to run.
    let long = Duration::from_secs(60);
    let hb = b.heartbeat("w1", &[held(&l)], long).await.unwrap();
    assert!(hb.lost.is_empty(), "a heartbeated lease is not lost");
    assert!(b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());

    let wrong = HeldLease {
        run_id: j.run_id.clone(),
        lease_token: "lt_not_mine".into(),
    };
    let unknown = HeldLease {
        run_id: run_id(),
        lease_token: "lt_x".into(),
    };
    let hb = b
        .heartbeat("w1", &[wrong, unknown.clone()], ttl)
        .await
        .unwrap();
    assert_eq!(
        hb.lost.len(),
        2,
        "wrong token and unknown run are both lost"
    );
    assert!(hb.lost.contains(&j.run_id) && hb.lost.contains(&unknown.run_id));
    assert!(
        b.lease_alive(&j.run_id, &l.lease_token).await.unwrap(),
        "a wrong-token heartbeat does not end the real lease"
    );

    // Heartbeats stop: once the last one's ttl has passed, the lease is reaped.
    let past_the_last_ttl = now_ms() + long.as_millis() as i64 + 1;
    let reaped = b.reap_expired(past_the_last_ttl).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].lease_token, l.lease_token);
    let hb = b.heartbeat("w1", &[held(&l)], ttl).await.unwrap();
    assert_eq!(hb.lost, vec![j.run_id.clone()]);
}

async fn cancel_drops_queued_and_flags_leased(s: &Subject) {
    let b = &*s.broker;
    let (r1, r2, r3) = (run_id(), run_id(), run_id());
    b.publish(&job(&r1, "default")).await.unwrap();
    b.publish(&job(&r2, "default")).await.unwrap();
    let l1 = b
        .lease(&req("w1", &["default"], 1, TTL), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(l1.job.run_id, r1, "first in, first out");

    s.twin.cancel(&r2).await.unwrap();
    assert_eq!(
        depth(b, "default").await,
        0,
        "a cancelled queued job is dropped"
    );
    assert!(b
        .lease(
            &req("w1", &["default"], 10, TTL),
            Duration::from_millis(100)
        )
        .await
        .unwrap()
        .is_empty());

    let hb = b.heartbeat("w1", &[held(&l1)], TTL).await.unwrap();
    assert!(hb.cancels.is_empty());
    s.twin.cancel(&r1).await.unwrap();
    let hb = b.heartbeat("w1", &[held(&l1)], TTL).await.unwrap();
    assert_eq!(
        hb.cancels,
        vec![r1.clone()],
        "a leased job's cancel comes with the heartbeat"
    );
    assert!(hb.lost.is_empty(), "cancel does not take the lease away");
    let mut pending = b
        .cancels_for(&[r1.clone(), r2.clone(), r3.clone()])
        .await
        .unwrap();
    pending.sort();
    let mut expected = vec![r1.clone(), r2.clone()];
    expected.sort();
    assert_eq!(pending, expected);
    assert!(b.cancels_for(&[]).await.unwrap().is_empty());

    b.release(&r1, &l1.lease_token).await.unwrap();
    assert!(
        b.cancels_for(std::slice::from_ref(&r1))
            .await
            .unwrap()
            .is_empty(),
        "release clears the run's cancel"
    );
}

/// A run's attempts are tracked apart: the next attempt may be queued while the previous one is
/// still leased (compensation after a lost worker), and several attempts may be queued at once.
async fn attempts_of_one_run_are_tracked_apart(s: &Subject) {
    let b = &*s.broker;
    let run = run_id();
    let attempt = |n: u32| Job {
        attempt: n,
        ..job(&run, "attempts")
    };
    let wait = Duration::from_secs(1);
    assert!(b.publish(&attempt(1)).await.unwrap());
    let first = b
        .lease(&req("w1", &["attempts"], 1, TTL), wait)
        .await
        .unwrap()
        .remove(0);
    assert!(
        s.twin.publish(&attempt(2)).await.unwrap(),
        "the next attempt is a new job"
    );
    assert!(
        !b.publish(&attempt(1)).await.unwrap(),
        "attempt 1 is leased"
    );
    assert!(
        !b.publish(&attempt(2)).await.unwrap(),
        "attempt 2 is queued"
    );
    assert_eq!(
        b.holds(&[attempt(1), attempt(2), attempt(3)])
            .await
            .unwrap(),
        vec![true, true, false]
    );

    let second = s
        .twin
        .lease(&req("w2", &["attempts"], 1, TTL), wait)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.job.attempt, 2);
    let hb = b.heartbeat("w1", &[held(&first)], TTL).await.unwrap();
    assert_eq!(
        hb.lost,
        vec![run.clone()],
        "the newer attempt's lease replaced the older"
    );
    b.release(&run, &first.lease_token).await.unwrap();
    assert!(
        b.lease_alive(&run, &second.lease_token).await.unwrap(),
        "a stale token's release leaves the live lease alone"
    );
    b.release(&run, &second.lease_token).await.unwrap();
    assert!(!b.lease_alive(&run, &second.lease_token).await.unwrap());

    assert!(b.publish(&attempt(3)).await.unwrap());
    assert!(b.publish(&attempt(4)).await.unwrap());
    assert_eq!(depth(b, "attempts").await, 2, "two attempts queued at once");
    assert_eq!(
        b.holds(&[attempt(3), attempt(4)]).await.unwrap(),
        vec![true, true]
    );
    s.twin.cancel(&run).await.unwrap();
    assert_eq!(
        depth(b, "attempts").await,
        0,
        "cancel drops every queued attempt"
    );
    assert!(b
        .lease(
            &req("w1", &["attempts"], 10, TTL),
            Duration::from_millis(100)
        )
        .await
        .unwrap()
        .is_empty());
}

async fn hand_back_makes_the_job_leasable_again(s: &Subject) {
    let b = &*s.broker;
    let j = job(&run_id(), "default");
    b.publish(&j).await.unwrap();
    let l = b
        .lease(&req("w1", &["default"], 1, TTL), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);

    b.hand_back(&j.run_id, "lt_wrong").await.unwrap();
    assert!(
        b.lease_alive(&j.run_id, &l.lease_token).await.unwrap(),
        "hand_back with a wrong token changes nothing"
    );
    assert_eq!(depth(b, "default").await, 0);

    b.hand_back(&j.run_id, &l.lease_token).await.unwrap();
    assert!(!b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());
    assert_eq!(depth(b, "default").await, 1);
    assert!(
        !b.publish(&j).await.unwrap(),
        "a handed-back job is queued, so publish is still idempotent"
    );

    let again = s
        .twin
        .lease(&req("w2", &["default"], 5, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, j);
    assert_eq!(again[0].worker_id, "w2");
    assert_ne!(
        again[0].lease_token, l.lease_token,
        "a new lease gets a new token"
    );
    let hb = b.heartbeat("w1", &[held(&l)], TTL).await.unwrap();
    assert_eq!(hb.lost, vec![j.run_id.clone()], "the old token is dead");

    // A run cancelled while leased is not queued again by hand_back.
    s.twin.cancel(&j.run_id).await.unwrap();
    b.hand_back(&j.run_id, &again[0].lease_token).await.unwrap();
    assert!(!b
        .lease_alive(&j.run_id, &again[0].lease_token)
        .await
        .unwrap());
    assert_eq!(depth(b, "default").await, 0, "a cancelled run is dropped");
    assert!(!b.holds(std::slice::from_ref(&j)).await.unwrap()[0]);
}

async fn release_and_lease_releases_then_leases(s: &Subject) {
    let b = &*s.broker;
    let first = job(&run_id(), "next");
    let second = job(&run_id(), "next");
    b.publish(&first).await.unwrap();
    let l1 = b
        .lease(&req("w1", &["next"], 1, TTL), Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    b.publish(&second).await.unwrap();

    let got = b
        .release_and_lease(
            &[held(&l1)],
            &req("w1", &["next"], 1, TTL),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, second, "the next job is leased");
    let l2 = &got[0];
    assert!(!b.lease_alive(&first.run_id, &l1.lease_token).await.unwrap());
    assert!(
        b.publish(&first).await.unwrap(),
        "a released (run, attempt) is no longer held, as after release"
    );

    // A stale token releases nothing, and the lease still comes.
    let got = b
        .release_and_lease(
            &[HeldLease {
                run_id: second.run_id.clone(),
                lease_token: "lt_wrong".into(),
            }],
            &req("w2", &["next"], 1, TTL),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, first);
    assert!(
        b.lease_alive(&second.run_id, &l2.lease_token)
            .await
            .unwrap(),
        "a wrong token changes nothing"
    );

    // Nothing to lease: the release still happens, whether the call waits or asks for none.
    let none = b
        .release_and_lease(
            &[held(l2)],
            &req("w1", &["next"], 1, TTL),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(!b
        .lease_alive(&second.run_id, &l2.lease_token)
        .await
        .unwrap());
    let none = s
        .twin
        .release_and_lease(
            &[held(&got[0])],
            &req("w2", &["next"], 0, TTL),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(!b
        .lease_alive(&first.run_id, &got[0].lease_token)
        .await
        .unwrap());
    let hb = b.heartbeat("w2", &[held(&got[0])], TTL).await.unwrap();
    assert_eq!(hb.lost, vec![first.run_id.clone()]);
}

async fn events_are_delivered_at_least_once(s: &Subject) {
    let b = &*s.broker;
    let run = run_id();
    let sent: Vec<RunEvent> = (1..=3).map(|n| event(&run, n)).collect();
    for e in &sent {
        b.publish_event(e).await.unwrap();
    }
    let got = b
        .read_events("recorder", "c1", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        sent,
        "events arrive whole and in order"
    );
    let ids: HashSet<&String> = got.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 3, "each event has its own id");
    b.ack_events("recorder", &[got[0].0.clone()]).await.unwrap();

    // Read but unacknowledged: not handed out again before the redelivery timeout...
    let early = b
        .read_events("recorder", "c1", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(early.is_empty(), "redelivered too early: {early:?}");
    // ...and handed out again after it, to any consumer of the group (the first one died).
    tokio::time::sleep(REDELIVERY + Duration::from_millis(300)).await;
    let again = s
        .twin
        .read_events("recorder", "c2", 10, Duration::from_secs(1))
        .await
        .unwrap();
    let mut again_events: Vec<RunEvent> = again.iter().map(|(_, e)| e.clone()).collect();
    again_events.sort_by_key(|e| e.attempt);
    assert_eq!(
        again_events,
        sent[1..].to_vec(),
        "exactly the unacknowledged events come back"
    );
    b.ack_events(
        "recorder",
        &again.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    tokio::time::sleep(REDELIVERY + Duration::from_millis(300)).await;
    assert!(
        b.read_events("recorder", "c1", 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty(),
        "acknowledged events stay acknowledged"
    );

    // A blocked reader is woken by a new event.
    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let reader = tokio::spawn({
        let b = s.broker.clone();
        async move { b.read_events("recorder", "c1", 10, wait).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.twin.publish_event(&event(&run, 4)).await.unwrap();
    let woke = tokio::time::timeout(wait + Duration::from_secs(5), reader)
        .await
        .expect("read_events hung")
        .unwrap()
        .unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(woke[0].1, event(&run, 4));
    assert!(
        started.elapsed() < wait - Duration::from_secs(3),
        "reader was not woken by the event"
    );
}

async fn live_logs_are_idempotent_and_tail(s: &Subject) {
    let b = &*s.broker;
    let run = run_id();
    assert!(b
        .read_log(&run, 0, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    b.append_log(&run, &[chunk(1, 1), chunk(1, 2), chunk(1, 3)])
        .await
        .unwrap();
    b.append_log(&run, &[chunk(1, 2), chunk(1, 3), chunk(1, 4)])
        .await
        .unwrap();
    s.twin.append_log(&run, &[chunk(1, 1)]).await.unwrap();
    let all = b.read_log(&run, 0, Duration::ZERO).await.unwrap();
    assert_eq!(
        all,
        (1..=4).map(|n| chunk(1, n)).collect::<Vec<_>>(),
        "a chunk sent twice is stored once"
    );

    let tail = b
        .read_log(&run, chunk(1, 2).cursor(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(tail, vec![chunk(1, 3), chunk(1, 4)]);

    // The next attempt's chunks come after every chunk of the previous one.
    b.append_log(&run, &[chunk(2, 1)]).await.unwrap();
    let next = b
        .read_log(&run, chunk(1, 4).cursor(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(next, vec![chunk(2, 1)]);

    // A tail waiting past the end is woken by the next append.
    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let after = chunk(2, 1).cursor();
    let reader = tokio::spawn({
        let b = s.broker.clone();
        let run = run.clone();
        async move { b.read_log(&run, after, wait).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.twin.append_log(&run, &[chunk(2, 2)]).await.unwrap();
    let woke = tokio::time::timeout(wait + Duration::from_secs(5), reader)
        .await
        .expect("read_log hung")
        .unwrap()
        .unwrap();
    assert_eq!(woke, vec![chunk(2, 2)]);
    assert!(
        started.elapsed() < wait - Duration::from_secs(3),
        "tail was not woken by the append"
    );

    // Logs of other runs are separate.
    assert!(b
        .read_log(&run_id(), 0, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
}

async fn workers_expire_and_drain(s: &Subject) {
    let b = &*s.broker;
    let (w1, w2) = (worker("w1"), worker("w2"));
    b.put_worker(&w2, Duration::from_secs(30)).await.unwrap();
    b.put_worker(&w1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        s.twin.workers().await.unwrap(),
        vec![w1.clone(), w2.clone()]
    );
    // w1's last report is a short one, then it stops reporting.
    b.put_worker(&w1, Duration::from_millis(400)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        b.workers().await.unwrap(),
        vec![w2.clone()],
        "a worker that stopped reporting expires"
    );

    let mut w2b = w2.clone();
    w2b.running = 3;
    b.put_worker(&w2b, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        b.workers().await.unwrap(),
        vec![w2b],
        "put_worker replaces the status"
    );

    assert!(!b.heartbeat("w2", &[], TTL).await.unwrap().drain);
    s.twin.set_drain("w2", true).await.unwrap();
    assert!(b.heartbeat("w2", &[], TTL).await.unwrap().drain);
    assert!(
        !b.heartbeat("w1", &[], TTL).await.unwrap().drain,
        "drain is per worker"
    );
    s.twin.set_drain("w2", false).await.unwrap();
    assert!(!b.heartbeat("w2", &[], TTL).await.unwrap().drain);
}

async fn leader_lock_is_exclusive_and_fenced(s: &Subject) {
    let (a, b) = (&*s.broker, &*s.twin);
    // Held long while exclusivity is checked (a stalled machine must not expire the lock
    // between two calls); only the expiry below waits out a short one.
    let hold = Duration::from_secs(30);
    let ttl = Duration::from_millis(400);
    let t1 = a
        .acquire_leader("tick", "a", hold)
        .await
        .unwrap()
        .expect("free lock is taken");
    assert_eq!(
        b.acquire_leader("tick", "b", hold).await.unwrap(),
        None,
        "held lock is exclusive"
    );
    assert!(
        !b.renew_leader("tick", "b", hold).await.unwrap(),
        "the non-holder cannot renew"
    );
    assert!(a.renew_leader("tick", "a", hold).await.unwrap());
    b.release_leader("tick", "b").await.unwrap();
    assert_eq!(
        b.acquire_leader("tick", "b", hold).await.unwrap(),
        None,
        "the non-holder cannot release"
    );

    let other = b.acquire_leader("other", "b", hold).await.unwrap();
    assert!(other.is_some(), "locks are independent by name");

    a.release_leader("tick", "a").await.unwrap();
    let t2 = b
        .acquire_leader("tick", "b", hold)
        .await
        .unwrap()
        .expect("released lock is free");
    assert!(t2 > t1, "fencing tokens increase: {t1} then {t2}");

    // b shortens its lock, then stops renewing: it expires and a takes it with a larger token.
    assert!(b.renew_leader("tick", "b", ttl).await.unwrap());
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert!(
        !b.renew_leader("tick", "b", ttl).await.unwrap(),
        "an expired lock cannot be renewed"
    );
    let t3 = a
        .acquire_leader("tick", "a", hold)
        .await
        .unwrap()
        .expect("expired lock is free");
    assert!(t3 > t2, "fencing tokens increase: {t2} then {t3}");
    assert_eq!(b.acquire_leader("tick", "b", hold).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// Each body once per implementation.

/// A change announced through one handle reaches a watcher on the other (another process, for
/// Redis), including one blocked in `changed`; announcements for other runs do not end its wait.
async fn changes_reach_watchers_on_other_handles(s: &Subject) {
    let mut watching = s.twin.watch_changes();
    // Redis subscribes on a connection of its own: announce until the subscription is live.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        s.broker.announce_change("run-warmup").await.unwrap();
        if let Ok(Ok(id)) = tokio::time::timeout(Duration::from_millis(100), watching.recv()).await
        {
            assert_eq!(id, "run-warmup");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no announcement ever reached the watcher"
        );
    }
    while watching.try_recv().is_ok() {}

    let broker = s.broker.clone();
    let announcer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        broker.announce_change("run-other").await.unwrap();
        broker.announce_change("run-a").await.unwrap();
    });
    let started = Instant::now();
    antcode_core::broker::changed(&mut watching, "run-a", Duration::from_secs(20)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the watcher was woken by the announcement, not by its fallback timer"
    );
    announcer.await.unwrap();
    // A watcher subscribed later sees only what is announced after it subscribed.
    let mut late = s.twin.watch_changes();
    assert!(late.try_recv().is_err());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::Subject::memory();
                    super::$name(&s).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::Subject::redis().await;
                    super::$name(&s).await;
                }
            )*
        }
    };
}

conformance!(
    publish_lease_round_trip,
    publish_is_idempotent,
    publish_many_is_publish_per_job,
    holds_is_what_publish_would_skip,
    lease_wakes_when_a_job_is_published,
    lease_respects_max_and_isolates_queues,
    expired_leases_are_reaped_exactly_once,
    heartbeats_keep_a_lease_alive,
    cancel_drops_queued_and_flags_leased,
    attempts_of_one_run_are_tracked_apart,
    hand_back_makes_the_job_leasable_again,
    release_and_lease_releases_then_leases,
    events_are_delivered_at_least_once,
    live_logs_are_idempotent_and_tail,
    workers_expire_and_drain,
    leader_lock_is_exclusive_and_fenced,
    changes_reach_watchers_on_other_handles,
);

// ---------------------------------------------------------------------------------------------
// Opening brokers from configuration URLs.

#[tokio::test]
async fn open_broker_accepts_memory_and_redis_urls() {
    use antcode_core::seams::open_broker;
    open_broker("memory://")
        .await
        .expect("memory")
        .ping()
        .await
        .unwrap();

    let url = std::env::var(REDIS_ENV).unwrap_or_else(|_| REDIS_DEFAULT.to_string());
    let prefix = format!("antcode-test-{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let b = open_broker(&format!("{url}{sep}prefix={prefix}"))
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (set {REDIS_ENV}): {e}"));
    let _cleanup = Subject {
        broker: b.clone(),
        twin: b.clone(),
        redis: Some((url.clone(), prefix.clone())),
    };
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap());
    // The prefix from the URL is the hash tag of every key.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("{{{prefix}}}:q:default")),
        "keys: {keys:?}"
    );

    let refused = open_broker("redis://127.0.0.1:1").await;
    assert!(refused.is_err(), "an unreachable Redis fails at open");
    let err = open_broker("amqp://x")
        .await
        .err()
        .expect("unknown scheme")
        .to_string();
    assert!(err.contains("redis://"), "{err}");
    assert!(
        RedisBroker::connect(&url, "bad{prefix}").await.is_err(),
        "braces would break the hash tag"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis only: recovery paths that the in-process broker does not have.

async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (set {REDIS_ENV}): {e}"))
}

/// A lessee that read a queue entry and died before recording the lease strands the entry in
/// the consumer group's pending list; the reaper puts it back.
#[tokio::test]
async fn redis_reaper_requeues_entries_stranded_by_a_dead_lessee() {
    let s = Subject::redis().await;
    let (url, prefix) = s.redis.clone().unwrap();
    let b = RedisBroker::connect(&url, &prefix)
        .await
        .unwrap()
        .with_orphan_idle(Duration::from_millis(200));
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap());

    // The dead lessee's half: the group (as every lessee makes it), the read, without the claim.
    let mut con = raw_redis(&url).await;
    let stream = format!("{{{prefix}}}:q:default");
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("runners")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("runners")
        .arg("lessee")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(b
        .lease(&req("w1", &["default"], 1, TTL), Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(
        !b.publish(&j).await.unwrap(),
        "the stranded job still counts as queued"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        b.reap_expired(now_ms()).await.unwrap().is_empty(),
        "no lease expired"
    );
    let leases = b
        .lease(&req("w1", &["default"], 1, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leases.len(), 1, "the stranded job is leasable again");
    assert_eq!(leases[0].job, j);
}

/// The broker's keys disappear under it (FLUSHALL): it recreates its consumer groups, and
/// compensation's re-publish is accepted again.
#[tokio::test]
async fn redis_broker_survives_its_keys_vanishing() {
    let s = Subject::redis().await;
    let (url, prefix) = s.redis.clone().unwrap();
    let b = &*s.broker;
    let j = job(&run_id(), "default");
    b.publish(&j).await.unwrap();
    assert_eq!(
        b.lease(&req("w1", &["default"], 1, TTL), Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );
    b.read_events("recorder", "c1", 10, Duration::ZERO)
        .await
        .unwrap();

    let mut con = raw_redis(&url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut con)
        .await
        .unwrap();

    // A recorder and a parked lessee keep working on recreated groups.
    assert!(b
        .read_events("recorder", "c1", 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .lease(&req("w1", &["default"], 1, TTL), Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .read_events("recorder", "c1", 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(
        b.publish(&j).await.unwrap(),
        "the re-published job is accepted"
    );
    let leases = b
        .lease(&req("w1", &["default"], 1, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    b.publish_event(&event(&j.run_id, 1)).await.unwrap();
    let got = b
        .read_events("recorder", "c1", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
}

/// Run state written by the layout before per-run hashes (`P:queued`, `P:leased`, `P:ljobs`) is
/// moved into run hashes when a broker connects: the queued job is leased, the live lease keeps
/// its token and job.
#[tokio::test]
async fn redis_connect_moves_the_previous_run_layout() {
    let s = Subject::redis().await;
    let (url, prefix) = s.redis.clone().unwrap();
    let tag = format!("{{{prefix}}}");
    let (queued, leased) = (job(&run_id(), "default"), job(&run_id(), "default"));
    let mut con = raw_redis(&url).await;
    let stream = format!("{tag}:q:default");
    let id: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("run")
        .arg(&queued.run_id)
        .arg("attempt")
        .arg(queued.attempt)
        .arg("job")
        .arg(serde_json::to_string(&queued).unwrap())
        .query_async(&mut con)
        .await
        .unwrap();
    let deadline = now_ms() + 60_000;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(format!("{tag}:queued"))
        .arg(&queued.run_id)
        .arg(format!("{} {id} {stream}", queued.attempt))
        .ignore()
        .cmd("HSET")
        .arg(format!("{tag}:leased"))
        .arg(&leased.run_id)
        .arg(format!("lt_old {} \"w-old\"", leased.attempt))
        .ignore()
        .cmd("HSET")
        .arg(format!("{tag}:ljobs"))
        .arg(&leased.run_id)
        .arg(serde_json::to_string(&leased).unwrap())
        .ignore()
        .cmd("ZADD")
        .arg(format!("{tag}:leases"))
        .arg(deadline)
        .arg(&leased.run_id)
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();

    let b = RedisBroker::connect(&url, &prefix).await.unwrap();
    let old_keys: i64 = redis::cmd("EXISTS")
        .arg(format!("{tag}:queued"))
        .arg(format!("{tag}:leased"))
        .arg(format!("{tag}:ljobs"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(old_keys, 0, "the old hashes are gone");
    assert_eq!(
        b.holds(&[queued.clone(), leased.clone()]).await.unwrap(),
        vec![true, true]
    );
    assert!(b.lease_alive(&leased.run_id, "lt_old").await.unwrap());
    let got = b
        .lease(&req("w1", &["default"], 5, TTL), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, queued);
    let expired = b.reap_expired(deadline + 1).await.unwrap();
    let old = expired
        .iter()
        .find(|l| l.job.run_id == leased.run_id)
        .expect("the old lease is a lease");
    assert_eq!(
        (
            old.job.clone(),
            old.lease_token.as_str(),
            old.worker_id.as_str()
        ),
        (leased, "lt_old", "w-old")
    );
}
