//! Fetches from real Git servers on loopback: `git http-backend` over HTTP, `git daemon` over
//! git://, and `sshd`.

// The servers live in the testkit so that platform tests can use them too, but are included by
// path: they need only std and tempfile, and building the whole testkit here would be slow.
#[path = "../../testkit/src/git.rs"]
mod servers;

use std::io::Read;
use std::time::Duration;

use antcode_git::{check_url, fetch, resolve, Credential, Error, Policy, Snapshot, Source};
use servers::{ssh_keypair, GitDaemon, GitHttp, GitSsh, Repo};

/// Loopback servers are private addresses: the tests allow them.
fn policy() -> Policy {
    Policy {
        allow_private: true,
        timeout: Duration::from_secs(30),
        ..Policy::default()
    }
}

fn source(url: &str, reference: &str) -> Source {
    Source {
        url: url.into(),
        reference: reference.into(),
        ..Source::default()
    }
}

/// The files of a `.tar.gz` and their contents.
fn unpack(tar_gz: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = entry.header().mode().unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.push((path, data, mode));
    }
    files
}

fn file(snapshot: &Snapshot, path: &str) -> Vec<u8> {
    unpack(&snapshot.tar_gz)
        .into_iter()
        .find(|(p, ..)| p == path)
        .unwrap_or_else(|| panic!("{path} not in the bundle: {:?}", snapshot.files))
        .1
}

fn refused(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Refused(message)) => message,
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// The refusal of a fetch of branch `main` of repository `name`, with no credential.
fn refused_main(server: &GitHttp, name: &str, policy: &Policy) -> String {
    refused(fetch(
        &source(&server.url(name), "main"),
        &Credential::None,
        policy,
    ))
}

fn one_commit_repo(server: &GitHttp, name: &str) -> (Repo, String) {
    let repo = Repo::create(server.root(), name);
    repo.write("main.py", "print('hi')\n")
        .write_executable("bin/run.sh", "#!/bin/sh\n")
        .write("pkg/__init__.py", "");
    let commit = repo.commit("First commit\n\nWith a body.");
    repo.push("main");
    (repo, commit)
}

#[test]
fn a_branch_gives_its_files_and_commit() {
    let server = GitHttp::start(None);
    let (_repo, commit) = one_commit_repo(&server, "app.git");
    let snapshot = fetch(
        &source(&server.url("app.git"), "main"),
        &Credential::None,
        &policy(),
    )
    .unwrap();
    assert_eq!(snapshot.commit, commit);
    assert_eq!(snapshot.author, "Ada Lovelace <ada@example.com>");
    assert_eq!(snapshot.message, "First commit");
    assert!(
        snapshot.committed_at > 1_600_000_000_000,
        "{}",
        snapshot.committed_at
    );
    assert_eq!(snapshot.files, ["bin/run.sh", "main.py", "pkg/__init__.py"]);
    assert_eq!(file(&snapshot, "main.py"), b"print('hi')\n");
    let modes: Vec<u32> = unpack(&snapshot.tar_gz).iter().map(|f| f.2).collect();
    assert_eq!(modes, [0o755, 0o644, 0o644]);
    // "" is the remote's HEAD, which is main.
    assert_eq!(
        resolve(
            &source(&server.url("app.git"), ""),
            &Credential::None,
            &policy()
        )
        .unwrap(),
        commit
    );
}

#[test]
fn the_bundle_holds_exactly_the_listed_files() {
    let server = GitHttp::start(None);
    let repo = Repo::create(server.root(), "many.git");
    let long = format!("{}/deep.txt", "d".repeat(120));
    repo.write("a.txt", "a")
        .write("a/b.txt", "b")
        .write("a.b/c.txt", "c")
        .write(&long, "long");
    repo.commit("files");
    repo.push("main");
    let snapshot = fetch(
        &source(&server.url("many.git"), "main"),
        &Credential::None,
        &policy(),
    )
    .unwrap();
    let unpacked: Vec<String> = unpack(&snapshot.tar_gz).into_iter().map(|f| f.0).collect();
    assert_eq!(unpacked, snapshot.files);
    let mut sorted = snapshot.files.clone();
    sorted.sort();
    assert_eq!(sorted, snapshot.files);
    assert_eq!(snapshot.files.len(), 4);
    assert_eq!(file(&snapshot, &long), b"long");
}

#[test]
fn a_moved_branch_resolves_to_its_new_commit() {
    let server = GitHttp::start(None);
    let (repo, first) = one_commit_repo(&server, "app.git");
    let src = source(&server.url("app.git"), "main");
    assert_eq!(resolve(&src, &Credential::None, &policy()).unwrap(), first);
    repo.write("new.py", "x = 1\n");
    let second = repo.commit("Add new.py");
    repo.push("main");
    assert_eq!(resolve(&src, &Credential::None, &policy()).unwrap(), second);
    let snapshot = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(snapshot.commit, second);
    assert!(snapshot.files.contains(&"new.py".to_string()));

    // A force-push to an unrelated history.
    repo.orphan("other");
    repo.write("unrelated.txt", "fresh start\n");
    let unrelated = repo.commit("Unrelated");
    repo.git(&["push", "-q", "--force", "origin", "other:refs/heads/main"]);
    assert_eq!(
        resolve(&src, &Credential::None, &policy()).unwrap(),
        unrelated
    );
    let snapshot = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(snapshot.commit, unrelated);
    assert_eq!(snapshot.files, ["unrelated.txt"]);
}

#[test]
fn tags_light_and_annotated_give_their_commit() {
    let server = GitHttp::start(None);
    let (repo, first) = one_commit_repo(&server, "app.git");
    repo.tag("v1", None);
    repo.write("two.py", "2\n");
    let second = repo.commit("Second");
    repo.push("main");
    repo.tag("v2", Some("Release 2"));
    repo.write("three.py", "3\n");
    repo.commit("Third");
    repo.push("main");

    let url = server.url("app.git");
    for (tag, commit) in [("v1", &first), ("v2", &second)] {
        assert_eq!(
            &resolve(&source(&url, tag), &Credential::None, &policy()).unwrap(),
            commit,
            "{tag}"
        );
        let snapshot = fetch(&source(&url, tag), &Credential::None, &policy()).unwrap();
        assert_eq!(&snapshot.commit, commit, "{tag}");
        assert!(!snapshot.files.contains(&"three.py".to_string()));
    }
    let snapshot = fetch(&source(&url, "refs/tags/v2"), &Credential::None, &policy()).unwrap();
    assert_eq!(snapshot.commit, second);
}

#[test]
fn a_commit_id_that_is_no_tip_is_fetched() {
    let server = GitHttp::start(None);
    let (repo, first) = one_commit_repo(&server, "app.git");
    repo.write("later.py", "later\n");
    repo.commit("Later");
    repo.push("main");
    let snapshot = fetch(
        &source(&server.url("app.git"), &first),
        &Credential::None,
        &policy(),
    )
    .unwrap();
    assert_eq!(snapshot.commit, first);
    assert!(!snapshot.files.contains(&"later.py".to_string()));
    assert_eq!(
        resolve(
            &source(&server.url("app.git"), &first),
            &Credential::None,
            &policy()
        )
        .unwrap(),
        first
    );

    // An id the server doesn't have.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let message = refused(fetch(
        &source(&server.url("app.git"), missing),
        &Credential::None,
        &policy(),
    ));
    assert!(message.contains(missing), "{message}");
}

#[test]
fn a_subdir_is_the_project() {
    let server = GitHttp::start(None);
    let repo = Repo::create(server.root(), "mono.git");
    repo.write("services/api/app.py", "api\n")
        .write("services/api/lib/util.py", "u\n")
        .write("web/index.html", "<p>");
    repo.commit("Monorepo");
    repo.push("main");
    let mut src = source(&server.url("mono.git"), "main");
    src.subdir = "services/api/".into();
    let first = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(first.files, ["app.py", "lib/util.py"]);

    repo.write("web/index.html", "<p>changed");
    let second_commit = repo.commit("Only the web changes");
    repo.push("main");
    let second = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(second.commit, second_commit);
    assert_eq!(second.tree, first.tree, "the api folder did not change");

    repo.write("services/api/app.py", "api v2\n");
    repo.commit("The api changes");
    repo.push("main");
    let third = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_ne!(third.tree, first.tree);

    src.subdir = "services/nope".into();
    let message = refused(fetch(&src, &Credential::None, &policy()));
    assert!(message.contains("services/nope"), "{message}");
    src.subdir = "../etc".into();
    refused(fetch(&src, &Credential::None, &policy()));
}

#[test]
fn a_missing_ref_is_refused_by_name() {
    let server = GitHttp::start(None);
    one_commit_repo(&server, "app.git");
    let url = server.url("app.git");
    let message = refused(resolve(&source(&url, "nope"), &Credential::None, &policy()));
    assert!(
        message.contains("\"nope\"") && message.contains(&url),
        "{message}"
    );
    let message = refused(fetch(&source(&url, "nope"), &Credential::None, &policy()));
    assert!(message.contains("\"nope\""), "{message}");
}

#[test]
fn basic_auth_takes_the_right_token_only() {
    let token = "s3cr3t-t0ken-value";
    let server = GitHttp::start(Some(("x-access-token", token)));
    let (_repo, commit) = one_commit_repo(&server, "private.git");
    let src = source(&server.url("private.git"), "main");
    let right = Credential::Token {
        username: String::new(),
        token: token.into(),
    };
    assert_eq!(fetch(&src, &right, &policy()).unwrap().commit, commit);
    assert_eq!(resolve(&src, &right, &policy()).unwrap(), commit);

    let wrong = Credential::Token {
        username: String::new(),
        token: "wrong-token-value".into(),
    };
    for (cred, secret) in [(Credential::None, None), (wrong, Some("wrong-token-value"))] {
        for result in [
            resolve(&src, &cred, &policy()).map(|_| ()),
            fetch(&src, &cred, &policy()).map(|_| ()),
        ] {
            match result {
                Err(Error::Auth(message)) => {
                    assert!(!message.contains(token), "{message}");
                    if let Some(secret) = secret {
                        assert!(!message.contains(secret), "the token leaked: {message}");
                    }
                }
                other => panic!("expected Auth with {cred:?}, got {other:?}"),
            }
        }
    }
}

/// An SSH Git server holding `app.git` with one commit on `main`: the client's private key, the
/// server and the commit.
fn ssh_server_with_one_commit() -> (String, GitSsh, String) {
    let (private, public) = ssh_keypair();
    let server = GitSsh::start(&public);
    let repo = Repo::create(server.root(), "app.git");
    repo.write("main.py", "over ssh\n");
    let commit = repo.commit("Over SSH");
    repo.push("main");
    (private, server, commit)
}

#[test]
fn ssh_needs_the_key_and_the_right_host_key() {
    let (private, server, commit) = ssh_server_with_one_commit();
    let src = source(&server.url("app.git"), "main");

    let right = Credential::SshKey {
        private_key: private.clone(),
        known_hosts: server.known_hosts(),
    };
    let snapshot = fetch(&src, &right, &policy()).unwrap();
    assert_eq!(snapshot.commit, commit);
    assert_eq!(file(&snapshot, "main.py"), b"over ssh\n");
    assert_eq!(resolve(&src, &right, &policy()).unwrap(), commit);

    // Another server's host key on this address: a host key mismatch.
    let (_, other_public) = ssh_keypair();
    let port = server
        .url("x")
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let fields: Vec<&str> = other_public.split_whitespace().collect();
    let wrong_hosts = format!("[127.0.0.1]:{port} {} {}\n", fields[0], fields[1]);
    let wrong_host = Credential::SshKey {
        private_key: private.clone(),
        known_hosts: wrong_hosts,
    };
    let (other_private, _) = ssh_keypair();
    let wrong_key = Credential::SshKey {
        private_key: other_private,
        known_hosts: server.known_hosts(),
    };
    for cred in [wrong_host, wrong_key, Credential::None] {
        match fetch(&src, &cred, &policy()) {
            Err(Error::Auth(message)) => {
                assert!(!message.contains("PRIVATE KEY"), "{message}");
                assert!(
                    !private.lines().nth(1).is_some_and(|l| message.contains(l)),
                    "{message}"
                );
            }
            other => panic!("expected Auth with {cred:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_repository_over_the_download_cap_is_refused() {
    let server = GitHttp::start(None);
    let repo = Repo::create(server.root(), "big.git");
    // Random bytes don't compress: the pack is about as large as the file.
    let mut noise = vec![0u8; 3 << 20];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for byte in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    repo.write("blob.bin", &noise);
    repo.commit("Big");
    repo.push("main");
    let small = Policy {
        max_fetch_bytes: 1 << 20,
        ..policy()
    };
    let message = refused_main(&server, "big.git", &small);
    assert!(message.contains("1 MiB"), "{message}");
    // The bundle's own cap.
    let small_tree = Policy {
        max_tree_bytes: 1 << 20,
        ..policy()
    };
    let message = refused_main(&server, "big.git", &small_tree);
    assert!(message.contains("1 MiB"), "{message}");
}

#[test]
fn more_files_than_the_cap_are_refused() {
    let server = GitHttp::start(None);
    let repo = Repo::create(server.root(), "files.git");
    for i in 0..6 {
        repo.write(&format!("f{i}.txt"), format!("{i}"));
    }
    repo.commit("Six files");
    repo.push("main");
    let src = source(&server.url("files.git"), "main");
    let five = Policy {
        max_files: 5,
        ..policy()
    };
    let message = refused(fetch(&src, &Credential::None, &five));
    assert!(message.contains('5'), "{message}");
    let six = Policy {
        max_files: 6,
        ..policy()
    };
    assert_eq!(fetch(&src, &Credential::None, &six).unwrap().files.len(), 6);
}

#[test]
fn lfs_symlinks_and_unknown_submodules_are_refused() {
    let server = GitHttp::start(None);
    let repo = Repo::create(server.root(), "lfs.git");
    repo.write(
        "model.bin",
        "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n",
    );
    repo.commit("LFS pointer");
    repo.push("main");
    let message = refused_main(&server, "lfs.git", &policy());
    assert!(
        message.contains("LFS") && message.contains("model.bin"),
        "{message}"
    );

    let repo = Repo::create(server.root(), "attrs.git");
    repo.write(
        ".gitattributes",
        "*.bin filter=lfs diff=lfs merge=lfs -text\n",
    );
    repo.commit("LFS attributes");
    repo.push("main");
    let message = refused_main(&server, "attrs.git", &policy());
    assert!(message.contains(".gitattributes"), "{message}");

    let repo = Repo::create(server.root(), "link.git");
    repo.write("real.txt", "r").symlink("link.txt", "real.txt");
    repo.commit("A link");
    repo.push("main");
    let message = refused_main(&server, "link.git", &policy());
    assert!(
        message.contains("link.txt") && message.contains("symbolic link"),
        "{message}"
    );

    // A gitlink without a .gitmodules entry has no URL to fetch from.
    let repo = Repo::create(server.root(), "sub.git");
    repo.write("app.py", "a");
    let commit = repo.commit("App");
    repo.gitlink("vendor/lib", &commit);
    repo.commit("A submodule");
    repo.push("main");
    let mut src = source(&server.url("sub.git"), "main");
    assert_eq!(
        fetch(&src, &Credential::None, &policy()).unwrap().files,
        ["app.py"]
    );
    src.submodules = true;
    let message = refused(fetch(&src, &Credential::None, &policy()));
    assert!(
        message.contains("vendor/lib") && message.contains(".gitmodules"),
        "{message}"
    );
}

#[test]
fn the_same_commit_gives_the_same_bytes() {
    let server = GitHttp::start(None);
    let (_repo, _) = one_commit_repo(&server, "app.git");
    let src = source(&server.url("app.git"), "main");
    let first = fetch(&src, &Credential::None, &policy()).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let second = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(first.tar_gz, second.tar_gz);
    assert_eq!(first, second);
}

#[test]
fn git_protocol_fetches_a_branch_and_a_commit() {
    let daemon = GitDaemon::start();
    let repo = Repo::create(daemon.root(), "app.git");
    repo.write("main.py", "over git://\n");
    let first = repo.commit("First");
    repo.write("main.py", "moved on\n");
    let second = repo.commit("Second");
    repo.push("main");
    let url = daemon.url("app.git");

    let snapshot = fetch(&source(&url, "main"), &Credential::None, &policy()).unwrap();
    assert_eq!(snapshot.commit, second);
    assert_eq!(file(&snapshot, "main.py"), b"moved on\n");
    assert_eq!(
        resolve(&source(&url, ""), &Credential::None, &policy()).unwrap(),
        second
    );
    let old = fetch(&source(&url, &first), &Credential::None, &policy()).unwrap();
    assert_eq!(file(&old, "main.py"), b"over git://\n");
    let missing = fetch(
        &source(&daemon.url("nothing.git"), "main"),
        &Credential::None,
        &policy(),
    );
    assert!(matches!(missing, Err(Error::Remote(_))), "{missing:?}");
}

/// The port of a `scheme://host:port/…` URL.
fn port_of(url: &str) -> u16 {
    let after = url.split("://").nth(1).unwrap();
    let authority = after.split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_host_name_is_fetched_from_the_address_it_resolved_to() {
    // `localhost` is vetted once (to 127.0.0.1, allowed here) and each transport connects to
    // that address, TLS and SSH host keys still being checked against the name.
    let http = GitHttp::start(None);
    let (_repo, commit) = one_commit_repo(&http, "app.git");
    let url = format!("http://localhost:{}/app.git", port_of(&http.url("x")));
    assert_eq!(
        fetch(&source(&url, "main"), &Credential::None, &policy())
            .unwrap()
            .commit,
        commit
    );
    // Without allow_private the same name is refused: its address is loopback.
    let message = refused(fetch(
        &source(&url, "main"),
        &Credential::None,
        &Policy::default(),
    ));
    assert!(message.contains("127.0.0.1"), "{message}");

    let daemon = GitDaemon::start();
    let repo = Repo::create(daemon.root(), "app.git");
    repo.write("a.txt", "a\n");
    let commit = repo.commit("Over git://");
    repo.push("main");
    let url = format!("git://localhost:{}/app.git", daemon.addr().port());
    assert_eq!(
        resolve(&source(&url, "main"), &Credential::None, &policy()).unwrap(),
        commit
    );
}

#[test]
fn ssh_checks_the_host_key_under_the_url_host_name() {
    let (private, server, commit) = ssh_server_with_one_commit();
    let ip_url = server.url("app.git");
    let port = port_of(&ip_url);
    let url = ip_url.replace("@127.0.0.1:", "@localhost:");
    let ip_line = server.known_hosts();
    let name_line = ip_line.replace("[127.0.0.1]", "[localhost]");
    let cred = |known_hosts: &str| Credential::SshKey {
        private_key: private.clone(),
        known_hosts: known_hosts.to_string(),
    };
    // ssh connects to 127.0.0.1 but looks the key up as `[localhost]:PORT`.
    assert_eq!(
        resolve(&source(&url, "main"), &cred(&name_line), &policy()).unwrap(),
        commit
    );
    // A line for the address alone does not vouch for the name.
    match resolve(&source(&url, "main"), &cred(&ip_line), &policy()) {
        Err(Error::Auth(message)) => assert!(message.contains("host key"), "{message}"),
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(name_line.starts_with(&format!("[localhost]:{port} ")));
}

#[test]
fn unsafe_urls_are_refused() {
    let strict = Policy::default();
    for url in [
        "file:///etc",
        "/etc",
        "./repo",
        "ext::sh -c id",
        "ext::sh",
        "fd::3",
        "https://127.0.0.1/x",
        "http://localhost/x",
        "https://169.254.169.254/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.0.0.1/",
        "http://192.168.1.20/x.git",
        "http://100.64.0.1/x.git",
        "git://0.0.0.0/x.git",
        "https://user:pw@example.com/x.git",
        "ssh://-oProxyCommand=x/y",
        "-oProxyCommand=x:y",
        "ftp://example.com/x.git",
        "",
    ] {
        refused(check_url(url, &strict).map_err(|e| {
            assert!(matches!(e, Error::Refused(_)), "{url}: {e:?}");
            e
        }));
    }
    // The same checks run in resolve and fetch before anything else.
    refused(resolve(
        &source("http://127.0.0.1:9/x.git", "main"),
        &Credential::None,
        &strict,
    ));
    refused(fetch(
        &source("file:///etc", "main"),
        &Credential::None,
        &strict,
    ));
    // Private hosts are fine when the policy says so.
    check_url("http://127.0.0.1:9/x.git", &policy()).unwrap();
    check_url("git@127.0.0.1:org/repo.git", &policy()).unwrap();
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/slow.git",
        listener.local_addr().unwrap().port()
    );
    let quick = Policy {
        timeout: Duration::from_millis(500),
        ..policy()
    };
    let started = std::time::Instant::now();
    assert_eq!(
        fetch(&source(&url, "main"), &Credential::None, &quick),
        Err(Error::Timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[test]
fn an_unreachable_server_is_a_remote_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/gone.git");
    match resolve(&source(&url, "main"), &Credential::None, &policy()) {
        Err(Error::Remote(message)) => assert!(message.contains(&url), "{message}"),
        other => panic!("expected Remote, got {other:?}"),
    }
}

#[test]
fn redirects_are_not_followed() {
    // A public URL must not lead to another host once check_url has approved it.
    let server = GitHttp::start(None);
    let (_repo, _) = one_commit_repo(&server, "app.git");
    let target = server.url("app.git");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/app.git",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let location = format!("{target}{}", path.trim_start_matches("/app.git"));
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    match resolve(&source(&url, "main"), &Credential::None, &policy()) {
        Err(Error::Remote(message)) => assert!(message.contains(&url), "{message}"),
        other => panic!("expected Remote, got {other:?}"),
    }
}

/// A repository `name` with `files`, committed and pushed; returns it and its commit.
fn library(server: &GitHttp, name: &str, files: &[(&str, &str)]) -> (Repo, String) {
    let repo = Repo::create(server.root(), name);
    for (path, contents) in files {
        repo.write(path, contents);
    }
    let commit = repo.commit(&format!("{name} files"));
    repo.push("main");
    (repo, commit)
}

fn with_submodules(url: &str) -> Source {
    Source {
        submodules: true,
        ..source(url, "main")
    }
}

#[test]
fn submodules_are_bundled_under_their_paths() {
    let server = GitHttp::start(None);
    let (lib, first) = library(
        &server,
        "lib.git",
        &[("lib.py", "v1\n"), ("sub/x.txt", "x")],
    );
    let app = Repo::create(server.root(), "app.git");
    app.write("main.py", "import lib\n")
        .submodule("vendor/lib", &server.url("lib.git"), &first);
    app.commit("Add lib");
    app.push("main");

    let src = with_submodules(&server.url("app.git"));
    let snapshot = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(
        snapshot.files,
        [
            ".gitmodules",
            "main.py",
            "vendor/lib/lib.py",
            "vendor/lib/sub/x.txt"
        ]
    );
    let unpacked: Vec<String> = unpack(&snapshot.tar_gz).into_iter().map(|f| f.0).collect();
    assert_eq!(unpacked, snapshot.files);
    assert_eq!(file(&snapshot, "vendor/lib/lib.py"), b"v1\n");
    let without = Source {
        submodules: false,
        ..src.clone()
    };
    let skipped = fetch(&without, &Credential::None, &policy()).unwrap();
    assert_eq!(skipped.files, [".gitmodules", "main.py"]);

    // The superproject records a new commit of the submodule: a new tree, the new files.
    lib.write("lib.py", "v2\n");
    let second = lib.commit("v2");
    lib.push("main");
    app.gitlink("vendor/lib", &second);
    app.commit("Bump lib");
    app.push("main");
    let moved = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_ne!(moved.tree, snapshot.tree);
    assert_eq!(file(&moved, "vendor/lib/lib.py"), b"v2\n");
    assert_eq!(fetch(&src, &Credential::None, &policy()).unwrap(), moved);
}

#[test]
fn relative_submodule_urls_follow_the_superproject() {
    let server = GitHttp::start(None);
    let (_, lib) = library(&server, "lib.git", &[("lib.py", "relative\n")]);
    let app = Repo::create(server.root(), "app.git");
    app.write("services/api/app.py", "api\n")
        .write("web/index.html", "<p>")
        .submodule("services/api/vendor/lib", "../lib.git", &lib)
        .submodule("web/vendor/lib", "../lib.git", &lib);
    app.commit("Relative submodules");
    app.push("main");
    // Only the submodules inside the subdir are fetched; .gitmodules is read at the root.
    let src = Source {
        subdir: "services/api".into(),
        ..with_submodules(&server.url("app.git"))
    };
    let snapshot = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(snapshot.files, ["app.py", "vendor/lib/lib.py"]);
    assert_eq!(file(&snapshot, "vendor/lib/lib.py"), b"relative\n");
}

#[test]
fn unsafe_submodule_urls_are_refused() {
    let server = GitHttp::start(None);
    let app = Repo::create(server.root(), "app.git");
    let first = app.write("main.py", "x").commit("First");
    for (i, url) in ["file:///etc", "/tmp/x", "ext::sh -c id"]
        .iter()
        .enumerate()
    {
        let branch = format!("b{i}");
        app.branch(&branch);
        app.submodule("vendor/x", url, &first);
        app.commit("Unsafe submodule");
        app.push(&branch);
        let src = Source {
            reference: branch,
            ..with_submodules(&server.url("app.git"))
        };
        let message = refused(fetch(&src, &Credential::None, &policy()));
        assert!(
            message.contains("vendor/x") && message.contains(url),
            "{url}: {message}"
        );
        app.git(&["checkout", "-q", "main"]);
    }
}

#[test]
fn a_token_only_goes_back_to_its_own_host() {
    let token = "super-s3cr3t-token";
    let home = GitHttp::start(Some(("x-access-token", token)));
    let elsewhere = GitHttp::start(Some(("bot", "other-token")));
    let (_, lib) = library(&elsewhere, "lib.git", &[("lib.py", "elsewhere\n")]);
    let (_, own) = library(&home, "own.git", &[("own.py", "home\n")]);
    let cred = Credential::Token {
        username: String::new(),
        token: token.into(),
    };

    // On the same host and port, the token is reused.
    let app = Repo::create(home.root(), "app.git");
    app.write("main.py", "m")
        .submodule("vendor/own", &home.url("own.git"), &own);
    app.commit("Own submodule");
    app.push("main");
    let src = with_submodules(&home.url("app.git"));
    let snapshot = fetch(&src, &cred, &policy()).unwrap();
    assert_eq!(file(&snapshot, "vendor/own/own.py"), b"home\n");

    // On another port, no credential at all.
    app.submodule("vendor/lib", &elsewhere.url("lib.git"), &lib);
    app.commit("Foreign submodule");
    app.push("main");
    match fetch(&src, &cred, &policy()) {
        Err(Error::Auth(message)) => {
            assert!(message.contains("vendor/lib"), "{message}");
            assert!(!message.contains(token), "the token leaked: {message}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    let sent = elsewhere.authorizations();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(String::is_empty), "{sent:?}");
}

#[test]
fn nested_submodules_stop_at_depth_two_and_cycles() {
    let server = GitHttp::start(None);
    let (c, c1) = library(&server, "c.git", &[("c.txt", "c")]);
    let b = Repo::create(server.root(), "b.git");
    let b1 = b.write("b.txt", "b").commit("b1");
    b.push("main");
    let a = Repo::create(server.root(), "a.git");
    let a1 = a
        .write("a.txt", "a")
        .submodule("b", "../b.git", &b1)
        .commit("a1");
    a.push("main");
    let top = Repo::create(server.root(), "top.git");
    top.submodule("a", &server.url("a.git"), &a1).commit("top1");
    top.push("main");
    let src = with_submodules(&server.url("top.git"));
    let snapshot = fetch(&src, &Credential::None, &policy()).unwrap();
    assert_eq!(
        snapshot.files,
        [".gitmodules", "a/.gitmodules", "a/a.txt", "a/b/b.txt"]
    );

    // A third level.
    let b2 = b.submodule("c", "../c.git", &c1).commit("b2");
    b.push("main");
    let a2 = a.submodule("b", "../b.git", &b2).commit("a2");
    a.push("main");
    top.submodule("a", &server.url("a.git"), &a2).commit("top2");
    top.push("main");
    let message = refused(fetch(&src, &Credential::None, &policy()));
    assert!(
        message.contains("a/b/c") && message.contains("deeper than 2"),
        "{message}"
    );

    // c holds a, which holds b, which holds c again.
    c.submodule("a", "../a.git", &a2).commit("c2");
    c.push("main");
    let message = refused(fetch(
        &with_submodules(&server.url("c.git")),
        &Credential::None,
        &policy(),
    ));
    assert!(
        message.contains("a/b/c") && message.contains("cycle"),
        "{message}"
    );
}

#[test]
fn submodules_share_the_download_and_bundle_limits() {
    let server = GitHttp::start(None);
    let noise = |seed: u64| {
        let mut state = seed;
        (0..700 << 10)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect::<Vec<u8>>()
    };
    let lib = Repo::create(server.root(), "lib.git");
    let lib_commit = lib
        .write("lib.bin", noise(0x9e37_79b9_7f4a_7c15))
        .commit("lib");
    lib.push("main");
    let app = Repo::create(server.root(), "app.git");
    app.write("app.bin", noise(0x2545_f491_4f6c_dd1d))
        .submodule("lib", &server.url("lib.git"), &lib_commit);
    app.commit("app");
    app.push("main");
    let src = with_submodules(&server.url("app.git"));
    // Each fits in 1 MiB, both don't.
    let one_mib = Policy {
        max_fetch_bytes: 1 << 20,
        ..policy()
    };
    fetch(
        &Source {
            submodules: false,
            ..src.clone()
        },
        &Credential::None,
        &one_mib,
    )
    .unwrap();
    let message = refused(fetch(&src, &Credential::None, &one_mib));
    assert!(message.contains("1 MiB"), "{message}");
    let files = Policy {
        max_files: 2,
        ..policy()
    };
    refused(fetch(&src, &Credential::None, &files));
    let bytes = Policy {
        max_tree_bytes: 1 << 20,
        ..policy()
    };
    let message = refused(fetch(&src, &Credential::None, &bytes));
    assert!(message.contains("1 MiB"), "{message}");
    assert_eq!(
        fetch(&src, &Credential::None, &policy())
            .unwrap()
            .files
            .len(),
        3
    );
}

#[test]
fn lfs_and_links_inside_submodules_are_refused() {
    let server = GitHttp::start(None);
    let lib = Repo::create(server.root(), "lib.git");
    let link = lib
        .write("real.txt", "r")
        .symlink("link.txt", "real.txt")
        .commit("A link");
    let lfs = lib
        .write(".gitattributes", "*.bin filter=lfs\n")
        .remove("link.txt")
        .commit("LFS");
    lib.push("main");
    let app = Repo::create(server.root(), "app.git");
    for (branch, commit, named) in [
        ("link", &link, "vendor/lib/link.txt"),
        ("lfs", &lfs, "vendor/lib/.gitattributes"),
    ] {
        app.branch(branch);
        app.submodule("vendor/lib", &server.url("lib.git"), commit);
        app.commit(branch);
        app.push(branch);
        let src = Source {
            reference: branch.into(),
            ..with_submodules(&server.url("app.git"))
        };
        let message = refused(fetch(&src, &Credential::None, &policy()));
        assert!(message.contains(named), "{message}");
    }
}

#[test]
fn an_ssh_key_is_reused_for_a_submodule_on_the_same_server() {
    let (private, public) = ssh_keypair();
    let server = GitSsh::start(&public);
    let lib = Repo::create(server.root(), "lib.git");
    let lib_commit = lib.write("lib.py", "over ssh\n").commit("lib");
    lib.push("main");
    let app = Repo::create(server.root(), "app.git");
    app.write("main.py", "m")
        .submodule("vendor/lib", "../lib.git", &lib_commit);
    app.commit("Relative submodule over SSH");
    app.push("main");
    let cred = Credential::SshKey {
        private_key: private,
        known_hosts: server.known_hosts(),
    };
    let snapshot = fetch(&with_submodules(&server.url("app.git")), &cred, &policy()).unwrap();
    assert_eq!(file(&snapshot, "vendor/lib/lib.py"), b"over ssh\n");
}

#[test]
fn a_silent_submodule_server_spends_the_same_time_budget() {
    let server = GitHttp::start(None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!(
        "http://127.0.0.1:{}/slow.git",
        listener.local_addr().unwrap().port()
    );
    let app = Repo::create(server.root(), "app.git");
    let first = app.write("main.py", "m").commit("First");
    app.submodule("vendor/slow", &silent, &first);
    app.commit("A submodule that never answers");
    app.push("main");
    let quick = Policy {
        timeout: Duration::from_millis(1500),
        ..policy()
    };
    let started = std::time::Instant::now();
    assert_eq!(
        fetch(
            &with_submodules(&server.url("app.git")),
            &Credential::None,
            &quick
        ),
        Err(Error::Timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    drop(listener);
}
