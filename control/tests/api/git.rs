//! Projects from Git against real Git servers on loopback (`git http-backend` with and without
//! Basic authentication, `sshd`): creation, syncs that make a version only when the files
//! change, credentials that never come back, push webhooks, and the refusals.

use std::time::{Duration, Instant};

use antcode_testkit::git::{ssh_keypair, GitHttp, GitSsh, Repo};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::common::*;

/// A control plane that may fetch from loopback, as the tests' Git servers are.
async fn server() -> Server {
    start_with(|c| c.git.allow_private = true).await
}

async fn body(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn first_job(root: &std::path::Path, name: &str) -> Repo {
    let repo = Repo::create(root, name);
    repo.write("main.py", "print('first')\n")
        .write("requirements.txt", "requests==2.32.0\n");
    repo.commit("first job");
    repo.push("main");
    repo
}

async fn sync(s: &Server, t: &str, id: &str) -> Value {
    body(s.post(t, &format!("/api/v1/projects/{id}/sync")).await, 200).await
}

#[tokio::test]
async fn a_project_follows_a_private_branch_over_https_auth() {
    let git = GitHttp::start(Some(("bot", "tok-s3cret-123")));
    let repo = first_job(git.root(), "jobs.git");
    let s = server().await;
    let admin = s.admin().await;
    let op = s.user_with_role(&admin, "op", "operator").await;

    // Only admins write credentials; nobody reads their secrets back.
    let cred = json!({"kind": "token", "username": "bot", "token": "tok-s3cret-123"});
    problem(
        s.put_json(&op, "/api/v1/git-credentials/deploy", cred.clone())
            .await,
        403,
    )
    .await;
    let meta = body(
        s.put_json(&admin, "/api/v1/git-credentials/deploy", cred)
            .await,
        201,
    )
    .await;
    assert_eq!(
        (meta["kind"].as_str(), meta["username"].as_str()),
        (Some("token"), Some("bot"))
    );
    let listed = s
        .get(&op, "/api/v1/git-credentials")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("deploy") && !listed.contains("tok-s3cret"),
        "{listed}"
    );

    // Without the credential the server says no; nothing is created.
    let url = git.url("jobs.git");
    let bare = json!({"name": "jobs", "git": {"url": url, "ref": "main"}});
    let p = problem(s.post_json(&op, "/api/v1/projects", bare).await, 422).await;
    assert_eq!(p["type"], "urn:antcode:problem:git-auth", "{p}");
    let list = body(s.get(&op, "/api/v1/projects").await, 200).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "a refused source created nothing"
    );

    // Only an admin points a project at a URL with a credential (else an operator could send
    // the token to any host).
    let create =
        json!({"name": "jobs", "git": {"url": url, "ref": "main", "credential": "deploy"}});
    problem(
        s.post_json(&op, "/api/v1/projects", create.clone()).await,
        403,
    )
    .await;
    let p = body(s.post_json(&admin, "/api/v1/projects", create).await, 201).await;
    let id = p["id"].as_str().unwrap().to_string();
    let v = &p["version"];
    assert_eq!(v["origin"]["commit"], repo.head());
    assert_eq!(v["origin"]["message"], "first job");
    assert_eq!(v["origin"]["author"], "Ada Lovelace <ada@example.com>");
    assert_eq!(v["requirements"], "requests==2.32.0\n");
    assert_eq!(v["entrypoint"], "main.py");
    assert_eq!(p["source"]["credential"], "deploy");
    assert_eq!(p["sync"]["outcome"], "created");
    assert!(p["push"]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/projects/{id}/push")));
    assert!(p["push"]["secret"].as_str().unwrap().starts_with("acg"));
    let shown = s
        .get(&op, &format!("/api/v1/projects/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !shown.contains("acg") && !shown.contains("tok-s3cret"),
        "{shown}"
    );

    let elsewhere = json!({"git": {"url": "https://attacker.example/r.git", "ref": "main", "credential": "deploy"}});
    let denied = problem(
        s.patch_json(&op, &format!("/api/v1/projects/{id}"), elsewhere)
            .await,
        403,
    )
    .await;
    assert!(
        denied["detail"].as_str().unwrap().contains("admin"),
        "{denied}"
    );
    // The same URL and credential with another setting: an operator may.
    let same =
        json!({"git": {"url": url, "ref": "main", "credential": "deploy", "interval_s": 3600}});
    body(
        s.patch_json(&op, &format!("/api/v1/projects/{id}"), same)
            .await,
        200,
    )
    .await;

    // Nothing new: unchanged, no version.
    let st = sync(&s, &op, &id).await;
    assert_eq!(
        (st["outcome"].as_str(), st["version"].as_i64()),
        (Some("unchanged"), Some(1))
    );

    // A change pushed: a new version, current.
    repo.write("main.py", "print('second')\n");
    let second = repo.commit("second job");
    repo.push("main");
    let st = sync(&s, &op, &id).await;
    assert_eq!(
        (st["outcome"].as_str(), st["version"].as_i64()),
        (Some("created"), Some(2))
    );
    assert_eq!(st["commit"], second);
    let p = body(s.get(&op, &format!("/api/v1/projects/{id}")).await, 200).await;
    assert_eq!(
        (
            p["current_version"].as_i64(),
            p["version"]["origin"]["message"].as_str()
        ),
        (Some(2), Some("second job"))
    );

    // A commit that changes no file: the ref moved, the files did not.
    let empty = repo.commit("empty");
    repo.push("main");
    let st = sync(&s, &op, &id).await;
    assert_eq!(
        (st["outcome"].as_str(), st["commit"].as_str()),
        (Some("unchanged"), Some(empty.as_str()))
    );

    // A rollback stays put across syncs of the same files.
    body(
        s.patch_json(
            &op,
            &format!("/api/v1/projects/{id}"),
            json!({"current_version": 1}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(sync(&s, &op, &id).await["outcome"], "unchanged");
    let p = body(s.get(&op, &format!("/api/v1/projects/{id}")).await, 200).await;
    assert_eq!(p["current_version"], 1);

    // A force-push to an unrelated history is followed.
    repo.orphan("rewrite");
    repo.write("main.py", "print('rewritten')\n");
    let rewritten = repo.commit("rewritten");
    repo.git(&["push", "-q", "--force", "origin", "rewrite:refs/heads/main"]);
    let st = sync(&s, &op, &id).await;
    assert_eq!(
        (st["outcome"].as_str(), st["commit"].as_str()),
        (Some("created"), Some(rewritten.as_str()))
    );

    // A wrong token: the sync fails, says so on the project, never echoes the token.
    let wrong = json!({"kind": "token", "username": "bot", "token": "wrong-token-456"});
    body(
        s.put_json(&admin, "/api/v1/git-credentials/deploy", wrong)
            .await,
        200,
    )
    .await;
    repo.write("main.py", "print('later')\n");
    repo.commit("later");
    repo.git(&["push", "-q", "--force", "origin", "rewrite:refs/heads/main"]);
    let p = problem(
        s.post(&op, &format!("/api/v1/projects/{id}/sync")).await,
        422,
    )
    .await;
    assert!(!p.to_string().contains("wrong-token"), "{p}");
    let got = body(s.get(&op, &format!("/api/v1/projects/{id}")).await, 200).await;
    assert_eq!(got["sync"]["outcome"], "failed");
    assert_eq!(
        got["current_version"], 3,
        "a failed sync changes no version"
    );

    // A credential in use cannot be deleted; the audit trail never holds a secret.
    problem(
        s.delete(&admin, "/api/v1/git-credentials/deploy").await,
        409,
    )
    .await;
    let audit = s
        .get(&admin, "/api/v1/audit?limit=500")
        .await
        .text()
        .await
        .unwrap();
    assert!(audit.contains("git_credential.update") && audit.contains("project.sync"));
    for secret in ["tok-s3cret", "wrong-token", "\"acg"] {
        assert!(!audit.contains(secret), "{secret} in the audit trail");
    }
    s.stop().await;
}

fn signed(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn call_push(s: &Server, id: &str, headers: &[(&str, String)], b: &str) -> reqwest::Response {
    let mut req = s
        .http
        .post(s.url(&format!("/api/v1/projects/{id}/push")))
        .header("content-type", "application/json")
        .body(b.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// Waits for project `id`'s current version to come from `commit`.
async fn wait_for_commit(s: &Server, t: &str, id: &str, commit: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let p = body(s.get(t, &format!("/api/v1/projects/{id}")).await, 200).await;
        if p["version"]["origin"]["commit"] == commit {
            return;
        }
        assert!(Instant::now() < deadline, "no version of {commit}: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn push_webhooks_are_signed_and_follow_the_ref() {
    let git = GitHttp::start(None);
    let repo = first_job(git.root(), "hooked.git");
    let s = server().await;
    let t = s.admin().await;
    let create = json!({"name": "hooked", "git": {"url": git.url("hooked.git"), "ref": "main"}});
    let p = body(s.post_json(&t, "/api/v1/projects", create).await, 201).await;
    let id = p["id"].as_str().unwrap().to_string();
    let secret = p["push"]["secret"].as_str().unwrap().to_string();
    let main = r#"{"ref":"refs/heads/main"}"#;

    // Every bad signature is the same 401, for a known project or not.
    for headers in [
        vec![],
        vec![(
            "x-hub-signature-256",
            format!("sha256={}", signed("wrong", main.as_bytes())),
        )],
        vec![("x-hub-signature-256", signed(&secret, main.as_bytes()))],
        vec![("x-gitea-signature", signed(&secret, b"{}"))],
        vec![("x-gitlab-token", "acg-not-it".to_string())],
    ] {
        problem(call_push(&s, &id, &headers, main).await, 401).await;
    }
    let good = vec![(
        "x-hub-signature-256",
        format!("sha256={}", signed(&secret, main.as_bytes())),
    )];
    problem(call_push(&s, &ids_other(), &good, main).await, 401).await;

    // GitHub's ping, and a push to another branch, start nothing.
    let ping = [good.clone(), vec![("x-github-event", "ping".to_string())]].concat();
    assert_eq!(
        body(call_push(&s, &id, &ping, main).await, 200).await["status"],
        "pong"
    );
    let dev = r#"{"ref":"refs/heads/dev"}"#;
    let dev_sig = vec![(
        "x-hub-signature-256",
        format!("sha256={}", signed(&secret, dev.as_bytes())),
    )];
    assert_eq!(
        body(call_push(&s, &id, &dev_sig, dev).await, 200).await["status"],
        "ignored"
    );

    // GitHub, Gitea and GitLab pushes each start a sync.
    for (n, headers) in [
        good.clone(),
        vec![("x-gitea-signature", signed(&secret, main.as_bytes()))],
        vec![
            ("x-gitlab-token", secret.clone()),
            ("x-gitlab-event", "Push Hook".into()),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        repo.write("main.py", format!("print({n})\n"));
        let commit = repo.commit(&format!("push {n}"));
        repo.push("main");
        assert_eq!(
            body(call_push(&s, &id, &headers, main).await, 202).await["status"],
            "syncing"
        );
        wait_for_commit(&s, &t, &id, &commit, Duration::from_secs(30)).await;
    }

    // A rotated secret: the old one stops working at once.
    let rotated = body(
        s.post(&t, &format!("/api/v1/projects/{id}/push/rotate"))
            .await,
        200,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, secret);
    problem(call_push(&s, &id, &good, main).await, 401).await;
    let fresh = vec![(
        "x-hub-signature-256",
        format!("sha256={}", signed(new, main.as_bytes())),
    )];
    assert_eq!(call_push(&s, &id, &fresh, main).await.status(), 202);

    // Pushes nobody logged in for are audited: refusals of a known project, and each sync
    // (written by the background sync after it ends, so waited for).
    let deadline = Instant::now() + Duration::from_secs(10);
    let audit = loop {
        let audit = body(s.get(&t, "/api/v1/audit?limit=500").await, 200).await;
        let entries = audit["items"].as_array().unwrap().clone();
        let by = |action: &str, outcome: &str| {
            entries
                .iter()
                .filter(|e| {
                    e["actor"] == "git-push" && e["action"] == action && e["outcome"] == outcome
                })
                .count()
        };
        if by("project.push", "denied") >= 5 && by("project.sync", "ok") >= 3 {
            break audit;
        }
        assert!(Instant::now() < deadline, "push calls not audited: {audit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !audit.to_string().contains(&secret),
        "a push secret in the audit trail"
    );
    s.stop().await;
}

fn ids_other() -> String {
    antcode_core::ids::new_id()
}

#[tokio::test]
async fn subdirectories_tags_commits_and_ssh_keys() {
    let git = GitHttp::start(None);
    let repo = Repo::create(git.root(), "mono.git");
    repo.write("jobs/etl/run.py", "print('etl')\n")
        .write("jobs/etl/reqs.txt", "rich\n")
        .write("web/index.html", "<p>\n");
    let first = repo.commit("monorepo");
    repo.tag("v1", Some("release 1"));
    repo.push("main");
    let s = server().await;
    let t = s.admin().await;

    // A subdirectory with its own entrypoint and requirements file.
    let create = json!({"name": "etl", "git": {"url": git.url("mono.git"), "ref": "main",
        "subdir": "jobs/etl", "entrypoint": "run.py", "requirements": "reqs.txt"}});
    let p = body(s.post_json(&t, "/api/v1/projects", create).await, 201).await;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["version"]["files"], json!(["reqs.txt", "run.py"]));
    assert_eq!(p["version"]["requirements"], "rich\n");
    // A commit outside the subdirectory changes none of its files.
    repo.write("web/index.html", "<p>changed\n");
    repo.commit("web only");
    repo.push("main");
    assert_eq!(sync(&s, &t, &id).await["outcome"], "unchanged");

    // An annotated tag and a bare commit id.
    let tag = json!({"name": "tagged", "git": {"url": git.url("mono.git"), "ref": "v1", "subdir": "jobs/etl", "entrypoint": "run.py"}});
    let p = body(s.post_json(&t, "/api/v1/projects", tag).await, 201).await;
    assert_eq!(p["version"]["origin"]["commit"], first);
    let pinned = json!({"name": "pinned", "git": {"url": git.url("mono.git"), "ref": first, "subdir": "jobs/etl", "entrypoint": "run.py"}});
    let p = body(s.post_json(&t, "/api/v1/projects", pinned).await, 201).await;
    assert_eq!(p["version"]["origin"]["commit"], first);

    // Missing refs, subdirectories and entrypoints are the caller's to fix: 422 naming them.
    for (git_src, names) in [
        (json!({"url": git.url("mono.git"), "ref": "nope"}), "nope"),
        (
            json!({"url": git.url("mono.git"), "ref": "main", "subdir": "jobs/missing"}),
            "jobs/missing",
        ),
        (
            json!({"url": git.url("mono.git"), "ref": "main", "subdir": "jobs/etl", "entrypoint": "nope.py"}),
            "nope.py",
        ),
    ] {
        let resp = s
            .post_json(
                &t,
                "/api/v1/projects",
                json!({"name": "bad", "git": git_src}),
            )
            .await;
        let p = problem(resp, if names == "nope.py" { 400 } else { 422 }).await;
        assert!(p["detail"].as_str().unwrap().contains(names), "{p}");
    }
    // A repository the server does not have: its answer, as a 4xx or 502, never a 500.
    let resp = s
        .post_json(
            &t,
            "/api/v1/projects",
            json!({"name": "bad", "git": {"url": git.url("missing.git")}}),
        )
        .await;
    assert!(
        [422, 502].contains(&resp.status().as_u16()),
        "{:?}",
        resp.text().await
    );

    // SSH with a deploy key, pinned to the server's host key.
    let (private, public) = ssh_keypair();
    let sshd = GitSsh::start(&public);
    let over_ssh = Repo::create(sshd.root(), "ssh.git");
    over_ssh.write("main.py", "print('ssh')\n");
    let commit = over_ssh.commit("over ssh");
    over_ssh.push("main");
    let key = json!({"kind": "ssh_key", "private_key": private, "known_hosts": sshd.known_hosts()});
    body(
        s.put_json(&t, "/api/v1/git-credentials/key", key).await,
        201,
    )
    .await;
    let create = json!({"name": "ssh", "git": {"url": sshd.url("ssh.git"), "ref": "main", "credential": "key"}});
    let p = body(s.post_json(&t, "/api/v1/projects", create).await, 201).await;
    assert_eq!(p["version"]["origin"]["commit"], commit);
    let listed = s
        .get(&t, "/api/v1/git-credentials")
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains("PRIVATE KEY"), "{listed}");
    // Another host key in known_hosts: refused, the key never offered to an impostor.
    let (_, other_host) = ssh_keypair();
    let mut fields = other_host.split_whitespace();
    let impostor = format!(
        "{} {} {}\n",
        sshd.known_hosts().split_whitespace().next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    let key = json!({"kind": "ssh_key", "private_key": ssh_keypair().0, "known_hosts": impostor});
    body(
        s.put_json(&t, "/api/v1/git-credentials/key", key).await,
        200,
    )
    .await;
    let p = problem(
        s.post(
            &t,
            &format!("/api/v1/projects/{}/sync", p["id"].as_str().unwrap()),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(p["type"], "urn:antcode:problem:git-auth", "{p}");
    assert!(!p.to_string().contains("PRIVATE"), "{p}");
    s.stop().await;
}

#[tokio::test]
async fn sources_are_checked_before_anything_is_fetched() {
    let s = start().await; // private addresses refused, as by default
    let t = s.admin().await;
    let git = GitHttp::start(None);
    first_job(git.root(), "local.git");
    for url in [
        git.url("local.git"),
        "http://localhost/x.git".into(),
        "https://169.254.169.254/latest".into(),
        "http://[::1]/x.git".into(),
        "http://10.0.0.1/x.git".into(),
        "file:///etc".into(),
        "/etc".into(),
        "ext::sh -c id".into(),
        "https://user:pw@example.com/x.git".into(),
        "ssh://-oProxyCommand=x/y".into(),
    ] {
        let create = json!({"name": "ssrf", "git": {"url": url}});
        let p = problem(s.post_json(&t, "/api/v1/projects", create).await, 422).await;
        assert_eq!(p["type"], "urn:antcode:problem:git-refused", "{url}: {p}");
        assert!(
            p["detail"].as_str().unwrap().starts_with("git.url: "),
            "{p}"
        );
    }
    // Malformed sources: 400 naming the field, nothing written.
    for (git_src, field) in [
        (
            json!({"url": "https://example.com/x.git", "interval_s": 10}),
            "git.interval_s",
        ),
        (
            json!({"url": "https://example.com/x.git", "subdir": "../up"}),
            "git.subdir",
        ),
        (
            json!({"url": "https://example.com/x.git", "credential": "nope"}),
            "git.credential",
        ),
        (
            json!({"url": "https://example.com/x.git", "branch": "main"}),
            "branch",
        ),
    ] {
        let p = problem(
            s.post_json(
                &t,
                "/api/v1/projects",
                json!({"name": "bad", "git": git_src}),
            )
            .await,
            400,
        )
        .await;
        assert!(
            p["detail"].as_str().unwrap().contains(field),
            "{field}: {p}"
        );
    }
    let long = json!({"name": "bad", "git": {"url": "x".repeat(3000)}});
    let p = problem(s.post_json(&t, "/api/v1/projects", long).await, 422).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("git.url: at most"),
        "{p}"
    );
    // Credentials: admin only, checked.
    let viewer = s.user_with_role(&t, "v", "viewer").await;
    let token = json!({"kind": "token", "token": "x"});
    problem(
        s.put_json(&viewer, "/api/v1/git-credentials/a", token.clone())
            .await,
        403,
    )
    .await;
    for (b, why) in [
        (json!({"kind": "password", "token": "x"}), "kind"),
        (json!({"kind": "token"}), "token"),
        (
            json!({"kind": "ssh_key", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n"}),
            "known_hosts",
        ),
        (
            json!({"kind": "ssh_key", "private_key": "nope", "known_hosts": "h k v"}),
            "private_key",
        ),
    ] {
        let p = problem(s.put_json(&t, "/api/v1/git-credentials/a", b).await, 400).await;
        assert!(p["detail"].as_str().unwrap().contains(why), "{why}: {p}");
    }
    problem(
        s.put_json(&t, "/api/v1/git-credentials/bad%20name", token)
            .await,
        400,
    )
    .await;
    assert_eq!(
        body(s.get(&t, "/api/v1/git-credentials").await, 200).await["items"],
        json!([])
    );
    // An upload project has nothing to sync.
    let id = inline_project(&s, &t, "uploaded").await;
    problem(
        s.post(&t, &format!("/api/v1/projects/{id}/sync")).await,
        409,
    )
    .await;
    let list = body(s.get(&t, "/api/v1/projects").await, 200).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only the upload exists"
    );
    s.stop().await;
}

#[tokio::test]
async fn oversized_repositories_are_refused() {
    let s = start_with(|c| {
        c.git.allow_private = true;
        c.git.max_fetch_bytes = 1024 * 1024;
    })
    .await;
    let t = s.admin().await;
    let git = GitHttp::start(None);
    let repo = Repo::create(git.root(), "big.git");
    // xorshift: bytes no compressor shrinks.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    repo.write("main.py", "print(1)\n").write("blob.bin", noise);
    repo.commit("big");
    repo.push("main");
    let create = json!({"name": "big", "git": {"url": git.url("big.git"), "ref": "main"}});
    let p = problem(s.post_json(&t, "/api/v1/projects", create).await, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("MiB"), "{p}");
    s.stop().await;
}

#[tokio::test]
async fn an_interval_syncs_by_itself() {
    let git = GitHttp::start(None);
    let repo = first_job(git.root(), "timed.git");
    let s = server().await;
    let t = s.admin().await;
    let create = json!({"name": "timed", "git": {"url": git.url("timed.git"), "ref": "main", "interval_s": 60}});
    let p = body(s.post_json(&t, "/api/v1/projects", create).await, 201).await;
    let id = p["id"].as_str().unwrap().to_string();
    repo.write("main.py", "print('timed')\n");
    let commit = repo.commit("timed");
    repo.push("main");
    // As if the last sync were two minutes ago: the next look (every 15 s) syncs it.
    let mut status: antcode_core::git::SyncStatus =
        serde_json::from_value(p["sync"].clone()).unwrap();
    status.at -= 120_000;
    s.store.record_sync(&id, &status).await.unwrap();
    wait_for_commit(&s, &t, &id, &commit, Duration::from_secs(40)).await;
    let p = body(s.get(&t, &format!("/api/v1/projects/{id}")).await, 200).await;
    assert_eq!(p["sync"]["trigger"], "interval");
    s.stop().await;
}
