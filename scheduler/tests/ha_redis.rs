//! High availability against a REAL Redis broker and SQLite: three scheduler instances in one
//! process, the leader killed again and again, and every due time fired exactly once.

use std::sync::Arc;
use std::time::Duration;

use antcode_core::broker::{redis::RedisBroker, Broker};
use antcode_core::model::*;
use antcode_core::store::{sql::SqlStore, RunFilter, Store};
use antcode_core::time::now_ms;
use antcode_core::Shutdown;
use antcode_scheduler::{leader::LOCK, SchedulerConfig};

use antcode_testkit::redis::redis_base;

/// Removes the test's keys when it ends, passed or not.
struct Prefix(String);

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_base()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}}}:*", self.0))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

struct Instance {
    id: String,
    shutdown: Shutdown,
    handle: tokio::task::JoinHandle<Result<(), antcode_scheduler::SchedulerError>>,
}

async fn start(db_url: &str, prefix: &str, id: String) -> Instance {
    // Each instance has its own store pool and broker connection, as separate processes would.
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(db_url).await.unwrap());
    let broker: Arc<dyn Broker> = Arc::new(
        RedisBroker::connect(&redis_base(), prefix)
            .await
            .expect("Redis (ANTCODE_TEST_REDIS_URL)"),
    );
    let mut c = SchedulerConfig::new(store, broker);
    c.instance_id = id.clone();
    c.tick_interval = Duration::from_millis(100);
    c.leader_ttl = Duration::from_millis(600);
    c.lost_after = Duration::from_secs(30);
    let shutdown = Shutdown::new();
    let handle = tokio::spawn(antcode_scheduler::run(c, shutdown.clone()));
    Instance {
        id,
        shutdown,
        handle,
    }
}

async fn scheduled_due_times(store: &dyn Store, task_id: &str) -> Vec<i64> {
    let filter = RunFilter {
        task_id: Some(task_id.into()),
        ..Default::default()
    };
    let mut out = vec![];
    let mut cursor = None;
    loop {
        let page = store
            .list_runs(&filter, 500, cursor.as_deref())
            .await
            .unwrap();
        out.extend(page.items.iter().map(|r| r.due_at.expect("scheduled")));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out
}

/// Which live instance holds the lock (renewing with the holder's own TTL changes nothing).
async fn current_leader(broker: &dyn Broker, instances: &[Instance]) -> Option<usize> {
    for (i, inst) in instances.iter().enumerate() {
        if broker
            .renew_leader(LOCK, &inst.id, Duration::from_millis(600))
            .await
            .unwrap_or(false)
        {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_repeatedly_neither_duplicates_nor_misses_a_fire() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let prefix = Prefix(format!("antcode-test-{}", antcode_core::ids::new_id()));
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&db_url).await.unwrap());
    let probe: Arc<dyn Broker> = Arc::new(
        RedisBroker::connect(&redis_base(), &prefix.0)
            .await
            .unwrap(),
    );

    let now = now_ms();
    let (project, version) = antcode_testkit::fixtures::project("ha", now);
    store.create_project(&project, &version).await.unwrap();
    let first_due = now + 500;
    let task = Task {
        id: antcode_core::ids::new_id(),
        name: "every-second".into(),
        project_id: project.id,
        spec: TaskSpec {
            misfire: "catch_up".into(),
            ..Default::default()
        },
        schedule: Some(Schedule::Interval {
            every_s: 1,
            start: None,
            end: None,
        }),
        paused: false,
        next_fire_at: Some(first_due),
        created_at: now,
        updated_at: now,
    };
    store.create_task(&task).await.unwrap();

    let mut serial = 0;
    let mut next_id = || {
        serial += 1;
        format!("sched-{serial}")
    };
    let mut instances = vec![];
    for _ in 0..3 {
        instances.push(start(&db_url, &prefix.0, next_id()).await);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    while kills < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {kills} kills"
        );
        // Wait for a leader and for it to fire at least once more, then kill it mid-stride.
        let before = scheduled_due_times(store.as_ref(), &task.id).await.len();
        let Some(i) = current_leader(probe.as_ref(), &instances).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut fired = false;
        for _ in 0..60 {
            if scheduled_due_times(store.as_ref(), &task.id).await.len() > before {
                fired = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(fired, "leader {} did not fire", instances[i].id);
        let dead = instances.remove(i);
        // A crash: the task is dropped mid-work and never releases the lock, which stays until
        // its TTL; the token also stops the recorder the instance spawned.
        dead.handle.abort();
        dead.shutdown.cancel();
        let _ = dead.handle.await;
        kills += 1;
        instances.push(start(&db_url, &prefix.0, next_id()).await);
    }
    // Let the last leader catch up on everything due so far.
    let last_due = now_ms();
    for _ in 0..200 {
        let due = scheduled_due_times(store.as_ref(), &task.id).await;
        if due.iter().any(|d| *d + 1000 > last_due) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for inst in &instances {
        inst.shutdown.cancel();
    }
    for inst in instances {
        inst.handle.await.unwrap().unwrap();
    }

    let mut due = scheduled_due_times(store.as_ref(), &task.id).await;
    due.sort();
    let n = due.len();
    let mut unique = due.clone();
    unique.dedup();
    assert_eq!(unique.len(), n, "a due time fired twice: {due:?}");
    let expected: Vec<i64> = (0..n as i64).map(|k| first_due + k * 1000).collect();
    assert_eq!(
        due, expected,
        "every due time from the first to the last, once"
    );
    assert!(
        *due.last().unwrap() + 1000 > last_due,
        "fired up to the end: last {} vs {last_due}",
        due.last().unwrap()
    );
}
