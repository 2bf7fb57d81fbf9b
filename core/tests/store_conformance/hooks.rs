//! Webhooks and the idempotency keys of the runs they start.

use super::*;
use antcode_core::hooks::{Hook, HookAuth, RunKey, KEY_WINDOW_MS};

fn hook(task_id: &str, name: &str, auth: HookAuth) -> Hook {
    Hook {
        id: new_id(),
        task_id: task_id.into(),
        name: name.into(),
        auth,
        rate_per_min: 60,
        secret: format!("secret-of-{name}"),
        created_at: now_ms(),
        rotated_at: None,
        last_used_at: None,
    }
}

fn keyed(f: &Fixture, hook_id: &str, key: &str) -> NewRun {
    NewRun {
        trace: None,
        task: f.task.clone(),
        version: f.version.clone(),
        trigger: "webhook".into(),
        due_at: None,
        params: Some(serde_json::json!({"n": 1})),
        overrides: None,
        key: Some(RunKey {
            hook_id: hook_id.into(),
            key: key.into(),
        }),
        parent: None,
    }
}

fn key(hook_id: &str, key: &str) -> RunKey {
    RunKey {
        hook_id: hook_id.into(),
        key: key.into(),
    }
}

async fn runs_of(s: &dyn Store, f: &Fixture) -> usize {
    let filter = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..Default::default()
    };
    s.list_runs(&filter, 500, None).await.unwrap().items.len()
}

async fn hooks_are_kept_rotated_touched_and_deleted(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let other = fixture(s.as_ref(), retries(1)).await;
    let a = hook(&f.task.id, "ci", HookAuth::Token);
    let b = hook(&f.task.id, "github", HookAuth::Hmac);
    let c = hook(&other.task.id, "elsewhere", HookAuth::Token);
    for h in [&a, &b, &c] {
        s.create_hook(h).await.unwrap();
    }
    assert_eq!(s.hook(&a.id).await.unwrap(), a);
    assert_eq!(s.hook(&b.id).await.unwrap().auth, HookAuth::Hmac);
    assert_eq!(
        s.task_hooks(&f.task.id).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_not_found(s.hook(&new_id()).await, "an unknown hook");

    let rotated = s.rotate_hook(&a.id, "new-secret", 1_000).await.unwrap();
    assert_eq!(rotated.secret, "new-secret");
    assert_eq!(rotated.rotated_at, Some(1_000));
    assert_eq!(s.hook(&a.id).await.unwrap(), rotated);
    assert_not_found(
        s.rotate_hook(&new_id(), "x", 1).await,
        "rotating an unknown hook",
    );

    // last_used_at only moves forward.
    s.touch_hook(&a.id, 2_000).await.unwrap();
    s.touch_hook(&a.id, 1_500).await.unwrap();
    assert_eq!(s.hook(&a.id).await.unwrap().last_used_at, Some(2_000));

    s.delete_hook(&a.id).await.unwrap();
    assert_not_found(s.hook(&a.id).await, "a deleted hook");
    assert_not_found(s.delete_hook(&a.id).await, "deleting it twice");

    // Deleting a task takes its hooks with it, and only its.
    s.delete_task(&f.task.id).await.unwrap();
    assert_not_found(s.hook(&b.id).await, "a deleted task's hook");
    assert!(s.task_hooks(&f.task.id).await.unwrap().is_empty());
    assert_eq!(s.hook(&c.id).await.unwrap(), c);
}

async fn a_key_starts_one_run(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let h = new_id();
    let (first, _) = s.create_run(&keyed(&f, &h, "deploy-1")).await.unwrap();
    assert_eq!(first.trigger, "webhook");
    let since = now_ms() - KEY_WINDOW_MS;
    assert_eq!(
        s.keyed_run(&key(&h, "deploy-1"), since).await.unwrap(),
        Some(first.id.clone())
    );
    assert_conflict(
        s.create_run(&keyed(&f, &h, "deploy-1")).await,
        "the same key again",
    );
    assert_eq!(runs_of(s.as_ref(), &f).await, 1, "a refused key made a run");
    // Another key, or the same key of another hook, is another run.
    s.create_run(&keyed(&f, &h, "deploy-2")).await.unwrap();
    s.create_run(&keyed(&f, &new_id(), "deploy-1"))
        .await
        .unwrap();
    assert_eq!(runs_of(s.as_ref(), &f).await, 3);
    assert_eq!(
        s.keyed_run(&key(&h, "deploy-3"), since).await.unwrap(),
        None
    );
    // A key written before `since` is not the caller's.
    assert_eq!(
        s.keyed_run(&key(&h, "deploy-1"), now_ms() + 1)
            .await
            .unwrap(),
        None
    );
}

async fn concurrent_calls_with_one_key_start_one_run(db: &TestDb) {
    // They queue for the same group commit, or race in separate ones (MySQL/MariaDB then break
    // deadlocks of their gap locks, which the store writes again): either way one run.
    let s = db.open().await;
    // A second store on the same database: two control processes, each its own group commit.
    let other = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let h = new_id();
    let keyed_calls = (0..40).map(|n| {
        let s = if n % 2 == 0 { s.clone() } else { other.clone() };
        let new = keyed(&f, &h, "same");
        tokio::spawn(async move { s.create_run(&new).await })
    });
    // Unkeyed runs in the same groups are not held back by the refused ones.
    let plain_calls = (0..5).map(|_| {
        let s = s.clone();
        let mut new = keyed(&f, &h, "unused");
        new.key = None;
        tokio::spawn(async move { s.create_run(&new).await })
    });
    let keyed_calls: Vec<_> = keyed_calls.collect();
    let plain_calls: Vec<_> = plain_calls.collect();
    let mut created = vec![];
    for call in keyed_calls {
        match call.await.unwrap() {
            Ok((run, _)) => created.push(run.id),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a keyed run failed: {e}"),
        }
    }
    for call in plain_calls {
        call.await.unwrap().expect("an unkeyed run");
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(runs_of(s.as_ref(), &f).await, 6);
    assert_eq!(
        s.keyed_run(&key(&h, "same"), 0).await.unwrap(),
        Some(created[0].clone())
    );
}

async fn keys_past_their_window_are_replaced_and_pruned(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let h = new_id();
    let (old, _) = s.create_run(&keyed(&f, &h, "nightly")).await.unwrap();
    let (fresh, _) = s.create_run(&keyed(&f, &h, "hourly")).await.unwrap();
    db.exec(&format!(
        "UPDATE run_keys SET created_at = created_at - {} WHERE run_id = '{}'",
        KEY_WINDOW_MS + 1,
        old.id
    ))
    .await;
    let cutoff = now_ms() - KEY_WINDOW_MS;
    assert_eq!(
        s.old_run_keys(cutoff, 10).await.unwrap(),
        vec![old.id.clone()]
    );
    assert_eq!(
        s.keyed_run(&key(&h, "nightly"), cutoff).await.unwrap(),
        None
    );

    // An old key no longer holds: the same key starts a new run, which takes it over.
    let (again, _) = s.create_run(&keyed(&f, &h, "nightly")).await.unwrap();
    assert_ne!(again.id, old.id);
    assert_eq!(
        s.keyed_run(&key(&h, "nightly"), cutoff).await.unwrap(),
        Some(again.id.clone())
    );
    assert!(s.old_run_keys(cutoff, 10).await.unwrap().is_empty());

    // The pruner's delete, by run id.
    db.exec(&format!(
        "UPDATE run_keys SET created_at = 1 WHERE run_id = '{}'",
        fresh.id
    ))
    .await;
    let old_keys = s.old_run_keys(cutoff, 10).await.unwrap();
    assert_eq!(old_keys, vec![fresh.id.clone()]);
    assert_eq!(s.delete_run_keys(&old_keys).await.unwrap(), 1);
    assert_eq!(s.delete_run_keys(&old_keys).await.unwrap(), 0);
    assert_eq!(s.keyed_run(&key(&h, "hourly"), 0).await.unwrap(), None);
    assert_eq!(
        s.keyed_run(&key(&h, "nightly"), cutoff).await.unwrap(),
        Some(again.id),
        "the other key stays"
    );
    // Its run is untouched.
    assert_eq!(s.run(&fresh.id).await.unwrap().id, fresh.id);
}

conformance!(
    hooks_are_kept_rotated_touched_and_deleted,
    a_key_starts_one_run,
    concurrent_calls_with_one_key_start_one_run,
    keys_past_their_window_are_replaced_and_pruned,
);
