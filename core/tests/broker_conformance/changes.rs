//! Run change announcements: they reach watchers on another handle, and only later ones reach a
//! late watcher.

use super::*;

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

conformance!(changes_reach_watchers_on_other_handles,);
