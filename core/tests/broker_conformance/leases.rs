//! Leases: waking parked lessees, `max` and queue isolation, reaping, heartbeats, hand back, and
//! release-then-lease.

use super::*;

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
            prefer: None,
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

conformance!(
    lease_wakes_when_a_job_is_published,
    lease_respects_max_and_isolates_queues,
    expired_leases_are_reaped_exactly_once,
    heartbeats_keep_a_lease_alive,
    hand_back_makes_the_job_leasable_again,
    release_and_lease_releases_then_leases,
);
