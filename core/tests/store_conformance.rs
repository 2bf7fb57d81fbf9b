//! The ONE conformance suite of the `Store` seam.
//!
//! Every behaviour below is a plain `async fn(&TestDb)`; the `conformance!` macro at the bottom
//! stamps each one out as a `#[tokio::test]` per engine (`sqlite::`, `postgres::`, `mysql::`), on
//! a fresh database of its own, so the same assertions hold SQLite, PostgreSQL and MariaDB to the
//! same contract. PostgreSQL and MariaDB must be reachable (see `common`): an absent server fails.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use antcode_core::ids::new_id;
use antcode_core::model::*;
use antcode_core::store::{
    DueKey, FinishApplied, Fire, NewRun, NextFire, QueuedKey, Recorded, RunFilter, Store,
    StoreError, HELD,
};
use antcode_core::time::now_ms;
use common::TestDb;

// ---------------------------------------------------------------- fixtures

fn user(name: &str, role: Role) -> User {
    User {
        id: new_id(),
        username: name.into(),
        role,
        disabled: false,
        created_at: 1_700_000_000_000,
        password_hash: format!("hash-of-{name}"),
        generation: 0,
    }
}

fn token(user_id: &str, kind: &str, name: &str) -> ApiToken {
    ApiToken {
        id: new_id(),
        user_id: user_id.into(),
        name: name.into(),
        kind: kind.into(),
        scopes: vec!["runs:read".into(), "tasks:write".into()],
        created_at: 1_700_000_000_000,
        expires_at: 1_800_000_000_000,
        token_hash: antcode_core::ids::token_hash(&new_id()),
        generation: 0,
    }
}

fn version(project_id: &str, n: i64, python: Option<&str>) -> ProjectVersion {
    ProjectVersion {
        project_id: project_id.into(),
        version: n,
        bundle: BundleRef {
            key: format!("bundles/{project_id}/{n}"),
            sha256: antcode_core::ids::sha256_hex(format!("{project_id}{n}").as_bytes()),
            format: BundleFormat::Zip,
            size_bytes: 1234 + n,
            file_name: None,
        },
        entrypoint: "main.py".into(),
        requirements: "requests==2.32.0\nrich\n".into(),
        python_version: python.map(str::to_string),
        files: vec!["main.py".into(), "lib/util.py".into()],
        created_at: 1_700_000_000_000 + n,
    }
}

async fn project(store: &dyn Store, name: &str) -> (Project, ProjectVersion) {
    let p = Project {
        id: new_id(),
        name: name.into(),
        description: format!("the {name} project"),
        current_version: 1,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    };
    let v = version(&p.id, 1, Some("3.11"));
    store.create_project(&p, &v).await.expect("create project");
    (p, v)
}

fn task(project_id: &str, name: &str, retry: RetryPolicy) -> Task {
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hello world".to_string());
    let mut labels = BTreeMap::new();
    labels.insert("team".to_string(), "data".to_string());
    Task {
        id: new_id(),
        name: name.into(),
        project_id: project_id.into(),
        spec: TaskSpec {
            entrypoint: Some("jobs/run.py".into()),
            args: vec!["--day".into(), "2024-01-01".into()],
            env,
            public_env: vec!["GREETING".into()],
            secrets: vec!["DB_PASSWORD".into()],
            queue: "default".into(),
            labels,
            timeout_s: 60,
            retry,
            overlap: "allow".into(),
            misfire: "fire_once".into(),
            priority: 3,
            queue_timeout_s: 0,
            warm: true,
            // Not the defaults, so a round trip that dropped them would show.
            limits: antcode_core::model::RunLimits {
                memory_mb: 1024,
                pids: 64,
                ..Default::default()
            },
            network: antcode_core::model::NetworkPolicy::Allow(vec!["db.example:5432".into()]),
        },
        schedule: Some(Schedule::Cron {
            cron: "*/5 * * * *".into(),
            timezone: "Europe/Berlin".into(),
        }),
        paused: false,
        next_fire_at: Some(1_700_000_300_000),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

/// A project, a task on it (with `retry`) and the version runs are made from.
struct Fixture {
    task: Task,
    version: ProjectVersion,
}

async fn fixture(store: &dyn Store, retry: RetryPolicy) -> Fixture {
    let (p, v) = project(store, &format!("proj-{}", new_id())).await;
    let t = task(&p.id, &format!("task-{}", new_id()), retry);
    store.create_task(&t).await.expect("create task");
    Fixture {
        task: t,
        version: v,
    }
}

fn retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_s: 30,
        max_backoff_s: 600,
    }
}

async fn manual_run(store: &dyn Store, f: &Fixture) -> Run {
    let (run, _job) = store
        .create_run(&NewRun {
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "manual".into(),
            due_at: None,
        })
        .await
        .expect("create run");
    let stored = store.run(&run.id).await.expect("read the new run");
    assert_eq!(run, stored, "create_run returns the run as stored");
    run
}

fn outcome(state: RunState) -> Outcome {
    Outcome {
        state,
        exit_code: Some(if state == RunState::Succeeded { 0 } else { 3 }),
        signal: None,
        error: (state != RunState::Succeeded).then(|| format!("attempt ended {}", state.as_str())),
        duration_ms: 1500,
        peak_rss_kb: Some(20480),
        log_key: Some("logs/run.log.gz".into()),
        result: (state == RunState::Succeeded).then(|| serde_json::json!({"rows": 42, "ok": true})),
    }
}

fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_stale<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Stale(_)) => {}
        other => panic!("{what}: expected Stale, got {other:?}"),
    }
}

/// The fields a fenced write may change, for "nothing changed" checks.
fn snapshot(r: &Run) -> String {
    format!(
        "{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
        r.state,
        r.attempt,
        r.lease_token,
        r.worker_id,
        r.exit_code,
        r.error,
        r.started_at,
        r.finished_at,
        r.not_before,
        r.cancel_requested
    )
}

// ---------------------------------------------------------------- users and tokens

async fn users_crud(db: &TestDb) {
    let s = db.open().await;
    s.ping().await.expect("ping");
    let alice = user("alice", Role::Admin);
    let bob = user("bob", Role::Viewer);
    s.create_user(&bob).await.unwrap();
    s.create_user(&alice).await.unwrap();

    let got = s.user(&alice.id).await.unwrap();
    assert_eq!(got.username, "alice");
    assert_eq!(got.role, Role::Admin);
    assert!(!got.disabled);
    assert_eq!(got.created_at, alice.created_at);
    assert_eq!(got.password_hash, "hash-of-alice");
    assert_eq!(s.user_by_name("bob").await.unwrap().id, bob.id);
    assert_not_found(s.user_by_name("carol").await, "unknown username");
    assert_not_found(s.user(&new_id()).await, "unknown user id");

    let names: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    // bob is the admin left, so alice may stop being one.
    let change = UserChange {
        role: Some(Role::Admin),
        ..UserChange::default()
    };
    s.change_user(&bob.id, &change).await.unwrap();
    let change = UserChange {
        role: Some(Role::Operator),
        disabled: Some(true),
        password_hash: Some("new-hash".into()),
    };
    let written = s.change_user(&alice.id, &change).await.unwrap();
    let got = s.user(&alice.id).await.unwrap();
    for u in [&written, &got] {
        assert_eq!(
            (
                u.username.as_str(),
                u.role,
                u.disabled,
                u.password_hash.as_str()
            ),
            ("alice", Role::Operator, true, "new-hash")
        );
    }
    // Changing nothing is still a change of an existing user, not NotFound.
    s.change_user(&alice.id, &UserChange::default())
        .await
        .expect("empty change");
    assert_not_found(
        s.change_user(&new_id(), &UserChange::default()).await,
        "change unknown user",
    );

    let t = token(&alice.id, "api", "ci");
    s.create_token(&t).await.unwrap();
    s.delete_user(&alice.id).await.unwrap();
    assert_not_found(s.user(&alice.id).await, "deleted user");
    assert_not_found(
        s.token_by_hash(&t.token_hash).await,
        "token of deleted user",
    );
    assert_not_found(s.delete_user(&alice.id).await, "delete twice");
    assert_eq!(s.list_users().await.unwrap().len(), 1);
}

async fn duplicate_username_conflicts(db: &TestDb) {
    let s = db.open().await;
    s.create_user(&user("alice", Role::Admin)).await.unwrap();
    assert_conflict(
        s.create_user(&user("alice", Role::Viewer)).await,
        "duplicate username",
    );
    assert_eq!(s.list_users().await.unwrap().len(), 1);
}

async fn tokens_crud(db: &TestDb) {
    let s = db.open().await;
    let u = user("alice", Role::Admin);
    s.create_user(&u).await.unwrap();
    let session = token(&u.id, "session", "login");
    let first = token(&u.id, "api", "first");
    let second = token(&u.id, "api", "second");
    for t in [&session, &first, &second] {
        s.create_token(t).await.unwrap();
    }
    let got = s.token_by_hash(&first.token_hash).await.unwrap();
    assert_eq!(got.id, first.id);
    assert_eq!(got.user_id, u.id);
    assert_eq!(got.name, "first");
    assert_eq!(got.kind, "api");
    assert_eq!(got.scopes, first.scopes);
    assert_eq!(
        (got.created_at, got.expires_at),
        (first.created_at, first.expires_at)
    );
    assert_not_found(s.token_by_hash("nope").await, "unknown token hash");

    // Only API tokens are listed, newest first; sessions are not.
    let listed: Vec<_> = s
        .list_tokens(&u.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, ["second", "first"]);
    assert!(s.list_tokens(&new_id()).await.unwrap().is_empty());

    let mut dup = token(&u.id, "api", "dup");
    dup.token_hash = first.token_hash.clone();
    assert_conflict(s.create_token(&dup).await, "duplicate token hash");

    s.delete_token(&first.id).await.unwrap();
    assert_not_found(s.token_by_hash(&first.token_hash).await, "deleted token");
    assert_not_found(s.delete_token(&first.id).await, "delete token twice");
    assert_eq!(s.list_tokens(&u.id).await.unwrap().len(), 1);
}

/// Every change of a password, role or disabled flag revokes the user's credentials: their
/// tokens are gone and their generation moves, so a token minted under the old one is refused
/// by the caller that compares them; a change of nothing revokes nothing.
async fn user_changes_revoke_credentials(db: &TestDb) {
    let s = db.open().await;
    let admin = user("root", Role::Admin);
    let alice = user("alice", Role::Operator);
    s.create_user(&admin).await.unwrap();
    s.create_user(&alice).await.unwrap();
    let changes = [
        UserChange {
            password_hash: Some("other".into()),
            ..UserChange::default()
        },
        UserChange {
            role: Some(Role::Viewer),
            ..UserChange::default()
        },
        UserChange {
            disabled: Some(true),
            ..UserChange::default()
        },
    ];
    let mut generation = s.user(&alice.id).await.unwrap().generation;
    for change in &changes {
        let session = token(&alice.id, "session", "login");
        let api = token(&alice.id, "api", "ci");
        let bystander = token(&admin.id, "api", "theirs");
        for t in [&session, &api, &bystander] {
            s.create_token(t).await.unwrap();
        }
        let after = s.change_user(&alice.id, change).await.unwrap();
        assert!(
            after.generation > generation,
            "{change:?} moves the generation"
        );
        assert_eq!(
            s.user(&alice.id).await.unwrap().generation,
            after.generation
        );
        generation = after.generation;
        for t in [&session, &api] {
            assert_not_found(s.token_by_hash(&t.token_hash).await, "revoked token");
        }
        s.token_by_hash(&bystander.token_hash)
            .await
            .expect("another user's token stays");
    }
    // The same values again (alice is a disabled viewer now) revoke nothing.
    let kept = token(&alice.id, "api", "kept");
    s.create_token(&kept).await.unwrap();
    let same = UserChange {
        role: Some(Role::Viewer),
        disabled: Some(true),
        password_hash: None,
    };
    let after = s.change_user(&alice.id, &same).await.unwrap();
    assert_eq!(after.generation, generation);
    let stored = s.token_by_hash(&kept.token_hash).await.unwrap();
    assert_eq!(stored.generation, kept.generation);
}

/// No change and no delete may leave the users without an enabled admin.
async fn last_admin_is_kept(db: &TestDb) {
    let s = db.open().await;
    let a = user("a", Role::Admin);
    let v = user("v", Role::Viewer);
    s.create_user(&a).await.unwrap();
    s.create_user(&v).await.unwrap();
    let refused = [
        UserChange {
            role: Some(Role::Operator),
            ..UserChange::default()
        },
        UserChange {
            disabled: Some(true),
            ..UserChange::default()
        },
    ];
    for change in &refused {
        assert!(
            matches!(
                s.change_user(&a.id, change).await,
                Err(StoreError::LastAdmin)
            ),
            "{change:?} of the last admin"
        );
    }
    assert!(matches!(
        s.delete_user(&a.id).await,
        Err(StoreError::LastAdmin)
    ));
    let kept = s.user(&a.id).await.unwrap();
    assert_eq!((kept.role, kept.disabled), (Role::Admin, false));
    // A disabled admin does not count; an enabled second admin does.
    let d = user("d", Role::Admin);
    s.create_user(&d).await.unwrap();
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    s.change_user(&d.id, &disable).await.unwrap();
    assert!(matches!(
        s.change_user(&a.id, &refused[0]).await,
        Err(StoreError::LastAdmin)
    ));
    let promote = UserChange {
        role: Some(Role::Admin),
        ..UserChange::default()
    };
    s.change_user(&v.id, &promote).await.unwrap();
    s.delete_user(&a.id).await.unwrap();
    // Changes that keep an admin, and changes of non-admins, are never refused.
    s.change_user(&d.id, &refused[0]).await.unwrap();
    s.delete_user(&d.id).await.unwrap();
    let pw = UserChange {
        password_hash: Some("x".into()),
        ..UserChange::default()
    };
    s.change_user(&v.id, &pw).await.unwrap();
}

/// Two admins demote each other at the same moment, over and over, each through a store of
/// its own (as two control replicas would): every round, exactly one demotion wins and one
/// enabled admin is left. Read-then-write without the transaction's locks lets both win.
async fn racing_demotions_leave_one_admin(db: &TestDb) {
    let first = db.open().await;
    let second = db.open().await;
    let demote = UserChange {
        role: Some(Role::Viewer),
        ..UserChange::default()
    };
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    let mut survivor: Option<String> = None;
    for round in 0..40 {
        let a = user(&format!("a{round}"), Role::Admin);
        let b = user(&format!("b{round}"), Role::Admin);
        first.create_user(&a).await.unwrap();
        first.create_user(&b).await.unwrap();
        // The last round's survivor steps down (allowed: a and b are admins), so a and b
        // are the only enabled admins when they race.
        if let Some(id) = survivor.take() {
            first.change_user(&id, &demote).await.unwrap();
        }
        // Alternate the kinds of loss: demotions, disables and deletes race each other.
        let (x, y) = (first.clone(), second.clone());
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        let (c0, c1, c2) = (demote.clone(), demote.clone(), disable.clone());
        let one = tokio::spawn(async move {
            match round % 3 {
                0 | 1 => x.change_user(&b_id, &c0).await.map(|_| ()),
                _ => x.delete_user(&b_id).await,
            }
        });
        let other = tokio::spawn(async move {
            match round % 3 {
                0 => y.change_user(&a_id, &c1).await.map(|_| ()),
                1 => y.change_user(&a_id, &c2).await.map(|_| ()),
                _ => y.delete_user(&a_id).await,
            }
        });
        let results = [one.await.unwrap(), other.await.unwrap()];
        let won = results.iter().filter(|r| r.is_ok()).count();
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::LastAdmin), "round {round}: {e}");
            }
        }
        assert_eq!(won, 1, "round {round}: {results:?}");
        let admins: Vec<_> = first
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .filter(|u| u.role == Role::Admin && !u.disabled)
            .map(|u| u.username)
            .collect();
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        survivor = Some(first.user_by_name(&admins[0]).await.unwrap().id);
    }
}

async fn names_are_exact_and_text_is_unicode(db: &TestDb) {
    let s = db.open().await;
    // Every engine compares names the same way: exactly, case and accents included.
    s.create_user(&user("alice", Role::Admin)).await.unwrap();
    s.create_user(&user("Alice", Role::Viewer))
        .await
        .expect("names differing in case are different users");
    s.create_user(&user("alicé", Role::Viewer))
        .await
        .expect("names differing in accents are different users");
    assert_eq!(s.user_by_name("Alice").await.unwrap().role, Role::Viewer);
    assert_not_found(s.user_by_name("ALICE").await, "lookup is exact");
    let names: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["Alice", "alice", "alicé"], "byte order");

    let (p, _) = project(s.as_ref(), "étl-🚀").await;
    let mut p = s.project(&p.id).await.unwrap();
    assert_eq!(p.name, "étl-🚀");
    p.description = "日本語 and emoji 🐍🚀 survive".into();
    s.update_project(&p).await.unwrap();
    assert_eq!(
        s.project_by_name("étl-🚀").await.unwrap().description,
        p.description
    );
    let mut t = task(&p.id, "tâche-🐍", retries(1));
    t.spec.env.insert("MSG".into(), "grüße 👋".into());
    s.create_task(&t).await.unwrap();
    assert_eq!(s.task(&t.id).await.unwrap().spec.env["MSG"], "grüße 👋");
}

// ---------------------------------------------------------------- projects and versions

async fn projects_and_versions(db: &TestDb) {
    let s = db.open().await;
    let (mut p, v1) = project(s.as_ref(), "etl").await;
    let got = s.project(&p.id).await.unwrap();
    assert_eq!(
        (
            got.name.as_str(),
            got.description.as_str(),
            got.current_version
        ),
        ("etl", "the etl project", 1)
    );
    assert_eq!(s.project_by_name("etl").await.unwrap().id, p.id);
    assert_not_found(s.project_by_name("nope").await, "unknown project name");
    assert_not_found(s.project(&new_id()).await, "unknown project id");

    let got = s.version(&p.id, 1).await.unwrap();
    assert_eq!(got.bundle, v1.bundle);
    assert_eq!(got.files, v1.files);
    assert_eq!(got.requirements, v1.requirements);
    assert_eq!(got.python_version.as_deref(), Some("3.11"));
    assert_eq!(got.entrypoint, "main.py");
    assert_eq!(got.created_at, v1.created_at);

    // The number passed in is ignored: versions are numbered after the latest one.
    let mut v = version(&p.id, 77, None);
    v.bundle.format = BundleFormat::Py;
    v.bundle.file_name = Some("main.py".into());
    assert_eq!(s.add_version(&v).await.unwrap(), 2);
    assert_eq!(s.project(&p.id).await.unwrap().current_version, 2);
    assert_eq!(s.add_version(&version(&p.id, 0, None)).await.unwrap(), 3);
    assert_eq!(s.project(&p.id).await.unwrap().current_version, 3);
    let got = s.version(&p.id, 2).await.unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.python_version, None);
    assert_eq!(got.bundle, v.bundle);
    assert_not_found(s.version(&p.id, 9).await, "unknown version");
    // The current version in one read: the newest here, and none for an unknown project.
    let current = s.current_version(&p.id).await.unwrap();
    assert_eq!(current, s.version(&p.id, 3).await.unwrap());
    assert_not_found(
        s.current_version("no-such-project").await,
        "unknown project",
    );
    let numbers: Vec<_> = s
        .list_versions(&p.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_not_found(
        s.add_version(&version(&new_id(), 1, None)).await,
        "version of unknown project",
    );

    // Pointing back at an older version is a plain update, and the next upload still counts on.
    p.current_version = 1;
    p.description = "rolled back".into();
    p.updated_at += 5;
    s.update_project(&p).await.unwrap();
    let got = s.project(&p.id).await.unwrap();
    assert_eq!(
        (got.current_version, got.description.as_str()),
        (1, "rolled back")
    );
    assert_eq!(s.add_version(&version(&p.id, 0, None)).await.unwrap(), 4);

    let (other, _) = project(s.as_ref(), "other").await;
    assert_eq!(s.list_versions(&other.id).await.unwrap().len(), 1);
    let mut clash = p.clone();
    clash.id = other.id.clone();
    assert_conflict(
        s.update_project(&clash).await,
        "rename onto a taken project name",
    );
    let dup = Project {
        id: new_id(),
        ..p.clone()
    };
    assert_conflict(
        s.create_project(&dup, &version(&dup.id, 1, None)).await,
        "duplicate project name",
    );
    assert_not_found(
        s.project(&dup.id).await,
        "the refused project left nothing behind",
    );
    assert!(s.list_versions(&dup.id).await.unwrap().is_empty());

    s.delete_project(&p.id).await.unwrap();
    assert_not_found(s.project(&p.id).await, "deleted project");
    assert!(s.list_versions(&p.id).await.unwrap().is_empty());
    assert_not_found(s.delete_project(&p.id).await, "delete project twice");
    let missing = Project {
        id: new_id(),
        name: "missing".into(),
        ..p
    };
    assert_not_found(s.update_project(&missing).await, "update unknown project");
}

async fn project_pagination(db: &TestDb) {
    let s = db.open().await;
    let mut created = vec![];
    for i in 0..7 {
        created.push(project(s.as_ref(), &format!("p{i}")).await.0.id);
    }
    let mut seen = vec![];
    let mut sizes = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_projects(3, cursor.as_deref()).await.unwrap();
        sizes.push(page.items.len());
        seen.extend(page.items.into_iter().map(|p| p.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, [3, 3, 1]);
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");
    // A page exactly as large as what is left says there is nothing more.
    let all = s.list_projects(7, None).await.unwrap();
    assert_eq!((all.items.len(), all.next_cursor), (7, None));
}

// ---------------------------------------------------------------- tasks

async fn tasks_crud(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "etl").await;
    let mut t = task(&p.id, "nightly", retries(3));
    s.create_task(&t).await.unwrap();
    let got = s.task(&t.id).await.unwrap();
    assert_eq!(got.name, "nightly");
    assert_eq!(got.project_id, p.id);
    assert_eq!(got.spec, t.spec);
    assert_eq!(got.schedule, t.schedule);
    assert_eq!(got.next_fire_at, t.next_fire_at);
    assert!(!got.paused);
    assert_eq!(
        (got.created_at, got.updated_at),
        (t.created_at, t.updated_at)
    );
    assert_not_found(s.task(&new_id()).await, "unknown task");

    t.schedule = Some(Schedule::Interval {
        every_s: 90,
        start: None,
        end: None,
    });
    t.paused = true;
    t.next_fire_at = None;
    t.spec.queue = "gpu".into();
    t.spec.args.clear();
    t.updated_at += 1000;
    s.update_task(&t).await.unwrap();
    let got = s.task(&t.id).await.unwrap();
    assert_eq!(
        got.schedule,
        Some(Schedule::Interval {
            every_s: 90,
            start: None,
            end: None
        })
    );
    assert!(got.paused);
    assert_eq!(got.next_fire_at, None);
    assert_eq!(got.spec, t.spec);
    assert_eq!(got.updated_at, t.updated_at);

    let mut once = task(&p.id, "once", retries(1));
    once.schedule = Some(Schedule::Once {
        at: "2030-01-01T00:00:00Z".into(),
    });
    s.create_task(&once).await.unwrap();
    assert_eq!(s.task(&once.id).await.unwrap().schedule, once.schedule);
    let mut manual = task(&p.id, "manual", retries(1));
    manual.schedule = None;
    manual.next_fire_at = None;
    manual.spec.entrypoint = None;
    s.create_task(&manual).await.unwrap();
    let got = s.task(&manual.id).await.unwrap();
    assert_eq!((got.schedule, got.spec.entrypoint), (None, None));

    assert_conflict(
        s.create_task(&task(&p.id, "nightly", retries(1))).await,
        "duplicate task name",
    );
    let mut clash = manual.clone();
    clash.name = "nightly".into();
    assert_conflict(s.update_task(&clash).await, "rename onto a taken task name");
    assert_not_found(
        s.update_task(&task(&p.id, "ghost", retries(1))).await,
        "update unknown task",
    );

    s.delete_task(&t.id).await.unwrap();
    assert_not_found(s.task(&t.id).await, "deleted task");
    assert_not_found(s.delete_task(&t.id).await, "delete task twice");
}

/// A trigger's one read: the task and its project's current version, as the two reads give them.
async fn task_with_current_version_reads_both(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    // Tasks compare as the API shows them.
    let shown = |(t, v): (Task, Option<ProjectVersion>)| (serde_json::to_value(t).unwrap(), v);
    let read = s.task_with_current_version(&f.task.id).await.unwrap();
    assert_eq!(
        shown(read),
        shown((f.task.clone(), Some(f.version.clone())))
    );
    let mut next = version(&f.task.project_id, 2, Some("3.12"));
    next.version = s.add_version(&next).await.unwrap();
    let current = s.current_version(&f.task.project_id).await.unwrap();
    assert_eq!(current.version, next.version, "an upload becomes current");
    let read = s.task_with_current_version(&f.task.id).await.unwrap();
    let task = s.task(&f.task.id).await.unwrap();
    assert_eq!(shown(read), shown((task, Some(current))));
    assert_not_found(s.task_with_current_version(&new_id()).await, "unknown task");
    s.delete_project(&f.task.project_id).await.unwrap();
    let (task, version) = s.task_with_current_version(&f.task.id).await.unwrap();
    assert_eq!(
        (task.id, version),
        (f.task.id.clone(), None),
        "project gone"
    );
}

async fn task_pagination(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "etl").await;
    let mut created = vec![];
    for i in 0..7 {
        let t = task(&p.id, &format!("t{i}"), retries(1));
        s.create_task(&t).await.unwrap();
        created.push(t.id);
    }
    let first = s.list_tasks(3, None).await.unwrap();
    let second = s.list_tasks(3, first.next_cursor.as_deref()).await.unwrap();
    let third = s
        .list_tasks(3, second.next_cursor.as_deref())
        .await
        .unwrap();
    assert!(first.next_cursor.is_some() && second.next_cursor.is_some());
    assert_eq!(third.next_cursor, None);
    let seen: Vec<_> = [first.items, second.items, third.items]
        .into_iter()
        .map(|items| items.into_iter().map(|t| t.id).collect::<Vec<_>>())
        .collect();
    assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    created.reverse();
    assert_eq!(seen.concat(), created);
}

async fn due_tasks_selects_active_due_ones(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "etl").await;
    let now = 1_700_000_000_000;
    let make = |name: &str, next: Option<i64>, paused: bool, scheduled: bool| {
        let mut t = task(&p.id, name, retries(1));
        t.next_fire_at = next;
        t.paused = paused;
        if !scheduled {
            t.schedule = None;
        }
        t
    };
    let due_late = make("due-late", Some(now - 1), false, true);
    let due_early = make("due-early", Some(now - 60_000), false, true);
    let due_exact = make("due-exact", Some(now), false, true);
    let future = make("future", Some(now + 1), false, true);
    let paused = make("paused", Some(now - 5), true, true);
    let never = make("never", None, false, false);
    for t in [&due_late, &due_early, &due_exact, &future, &paused, &never] {
        s.create_task(t).await.unwrap();
    }
    // The names of the due tasks, at most `limit`, after the key `after`.
    let due_names = |limit: u32, after: Option<DueKey>| {
        let s = s.clone();
        async move {
            let tasks = s.due_tasks(now, limit, after.as_ref()).await.unwrap();
            tasks.into_iter().map(|t| t.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        due_names(100, None).await,
        ["due-early", "due-late", "due-exact"],
        "due, unpaused, oldest fire first"
    );
    let got = &s.due_tasks(now, 100, None).await.unwrap()[0];
    assert_eq!(got.schedule, due_early.schedule, "schedule JSON survives");
    assert!(s
        .due_tasks(now - 120_000, 100, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        due_names(2, None).await,
        ["due-early", "due-late"],
        "at most `limit`, oldest first"
    );
    // The next batch starts after the last task of the previous one, and the limit then counts
    // the tasks after it.
    let key = |t: &Task| DueKey {
        next_fire_at: t.next_fire_at.unwrap(),
        id: t.id.clone(),
    };
    assert_eq!(
        due_names(2, Some(key(&due_early))).await,
        ["due-late", "due-exact"],
        "the tasks after the key"
    );
    assert!(due_names(2, Some(key(&due_exact))).await.is_empty());
    // Tasks due at the same instant are ordered by id, so a batch boundary among them loses and
    // repeats none: the burst of a cron shared by thousands of tasks.
    let tied: Vec<Task> = (0..5)
        .map(|i| make(&format!("tied-{i}"), Some(now - 30_000), false, true))
        .collect();
    for t in &tied {
        s.create_task(t).await.unwrap();
    }
    let mut walked = vec![];
    let mut after = Some(key(&due_early));
    loop {
        let batch = s.due_tasks(now - 30_000, 2, after.as_ref()).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = Some(key(last));
        walked.extend(batch.into_iter().map(|t| t.name));
    }
    walked.sort();
    let expected: Vec<String> = tied.iter().map(|t| t.name.clone()).collect();
    assert_eq!(walked, expected, "every tied task walked exactly once");
}

// ---------------------------------------------------------------- runs

async fn runs_create_and_read(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(2)).await;
    let before = now_ms();
    let (run, job) = s
        .create_run(&NewRun {
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "api".into(),
            due_at: None,
        })
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.attempt, run.max_attempts), (1, 2));
    assert_eq!(run.task_id, f.task.id);
    assert_eq!(run.project_id, f.task.project_id);
    assert_eq!(run.project_version, 1);
    assert_eq!(run.queue, "default");
    assert_eq!(run.trigger, "api");
    assert!(run.queued_at >= before - 1000 && run.queued_at <= now_ms() + 1000);
    assert_eq!(
        (
            &run.worker_id,
            &run.lease_token,
            run.exit_code,
            run.started_at,
            run.finished_at,
            run.due_at
        ),
        (&None, &None, None, None, None, None)
    );
    assert!(!run.cancel_requested);

    assert_eq!(job.run_id, run.id);
    assert_eq!(job.attempt, 1);
    assert_eq!(
        job.entrypoint, "jobs/run.py",
        "task entrypoint wins over the version's"
    );
    assert_eq!(job.bundle, f.version.bundle);
    assert_eq!(job.env, f.task.spec.env);
    assert_eq!(job.args, f.task.spec.args);
    assert_eq!(job.python_version.as_deref(), Some("3.11"));

    let again = s.run(&run.id).await.unwrap();
    assert_eq!(snapshot(&again), snapshot(&run));
    assert_not_found(s.run(&new_id()).await, "unknown run");
    let history = s.run_history(&run.id).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.kind.as_str()).collect::<Vec<_>>(),
        ["queued"]
    );
    assert_eq!(history[0].attempt, 1);

    let jobs = s
        .due_queued_jobs(now_ms() + 1000, 10, None)
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs, [job]);
    assert!(s.running_runs(10).await.unwrap().is_empty());
}

/// Runs created at the same time (committed together when they queue behind the writer) are
/// each stored exactly as returned, with their history line; one that fails fails alone.
async fn concurrent_creates_land_and_fail_alone(db: &TestDb) {
    let s: Arc<dyn Store> = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let creates: Vec<_> = (0..24)
        .map(|n| {
            let s = s.clone();
            // Two of them for the same due time of the same task: one must be refused.
            let new = NewRun {
                task: f.task.clone(),
                version: f.version.clone(),
                trigger: format!("manual-{n}"),
                due_at: (n == 5 || n == 17).then_some(1_700_000_000_000),
            };
            tokio::spawn(async move { s.create_run(&new).await })
        })
        .collect();
    let mut created = vec![];
    let mut refused = 0;
    for create in creates {
        match create.await.unwrap() {
            Ok((run, job)) => created.push((run, job)),
            Err(StoreError::Conflict(_)) => refused += 1,
            Err(e) => panic!("an innocent create failed: {e:?}"),
        }
    }
    assert_eq!((created.len(), refused), (23, 1));
    for (run, job) in &created {
        assert_eq!(run, &s.run(&run.id).await.unwrap(), "returned as stored");
        assert_eq!(job.run_id, run.id);
        let history = s.run_history(&run.id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].kind, "queued");
        assert_eq!(history[0].at, run.queued_at);
    }
    let filter = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..RunFilter::default()
    };
    assert_eq!(
        s.list_runs(&filter, 100, None).await.unwrap().items.len(),
        23
    );
}

async fn one_fire_per_due_time(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_300_000;
    let scheduled = |fx: &Fixture, at: Option<i64>| NewRun {
        task: fx.task.clone(),
        version: fx.version.clone(),
        trigger: if at.is_some() { "schedule" } else { "manual" }.into(),
        due_at: at,
    };
    let (first, _) = s.create_run(&scheduled(&f, Some(due))).await.unwrap();
    assert_eq!(first, s.run(&first.id).await.unwrap(), "returned as stored");
    assert_eq!(first.due_at, Some(due));
    assert_conflict(
        s.create_run(&scheduled(&f, Some(due))).await,
        "second fire of the same due time",
    );
    s.create_run(&scheduled(&f, Some(due + 60_000)))
        .await
        .expect("next due time");
    s.create_run(&scheduled(&g, Some(due)))
        .await
        .expect("another task, same due time");
    s.create_run(&scheduled(&f, None))
        .await
        .expect("manual run");
    s.create_run(&scheduled(&f, None))
        .await
        .expect("second manual run");
    let runs = s
        .list_runs(
            &RunFilter {
                task_id: Some(f.task.id.clone()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(runs.items.len(), 4, "the refused fire left no row");
}

async fn fenced_start_and_finish(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    assert_not_found(
        s.mark_started(&new_id(), 1, "tok", "w1", 1).await,
        "start unknown run",
    );

    let t0 = now_ms();
    assert_stale(
        s.mark_started(&run.id, 2, "tok-a", "w1", t0).await,
        "start of a future attempt",
    );
    let started = s.mark_started(&run.id, 1, "tok-a", "w1", t0).await.unwrap();
    assert_eq!(started.state, RunState::Running);
    assert_eq!(started.worker_id.as_deref(), Some("w1"));
    assert_eq!(started.lease_token.as_deref(), Some("tok-a"));
    assert_eq!(started.started_at, Some(t0));
    // The same report twice is harmless; another lease's start is stale and changes nothing.
    let repeat = s
        .mark_started(&run.id, 1, "tok-a", "w1", t0 + 5)
        .await
        .unwrap();
    assert_eq!(snapshot(&repeat), snapshot(&started));
    assert_stale(
        s.mark_started(&run.id, 1, "tok-b", "w2", t0 + 6).await,
        "start with another token",
    );
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), snapshot(&started));
    assert_eq!(s.running_runs(10).await.unwrap().len(), 1);

    let done = outcome(RunState::Succeeded);
    assert_stale(
        s.finish_attempt(&run.id, 1, Some("tok-b"), &done, t0 + 10)
            .await,
        "finish with a wrong token",
    );
    assert_stale(
        s.finish_attempt(&run.id, 2, Some("tok-a"), &done, t0 + 10)
            .await,
        "finish with a wrong attempt",
    );
    assert_eq!(
        snapshot(&s.run(&run.id).await.unwrap()),
        snapshot(&started),
        "stale reports changed nothing"
    );
    assert_not_found(
        s.finish_attempt(&new_id(), 1, Some("tok-a"), &done, t0)
            .await,
        "finish unknown run",
    );

    let applied = s
        .finish_attempt(&run.id, 1, Some("tok-a"), &done, t0 + 20)
        .await
        .unwrap();
    let FinishApplied::Terminal(fin) = applied else {
        panic!("success must be terminal: {applied:?}");
    };
    assert_eq!(fin.state, RunState::Succeeded);
    assert_eq!(fin.exit_code, Some(0));
    assert_eq!(fin.signal, None);
    assert_eq!(fin.error, None);
    assert_eq!(fin.duration_ms, Some(1500));
    assert_eq!(fin.peak_rss_kb, Some(20480));
    assert_eq!(fin.log_key.as_deref(), Some("logs/run.log.gz"));
    assert_eq!(
        fin.result,
        Some(serde_json::json!({"rows": 42, "ok": true}))
    );
    assert_eq!(fin.finished_at, Some(t0 + 20));
    assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Succeeded);
    // A terminal run takes no more reports, not even from its own lease.
    assert_stale(
        s.finish_attempt(
            &run.id,
            1,
            Some("tok-a"),
            &outcome(RunState::Failed),
            t0 + 30,
        )
        .await,
        "report after terminal",
    );
    assert_stale(
        s.mark_started(&run.id, 1, "tok-a", "w1", t0 + 30).await,
        "start after terminal",
    );
    assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Succeeded);
    assert!(s.running_runs(10).await.unwrap().is_empty());

    let kinds: Vec<_> = s
        .run_history(&run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.kind)
        .collect();
    assert_eq!(kinds, ["queued", "running", "succeeded"]);
}

async fn signal_and_lost_without_token(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &f).await;
    s.mark_started(&run.id, 1, "tok", "w1", 10).await.unwrap();
    // Compensation reports a lost lease without knowing the token.
    let lost = Outcome {
        state: RunState::Lost,
        exit_code: None,
        signal: Some(9),
        error: None,
        duration_ms: 0,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    let FinishApplied::Terminal(fin) = s.finish_attempt(&run.id, 1, None, &lost, 20).await.unwrap()
    else {
        panic!("no attempts left: terminal");
    };
    assert_eq!(fin.state, RunState::Lost);
    assert_eq!(
        (fin.exit_code, fin.signal, fin.error.as_deref(), fin.result),
        (None, Some(9), None, None)
    );
    assert_eq!((fin.peak_rss_kb, fin.log_key.as_deref()), (None, None));
}

async fn retry_requeues_after_backoff(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(3)).await;
    let run = manual_run(s.as_ref(), &f).await;
    let t0 = now_ms();
    s.mark_started(&run.id, 1, "tok-1", "w1", t0).await.unwrap();
    let applied = s
        .finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Failed),
            t0 + 100,
        )
        .await
        .unwrap();
    let FinishApplied::Requeued(r) = applied else {
        panic!("a failure with attempts left is requeued: {applied:?}");
    };
    assert_eq!((r.state, r.attempt), (RunState::Queued, 2));
    assert_eq!(
        (
            r.lease_token.as_deref(),
            r.worker_id.as_deref(),
            r.started_at
        ),
        (None, None, None)
    );
    let not_before = r.not_before.expect("backoff sets not_before");
    assert!(
        not_before > t0 + 100,
        "not_before {not_before} is after the failure"
    );
    // Backoff is jittered down by at most a fifth, never past the computed delay.
    let waited = not_before - (t0 + 100);
    assert!(
        (24_000..=30_000).contains(&waited),
        "first retry waits about backoff_s: {waited}"
    );

    let due_ids = |jobs: Vec<Job>| {
        jobs.into_iter()
            .map(|j| (j.run_id, j.attempt))
            .collect::<Vec<_>>()
    };
    assert!(due_ids(s.due_queued_jobs(t0 + 100, 10, None).await.unwrap().jobs).is_empty());
    assert!(due_ids(
        s.due_queued_jobs(not_before - 1, 10, None)
            .await
            .unwrap()
            .jobs
    )
    .is_empty());
    assert_eq!(
        due_ids(s.due_queued_jobs(not_before, 10, None).await.unwrap().jobs),
        [(run.id.clone(), 2)]
    );

    // The zombie of attempt 1 can neither start nor finish the re-queued run.
    assert_stale(
        s.mark_started(&run.id, 1, "tok-1", "w1", t0 + 200).await,
        "old attempt start",
    );
    assert_stale(
        s.finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Succeeded),
            t0 + 200,
        )
        .await,
        "old attempt finish",
    );
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), snapshot(&r));

    s.mark_started(&run.id, 2, "tok-2", "w2", not_before)
        .await
        .unwrap();
    let FinishApplied::Requeued(r3) = s
        .finish_attempt(
            &run.id,
            2,
            Some("tok-2"),
            &outcome(RunState::TimedOut),
            not_before + 10,
        )
        .await
        .unwrap()
    else {
        panic!("second failure with one attempt left is requeued");
    };
    assert_eq!(r3.attempt, 3);
    let waited = r3.not_before.unwrap() - (not_before + 10);
    assert!(
        (48_000..=60_000).contains(&waited),
        "backoff doubles: {waited}"
    );
    let at = r3.not_before.unwrap();
    s.mark_started(&run.id, 3, "tok-3", "w1", at).await.unwrap();
    let FinishApplied::Terminal(last) = s
        .finish_attempt(
            &run.id,
            3,
            Some("tok-3"),
            &outcome(RunState::Failed),
            at + 10,
        )
        .await
        .unwrap()
    else {
        panic!("the last attempt's failure is terminal");
    };
    assert_eq!((last.state, last.attempt), (RunState::Failed, 3));
    assert_eq!(last.error.as_deref(), Some("attempt ended failed"));
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
    let attempts: Vec<_> = s
        .run_history(&run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.attempt, h.kind))
        .collect();
    let kinds = |a: u32, k: &str| (a, k.to_string());
    assert_eq!(
        attempts,
        [
            kinds(1, "queued"),
            kinds(1, "running"),
            kinds(1, "failed"),
            kinds(2, "running"),
            kinds(2, "timed_out"),
            kinds(3, "running"),
            kinds(3, "failed"),
        ]
    );
}

async fn cancel_is_never_requeued(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(5)).await;

    // Queued: cancelled at once, no longer due, cannot start.
    let queued = manual_run(s.as_ref(), &f).await;
    let c = s.request_cancel(&queued.id, 50).await.unwrap();
    assert_eq!(c.state, RunState::Cancelled);
    assert!(c.cancel_requested);
    assert_eq!(c.finished_at, Some(50));
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
    assert_stale(
        s.mark_started(&queued.id, 1, "tok", "w1", 60).await,
        "start a cancelled run",
    );
    assert_stale(
        s.finish_attempt(&queued.id, 1, None, &outcome(RunState::Failed), 60)
            .await,
        "finish a cancelled run",
    );
    assert_eq!(s.run(&queued.id).await.unwrap().state, RunState::Cancelled);
    assert_not_found(s.request_cancel(&new_id(), 1).await, "cancel unknown run");

    // Running: flagged; a retryable failure afterwards ends it instead of requeueing.
    let running = manual_run(s.as_ref(), &f).await;
    s.mark_started(&running.id, 1, "tok", "w1", 70)
        .await
        .unwrap();
    let c = s.request_cancel(&running.id, 80).await.unwrap();
    assert_eq!((c.state, c.cancel_requested), (RunState::Running, true));
    let applied = s
        .finish_attempt(&running.id, 1, Some("tok"), &outcome(RunState::Failed), 90)
        .await
        .unwrap();
    let FinishApplied::Terminal(t) = applied else {
        panic!("a cancel-requested run is never requeued: {applied:?}");
    };
    assert_eq!((t.state, t.attempt), (RunState::Failed, 1));

    // The runner reporting the cancellation itself: terminal even with attempts left.
    let other = manual_run(s.as_ref(), &f).await;
    s.mark_started(&other.id, 1, "tok", "w1", 70).await.unwrap();
    let applied = s
        .finish_attempt(&other.id, 1, Some("tok"), &outcome(RunState::Cancelled), 90)
        .await
        .unwrap();
    assert!(
        matches!(&applied, FinishApplied::Terminal(r) if r.state == RunState::Cancelled && r.attempt == 1),
        "{applied:?}"
    );
    assert!(s
        .due_queued_jobs(i64::MAX / 2, 10, None)
        .await
        .unwrap()
        .jobs
        .is_empty());
}

/// An attempt its runner's shutdown interrupted: fenced like a finish, queued again at once as
/// the next attempt with one more allowed (no retry used up), cancelled if a cancel is pending.
async fn interrupted_attempt_is_queued_again_without_using_a_retry(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let interrupted = |run: &Run, attempt, token: &str, at_ms| {
        let mut o = outcome(RunState::Queued);
        o.error = Some(INTERRUPTED_BY_SHUTDOWN.into());
        o.exit_code = None;
        o.signal = Some(15);
        RunEvent {
            run_id: run.id.clone(),
            attempt,
            lease_token: token.into(),
            worker_id: "w1".into(),
            at_ms,
            kind: RunEventKind::Interrupted(o),
        }
    };
    let record = |ev: RunEvent| {
        let s = s.clone();
        async move { s.record_events(&[ev]).await.remove(0) }
    };

    let run = manual_run(s.as_ref(), &f).await;
    assert_eq!(run.max_attempts, 1);
    // Not started yet: nothing to interrupt.
    assert_stale(
        record(interrupted(&run, 1, "tok-a", 20)).await,
        "interrupt a queued run",
    );
    s.mark_started(&run.id, 1, "tok-a", "w1", 10).await.unwrap();
    let before = snapshot(&s.run(&run.id).await.unwrap());
    for (attempt, token) in [(1, "tok-b"), (2, "tok-a")] {
        assert_stale(
            record(interrupted(&run, attempt, token, 20)).await,
            "interruption of another lease or attempt",
        );
    }
    assert_eq!(snapshot(&s.run(&run.id).await.unwrap()), before);

    let applied = record(interrupted(&run, 1, "tok-a", 20)).await.unwrap();
    assert_eq!(
        applied,
        Recorded::Interrupted {
            state: RunState::Queued
        }
    );
    let again = s.run(&run.id).await.unwrap();
    assert_eq!(again.state, RunState::Queued);
    assert_eq!((again.attempt, again.max_attempts), (2, 2));
    assert_eq!((again.lease_token, again.worker_id), (None, None));
    assert_eq!(again.started_at, None);
    assert_eq!(again.not_before, Some(20), "due at once, no backoff");
    assert_eq!(again.error.as_deref(), Some(INTERRUPTED_BY_SHUTDOWN));
    let history = s.run_history(&run.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.kind.as_str(), last.attempt), ("interrupted", 1));
    assert!(last.detail.contains(INTERRUPTED_BY_SHUTDOWN), "{last:?}");
    let due = s.due_queued_jobs(20, 10, None).await.unwrap().jobs;
    assert!(
        due.iter().any(|j| j.run_id == run.id && j.attempt == 2),
        "the next attempt is due: {due:?}"
    );
    // The same report again changes nothing.
    assert_stale(record(interrupted(&run, 1, "tok-a", 30)).await, "repeat");

    // The retry budget is what it was: attempt 2 of 2 failing ends the run.
    s.mark_started(&run.id, 2, "tok-c", "w2", 40).await.unwrap();
    let applied = s
        .finish_attempt(&run.id, 2, Some("tok-c"), &outcome(RunState::Failed), 50)
        .await
        .unwrap();
    assert!(
        matches!(&applied, FinishApplied::Terminal(r) if r.state == RunState::Failed && r.attempt == 2),
        "{applied:?}"
    );

    // A run whose cancel was requested while it ran ends cancelled, not queued again.
    let run = manual_run(s.as_ref(), &f).await;
    s.mark_started(&run.id, 1, "tok-a", "w1", 10).await.unwrap();
    s.request_cancel(&run.id, 15).await.unwrap();
    let applied = record(interrupted(&run, 1, "tok-a", 20)).await.unwrap();
    assert_eq!(
        applied,
        Recorded::Interrupted {
            state: RunState::Cancelled
        }
    );
    let ended = s.run(&run.id).await.unwrap();
    assert_eq!((ended.state, ended.attempt), (RunState::Cancelled, 1));
    assert_eq!(ended.finished_at, Some(20));
}

async fn list_runs_filters_and_pages(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let mut mine = vec![];
    for _ in 0..7 {
        mine.push(manual_run(s.as_ref(), &f).await.id);
    }
    let theirs = manual_run(s.as_ref(), &g).await;
    s.mark_started(&mine[1], 1, "t1", "w-a", 1).await.unwrap();
    s.mark_started(&mine[4], 1, "t4", "w-b", 1).await.unwrap();
    s.mark_started(&theirs.id, 1, "tg", "w-a", 1).await.unwrap();

    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let by_task = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..Default::default()
    };
    let mut pages = vec![];
    let mut cursor = None;
    loop {
        let page = s.list_runs(&by_task, 3, cursor.as_deref()).await.unwrap();
        pages.push(ids(page.items));
        cursor = page.next_cursor;
        if cursor.is_none() || pages.len() > 5 {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let mut newest_first = mine.clone();
    newest_first.reverse();
    assert_eq!(pages.concat(), newest_first);

    let all = s.list_runs(&RunFilter::default(), 100, None).await.unwrap();
    assert_eq!(all.items.len(), 8);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.items[0].id, theirs.id);

    let running = RunFilter {
        state: Some(RunState::Running),
        ..Default::default()
    };
    let mut got = ids(s.list_runs(&running, 100, None).await.unwrap().items);
    got.sort();
    let mut want = vec![mine[1].clone(), mine[4].clone(), theirs.id.clone()];
    want.sort();
    assert_eq!(got, want);

    let on_a = RunFilter {
        worker_id: Some("w-a".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_runs(&on_a, 100, None).await.unwrap().items),
        [theirs.id.clone(), mine[1].clone()]
    );
    let mine_running_on_a = RunFilter {
        task_id: Some(f.task.id.clone()),
        state: Some(RunState::Running),
        worker_id: Some("w-a".into()),
        since_ms: None,
    };
    assert_eq!(
        ids(s
            .list_runs(&mine_running_on_a, 100, None)
            .await
            .unwrap()
            .items),
        [mine[1].clone()]
    );
    let queued_of_mine = RunFilter {
        task_id: Some(f.task.id.clone()),
        state: Some(RunState::Queued),
        ..Default::default()
    };
    assert_eq!(
        s.list_runs(&queued_of_mine, 100, None)
            .await
            .unwrap()
            .items
            .len(),
        5
    );

    let future = RunFilter {
        since_ms: Some(now_ms() + 60_000),
        ..Default::default()
    };
    assert!(s
        .list_runs(&future, 100, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let past = RunFilter {
        since_ms: Some(now_ms() - 60_000),
        ..Default::default()
    };
    assert_eq!(s.list_runs(&past, 100, None).await.unwrap().items.len(), 8);
    let nobody = RunFilter {
        worker_id: Some("w-zzz".into()),
        ..Default::default()
    };
    let empty = s.list_runs(&nobody, 3, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());

    // due_queued_jobs is oldest first and honours its limit.
    let due = s
        .due_queued_jobs(now_ms() + 1000, 3, None)
        .await
        .unwrap()
        .jobs;
    let due: Vec<_> = due.into_iter().map(|j| j.run_id).collect();
    assert_eq!(due, [mine[0].clone(), mine[2].clone(), mine[3].clone()]);
    let running_ids: Vec<_> = ids(s.running_runs(2).await.unwrap());
    assert_eq!(running_ids, [mine[1].clone(), mine[4].clone()]);
}

// ---------------------------------------------------------------- history and audit

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

// ---------------------------------------------------------------- two connections racing

async fn racing_starts_have_one_winner(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(1)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        let (ra, rb) = {
            let (a, b) = (a.clone(), b.clone());
            let (ia, ib) = (run.id.clone(), run.id.clone());
            let ta = tokio::spawn(async move { a.mark_started(&ia, 1, "tok-a", "wa", 1).await });
            let tb = tokio::spawn(async move { b.mark_started(&ib, 1, "tok-b", "wb", 1).await });
            (ta.await.unwrap(), tb.await.unwrap())
        };
        let winner = match (&ra, &rb) {
            (Ok(r), Err(StoreError::Stale(_))) | (Err(StoreError::Stale(_)), Ok(r)) => r.clone(),
            other => panic!("round {round}: exactly one start must win, got {other:?}"),
        };
        let stored = b.run(&run.id).await.unwrap();
        assert_eq!(stored.lease_token, winner.lease_token, "round {round}");
        assert_eq!(stored.worker_id, winner.worker_id, "round {round}");
        // The loser's report of the end is refused too.
        let loser = if winner.lease_token.as_deref() == Some("tok-a") {
            "tok-b"
        } else {
            "tok-a"
        };
        assert_stale(
            a.finish_attempt(&run.id, 1, Some(loser), &outcome(RunState::Succeeded), 2)
                .await,
            "loser finishing",
        );
    }
}

async fn racing_versions_get_distinct_numbers(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let (p, _) = project(a.as_ref(), "raced").await;
    let per_side = 6;
    let side = |s: Arc<dyn Store>, pid: String| {
        tokio::spawn(async move {
            let mut got = vec![];
            for _ in 0..per_side {
                got.push(
                    s.add_version(&version(&pid, 0, None))
                        .await
                        .expect("add_version under contention"),
                );
            }
            got
        })
    };
    let ta = side(a.clone(), p.id.clone());
    let tb = side(b.clone(), p.id.clone());
    let mut numbers = ta.await.unwrap();
    numbers.extend(tb.await.unwrap());
    numbers.sort();
    let want: Vec<i64> = (2..=(1 + 2 * per_side)).collect();
    assert_eq!(numbers, want, "every upload got its own number");
    let listed: Vec<_> = a
        .list_versions(&p.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed.len(), 1 + 2 * per_side as usize);
    assert_eq!(
        a.project(&p.id).await.unwrap().current_version,
        1 + 2 * per_side
    );
}

async fn cancel_racing_a_failure_is_never_requeued(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(5)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        a.mark_started(&run.id, 1, "tok", "w1", 1).await.unwrap();
        let (ia, ib) = (run.id.clone(), run.id.clone());
        let (sa, sb) = (a.clone(), b.clone());
        let fail = tokio::spawn(async move {
            sa.finish_attempt(&ia, 1, Some("tok"), &outcome(RunState::Failed), 2)
                .await
        });
        let cancel = tokio::spawn(async move { sb.request_cancel(&ib, 2).await });
        let applied = fail.await.unwrap().expect("the failure report is applied");
        cancel
            .await
            .unwrap()
            .expect("the cancel request is applied");
        let end = a.run(&run.id).await.unwrap();
        // Either the failure came first (requeued, then the cancel ended the queued run) or
        // the cancel came first (the failure is then final). Never queued or running again.
        assert!(
            end.cancel_requested && end.state.is_terminal(),
            "round {round}: {:?} after {applied:?}",
            end.state
        );
        assert!(
            a.due_queued_jobs(i64::MAX / 2, 100, None)
                .await
                .unwrap()
                .jobs
                .is_empty(),
            "round {round}: a cancelled run is due again"
        );
    }
}

async fn racing_reports_apply_once(db: &TestDb) {
    let a: Arc<dyn Store> = db.open().await;
    let b: Arc<dyn Store> = db.open().await;
    let f = fixture(a.as_ref(), retries(1)).await;
    for round in 0..8 {
        let run = manual_run(a.as_ref(), &f).await;
        a.mark_started(&run.id, 1, "tok", "w1", 1).await.unwrap();
        let (ia, ib) = (run.id.clone(), run.id.clone());
        let (sa, sb) = (a.clone(), b.clone());
        // The runner's own completion against compensation declaring the lease lost.
        let done = tokio::spawn(async move {
            sa.finish_attempt(&ia, 1, Some("tok"), &outcome(RunState::Succeeded), 2)
                .await
        });
        let lost = tokio::spawn(async move {
            sb.finish_attempt(&ib, 1, None, &outcome(RunState::Lost), 2)
                .await
        });
        let results = [done.await.unwrap(), lost.await.unwrap()];
        let applied = results.iter().filter(|r| r.is_ok()).count();
        let stale = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Stale(_))))
            .count();
        assert_eq!((applied, stale), (1, 1), "round {round}: {results:?}");
        let terminal_lines = a
            .run_history(&run.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.kind == "succeeded" || h.kind == "lost")
            .count();
        assert_eq!(terminal_lines, 1, "round {round}: one outcome recorded");
    }
}

/// One runner report of a batch: which scenario's run, and what it says.
#[derive(Clone, Copy)]
enum Report {
    Start(u32, &'static str),
    End(u32, &'static str, RunState),
}

/// Writes the runs of `scenarios` on `store` (each scenario's run in its set-up state), then
/// applies `order` (scenario, report) as one batch or one report at a time. Returns, per event,
/// what it applied, and per scenario the run (without its id-seeded retry time) and history.
async fn apply_reports(
    store: &dyn Store,
    f: &Fixture,
    scenarios: &[(&str, Vec<Report>)],
    order: &[(usize, usize)],
    batched: bool,
) -> (Vec<String>, Vec<String>) {
    let mut runs = vec![];
    for (setup, _) in scenarios {
        let run = manual_run(store, f).await;
        match *setup {
            "queued" => {}
            "cancelled" => drop(store.request_cancel(&run.id, 5).await.unwrap()),
            "running" => drop(
                store
                    .mark_started(&run.id, 1, "tok-a", "w1", 5)
                    .await
                    .unwrap(),
            ),
            other => panic!("unknown set-up {other}"),
        }
        runs.push(run.id);
    }
    let events: Vec<RunEvent> = order
        .iter()
        .enumerate()
        .map(|(n, &(scenario, report))| {
            let (attempt, token, kind) = match scenarios[scenario].1[report] {
                Report::Start(a, t) => (a, t, RunEventKind::Started),
                Report::End(a, t, state) => (a, t, RunEventKind::Finished(outcome(state))),
            };
            RunEvent {
                run_id: runs[scenario].clone(),
                attempt,
                lease_token: token.into(),
                worker_id: "w1".into(),
                at_ms: 10 + n as i64,
                kind,
            }
        })
        .collect();
    let results = if batched {
        store.record_events(&events).await
    } else {
        let mut out = vec![];
        for ev in &events {
            out.push(
                store
                    .record_events(std::slice::from_ref(ev))
                    .await
                    .remove(0),
            );
        }
        out
    };
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(recorded) => format!("{recorded:?}"),
            Err(StoreError::Stale(_)) => "stale".into(),
            Err(e) => panic!("unexpected error {e:?}"),
        })
        .collect();
    let mut after = vec![];
    for id in &runs {
        let mut r = store.run(id).await.unwrap();
        // A retry's time is seeded by the run's id: only whether it is set compares.
        r.not_before = r.not_before.map(|_| 0);
        let kinds: Vec<_> = store
            .run_history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| format!("{}@{}", h.kind, h.attempt))
            .collect();
        after.push(format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{kinds:?}",
            snapshot(&r),
            r.duration_ms,
            r.peak_rss_kb,
            r.log_key,
            r.result
        ));
    }
    (results, after)
}

/// The recorder's batch writes exactly what the same reports would, one at a time: a start and
/// the end of the same attempt, which a batch may write as one, included.
async fn batched_reports_match_one_by_one(db: &TestDb) {
    use Report::{End, Start};
    use RunState::{Cancelled, Failed, Succeeded};
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(2)).await;
    let pair = |attempt, start, end, state| vec![Start(attempt, start), End(attempt, end, state)];
    let scenarios: Vec<(&str, Vec<Report>)> = vec![
        ("queued", pair(1, "tok-a", "tok-a", Succeeded)),
        ("queued", pair(1, "tok-a", "tok-a", Cancelled)),
        ("cancelled", pair(1, "tok-a", "tok-a", Cancelled)),
        ("queued", pair(1, "tok-a", "tok-a", Failed)),
        ("queued", pair(2, "tok-a", "tok-a", Succeeded)),
        (
            "queued",
            [
                vec![Start(1, "tok-a")],
                pair(1, "tok-a", "tok-a", Succeeded),
            ]
            .concat(),
        ),
        ("queued", pair(1, "tok-a", "tok-b", Succeeded)),
        ("running", pair(1, "tok-a", "tok-a", Succeeded)),
        ("running", pair(1, "tok-b", "tok-b", Succeeded)),
        (
            "queued",
            [
                pair(1, "tok-a", "tok-a", Succeeded),
                vec![End(1, "tok-a", Failed)],
            ]
            .concat(),
        ),
    ];
    // Each scenario's reports in order, interleaved with the others'.
    let mut order = vec![];
    for report in 0..3 {
        for (scenario, (_, reports)) in scenarios.iter().enumerate() {
            if report < reports.len() {
                order.push((scenario, report));
            }
        }
    }
    let one_by_one = apply_reports(s.as_ref(), &f, &scenarios, &order, false).await;
    let batched = apply_reports(s.as_ref(), &f, &scenarios, &order, true).await;
    for (n, (a, b)) in one_by_one.0.iter().zip(&batched.0).enumerate() {
        assert_eq!(a, b, "event {n} ({:?}) applied differently", order[n]);
    }
    for (n, (a, b)) in one_by_one.1.iter().zip(&batched.1).enumerate() {
        assert_eq!(a, b, "scenario {n} ends differently");
    }
    assert!(
        batched.1[0].starts_with("Succeeded|1|Some(\"tok-a\")|Some(\"w1\")|Some(0)"),
        "a start and its end in one batch: {}",
        batched.1[0]
    );
    assert!(batched.1[0].ends_with("[\"queued@1\", \"running@1\", \"succeeded@1\"]"));
}

// ---------------------------------------------------------------- migrations

async fn migrations_are_idempotent(db: &TestDb) {
    let first = db.open().await;
    first
        .create_user(&user("alice", Role::Admin))
        .await
        .unwrap();
    let applied = db.scalar("SELECT COUNT(*) FROM schema_version").await;
    drop(first);
    let second = db.open().await;
    let third = db.open().await;
    assert_eq!(
        second.user_by_name("alice").await.unwrap().role,
        Role::Admin
    );
    assert_eq!(third.list_users().await.unwrap().len(), 1);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM schema_version").await,
        applied
    );
    assert!(applied >= 1);
}

async fn newer_schema_is_refused(db: &TestDb) {
    let s = db.open().await;
    let supported = db.scalar("SELECT MAX(version) FROM schema_version").await;
    drop(s);
    db.exec("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
        .await;
    match db.try_open().await {
        Err(StoreError::SchemaTooNew {
            found,
            supported: s,
        }) => {
            assert_eq!((found, s), (999, supported));
            let msg = StoreError::SchemaTooNew {
                found,
                supported: s,
            }
            .to_string();
            assert!(msg.contains("999") && msg.contains("upgrade"), "{msg}");
        }
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("a schema newer than the binary must be refused"),
    }
}

async fn first_connects_racing_all_migrate(db: &TestDb) {
    // Control and scheduler of a split deployment start together on an empty database.
    let opens = (0..3).map(|_| db.try_open()).collect::<Vec<_>>();
    let results = futures::future::join_all(opens).await;
    for r in &results {
        if let Err(e) = r {
            panic!("a concurrent first start failed: {e}");
        }
    }
    let applied = db.scalar("SELECT COUNT(*) FROM schema_version").await;
    let newest = db.scalar("SELECT MAX(version) FROM schema_version").await;
    assert_eq!(applied, newest, "each migration recorded once");
}

/// Engine-independent, so it runs once rather than per engine.
#[tokio::test]
async fn bad_url_is_a_clear_config_error() {
    match antcode_core::store::sql::SqlStore::connect("oracle://scott:tiger-secret@db/orcl").await {
        Err(StoreError::Config(msg)) => {
            assert!(
                msg.contains("oracle") && msg.contains("postgres://"),
                "{msg}"
            );
            assert!(!msg.contains("tiger-secret"), "the password leaked: {msg}");
        }
        Err(other) => panic!("expected Config, got {other:?}"),
        Ok(_) => panic!("an oracle:// url must be refused"),
    }
}

/// SQLite only: `?synchronous=` chooses the durability of a commit on every pooled connection;
/// unset it stays `full` (an fsync per commit); `off` and unknown values are refused.
#[tokio::test]
async fn sqlite_synchronous_comes_from_the_url() {
    use antcode_core::store::sql::SqlStore;
    let dir = tempfile::tempdir().unwrap();
    let url =
        |name: &str, query: &str| format!("sqlite://{}{query}", dir.path().join(name).display());
    let level = |s: SqlStore| async move { s.sqlite_synchronous().await.unwrap() };
    let default = SqlStore::connect(&url("a.db", "")).await.unwrap();
    assert_eq!(level(default).await, Some(2), "full unless asked");
    let normal = SqlStore::connect(&url("b.db", "?synchronous=normal"))
        .await
        .unwrap();
    assert_eq!(level(normal).await, Some(1));
    // Beside sqlx's own parameters, in any case.
    let extra = SqlStore::connect(&url("c.db", "?mode=rwc&synchronous=EXTRA"))
        .await
        .unwrap();
    assert_eq!(level(extra).await, Some(3));
    for refused in ["?synchronous=off", "?synchronous=fast"] {
        match SqlStore::connect(&url("d.db", refused)).await {
            Err(StoreError::Config(msg)) => {
                assert!(msg.contains("normal, full or extra"), "{msg}")
            }
            Err(other) => panic!("{refused}: expected Config, got {other:?}"),
            Ok(_) => panic!("{refused} must be refused"),
        }
        assert!(
            !dir.path().join("d.db").exists(),
            "a refused url creates no database"
        );
    }
}

// ---------------------------------------------------------------- one test per behaviour per engine

fn fire(f: &Fixture, due: i64, held: bool) -> Fire {
    Fire {
        run: NewRun {
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "schedule".into(),
            due_at: Some(due),
        },
        held,
    }
}

async fn runs_of(s: &dyn Store, f: &Fixture) -> Vec<Run> {
    let filter = RunFilter {
        task_id: Some(f.task.id.clone()),
        ..Default::default()
    };
    s.list_runs(&filter, 2000, None).await.unwrap().items
}

async fn fire_schedules_writes_one_batch(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(3)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let (due, at) = (1_700_000_300_000, 1_700_000_301_000);
    let next = vec![
        NextFire {
            task_id: f.task.id.clone(),
            from: 1_700_000_300_000,
            to: Some(1_700_000_600_000),
        },
        NextFire {
            task_id: g.task.id.clone(),
            from: 1_700_000_300_000,
            to: None,
        },
    ];
    let fires = [
        fire(&f, due, false),
        fire(&f, due + 1, true),
        fire(&g, due, false),
    ];
    let jobs = s
        .fire_schedules(&fires, &next, "scheduler", 5, at)
        .await
        .unwrap();
    assert!(jobs.iter().all(Option::is_some), "{jobs:?}");
    let job = jobs[0].clone().unwrap();
    assert_eq!((job.attempt, job.task_id.as_str()), (1, f.task.id.as_str()));
    assert_eq!(job.entrypoint, "jobs/run.py");
    let run = s.run(&job.run_id).await.unwrap();
    assert_eq!(run.state, RunState::Queued);
    assert_eq!((run.due_at, run.queued_at), (Some(due), at));
    assert_eq!(run.max_attempts, 3);
    let history = s.run_history(&job.run_id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].kind.as_str(), history[0].at), ("queued", at));
    let held = s.held_runs(10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        Some(held[0].id.clone()),
        jobs[1].as_ref().map(|j| j.run_id.clone())
    );
    let queued: Vec<String> = s
        .due_queued_jobs(at, 10, None)
        .await
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.run_id)
        .collect();
    assert_eq!(queued.len(), 2, "the held fire is not due: {queued:?}");
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_600_000)
    );
    assert_eq!(s.task(&g.task.id).await.unwrap().next_fire_at, None);

    // The same due time again is not a second run; the new one next to it is created.
    let again = s
        .fire_schedules(
            &[fire(&f, due, false), fire(&f, due + 2, false)],
            &[],
            "scheduler",
            5,
            at,
        )
        .await
        .unwrap();
    assert!(again[0].is_none() && again[1].is_some(), "{again:?}");
    assert_eq!(runs_of(s.as_ref(), &f).await.len(), 3);

    // A next fire time that changed since it was read (the task was edited) is left alone.
    let stale_move = NextFire {
        task_id: f.task.id.clone(),
        from: 1_700_000_300_000,
        to: Some(1),
    };
    s.fire_schedules(&[], &[stale_move], "scheduler", 5, at)
        .await
        .unwrap();
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_600_000)
    );

    // More rows than one statement holds: every one is written.
    let many: Vec<Fire> = (0..1_201).map(|i| fire(&g, due + 10 + i, false)).collect();
    let mut moves: Vec<NextFire> = (0..600)
        .map(|i| NextFire {
            task_id: format!("no-such-task-{i}"),
            from: 0,
            to: Some(0),
        })
        .collect();
    let mut g_again = s.task(&g.task.id).await.unwrap();
    g_again.next_fire_at = Some(due);
    s.update_task(&g_again).await.unwrap();
    moves.push(NextFire {
        task_id: g.task.id.clone(),
        from: due,
        to: Some(due + 99),
    });
    let created = s
        .fire_schedules(&many, &moves, "scheduler", 5, at)
        .await
        .unwrap();
    assert_eq!(created.iter().flatten().count(), 1_201);
    assert_eq!(runs_of(s.as_ref(), &g).await.len(), 1_202);
    assert_eq!(
        s.task(&g.task.id).await.unwrap().next_fire_at,
        Some(due + 99)
    );
}

async fn deposed_leader_cannot_fire(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_300_000;
    let batch = |at: i64| [fire(&f, at, false)];
    s.fire_schedules(&batch(due), &[], "scheduler", 5, due)
        .await
        .expect("first leader");
    s.fire_schedules(&batch(due + 1), &[], "scheduler", 5, due)
        .await
        .expect("same leader again");
    s.fire_schedules(&batch(due + 2), &[], "scheduler", 9, due)
        .await
        .expect("a newer leader");
    let late_move = NextFire {
        task_id: f.task.id.clone(),
        from: 1_700_000_300_000,
        to: Some(42),
    };
    let late = s
        .fire_schedules(&batch(due + 3), &[late_move], "scheduler", 5, due)
        .await;
    assert!(
        matches!(late, Err(StoreError::Stale(_))),
        "deposed leader's write: {late:?}"
    );
    assert_eq!(
        s.task(&f.task.id).await.unwrap().next_fire_at,
        Some(1_700_000_300_000),
        "the refused batch moved no task"
    );
    s.fire_schedules(&batch(due + 3), &[], "other-lock", 1, due)
        .await
        .expect("locks are independent");
    assert_eq!(
        runs_of(s.as_ref(), &f).await.len(),
        4,
        "the refused write left no row"
    );
}

/// One leader's batches write side by side ([`ScheduleStore::fire_writers`] of them): they neither
/// block nor deadlock each other on the fence, and a newer leader's token still refuses every
/// batch of the old one written after it.
async fn one_leaders_batches_write_side_by_side(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let due = 1_700_000_400_000;
    s.fire_schedules(&[fire(&f, due, false)], &[], "scheduler", 5, due)
        .await
        .expect("the leader's first batch advances the fence");
    let writers = s.fire_writers().max(2) as i64;
    let batches = (1..=writers * 4).map(|i| {
        let s = s.clone();
        let fires = [fire(&f, due + i, false)];
        async move { s.fire_schedules(&fires, &[], "scheduler", 5, due).await }
    });
    for written in futures::future::join_all(batches).await {
        assert_eq!(written.expect("same leader, side by side").len(), 1);
    }
    // A newer leader advances the fence while the old one still writes: each old batch either
    // committed before the advance or is refused, and none is refused after it commits.
    let old = {
        let s = s.clone();
        let fires = [fire(&f, due + 100, false)];
        async move { s.fire_schedules(&fires, &[], "scheduler", 5, due).await }
    };
    let newer = [fire(&f, due + 101, false)];
    let new = s.fire_schedules(&newer, &[], "scheduler", 6, due);
    let (old, new) = tokio::join!(old, new);
    new.expect("the newer leader");
    assert!(
        matches!(old, Ok(_) | Err(StoreError::Stale(_))),
        "the old leader's racing batch: {old:?}"
    );
    let late = s
        .fire_schedules(&[fire(&f, due + 102, false)], &[], "scheduler", 5, due)
        .await;
    assert!(
        matches!(late, Err(StoreError::Stale(_))),
        "the old leader's batch after the advance: {late:?}"
    );
    let expected = 1 + writers * 4 + 1 + i64::from(old.is_ok());
    assert_eq!(runs_of(s.as_ref(), &f).await.len() as i64, expected);
}

async fn active_runs_of_tasks(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let g = fixture(s.as_ref(), retries(1)).await;
    let other = fixture(s.as_ref(), retries(1)).await;
    let queued = manual_run(s.as_ref(), &f).await;
    let running = manual_run(s.as_ref(), &f).await;
    s.mark_started(&running.id, 1, "lt_1", "w1", now_ms())
        .await
        .unwrap();
    let cancelled = manual_run(s.as_ref(), &f).await;
    s.request_cancel(&cancelled.id, now_ms()).await.unwrap();
    let held = manual_run(s.as_ref(), &g).await;
    s.defer_run(&held.id, HELD).await.unwrap();
    manual_run(s.as_ref(), &other).await;
    let ids = [f.task.id.clone(), g.task.id.clone()];
    let mut got: Vec<String> = s
        .active_runs(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    got.sort();
    let mut want = vec![queued.id, running.id, held.id];
    want.sort();
    assert_eq!(
        got, want,
        "queued, running and held runs of these tasks only"
    );
    assert!(s.active_runs(&[]).await.unwrap().is_empty());
}

/// A fixture whose task has a queue timeout of `timeout_s` (and `retry`).
async fn timed_fixture(s: &dyn Store, timeout_s: u64, retry: RetryPolicy) -> Fixture {
    let (p, v) = project(s, &format!("proj-{}", new_id())).await;
    let mut t = task(&p.id, &format!("task-{}", new_id()), retry);
    t.spec.queue_timeout_s = timeout_s;
    s.create_task(&t).await.unwrap();
    Fixture {
        task: t,
        version: v,
    }
}

async fn expired_ids(s: &dyn Store, at: i64) -> Vec<String> {
    let runs = s.expired_queued_runs(at, 100).await.unwrap();
    runs.into_iter().map(|r| r.id).collect()
}

async fn queued_runs_expire_after_their_queue_timeout(db: &TestDb) {
    let s = db.open().await;
    let timed = timed_fixture(s.as_ref(), 10, retries(2)).await;
    let untimed = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &timed).await;
    let never = manual_run(s.as_ref(), &untimed).await;
    let queued = run.queued_at;
    assert!(expired_ids(s.as_ref(), queued + 10_000).await.is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), queued + 10_001).await,
        std::slice::from_ref(&run.id)
    );
    assert!(
        !expired_ids(s.as_ref(), HELD * 2).await.contains(&never.id),
        "a run without a queue timeout never expires"
    );

    // Moving not_before moves the deadline; held runs do not expire while held.
    s.defer_run(&run.id, queued + 60_000).await.unwrap();
    assert!(expired_ids(s.as_ref(), queued + 70_000).await.is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), queued + 70_001).await,
        std::slice::from_ref(&run.id)
    );
    s.defer_run(&run.id, HELD).await.unwrap();
    assert!(expired_ids(s.as_ref(), queued + 1_000_000).await.is_empty());
    s.defer_run(&run.id, queued).await.unwrap();

    // A retry queues the run again: its deadline counts from the backoff's end.
    s.mark_started(&run.id, 1, "tok-1", "w1", queued + 1)
        .await
        .unwrap();
    assert!(
        expired_ids(s.as_ref(), queued + 10_001).await.is_empty(),
        "running"
    );
    let applied = s
        .finish_attempt(
            &run.id,
            1,
            Some("tok-1"),
            &outcome(RunState::Failed),
            queued + 2,
        )
        .await
        .unwrap();
    let FinishApplied::Requeued(r) = applied else {
        panic!("requeued: {applied:?}");
    };
    let not_before = r.not_before.unwrap();
    assert!(expired_ids(s.as_ref(), not_before + 10_000)
        .await
        .is_empty());
    assert_eq!(
        expired_ids(s.as_ref(), not_before + 10_001).await,
        std::slice::from_ref(&run.id)
    );
    s.expire_run(&run.id, 2, not_before + 10_001).await.unwrap();
    assert!(
        expired_ids(s.as_ref(), HELD * 2).await.is_empty(),
        "expired once"
    );
}

async fn expired_runs_come_longest_expired_first(db: &TestDb) {
    let s = db.open().await;
    let f = timed_fixture(s.as_ref(), 1, retries(1)).await;
    let mut runs = vec![];
    for _ in 0..4 {
        runs.push(manual_run(s.as_ref(), &f).await);
    }
    // Deadlines in the reverse of id order: the page follows the deadline.
    for (i, r) in runs.iter().enumerate() {
        s.defer_run(&r.id, 1_000_000 - i as i64).await.unwrap();
    }
    let page = s.expired_queued_runs(2_000_000, 3).await.unwrap();
    let got: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = runs.iter().rev().take(3).map(|r| r.id.as_str()).collect();
    assert_eq!(got, want);
}

async fn due_queued_jobs_page_by_key(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let mut want = vec![];
    for _ in 0..5 {
        want.push(manual_run(s.as_ref(), &f).await.id);
    }
    // Due earlier than the others although created last: it comes first.
    let first = manual_run(s.as_ref(), &f).await;
    s.defer_run(&first.id, 1_000).await.unwrap();
    want.insert(0, first.id);
    let held = manual_run(s.as_ref(), &f).await;
    s.defer_run(&held.id, HELD).await.unwrap();
    let mut got = vec![];
    let mut after: Option<QueuedKey> = None;
    let mut pages = 0;
    loop {
        let page = s
            .due_queued_jobs(now_ms() + 1000, 2, after.as_ref())
            .await
            .unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 2);
        got.extend(page.jobs.iter().map(|j| j.run_id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        got, want,
        "each due queued run once, longest due first, not the held one"
    );
    assert_eq!(
        pages, 4,
        "three full pages, then an empty one that reached the end"
    );
}

async fn create_tasks_is_all_or_none(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "bulk").await;
    let batch: Vec<Task> = (0..700)
        .map(|i| task(&p.id, &format!("bulk-{i}"), retries(1)))
        .collect();
    s.create_tasks(&batch).await.unwrap();
    let stored = s.task(&batch[650].id).await.unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.next_fire_at),
        ("bulk-650", batch[650].next_fire_at)
    );
    assert_eq!(s.list_tasks(1000, None).await.unwrap().items.len(), 700);
    // The last of 600 new ones takes a name in use: none of them is created.
    let mut again: Vec<Task> = (0..600)
        .map(|i| task(&p.id, &format!("again-{i}"), retries(1)))
        .collect();
    again[599].name = "bulk-3".into();
    assert_conflict(s.create_tasks(&again).await, "a batch with a name in use");
    assert_not_found(s.task(&again[0].id).await, "a task of the refused batch");
    assert_eq!(s.list_tasks(1000, None).await.unwrap().items.len(), 700);
}

async fn migration_fills_queue_deadlines(db: &TestDb) {
    // Queued runs written before migration 7 get their deadline from it: the column and its
    // indexes are taken away again, and migration 7 (and those after it) re-applied.
    let s = db.open().await;
    let timed = timed_fixture(s.as_ref(), 10, retries(1)).await;
    let untimed = fixture(s.as_ref(), retries(1)).await;
    let run = manual_run(s.as_ref(), &timed).await;
    let never = manual_run(s.as_ref(), &untimed).await;
    drop(s);
    for index in ["runs_queue_deadline", "runs_due"] {
        db.exec(&match db.engine {
            common::Engine::Mysql => format!("DROP INDEX {index} ON runs"),
            _ => format!("DROP INDEX {index}"),
        })
        .await;
    }
    db.exec("CREATE INDEX runs_state ON runs (state, not_before)")
        .await;
    db.exec("ALTER TABLE runs DROP COLUMN queue_deadline").await;
    // A queued row of an older writer without `not_before` is due from its `queued_at`.
    db.exec(&format!(
        "UPDATE runs SET not_before = NULL WHERE id = '{}'",
        never.id
    ))
    .await;
    // Migrations apply after the highest recorded one: 8 runs again too (it only rewrites cron
    // expressions written for the old reading, and there are none), and 9 after its columns
    // are taken away.
    for table in ["users", "tokens"] {
        db.exec(&format!("ALTER TABLE {table} DROP COLUMN generation"))
            .await;
    }
    db.exec("DELETE FROM schema_version WHERE version >= 7")
        .await;
    let s = db.open().await;
    assert_eq!(
        expired_ids(s.as_ref(), run.queued_at + 10_001).await,
        std::slice::from_ref(&run.id)
    );
    assert!(!expired_ids(s.as_ref(), HELD * 2).await.contains(&never.id));
    let due = s.due_queued_jobs(never.queued_at, 10, None).await.unwrap();
    let due: Vec<String> = due.jobs.into_iter().map(|j| j.run_id).collect();
    assert!(due.contains(&never.id), "{due:?}");
    assert_eq!(
        s.run(&never.id).await.unwrap().not_before,
        Some(never.queued_at)
    );
}

async fn migration_rewrites_quartz_weekdays(db: &TestDb) {
    // Cron expressions stored for the old reading are rewritten by migration 8 to what their
    // owners meant: the 6-field Quartz form keeps its days (weekday numbers shifted), the
    // 5-field crontab form keeps its numbers, now read as crontab reads them, with its next fire
    // worked out again; other schedules are left alone. The rows are planted, then migration 8
    // is applied again.
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "quartz").await;
    let cases: &[(Option<Schedule>, Option<&str>)] = &[
        (Some(cron("0 30 8 * * 2-6")), Some("0 30 8 * * 1-5")),
        (Some(cron("0 0 9 * * 7")), Some("0 0 9 * * 6")),
        (Some(cron("0 0 12 ? * MON")), Some("0 0 12 * * MON")),
        (Some(cron("0 0 9 * * 3/2")), Some("0 0 9 * * 2-6/2")),
        (Some(cron("0 9 1 * 2,Friday")), Some("0 9 1 * 2,FRI")),
        (Some(cron("30 8 * * 1-5")), None),
        (Some(cron("*/5 * * * *")), None),
        (Some(cron("0 9 * * MON-FRI")), None),
        (
            Some(Schedule::Interval {
                every_s: 60,
                start: None,
                end: None,
            }),
            None,
        ),
        (None, None),
    ];
    let mut tasks = vec![];
    for (i, (schedule, _)) in cases.iter().enumerate() {
        let mut t = task(&p.id, &format!("quartz-{i}"), retries(1));
        t.schedule = schedule.clone();
        // Sunday 2030-01-06 08:30 in Shanghai: where the old reading put `30 8 * * 1-5`'s
        // next fire (the other rows keep whatever they carry).
        if *schedule == Some(cron("30 8 * * 1-5")) {
            t.next_fire_at = Some(1_893_889_800_000);
        }
        s.create_task(&t).await.unwrap();
        tasks.push(t);
    }
    drop(s);
    // Applying resumes after the highest recorded migration, so 9 is taken away too.
    for table in ["users", "tokens"] {
        db.exec(&format!("ALTER TABLE {table} DROP COLUMN generation"))
            .await;
    }
    // 10 runs again too: it adds grants that exist already, which it skips.
    db.exec("DELETE FROM schema_version WHERE version >= 8")
        .await;
    // Opened twice: the second time, migration 8 is applied already and rewrites nothing.
    for _ in 0..2 {
        let s = db.open().await;
        for (t, (_, rewritten)) in tasks.iter().zip(cases) {
            let got = s.task(&t.id).await.unwrap();
            let want = match (rewritten, &t.schedule) {
                (Some(expr), Some(Schedule::Cron { timezone, .. })) => Some(Schedule::Cron {
                    cron: expr.to_string(),
                    timezone: timezone.clone(),
                }),
                _ => t.schedule.clone(),
            };
            assert_eq!(got.schedule, want, "{:?}", t.schedule);
            if t.next_fire_at == Some(1_893_889_800_000) {
                // Read as crontab reads it now: the next fire is a weekday at 08:30 there.
                use chrono::{Datelike, TimeZone, Timelike};
                let at = got.next_fire_at.expect("still scheduled");
                let local = chrono::Utc
                    .timestamp_millis_opt(at)
                    .unwrap()
                    .with_timezone(&chrono_tz::Asia::Shanghai);
                assert_eq!((local.hour(), local.minute()), (8, 30), "{local}");
                let day = local.weekday().number_from_monday();
                assert!((1..=5).contains(&day), "{local} is not Monday to Friday");
            } else if matches!(&t.schedule, Some(Schedule::Cron { cron, .. })
                if antcode_core::schedule::reads_differently(cron))
            {
                // Its stored next fire (in the past) was in the old numbering: the next one
                // after it in the new.
                let want = antcode_core::schedule::next_after(
                    got.schedule.as_ref().unwrap(),
                    t.next_fire_at.unwrap() - 1,
                    t.created_at,
                )
                .unwrap();
                assert_eq!(got.next_fire_at, want, "{:?}", t.schedule);
            } else {
                assert_eq!(got.next_fire_at, t.next_fire_at);
            }
            if let Some(s) = &got.schedule {
                antcode_core::schedule::validate(s).expect("a rewritten schedule is valid");
            }
        }
    }
}

fn cron(expr: &str) -> Schedule {
    Schedule::Cron {
        cron: expr.into(),
        timezone: "Asia/Shanghai".into(),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        conformance!(@engine sqlite, Sqlite, $($name),*);
        conformance!(@engine postgres, Postgres, $($name),*);
        conformance!(@engine mysql, Mysql, $($name),*);
    };
    (@engine $module:ident, $engine:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::common::TestDb::new(crate::common::Engine::$engine).await;
                    let body = super::$name(&db);
                    tokio::time::timeout(std::time::Duration::from_secs(60), body)
                        .await
                        .expect("test body took longer than 60 s");
                }
            )*
        }
    };
}

conformance!(
    users_crud,
    duplicate_username_conflicts,
    tokens_crud,
    user_changes_revoke_credentials,
    last_admin_is_kept,
    racing_demotions_leave_one_admin,
    projects_and_versions,
    project_pagination,
    tasks_crud,
    task_pagination,
    task_with_current_version_reads_both,
    due_tasks_selects_active_due_ones,
    runs_create_and_read,
    concurrent_creates_land_and_fail_alone,
    one_fire_per_due_time,
    fenced_start_and_finish,
    signal_and_lost_without_token,
    retry_requeues_after_backoff,
    cancel_is_never_requeued,
    interrupted_attempt_is_queued_again_without_using_a_retry,
    list_runs_filters_and_pages,
    history_and_audit,
    racing_starts_have_one_winner,
    racing_versions_get_distinct_numbers,
    cancel_racing_a_failure_is_never_requeued,
    racing_reports_apply_once,
    batched_reports_match_one_by_one,
    names_are_exact_and_text_is_unicode,
    migrations_are_idempotent,
    first_connects_racing_all_migrate,
    newer_schema_is_refused,
    fire_schedules_writes_one_batch,
    deposed_leader_cannot_fire,
    one_leaders_batches_write_side_by_side,
    active_runs_of_tasks,
    queued_runs_expire_after_their_queue_timeout,
    expired_runs_come_longest_expired_first,
    due_queued_jobs_page_by_key,
    create_tasks_is_all_or_none,
    migration_fills_queue_deadlines,
    migration_rewrites_quartz_weekdays,
);

/// Worker identity: one-time enrollment keys and the workers they are traded for.
mod worker_identity {
    use super::*;

    fn key(secret: &str, expires_at: i64) -> WorkerKey {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "eu-1".to_string());
        WorkerKey {
            id: new_id(),
            note: "for the lab box".into(),
            queues: vec!["default".into(), "gpu".into()],
            labels,
            created_by: "admin".into(),
            created_at: now_ms(),
            expires_at,
            used_at: None,
            used_by: None,
            key_hash: antcode_core::ids::token_hash(secret),
        }
    }

    fn worker(name: &str) -> WorkerRecord {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "claimed-by-worker".to_string());
        labels.insert("arch".to_string(), "x86_64".to_string());
        WorkerRecord {
            id: new_id(),
            name: name.into(),
            mode: "gateway".into(),
            queues: vec!["everything".into()],
            labels,
            api_key_hash: Some(antcode_core::ids::token_hash(&new_id())),
            cert_fingerprint: Some(antcode_core::ids::sha256_hex(name.as_bytes())),
            revoked: false,
            created_at: now_ms(),
            last_seen_at: None,
        }
    }

    async fn enrollment_keys_redeem_once(db: &TestDb) {
        let s = db.open().await;
        let k = key("ek_one", now_ms() + 60_000);
        s.create_worker_key(&k).await.unwrap();
        let listed = s.list_worker_keys().await.unwrap();
        assert_eq!(listed, vec![k.clone()]);

        let w = worker("lab-1");
        let stored = s
            .redeem_worker_key(&k.key_hash, &w, now_ms())
            .await
            .expect("first redemption");
        assert_eq!(
            stored.queues, k.queues,
            "queues come from the key, not the worker"
        );
        assert_eq!(stored.labels["zone"], "eu-1", "the key's labels win");
        assert_eq!(stored.labels["arch"], "x86_64");
        assert_eq!(s.worker_record(&w.id).await.unwrap(), stored);
        let used = s.list_worker_keys().await.unwrap().remove(0);
        assert_eq!(used.used_by.as_deref(), Some(w.id.as_str()));
        assert!(used.used_at.is_some());

        let again = s
            .redeem_worker_key(&k.key_hash, &worker("lab-2"), now_ms())
            .await;
        assert_conflict(again, "a used key");
        let unknown = s
            .redeem_worker_key(
                &antcode_core::ids::token_hash("nope"),
                &worker("x"),
                now_ms(),
            )
            .await;
        assert_not_found(unknown, "an unknown key");
        assert_eq!(
            s.list_worker_records().await.unwrap().len(),
            1,
            "refusals add no worker"
        );
    }

    async fn expired_keys_are_refused(db: &TestDb) {
        let s = db.open().await;
        let k = key("ek_old", now_ms() - 1);
        s.create_worker_key(&k).await.unwrap();
        let r = s
            .redeem_worker_key(&k.key_hash, &worker("late"), now_ms())
            .await;
        assert_stale(r, "an expired key");
        assert!(s.list_worker_records().await.unwrap().is_empty());
        assert_eq!(s.list_worker_keys().await.unwrap()[0].used_at, None);
    }

    async fn racing_redemptions_have_one_winner(db: &TestDb) {
        let s: Arc<dyn Store> = db.open().await;
        let k = key("ek_race", now_ms() + 60_000);
        s.create_worker_key(&k).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let s = s.clone();
            let hash = k.key_hash.clone();
            tasks.push(tokio::spawn(async move {
                s.redeem_worker_key(&hash, &worker(&format!("racer-{i}")), now_ms())
                    .await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => wins += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("a losing redemption must be a Conflict, got {e:?}"),
            }
        }
        assert_eq!(wins, 1);
        assert_eq!(s.list_worker_records().await.unwrap().len(), 1);
    }

    async fn workers_by_credential_and_revoke(db: &TestDb) {
        let s = db.open().await;
        let k = key("ek_creds", now_ms() + 60_000);
        s.create_worker_key(&k).await.unwrap();
        let w = worker("creds");
        s.redeem_worker_key(&k.key_hash, &w, now_ms())
            .await
            .unwrap();
        let hash = w.api_key_hash.clone().unwrap();
        let fp = w.cert_fingerprint.clone().unwrap();
        assert_eq!(s.worker_by_api_key(&hash).await.unwrap().id, w.id);
        assert_eq!(s.worker_by_fingerprint(&fp).await.unwrap().id, w.id);
        assert_not_found(s.worker_by_api_key("0000").await, "unknown api key");
        assert_not_found(s.worker_by_fingerprint("0000").await, "unknown fingerprint");
        let revoked = s.revoke_worker(&w.id).await.unwrap();
        assert!(revoked.revoked);
        assert!(s.worker_by_api_key(&hash).await.unwrap().revoked);
        assert!(s.revoke_worker(&w.id).await.unwrap().revoked, "idempotent");
        assert_not_found(
            s.revoke_worker(&new_id()).await,
            "revoking an unknown worker",
        );
    }

    conformance!(
        enrollment_keys_redeem_once,
        expired_keys_are_refused,
        racing_redemptions_have_one_winner,
        workers_by_credential_and_revoke,
    );
}

/// Task secrets: sealed rows, and runs that carry secret names but never values.
mod task_secrets {
    use super::*;
    use antcode_core::broker::memory::MemoryBroker;
    use antcode_core::broker::{Broker, LeaseRequest};
    use antcode_core::dispatch::{self, PublishError, ResolveError};
    use antcode_core::secrets::{
        self, SealedSecret, SecretBox, SecretError, SecretGrant, SecretMeta,
    };
    use sqlx::Row;

    const VALUE: &str = "s3cr3t-válue-🔑-4242";

    fn sealed(sbox: &SecretBox, name: &str, value: &str, at: i64, by: &str) -> SealedSecret {
        SealedSecret {
            meta: SecretMeta {
                name: name.into(),
                created_at: at,
                updated_at: at,
                updated_by: by.into(),
            },
            sealed: sbox.seal(name, value).unwrap(),
        }
    }

    /// Every text cell of `sql`'s rows, read straight from the engine (MySQL hands TEXT over as
    /// bytes through sqlx `Any`).
    async fn raw_texts(db: &TestDb, sql: &str) -> Vec<String> {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        let mut out = vec![];
        for row in &rows {
            for i in 0..row.len() {
                if let Ok(Some(s)) = row.try_get::<Option<String>, _>(i) {
                    out.push(s);
                } else if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                    out.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
        }
        out
    }

    async fn secrets_crud(db: &TestDb) {
        let s = db.open().await;
        let sbox = SecretBox::from_passphrase("conformance key");
        assert!(s.list_secrets().await.unwrap().is_empty());
        assert_not_found(s.secret("API_TOKEN").await, "unknown secret");

        let first = sealed(&sbox, "API_TOKEN", VALUE, 1_700_000_000_000, "alice");
        assert!(s.put_secret(&first).await.unwrap(), "the first put creates");
        assert_eq!(s.secret("API_TOKEN").await.unwrap(), first);
        assert_eq!(sbox.open("API_TOKEN", &first.sealed).unwrap(), VALUE);

        // Replacing keeps created_at, takes the new value, time and author.
        let mut second = sealed(&sbox, "API_TOKEN", "rotated", 1_700_000_000_999, "bob");
        second.meta.created_at = 1_800_000_000_000;
        assert!(
            !s.put_secret(&second).await.unwrap(),
            "a second put updates"
        );
        let now = s.secret("API_TOKEN").await.unwrap();
        assert_eq!(now.meta.created_at, 1_700_000_000_000);
        assert_eq!(now.meta.updated_at, 1_700_000_000_999);
        assert_eq!(now.meta.updated_by, "bob");
        assert_eq!(sbox.open("API_TOKEN", &now.sealed).unwrap(), "rotated");

        // Names are exact (no case folding), and a 64 KiB value survives every engine.
        let big = "x".repeat(secrets::MAX_VALUE_LEN);
        s.put_secret(&sealed(&sbox, "API_TOKEN_2", &big, 1, "alice"))
            .await
            .unwrap();
        s.put_secret(&sealed(&sbox, "A", "a", 1, "alice"))
            .await
            .unwrap();
        assert_not_found(s.secret("api_token").await, "another case is another name");
        let big_back = s.secret("API_TOKEN_2").await.unwrap();
        assert_eq!(sbox.open("API_TOKEN_2", &big_back.sealed).unwrap(), big);

        let names: Vec<String> = s
            .list_secrets()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["A", "API_TOKEN", "API_TOKEN_2"]);

        s.delete_secret("A").await.unwrap();
        assert_not_found(s.secret("A").await, "deleted secret");
        assert_not_found(s.delete_secret("A").await, "deleting twice");
        assert_eq!(s.list_secrets().await.unwrap().len(), 2);

        for cell in raw_texts(db, "SELECT * FROM secrets").await {
            assert!(
                !cell.contains("rotated") && !cell.contains(&big),
                "plaintext at rest"
            );
        }
    }

    async fn racing_puts_leave_one_row(db: &TestDb) {
        let s = db.open().await;
        let sbox = Arc::new(SecretBox::from_passphrase("k"));
        let mut tasks = vec![];
        for i in 0..8 {
            let (s, sbox) = (s.clone(), sbox.clone());
            tasks.push(tokio::spawn(async move {
                s.put_secret(&sealed(&sbox, "RACE", &format!("v{i}"), i, "x"))
                    .await
            }));
        }
        let mut created = 0;
        for t in tasks {
            // A racing insert may see no row and still lose the insert to the upsert: both
            // report "created", which is harmless; what matters is that none fails.
            if t.await.unwrap().expect("a racing put never fails") {
                created += 1;
            }
        }
        assert!(created >= 1);
        assert_eq!(s.list_secrets().await.unwrap().len(), 1);
        let v = sbox
            .open("RACE", &s.secret("RACE").await.unwrap().sealed)
            .unwrap();
        assert!(v.starts_with('v'));
    }

    fn grant(secret: &str, project_id: Option<&str>) -> SecretGrant {
        SecretGrant {
            secret: secret.into(),
            project_id: project_id.map(str::to_string),
            granted_at: 1_700_000_000_000,
            granted_by: "admin".into(),
        }
    }

    async fn lease_one(b: &dyn Broker) -> Job {
        let req = LeaseRequest {
            worker_id: "w".into(),
            queues: vec!["default".into()],
            max: 1,
            ttl: std::time::Duration::from_secs(30),
        };
        let mut got = b
            .lease(&req, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "one job published");
        got.remove(0).job
    }

    async fn runs_carry_names_and_publish_resolves_values(db: &TestDb) {
        let s = db.open().await;
        let sbox = SecretBox::from_passphrase("conformance key");
        // The fixture task declares DB_PASSWORD.
        let f = fixture(s.as_ref(), retries(1)).await;
        s.put_secret(&sealed(&sbox, "DB_PASSWORD", VALUE, 1, "admin"))
            .await
            .unwrap();
        let granted = [grant("DB_PASSWORD", Some(&f.task.project_id))];
        s.set_secret_grants("DB_PASSWORD", &granted).await.unwrap();
        let (run, job) = s
            .create_run(&NewRun {
                task: f.task.clone(),
                version: f.version.clone(),
                trigger: "manual".into(),
                due_at: None,
            })
            .await
            .unwrap();
        assert_eq!(job.secrets, ["DB_PASSWORD"]);
        assert!(
            job.secret_env.is_empty(),
            "create_run never resolves values"
        );
        let stored = s
            .due_queued_jobs(now_ms() + 1000, 10, None)
            .await
            .unwrap()
            .jobs;
        assert_eq!(
            stored,
            std::slice::from_ref(&job),
            "SQL keeps the names only"
        );

        let broker = MemoryBroker::new();
        assert!(
            dispatch::publish_job(s.as_ref(), &broker, Some(&sbox), &job)
                .await
                .unwrap()
        );
        let leased = lease_one(&broker).await;
        assert_eq!(
            leased.secret_env.0.get("DB_PASSWORD").map(String::as_str),
            Some(VALUE)
        );
        assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Queued);

        for cell in raw_texts(db, "SELECT * FROM runs").await {
            assert!(
                !cell.contains(VALUE),
                "a secret value reached the runs table"
            );
        }
        for cell in raw_texts(db, "SELECT * FROM secrets").await {
            assert!(!cell.contains(VALUE), "a secret value is stored in clear");
        }
    }

    async fn unresolvable_secrets_fail_the_run(db: &TestDb) {
        let s = db.open().await;
        let sbox = SecretBox::from_passphrase("right key");
        let broker = MemoryBroker::new();
        let f = fixture(s.as_ref(), retries(1)).await;
        let new_run = || NewRun {
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "manual".into(),
            due_at: None,
        };

        // Missing secret.
        let (run, job) = s.create_run(&new_run()).await.unwrap();
        let err = dispatch::publish_job(s.as_ref(), &broker, Some(&sbox), &job).await;
        assert!(
            matches!(err, Err(PublishError::RunFailed(ResolveError::Missing(ref n))) if n == "DB_PASSWORD"),
            "{err:?}"
        );
        let failed = s.run(&run.id).await.unwrap();
        assert_eq!(failed.state, RunState::Failed);
        assert!(failed.error.unwrap_or_default().contains("DB_PASSWORD"));

        // Sealed under another key (say the scheduler runs with a different ANTCODE_SECRET_KEY).
        let other = SecretBox::from_passphrase("wrong key");
        s.put_secret(&sealed(&other, "DB_PASSWORD", VALUE, 1, "admin"))
            .await
            .unwrap();
        s.set_secret_grants("DB_PASSWORD", &[grant("DB_PASSWORD", None)])
            .await
            .unwrap();
        let (run, job) = s.create_run(&new_run()).await.unwrap();
        let err = dispatch::publish_job(s.as_ref(), &broker, Some(&sbox), &job).await;
        assert!(
            matches!(
                err,
                Err(PublishError::RunFailed(ResolveError::Sealed(
                    SecretError::Open(_)
                )))
            ),
            "{err:?}"
        );
        assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Failed);

        // No key at all.
        let (run, job) = s.create_run(&new_run()).await.unwrap();
        let err = dispatch::publish_job(s.as_ref(), &broker, None, &job).await;
        assert!(
            matches!(err, Err(PublishError::RunFailed(ResolveError::NoKey))),
            "{err:?}"
        );
        assert_eq!(s.run(&run.id).await.unwrap().state, RunState::Failed);

        let depths = broker.queue_depths().await.unwrap();
        assert!(
            depths.iter().all(|(_, n)| *n == 0),
            "nothing was published: {depths:?}"
        );

        // A task without secrets needs no key.
        let mut plain = f.task.clone();
        plain.spec.secrets.clear();
        let (_, job) = s
            .create_run(&NewRun {
                task: plain,
                ..new_run()
            })
            .await
            .unwrap();
        assert!(dispatch::publish_job(s.as_ref(), &broker, None, &job)
            .await
            .unwrap());
    }

    async fn grants_gate_what_a_run_reads(db: &TestDb) {
        let s = db.open().await;
        let sbox = SecretBox::from_passphrase("k");
        let broker = MemoryBroker::new();
        let f = fixture(s.as_ref(), retries(1)).await;
        let other = fixture(s.as_ref(), retries(1)).await;
        let project = f.task.project_id.as_str();
        s.put_secret(&sealed(&sbox, "DB_PASSWORD", VALUE, 1, "admin"))
            .await
            .unwrap();
        let publish = || async {
            let (run, job) = s
                .create_run(&NewRun {
                    task: f.task.clone(),
                    version: f.version.clone(),
                    trigger: "manual".into(),
                    due_at: None,
                })
                .await
                .unwrap();
            let published = dispatch::publish_job(s.as_ref(), &broker, Some(&sbox), &job).await;
            (s.run(&run.id).await.unwrap(), published)
        };
        let not_granted = |r: &Result<bool, PublishError>| {
            matches!(r, Err(PublishError::RunFailed(ResolveError::NotGranted(n, p)))
                if n == "DB_PASSWORD" && p == project)
        };

        // No grant: the run fails saying so, and nothing reaches the broker.
        assert!(!s.secret_for("DB_PASSWORD", project).await.unwrap().1);
        let (run, published) = publish().await;
        assert!(not_granted(&published), "{published:?}");
        assert_eq!(run.state, RunState::Failed);
        assert!(run.error.unwrap().contains("not granted"));

        // Granted to another project only, then to this one.
        let theirs = grant("DB_PASSWORD", Some(&other.task.project_id));
        s.set_secret_grants("DB_PASSWORD", std::slice::from_ref(&theirs))
            .await
            .unwrap();
        assert!(not_granted(&publish().await.1));
        let both = [theirs.clone(), grant("DB_PASSWORD", Some(project))];
        s.set_secret_grants("DB_PASSWORD", &both).await.unwrap();
        assert!(publish().await.1.unwrap());
        assert_eq!(lease_one(&broker).await.secret_env.0["DB_PASSWORD"], VALUE);
        let mut listed = s.secret_grants("DB_PASSWORD").await.unwrap();
        listed.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        let mut want = both.to_vec();
        want.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        assert_eq!(listed, want);

        // Revoked: the next run does not get the value.
        s.set_secret_grants("DB_PASSWORD", &[]).await.unwrap();
        assert!(not_granted(&publish().await.1));

        // Granted to every project: listed first.
        let all = grant("DB_PASSWORD", None);
        s.set_secret_grants("DB_PASSWORD", &[theirs.clone(), all.clone()])
            .await
            .unwrap();
        assert_eq!(s.secret_grants("DB_PASSWORD").await.unwrap(), [all, theirs]);
        assert!(publish().await.1.unwrap());

        // Deleting the secret deletes its grants: one made again under the name starts bare.
        s.delete_secret("DB_PASSWORD").await.unwrap();
        assert!(s.secret_grants("DB_PASSWORD").await.unwrap().is_empty());
        assert_not_found(s.secret_for("DB_PASSWORD", project).await, "deleted");
    }

    async fn migration_grants_declared_secrets(db: &TestDb) {
        // Before grants, any task could declare any secret: migration 10 grants each secret a
        // task declares to that task's project, so those tasks keep running. The table is
        // dropped and migration 10 applied again, twice.
        let s = db.open().await;
        let a = fixture(s.as_ref(), retries(1)).await;
        let b = fixture(s.as_ref(), retries(1)).await;
        let mut t = task(&b.task.project_id, "two-secrets", retries(1));
        t.spec.secrets = vec!["DB_PASSWORD".into(), "API_TOKEN".into()];
        s.create_task(&t).await.unwrap();
        let none = fixture(s.as_ref(), retries(1)).await;
        let mut bare = none.task.clone();
        bare.spec.secrets.clear();
        s.update_task(&bare).await.unwrap();
        drop(s);
        db.exec("DROP TABLE secret_grants").await;
        db.exec("DELETE FROM schema_version WHERE version = 10")
            .await;
        for _ in 0..2 {
            let s = db.open().await;
            let mut got: Vec<(String, Option<String>)> = vec![];
            for name in ["API_TOKEN", "DB_PASSWORD"] {
                for g in s.secret_grants(name).await.unwrap() {
                    assert_eq!(g.granted_by, "migration 10");
                    got.push((g.secret, g.project_id));
                }
            }
            got.sort();
            let mut want = vec![
                ("API_TOKEN".to_string(), Some(b.task.project_id.clone())),
                ("DB_PASSWORD".to_string(), Some(a.task.project_id.clone())),
                ("DB_PASSWORD".to_string(), Some(b.task.project_id.clone())),
            ];
            want.sort();
            assert_eq!(got, want);
        }
    }

    conformance!(
        grants_gate_what_a_run_reads,
        migration_grants_declared_secrets,
        secrets_crud,
        racing_puts_leave_one_row,
        runs_carry_names_and_publish_resolves_values,
        unresolvable_secrets_fail_the_run,
    );
}
