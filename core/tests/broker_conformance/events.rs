//! Runner events: delivered at least once per group, redelivered until acknowledged.

use super::*;

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

conformance!(events_are_delivered_at_least_once,);
