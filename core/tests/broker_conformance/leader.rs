//! The leader lock: exclusive, renewable, released, with a growing fencing token.

use super::*;

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

conformance!(leader_lock_is_exclusive_and_fenced,);
