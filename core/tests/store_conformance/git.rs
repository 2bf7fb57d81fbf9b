//! Git projects: the source kept with the project, synced versions made only when the files
//! change (also when two syncs race), the sync status, the push secret and credentials.

use super::*;
use antcode_core::git::*;

fn source() -> GitSource {
    serde_json::from_value(serde_json::json!({
        "url": "https://git.example.com/team/etl.git", "ref": "main", "subdir": "jobs",
        "credential": "deploy", "interval_s": 300
    }))
    .unwrap()
}

fn synced(project_id: &str, commit: &str, tree: &str) -> ProjectVersion {
    let mut v = version(project_id, 0, None);
    v.origin = Some(GitOrigin {
        url: "https://git.example.com/team/etl.git".into(),
        reference: "main".into(),
        commit: commit.into(),
        author: "Ann <ann@example.com>".into(),
        message: "change the job".into(),
        committed_at: 1_700_000_000_000,
        tree: tree.into(),
    });
    v
}

async fn git_source_and_synced_versions(db: &TestDb) {
    let s = db.open().await;
    let (mut p, _) = project(s.as_ref(), "from-git").await;
    assert!(
        s.git_projects().await.unwrap().is_empty(),
        "uploads are not git projects"
    );
    p.source = Some(source());
    s.update_project(&p).await.unwrap();
    let got = s.project(&p.id).await.unwrap();
    assert_eq!(got.source, Some(source()));
    assert_eq!(got.sync, None);
    let listed = s.git_projects().await.unwrap();
    assert_eq!(listed.iter().map(|p| &p.id).collect::<Vec<_>>(), [&p.id]);

    // Version 1 is an upload (no origin): the first sync always makes a version.
    let n = s
        .add_synced_version(&synced(&p.id, "c1", "t1"))
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    // A new commit with the same tree: nothing new.
    let n = s
        .add_synced_version(&synced(&p.id, "c2", "t1"))
        .await
        .unwrap();
    assert_eq!(n, None);
    assert_eq!(s.list_versions(&p.id).await.unwrap().len(), 2);
    // The same tree with other files (its submodules fetched this time) is a new version.
    let mut with_submodule = synced(&p.id, "c2", "t1");
    with_submodule.files.push("vendor/lib/util.py".into());
    assert_eq!(
        s.add_synced_version(&with_submodule).await.unwrap(),
        Some(3)
    );
    assert_eq!(s.add_synced_version(&with_submodule).await.unwrap(), None);
    // The same tree run differently is a new version.
    let mut other_entry = with_submodule.clone();
    other_entry.entrypoint = "other.py".into();
    assert_eq!(s.add_synced_version(&other_entry).await.unwrap(), Some(4));
    let n = s
        .add_synced_version(&synced(&p.id, "c3", "t2"))
        .await
        .unwrap();
    assert_eq!(n, Some(5));
    let got = s.version(&p.id, 5).await.unwrap();
    assert_eq!(got.origin, synced(&p.id, "c3", "t2").origin);
    assert_eq!(s.project(&p.id).await.unwrap().current_version, 5);
    // A rollback stays: the next sync of the same tree compares with the latest version.
    p.current_version = 2;
    p.updated_at += 1;
    s.update_project(&p).await.unwrap();
    assert_eq!(
        s.add_synced_version(&synced(&p.id, "c3", "t2"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.project(&p.id).await.unwrap().current_version, 2);
    assert_not_found(
        s.add_synced_version(&synced(&new_id(), "c1", "t1")).await,
        "a synced version of an unknown project",
    );

    let status = SyncStatus {
        at: 1_700_000_000_123,
        outcome: SyncOutcome::Failed,
        commit: None,
        version: None,
        error: Some("ref \"main\" is neither a branch nor a tag".into()),
        trigger: "interval".into(),
    };
    s.record_sync(&p.id, &status).await.unwrap();
    let got = s.project(&p.id).await.unwrap();
    assert_eq!(got.sync, Some(status.clone()));
    assert_eq!(
        got.source,
        Some(source()),
        "recording a sync keeps the source"
    );
    // A later edit of the project keeps the sync status.
    p.description = "edited".into();
    s.update_project(&p).await.unwrap();
    assert_eq!(s.project(&p.id).await.unwrap().sync, Some(status.clone()));
    assert_not_found(
        s.record_sync(&new_id(), &status).await,
        "sync of unknown project",
    );

    assert_eq!(s.hook_secret(&p.id).await.unwrap(), None);
    s.set_hook_secret(&p.id, Some("sealed-secret"))
        .await
        .unwrap();
    assert_eq!(
        s.hook_secret(&p.id).await.unwrap().as_deref(),
        Some("sealed-secret")
    );
    s.set_hook_secret(&p.id, None).await.unwrap();
    assert_eq!(s.hook_secret(&p.id).await.unwrap(), None);
    assert_not_found(s.hook_secret(&new_id()).await, "secret of unknown project");
}

async fn racing_syncs_make_one_version(db: &TestDb) {
    let s = db.open().await;
    let (p, _) = project(s.as_ref(), "raced").await;
    let mut joins = vec![];
    for _ in 0..6 {
        let s = s.clone();
        let v = synced(&p.id, "c9", "t9");
        joins.push(tokio::spawn(async move { s.add_synced_version(&v).await }));
    }
    let mut made = vec![];
    for j in joins {
        if let Some(n) = j.await.unwrap().unwrap() {
            made.push(n);
        }
    }
    assert_eq!(made, [2], "six syncs of one tree made one version");
    assert_eq!(s.list_versions(&p.id).await.unwrap().len(), 2);
}

async fn git_credentials_crud(db: &TestDb) {
    let s = db.open().await;
    let meta = |name: &str, kind, at| GitCredentialMeta {
        name: name.into(),
        kind,
        username: if kind == GitCredentialKind::Token {
            "bot".into()
        } else {
            String::new()
        },
        known_hosts: if kind == GitCredentialKind::SshKey {
            "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB".into()
        } else {
            String::new()
        },
        created_at: at,
        updated_at: at,
        updated_by: "admin".into(),
    };
    let token = SealedGitCredential {
        meta: meta("deploy", GitCredentialKind::Token, 10),
        sealed: "sealed-token".into(),
    };
    assert!(s.put_git_credential(&token).await.unwrap(), "created");
    let key = SealedGitCredential {
        meta: meta("a-key", GitCredentialKind::SshKey, 11),
        sealed: "sealed-key".into(),
    };
    assert!(s.put_git_credential(&key).await.unwrap());
    let got = s.git_credential("deploy").await.unwrap();
    assert_eq!(
        (got.meta, got.sealed.as_str()),
        (token.meta.clone(), "sealed-token")
    );
    let names: Vec<_> = s
        .list_git_credentials()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["a-key", "deploy"]);

    let mut replaced = key.clone();
    replaced.meta.name = "deploy".into();
    replaced.meta.updated_at = 20;
    replaced.sealed = "sealed-key-2".into();
    assert!(
        !s.put_git_credential(&replaced).await.unwrap(),
        "replaced, not created"
    );
    let got = s.git_credential("deploy").await.unwrap();
    assert_eq!(got.meta.kind, GitCredentialKind::SshKey);
    assert_eq!(got.sealed, "sealed-key-2");
    assert_eq!(got.meta.updated_at, 20);

    s.delete_git_credential("deploy").await.unwrap();
    assert_not_found(s.git_credential("deploy").await, "deleted credential");
    assert_not_found(s.delete_git_credential("deploy").await, "delete twice");
}

conformance!(
    git_source_and_synced_versions,
    racing_syncs_make_one_version,
    git_credentials_crud,
);
