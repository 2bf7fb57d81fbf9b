//! Cancel signals: a queued job is dropped, a leased one is flagged on heartbeat.

use super::*;

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

conformance!(cancel_drops_queued_and_flags_leased,);
