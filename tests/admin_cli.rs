//! `antcode admin promote` and `antcode admin reset-password` on the host: they change the
//! configured database (`--data-dir` like `up`, `--database-url` like `control`), revoke the
//! user's credentials, are audited as `host:<os user>`, and read the new password from
//! `ANTCODE_NEW_PASSWORD` or stdin, never from the command line.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use antcode_core::ids::{new_id, token_hash};
use antcode_core::model::{ApiToken, Role, User};

const BIN: &str = env!("CARGO_BIN_EXE_antcode");

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

fn session(user_id: &str) -> ApiToken {
    ApiToken {
        id: new_id(),
        user_id: user_id.into(),
        name: "login".into(),
        kind: "session".into(),
        scopes: vec!["*".into()],
        created_at: 1_700_000_000_000,
        expires_at: 4_000_000_000_000,
        token_hash: token_hash(&new_id()),
        generation: 0,
    }
}

fn admin(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("admin")
        .args(args)
        .env_remove("ANTCODE_DATABASE_URL")
        .env_remove("ANTCODE_NEW_PASSWORD")
        .env_remove("ANTCODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn promote_and_reset_password_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let url = format!("sqlite://{data_dir}/antcode.db");
    let store = antcode_core::seams::open_store(&url).await.unwrap();
    // The only admin is disabled: nobody can log in to fix anything.
    let root = user("root", Role::Admin);
    let bob = user("bob", Role::Viewer);
    store.create_user(&root).await.unwrap();
    store.create_user(&bob).await.unwrap();
    let bob_session = session(&bob.id);
    store.create_token(&bob_session).await.unwrap();

    let out = admin(&["promote", "bob", "--data-dir", &data_dir], &[], None);
    assert!(out.status.success(), "{out:?}");
    let got = store.user(&bob.id).await.unwrap();
    assert_eq!((got.role, got.disabled), (Role::Admin, false));
    assert!(
        store.token_by_hash(&bob_session.token_hash).await.is_err(),
        "bob's session survived his promotion"
    );

    // From the environment, against --database-url.
    let env = [("ANTCODE_NEW_PASSWORD", "fresh-password-1")];
    let out = admin(
        &["reset-password", "root", "--database-url", &url],
        &env,
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let after_env = store.user(&root.id).await.unwrap();
    assert!(after_env.password_hash.starts_with("$argon2id$"));
    assert!(after_env.generation > root.generation);

    // From stdin.
    let out = admin(
        &["reset-password", "root", "--data-dir", &data_dir],
        &[],
        Some("stdin-password-1\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let after_stdin = store.user(&root.id).await.unwrap();
    assert_ne!(after_stdin.password_hash, after_env.password_hash);

    // Refusals change nothing: a short password, an unknown user, a missing database.
    let out = admin(
        &["reset-password", "root", "--data-dir", &data_dir],
        &[("ANTCODE_NEW_PASSWORD", "short")],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    assert_eq!(
        store.user(&root.id).await.unwrap().password_hash,
        after_stdin.password_hash
    );
    let out = admin(&["promote", "nobody", "--data-dir", &data_dir], &[], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
    let empty = tempfile::tempdir().unwrap();
    let out = admin(
        &[
            "promote",
            "bob",
            "--data-dir",
            empty.path().to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(!out.status.success());

    // Audited, with the host account as the actor.
    let audit = store.list_audit(100, None).await.unwrap().items;
    let mut actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor.starts_with("host:"))
        .map(|e| e.action.as_str())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["user.promote", "user.reset_password", "user.reset_password"]
    );
}
