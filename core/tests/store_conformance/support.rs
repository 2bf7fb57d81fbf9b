//! Fixtures and assertions every module of the suite shares.

use super::*;

pub fn user(name: &str, role: Role) -> User {
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

pub fn token(user_id: &str, kind: &str, name: &str) -> ApiToken {
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

pub fn version(project_id: &str, n: i64, python: Option<&str>) -> ProjectVersion {
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
        origin: None,
    }
}

pub async fn project(store: &dyn Store, name: &str) -> (Project, ProjectVersion) {
    let p = Project {
        id: new_id(),
        name: name.into(),
        description: format!("the {name} project"),
        current_version: 1,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
        source: None,
        sync: None,
    };
    let v = version(&p.id, 1, Some("3.11"));
    store.create_project(&p, &v).await.expect("create project");
    (p, v)
}

pub fn task(project_id: &str, name: &str, retry: RetryPolicy) -> Task {
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
            retention: Some(antcode_core::retention::TaskRetention {
                days: Some(7),
                keep_last: None,
            }),
            params: Some(
                serde_json::from_value(serde_json::json!({
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 40}},
                    "required": ["city"]
                }))
                .unwrap(),
            ),
            schedule_params: serde_json::json!({"city": "Bern"}).as_object().cloned(),
            triggers_per_min: Some(600),
            on_success: vec![],
            on_failure: vec![],
            on_complete: vec![],
            needs: vec![],
            prefer: None,
            max_concurrency: Some(4),
            concurrency: Some(antcode_core::model::ConcurrencyKey {
                key: "site:example.com".into(),
                limit: 2,
            }),
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
pub struct Fixture {
    pub task: Task,
    pub version: ProjectVersion,
}

pub async fn fixture(store: &dyn Store, retry: RetryPolicy) -> Fixture {
    let (p, v) = project(store, &format!("proj-{}", new_id())).await;
    let t = task(&p.id, &format!("task-{}", new_id()), retry);
    store.create_task(&t).await.expect("create task");
    Fixture {
        task: t,
        version: v,
    }
}

pub fn retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_s: 30,
        max_backoff_s: 600,
    }
}

/// A manual run of `task` at `version` with nothing more.
pub fn plain_run(task: &Task, version: &ProjectVersion) -> NewRun {
    NewRun::new(task.clone(), version.clone(), "manual")
}

pub async fn manual_run(store: &dyn Store, f: &Fixture) -> Run {
    let (run, job) = store
        .create_run(&NewRun {
            trace: None,
            task: f.task.clone(),
            version: f.version.clone(),
            trigger: "manual".into(),
            due_at: None,
            // Not empty, so a store that dropped them would show.
            params: Some(serde_json::json!({"city": "Zürich", "days": 3})),
            overrides: Some(RunOverrides {
                args: Some(vec!["--fast".into()]),
                env: [("MODE".to_string(), "x".to_string())].into(),
            }),
            key: None,
            parent: None,
        })
        .await
        .expect("create run");
    let stored = store.run(&run.id).await.expect("read the new run");
    assert_eq!(run, stored, "create_run returns the run as stored");
    assert_eq!(
        job.args,
        ["--fast"],
        "the overrides replace the task's args"
    );
    assert_eq!(job.env.get("MODE").map(String::as_str), Some("x"));
    run
}

pub fn outcome(state: RunState) -> Outcome {
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

pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::NotFound) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

pub fn assert_stale<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Stale(_)) => {}
        other => panic!("{what}: expected Stale, got {other:?}"),
    }
}

/// The fields a fenced write may change, for "nothing changed" checks.
pub fn snapshot(r: &Run) -> String {
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

/// A fixture whose task has a queue timeout of `timeout_s` (and `retry`).
pub async fn timed_fixture(s: &dyn Store, timeout_s: u64, retry: RetryPolicy) -> Fixture {
    let (p, v) = project(s, &format!("proj-{}", new_id())).await;
    let mut t = task(&p.id, &format!("task-{}", new_id()), retry);
    t.spec.queue_timeout_s = timeout_s;
    s.create_task(&t).await.unwrap();
    Fixture {
        task: t,
        version: v,
    }
}

pub async fn expired_ids(s: &dyn Store, at: i64) -> Vec<String> {
    let runs = s.expired_queued_runs(at, 100).await.unwrap();
    runs.into_iter().map(|r| r.id).collect()
}

/// Takes migrations 11 to 17 away again, so a test can re-apply the migrations before them.
pub async fn undo_migrations_from_11(db: &TestDb) {
    for (index, table) in [
        ("runs_closed", "runs"),
        ("runs_task_closed", "runs"),
        ("audit_at", "audit"),
        ("runs_group", "runs"),
        ("runs_queued", "runs"),
        ("runs_task_queued", "runs"),
    ] {
        db.exec(&match db.engine {
            antcode_testkit::db::Engine::Mysql => format!("DROP INDEX {index} ON {table}"),
            _ => format!("DROP INDEX {index}"),
        })
        .await;
    }
    for column in [
        "closed_at",
        "pinned",
        "params",
        "overrides",
        "group_id",
        "parent_id",
        "depth",
    ] {
        db.exec(&format!("ALTER TABLE runs DROP COLUMN {column}"))
            .await;
    }
    for table in [
        "alert_channels",
        "alert_rules",
        "alert_deliveries",
        "settings",
        "hooks",
        "run_keys",
        "task_links",
        "git_credentials",
    ] {
        db.exec(&format!("DROP TABLE {table}")).await;
    }
    for (table, column) in [
        ("projects", "source"),
        ("projects", "sync_status"),
        ("projects", "hook_secret"),
        ("project_versions", "origin"),
    ] {
        db.exec(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
            .await;
    }
}
