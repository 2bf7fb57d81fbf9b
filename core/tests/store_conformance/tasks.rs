//! Tasks: CRUD, pages, all-or-none batches, and a task read with its current version.

use super::*;

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

conformance!(
    tasks_crud,
    task_with_current_version_reads_both,
    task_pagination,
    create_tasks_is_all_or_none,
);
