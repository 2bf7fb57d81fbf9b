//! Projects and their versions: CRUD, pages, and racing uploads numbered apart.

use super::*;

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

    // The longest entrypoint the API takes fits every engine's column, in characters.
    let (holder, _) = project(s.as_ref(), "long-entrypoint").await;
    let mut long = version(&holder.id, 0, None);
    long.entrypoint = "é".repeat(antcode_core::git::MAX_ENTRYPOINT_CHARS);
    let n = s.add_version(&long).await.unwrap();
    assert_eq!(
        s.version(&holder.id, n).await.unwrap().entrypoint,
        long.entrypoint
    );

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

conformance!(
    projects_and_versions,
    project_pagination,
    racing_versions_get_distinct_numbers,
);
