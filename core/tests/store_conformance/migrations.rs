//! Connecting and migrating: idempotent, racing and refused migrations, data rewrites, and
//! connection settings from the URL.

use super::*;

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
    undo_migrations_from_11(db).await;
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
    undo_migrations_from_11(db).await;
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

conformance!(
    migrations_are_idempotent,
    newer_schema_is_refused,
    first_connects_racing_all_migrate,
    migration_fills_queue_deadlines,
    migration_rewrites_quartz_weekdays,
);
