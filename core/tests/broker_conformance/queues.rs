//! Publishing jobs: idempotence per `(run_id, attempt)`, batches, `holds` and queue depths.

use super::*;

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

conformance!(
    publish_lease_round_trip,
    publish_is_idempotent,
    publish_many_is_publish_per_job,
    holds_is_what_publish_would_skip,
    attempts_of_one_run_are_tracked_apart,
);
