//! Task secrets: sealed rows, and runs that carry secret names but never values.

use super::*;
use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::{prelude::*, Broker, LeaseRequest};
use antcode_core::dispatch::{self, PublishError, ResolveError};
use antcode_core::secrets::{self, SealedSecret, SecretBox, SecretError, SecretGrant, SecretMeta};
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
        // The fixture task requires this label, and its project Python 3.11.
        labels: [("team", "data"), ("python3.11", "yes")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
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
    let (run, job) = s.create_run(&plain_run(&f.task, &f.version)).await.unwrap();
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
    let new_run = || plain_run(&f.task, &f.version);

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
        let (run, job) = s.create_run(&plain_run(&f.task, &f.version)).await.unwrap();
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
    undo_migrations_from_11(db).await;
    db.exec("DELETE FROM schema_version WHERE version >= 10")
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
