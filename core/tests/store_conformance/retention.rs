//! Retention: the global policy, pinned runs and the pruner's reads and deletes.

use super::*;
use antcode_core::alerting::ClosedKey;
use antcode_core::retention::{RetentionPolicy, TaskRetention};

/// Ends `n` runs of `f`'s task (failed), a few ms apart; returns them oldest first.
async fn ended_runs(s: &dyn Store, f: &Fixture, n: usize) -> Vec<Run> {
    let mut runs = vec![];
    for _ in 0..n {
        let run = manual_run(s, f).await;
        s.finish_attempt(&run.id, 1, None, &outcome(RunState::Failed), now_ms())
            .await
            .unwrap();
        runs.push(s.run(&run.id).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    runs
}

fn ids(runs: &[antcode_core::retention::PrunableRun]) -> Vec<String> {
    runs.iter().map(|r| r.id.clone()).collect()
}

async fn policies_and_pins(db: &TestDb) {
    let s = db.open().await;
    assert_eq!(
        s.retention_policy().await.unwrap(),
        RetentionPolicy::default()
    );
    let policy = RetentionPolicy {
        runs_days: Some(7),
        runs_keep_last: Some(100),
        audit_days: Some(365),
    };
    s.set_retention_policy(&policy, now_ms()).await.unwrap();
    s.set_retention_policy(&policy, now_ms()).await.unwrap();
    assert_eq!(s.retention_policy().await.unwrap(), policy);

    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    assert!(s.set_run_pinned(&run.id, true).await.unwrap().keep);
    assert!(
        s.set_run_pinned(&run.id, true).await.unwrap().keep,
        "pinning twice"
    );
    assert!(!s.set_run_pinned(&run.id, false).await.unwrap().keep);
    assert_not_found(
        s.set_run_pinned(&new_id(), true).await,
        "pinning an unknown run",
    );

    let own = s.task_retentions().await.unwrap();
    assert_eq!(
        own,
        vec![(
            f.task.id.clone(),
            Some(TaskRetention {
                days: Some(7),
                keep_last: None
            })
        )]
    );
}

async fn prunes_ended_unpinned_runs_with_their_history(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let other = fixture(s.as_ref(), retries(1)).await;
    let runs = ended_runs(s.as_ref(), &f, 5).await;
    let others = ended_runs(s.as_ref(), &other, 2).await;
    let running = manual_run(s.as_ref(), &f).await;
    s.set_run_pinned(&runs[1].id, true).await.unwrap();
    let everything = ClosedKey {
        closed_at: now_ms() + 1,
        id: String::new(),
    };

    // Of one task, in the order they ended, after a key, and never the pinned or unended.
    let page = s
        .prunable_runs(Some(&f.task.id), &[], &everything, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(&page), vec![runs[0].id.clone(), runs[2].id.clone()]);
    assert_eq!(page[0].log_key.as_deref(), Some("logs/run.log.gz"));
    let after = ClosedKey {
        closed_at: page[1].closed_at,
        id: page[1].id.clone(),
    };
    let next = s
        .prunable_runs(Some(&f.task.id), &[], &everything, Some(&after), 10)
        .await
        .unwrap();
    assert_eq!(ids(&next), vec![runs[3].id.clone(), runs[4].id.clone()]);
    // Every task but `except`.
    let all_but = s
        .prunable_runs(
            None,
            std::slice::from_ref(&f.task.id),
            &everything,
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&all_but),
        vec![others[0].id.clone(), others[1].id.clone()]
    );
    assert_eq!(s.count_prunable(None, &[], &everything).await.unwrap(), 6);
    // Before a key: the runs that ended before runs[3].
    let before_fourth = ClosedKey {
        closed_at: runs[3].closed_at.unwrap(),
        id: runs[3].id.clone(),
    };
    assert_eq!(
        s.count_prunable(Some(&f.task.id), &[], &before_fourth)
            .await
            .unwrap(),
        2
    );

    // keep_last 2: the boundary is the second newest ended run (the running one is not).
    let boundary = s.keep_last_boundary(&f.task.id, 2).await.unwrap().unwrap();
    assert_eq!(boundary.id, runs[3].id);
    assert_eq!(
        s.keep_last_boundary(&f.task.id, 5)
            .await
            .unwrap()
            .unwrap()
            .id,
        runs[0].id
    );
    assert_eq!(s.keep_last_boundary(&f.task.id, 6).await.unwrap(), None);

    // Deleting takes the history along and refuses pinned and unended runs.
    let doomed = vec![runs[0].id.clone(), runs[1].id.clone(), running.id.clone()];
    assert_eq!(s.delete_runs(&doomed).await.unwrap(), 1);
    assert_not_found(s.run(&runs[0].id).await, "a pruned run");
    assert!(s.run_history(&runs[0].id).await.unwrap().is_empty());
    assert!(s.run(&runs[1].id).await.unwrap().keep);
    assert_eq!(s.run(&running.id).await.unwrap().state, RunState::Queued);
    assert!(!s.run_history(&runs[2].id).await.unwrap().is_empty());
}

async fn prunes_old_audit_entries(db: &TestDb) {
    let s = db.open().await;
    let entry = |at: i64| AuditEntry {
        id: new_id(),
        at,
        actor: "alice".into(),
        action: "task.update".into(),
        resource: "t".into(),
        before: None,
        after: None,
        address: "127.0.0.1".into(),
        user_agent: "test".into(),
        outcome: "ok".into(),
    };
    let old: Vec<AuditEntry> = (0..5).map(|i| entry(1_000 + i)).collect();
    let new = entry(1_000_000);
    s.add_audit(&old).await.unwrap();
    s.add_audit(std::slice::from_ref(&new)).await.unwrap();
    assert_eq!(s.count_old_audit(2_000).await.unwrap(), 5);
    let first = s.old_audit(2_000, 3).await.unwrap();
    assert_eq!(
        first,
        old[..3].iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(s.delete_audit(&first).await.unwrap(), 3);
    assert_eq!(s.count_old_audit(2_000).await.unwrap(), 2);
    let left = s.list_audit(10, None).await.unwrap();
    assert_eq!(left.items.len(), 3);
}

conformance!(
    policies_and_pins,
    prunes_ended_unpinned_runs_with_their_history,
    prunes_old_audit_entries,
);
