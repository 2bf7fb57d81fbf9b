//! Run history and the audit log.

use super::*;

async fn history_and_audit(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    let note = RunHistoryEntry {
        id: new_id(),
        run_id: run.id.clone(),
        attempt: 1,
        kind: "repaired".into(),
        detail: "re-published after broker flush — ünïcode".into(),
        at: 1_700_000_000_123,
    };
    s.add_history(&note).await.unwrap();
    let h = s.run_history(&run.id).await.unwrap();
    assert_eq!(h.len(), 2);
    let got = &h[1];
    assert_eq!(
        (got.id.as_str(), got.kind.as_str(), got.detail.as_str()),
        (note.id.as_str(), "repaired", note.detail.as_str())
    );
    assert_eq!(
        (got.attempt, got.at, got.run_id.as_str()),
        (1, note.at, run.id.as_str())
    );
    assert!(s.run_history(&new_id()).await.unwrap().is_empty());

    let mut ids = vec![];
    let mut entries = Vec::new();
    for i in 0..7 {
        let e = AuditEntry {
            id: new_id(),
            at: 1_700_000_000_000 + i,
            actor: "alice".into(),
            action: format!("task.update.{i}"),
            resource: format!("tasks/{}", f.task.id),
            before: (i % 2 == 0).then(|| serde_json::json!({"paused": false, "n": i})),
            after: (i != 3).then(|| serde_json::json!({"paused": true, "tags": ["a", "b"]})),
            address: "127.0.0.1".into(),
            user_agent: "curl/8".into(),
            outcome: if i == 6 { "denied" } else { "ok" }.into(),
        };
        ids.push(e.id.clone());
        entries.push(e);
    }
    // One alone, then the rest in one call; none of an empty call.
    s.add_audit(&entries[..1]).await.unwrap();
    s.add_audit(&[]).await.unwrap();
    s.add_audit(&entries[1..]).await.unwrap();
    let p1 = s.list_audit(3, None).await.unwrap();
    let p2 = s.list_audit(3, p1.next_cursor.as_deref()).await.unwrap();
    let p3 = s.list_audit(3, p2.next_cursor.as_deref()).await.unwrap();
    assert_eq!((p1.items.len(), p2.items.len(), p3.items.len()), (3, 3, 1));
    assert_eq!(p3.next_cursor, None);
    let newest = &p1.items[0];
    assert_eq!(newest.action, "task.update.6");
    assert_eq!(newest.outcome, "denied");
    assert_eq!(
        newest.before,
        Some(serde_json::json!({"paused": false, "n": 6}))
    );
    assert_eq!(
        newest.after,
        Some(serde_json::json!({"paused": true, "tags": ["a", "b"]}))
    );
    assert_eq!(
        (
            newest.at,
            newest.address.as_str(),
            newest.user_agent.as_str()
        ),
        (1_700_000_000_006, "127.0.0.1", "curl/8")
    );
    let third = p2
        .items
        .iter()
        .find(|e| e.action == "task.update.3")
        .expect("entry 3");
    assert_eq!((third.before.as_ref(), third.after.as_ref()), (None, None));
    let seen: Vec<_> = [p1.items, p2.items, p3.items]
        .concat()
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.reverse();
    assert_eq!(seen, ids);
}

conformance!(history_and_audit,);
