//! Redis only: recovery paths that the in-process broker does not have (a dead lessee's stranded
//! entries, keys vanishing under the broker, the previous run layout).

use super::*;

async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (set {REDIS_ENV}): {e}"))
}

/// Deletes every key of the broker under `prefix`, as a `FLUSHALL` would.
async fn delete_keys(con: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(con)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(con).await.unwrap();
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
    delete_keys(&mut con, &prefix).await;

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

/// A gate's count is the set of runs whose live lease holds it (`P:g:GATE`): the keys vanishing
/// take the leases and the counts together, so the re-published jobs find every slot free.
#[tokio::test]
async fn redis_gate_counts_vanish_with_the_leases() {
    let s = Subject::redis().await;
    let (url, prefix) = s.redis.clone().unwrap();
    let b = &*s.broker;
    let jobs: Vec<Job> = (0..2)
        .map(|_| {
            let mut j = job(&run_id(), "default");
            j.gates = BTreeMap::from([("key:one at a time".to_string(), 1)]);
            j
        })
        .collect();
    b.publish_many(&jobs).await.unwrap();
    let r = req("w1", &["default"], 5, TTL);
    let leased = b.lease(&r, Duration::ZERO).await.unwrap();
    assert_eq!(leased.len(), 1);
    let mut con = raw_redis(&url).await;
    let gate = format!("{{{prefix}}}:g:key:one at a time");
    let holders: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&gate)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(holders, [leased[0].job.run_id.clone()]);

    delete_keys(&mut con, &prefix).await;
    // Compensation publishes both runs again (the leased one as a next attempt).
    let again: Vec<Job> = jobs
        .iter()
        .map(|j| Job {
            attempt: 2,
            ..j.clone()
        })
        .collect();
    b.publish_many(&again).await.unwrap();
    let leased = b.lease(&r, Duration::from_secs(1)).await.unwrap();
    assert_eq!(leased.len(), 1, "one slot, free again");
    b.release(&leased[0].job.run_id, &leased[0].lease_token)
        .await
        .unwrap();
    let holders: i64 = redis::cmd("SCARD")
        .arg(&gate)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(holders, 0, "a released lease leaves its gate");
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
