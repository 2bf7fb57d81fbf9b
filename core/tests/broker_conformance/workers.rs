//! Worker status: it expires with its time to live, and drain flags reach heartbeats.

use super::*;

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

conformance!(workers_expire_and_drain,);
