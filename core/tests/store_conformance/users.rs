//! Users and tokens: CRUD, credential revocation on change, and the last enabled admin.

use super::*;

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

conformance!(
    users_crud,
    duplicate_username_conflicts,
    tokens_crud,
    user_changes_revoke_credentials,
    last_admin_is_kept,
    racing_demotions_leave_one_admin,
    names_are_exact_and_text_is_unicode,
);
