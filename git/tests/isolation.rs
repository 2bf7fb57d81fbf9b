//! The machine's Git setup must not steer a fetch: no `GIT_*` variable, no user config file.
//!
//! Its own test binary, with one test: it changes the process environment, which no other
//! thread may be reading meanwhile.

// The servers live in the testkit but are included by path (std and tempfile only).
#[path = "../../testkit/src/git.rs"]
mod servers;

use std::time::Duration;

use antcode_git::{fetch, resolve, Credential, Error, Policy, Source};
use servers::{GitHttp, Repo};

#[test]
fn git_environment_and_user_config_are_ignored() {
    let server = GitHttp::start(Some(("user", "secret")));
    let repo = Repo::create(server.root(), "app.git");
    repo.write("main.py", "print('hi')\n");
    let commit = repo.commit("First");
    repo.push("main");

    // Each of these would send the fetch to a closed port, or run a program, if it were read.
    let dead = "http://127.0.0.1:1/";
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        format!("[url \"{dead}\"]\n\tinsteadOf = http://\n[http]\n\tproxy = {dead}\n\textraHeader = Authorization: Basic dXNlcjpzZWNyZXQ=\n"),
    )
    .unwrap();
    for (key, value) in [
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_CONFIG_HOME", home.path().to_str().unwrap()),
        (
            "GIT_CONFIG_GLOBAL",
            &home.path().join(".gitconfig").display().to_string(),
        ),
        ("GIT_CONFIG_COUNT", "2"),
        ("GIT_CONFIG_KEY_0", &format!("url.{dead}.insteadOf")),
        ("GIT_CONFIG_VALUE_0", "http://"),
        // gix sends extra headers: this one would let the request in without a credential.
        ("GIT_CONFIG_KEY_1", "http.extraHeader"),
        (
            "GIT_CONFIG_VALUE_1",
            "Authorization: Basic dXNlcjpzZWNyZXQ=",
        ),
        (
            "GIT_CONFIG_PARAMETERS",
            &format!("'url.{dead}.insteadof'='http://'"),
        ),
        ("GIT_SSH_COMMAND", "false"),
        ("GIT_PROTOCOL", "version=0"),
        ("GIT_DIR", "/nonexistent"),
        ("GIT_OBJECT_DIRECTORY", "/nonexistent"),
    ] {
        std::env::set_var(key, value);
    }

    let source = Source {
        url: server.url("app.git"),
        reference: "main".into(),
        ..Source::default()
    };
    let policy = Policy {
        allow_private: true,
        timeout: Duration::from_secs(30),
        ..Policy::default()
    };
    let auth = resolve(&source, &Credential::None, &policy);
    assert!(
        matches!(auth, Err(Error::Auth(_))),
        "the environment's header was sent: {auth:?}"
    );
    let token = Credential::Token {
        username: "user".into(),
        token: "secret".into(),
    };
    assert_eq!(resolve(&source, &token, &policy).unwrap(), commit);
    let snapshot = fetch(&source, &token, &policy).unwrap();
    assert_eq!(snapshot.commit, commit);
    assert_eq!(snapshot.files, ["main.py"]);
}
