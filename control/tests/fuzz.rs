//! Fuzzing the parsers that face users: random bytes, mutated archives and random JSON thrown at
//! project uploads and task creation/patching. Whatever arrives, the answer is never a 5xx, a
//! refusal is problem+json, and a refused request writes nothing (no blob, no project, no task).
//!
//! Cases come from a seeded RNG (`ANTCODE_FUZZ_SEED` replays a failure; the seed is printed in
//! every assertion message), a few hundred per target so the whole file stays well under 20 s.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use antcode_testkit::control::*;
use antcode_testkit::fixtures::*;

fn seed() -> u64 {
    std::env::var("ANTCODE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

/// Strings that tend to break parsers: control characters, NUL, path tricks, odd Unicode.
fn nasty_string(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "",
        " ",
        "\0",
        "\n",
        "\r\n",
        "\t",
        "\u{7f}",
        "../",
        "/etc/passwd",
        "..",
        "main.py",
        "é",
        "🦀",
        "\u{202e}",
        "\u{feff}",
        "%00",
        "{",
        "\"",
        "\\",
        "'",
        "null",
        "*/5 * * * *",
        "9999999999999999999999",
        "-1",
        "1e400",
        "default",
        "API_TOKEN",
        "<script>",
    ];
    let n = rng.gen_range(0..6);
    let mut s = String::new();
    for _ in 0..n {
        if rng.gen_bool(0.7) {
            s.push_str(PIECES[rng.gen_range(0..PIECES.len())]);
        } else {
            let len = rng.gen_range(0..40);
            s.extend((0..len).map(|_| rng.gen_range(0x20u8..0x7f) as char));
        }
    }
    if rng.gen_ratio(1, 40) {
        s.push_str(&"x".repeat(rng.gen_range(1000..70_000)));
    }
    s
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth == 0 {
        rng.gen_range(0..5)
    } else {
        rng.gen_range(0..7)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => match rng.gen_range(0..4) {
            0 => json!(rng.gen::<i64>()),
            1 => json!(rng.gen::<u64>()),
            2 => json!(rng.gen_range(-3i64..5)),
            _ => json!(rng.gen::<f64>() * 1e12 - 5e11),
        },
        3 | 4 => Value::String(nasty_string(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..5))
                .map(|_| (nasty_string(rng), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A task body: a valid one with fields dropped, replaced by random JSON, or added.
fn task_body(rng: &mut StdRng, project_id: &str, n: usize) -> Value {
    let mut body = json!({
        "name": format!("fuzz-{n}"), "project_id": project_id, "args": ["a"], "env": {"A": "1"},
        "secrets": [], "queue": "default", "labels": {"k": "v"}, "timeout_s": 60,
        "retry": {"max_attempts": 2, "backoff_s": 1, "max_backoff_s": 5},
        "schedule": {"kind": "cron", "cron": "*/5 * * * *", "timezone": "UTC"},
        "overlap": "allow", "misfire": "skip", "priority": 0, "paused": false,
        "max_concurrency": 2, "concurrency": {"key": "site:example.com", "limit": 3}
    });
    let keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    let obj = body.as_object_mut().unwrap();
    for _ in 0..rng.gen_range(1..4) {
        let key = keys[rng.gen_range(0..keys.len())].clone();
        match rng.gen_range(0..5) {
            0 => {
                obj.remove(&key);
            }
            1 => {
                obj.insert(nasty_string(rng), random_json(rng, 2));
            }
            // Nested fields get random values too (retry.*, schedule.*, concurrency.*).
            2 if ["retry", "schedule", "concurrency"].contains(&key.as_str()) => {
                if let Some(Value::Object(inner)) = obj.get_mut(&key) {
                    let ks: Vec<String> = inner.keys().cloned().collect();
                    let k = ks[rng.gen_range(0..ks.len())].clone();
                    inner.insert(k, random_json(rng, 1));
                }
            }
            _ => {
                obj.insert(key, random_json(rng, 3));
            }
        }
    }
    body
}

fn mutate(rng: &mut StdRng, mut data: Vec<u8>) -> Vec<u8> {
    match rng.gen_range(0..4) {
        0 if !data.is_empty() => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 if !data.is_empty() => data.truncate(rng.gen_range(0..data.len())),
        2 => {
            let at = rng.gen_range(0..=data.len());
            let junk: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
            data.splice(at..at, junk);
        }
        _ => data = (0..rng.gen_range(0..2048)).map(|_| rng.gen()).collect(),
    }
    data
}

async fn project_count(s: &Server, t: &str) -> usize {
    let v: Value = s
        .get(t, "/api/v1/projects?limit=500")
        .await
        .json()
        .await
        .unwrap();
    v["items"].as_array().unwrap().len()
}

async fn task_count(s: &Server, t: &str) -> usize {
    let v: Value = s
        .get(t, "/api/v1/tasks?limit=500")
        .await
        .json()
        .await
        .unwrap();
    v["items"].as_array().unwrap().len()
}

/// `body` posted to `POST /projects` as `content_type`.
async fn post_raw(s: &Server, t: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    // A refused upload is answered before its body is read, and the server then closes the
    // connection; pooled, the client could send the next request on it as it closes (a
    // broken pipe that is not the server's answer). So this connection is not reused.
    s.http
        .post(s.url("/api/v1/projects"))
        .bearer_auth(t)
        .header("content-type", content_type)
        .header("connection", "close")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Checks one answer; true when it was a success (something may have been written).
async fn check(resp: reqwest::Response, what: &str, seed: u64) -> bool {
    let status = resp.status().as_u16();
    assert!(status < 500, "{what} answered {status} (seed {seed})");
    if status >= 400 {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert_eq!(
            ct, "application/problem+json",
            "{what}: {status} (seed {seed})"
        );
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(body["status"], status, "{what} (seed {seed})");
        false
    } else {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_survive_random_bytes_archives_and_json() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let s = start().await;
    let t = s.admin().await;
    let mut projects = project_count(&s, &t).await;
    let mut files = count_files(&s.blob_dir);
    let mut accepted = 0;
    let valid_zip = zip_of(&[("main.py", b"print(1)\n"), ("requirements.txt", b"six\n")]);
    let valid_tar = tar_gz_of(&[("main.py", b"print(1)\n")], &[]);
    for n in 0..240 {
        let name = format!("fz-{n}");
        let (resp, what) = match n % 4 {
            // Raw bytes under whatever content type.
            0 => {
                let ct = [
                    "multipart/form-data; boundary=xyz",
                    "multipart/form-data",
                    "application/json",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                ][rng.gen_range(0..5)];
                let body: Vec<u8> = mutate(&mut rng, b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.py\"\r\n\r\nprint(1)\r\n--xyz--\r\n".to_vec());
                let resp = post_raw(&s, &t, ct, body).await;
                (resp, format!("raw bytes as {ct}"))
            }
            // A mutated archive (or random bytes) under a plausible file name.
            1 | 2 => {
                let (file, base) = match rng.gen_range(0..3) {
                    0 => ("p.zip", valid_zip.clone()),
                    1 => ("p.tar.gz", valid_tar.clone()),
                    _ => ("p.py", b"print('hi')\n".to_vec()),
                };
                let data = mutate(&mut rng, base);
                let mut fields = vec![("name", name.clone())];
                if rng.gen_bool(0.3) {
                    fields.push(("entrypoint", nasty_string(&mut rng)));
                }
                if rng.gen_bool(0.3) {
                    fields.push(("requirements", nasty_string(&mut rng)));
                }
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let resp = s
                    .upload(&t, "/api/v1/projects", (file, data), &fields)
                    .await;
                (resp, format!("mutated {file}"))
            }
            // Inline-code JSON: random values in the known fields, or random JSON altogether.
            _ => {
                let body = if rng.gen_bool(0.5) {
                    let mut o = Map::new();
                    o.insert("name".into(), json!(name));
                    for k in ["code", "entrypoint", "requirements", "description"] {
                        if rng.gen_bool(0.6) {
                            o.insert(k.into(), random_json(&mut rng, 2));
                        }
                    }
                    Value::Object(o)
                } else {
                    random_json(&mut rng, 3)
                };
                let resp = s.post_json(&t, "/api/v1/projects", body.clone()).await;
                (
                    resp,
                    format!(
                        "inline JSON {}",
                        body.to_string().chars().take(200).collect::<String>()
                    ),
                )
            }
        };
        let ok = check(resp, &what, seed).await;
        let (p, f) = (project_count(&s, &t).await, count_files(&s.blob_dir));
        if ok {
            assert_eq!(
                p,
                projects + 1,
                "{what} succeeded: one project more (seed {seed})"
            );
        } else {
            assert_eq!(
                p, projects,
                "{what} was refused but made a project (seed {seed})"
            );
            assert_eq!(f, files, "{what} was refused but left a blob (seed {seed})");
        }
        projects = p;
        files = f;
        accepted += ok as usize;
    }
    // Both outcomes must have happened, or the fuzz is not reaching the parsers.
    assert!(
        accepted > 5 && accepted < 200,
        "{accepted} of 240 uploads accepted (seed {seed})"
    );
    s.stop().await;
}

/// A multipart body built part by part from random choices: the boundary, each part's headers
/// (known and unknown field names, file names with paths, odd content types, missing or doubled
/// headers), its content (valid bundles, links out, mutated bytes, long text) and the closing
/// delimiter (present, missing or garbled).
fn random_multipart(rng: &mut StdRng, n: usize, archives: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = match rng.gen_range(0..4) {
        0 => "b".to_string(),
        1 => format!("----fuzz{n}"),
        2 => "x".repeat(rng.gen_range(60..90)),
        _ => nasty_string(rng)
            .chars()
            .filter(|c| c.is_ascii_graphic() && !"\";".contains(*c))
            .collect(),
    };
    let mut body = Vec::new();
    let mut named = false;
    for _ in 0..rng.gen_range(0..6) {
        let field = match rng.gen_range(0..8) {
            0 | 1 => "file".to_string(),
            2 if !named => {
                named = true;
                "name".to_string()
            }
            3 => "description".to_string(),
            4 => "entrypoint".to_string(),
            5 => "requirements".to_string(),
            _ => nasty_string(rng).replace(['"', '\r', '\n'], ""),
        };
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if rng.gen_bool(0.95) {
            let mut disposition = format!("Content-Disposition: form-data; name=\"{field}\"");
            if field == "file" || rng.gen_bool(0.1) {
                let file = [
                    "main.py",
                    "p.zip",
                    "p.tar.gz",
                    "../../etc/x.py",
                    "",
                    "a\\b.py",
                ][rng.gen_range(0..6)];
                disposition.push_str(&format!("; filename=\"{file}\""));
            }
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        if rng.gen_bool(0.3) {
            let ct =
                ["application/zip", "text/plain; charset=latin1", "x/y", ""][rng.gen_range(0..4)];
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        let content = match (field.as_str(), rng.gen_range(0..4)) {
            ("name", _) => format!("mp-{n}").into_bytes(),
            ("file", 0..=1) => archives[rng.gen_range(0..archives.len())].1.clone(),
            ("file", 2) => {
                let base = archives[rng.gen_range(0..archives.len())].1.clone();
                mutate(rng, base)
            }
            _ => nasty_string(rng).into_bytes(),
        };
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\r\n");
    }
    match rng.gen_range(0..6) {
        0 => {}
        1 => body.extend_from_slice(format!("--{boundary}").as_bytes()),
        2 => body = mutate(rng, body),
        _ => body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes()),
    }
    let content_type = match rng.gen_range(0..10) {
        0 => "multipart/form-data".to_string(),
        1 => format!("multipart/form-data; boundary=\"{boundary}\""),
        2 => "multipart/form-data; boundary=other".to_string(),
        _ => format!("multipart/form-data; boundary={boundary}"),
    };
    (content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_multipart_bodies_never_5xx_and_write_nothing_when_refused() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let s = start().await;
    let t = s.admin().await;
    let archives = [
        ("main.py", b"print(1)\n".to_vec()),
        ("p.zip", zip_of(&[("main.py", b"print(1)\n")])),
        (
            "p.tar.gz",
            tar_gz_of(&[("main.py", b"print(1)\n")], &[("l", "main.py")]),
        ),
        (
            "out.tar.gz",
            tar_gz_in_order(&[
                ("main.py", None, b"print(1)"),
                ("a/b/c/d/up", Some("../../../.."), b""),
                ("esc", Some("a/b/c/d/up/../../../../X"), b""),
                ("esc", None, b"owned"),
            ]),
        ),
    ];
    let (mut projects, mut files) = (project_count(&s, &t).await, count_files(&s.blob_dir));
    let mut accepted = 0;
    for n in 0..200 {
        let (ct, body) = random_multipart(&mut rng, n, &archives);
        let what = format!("multipart case {n} as {ct:?}");
        let ok = check(post_raw(&s, &t, &ct, body).await, &what, seed).await;
        let (p, f) = (project_count(&s, &t).await, count_files(&s.blob_dir));
        let want = if ok { projects + 1 } else { projects };
        assert_eq!(p, want, "{what}: projects (seed {seed})");
        if !ok {
            assert_eq!(f, files, "{what} was refused but left a blob (seed {seed})");
        }
        (projects, files) = (p, f);
        accepted += ok as usize;
    }
    println!("{accepted} of 200 random multipart bodies accepted (seed {seed})");
    assert!(accepted < 150, "{accepted} of 200 accepted (seed {seed})");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_bodies_survive_random_json() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let s = start().await;
    let t = s.admin().await;
    let p: Value = s
        .post_json(
            &t,
            "/api/v1/projects",
            json!({"name": "p", "code": "print(1)\n"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    let task: Value = s
        .post_json(
            &t,
            "/api/v1/tasks",
            json!({"name": "base", "project_id": pid}),
        )
        .await
        .json()
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap().to_string();
    let mut tasks = task_count(&s, &t).await;
    let mut accepted = 0;
    for n in 0..300 {
        let (resp, what, creates) = match n % 3 {
            0 => {
                let body = task_body(&mut rng, &pid, n);
                let resp = s.post_json(&t, "/api/v1/tasks", body.clone()).await;
                (resp, format!("POST /tasks {body}"), true)
            }
            1 => {
                let body = random_json(&mut rng, 4);
                let resp = s.post_json(&t, "/api/v1/tasks", body.clone()).await;
                (resp, format!("POST /tasks {body}"), true)
            }
            _ => {
                let body = if rng.gen_bool(0.6) {
                    let mut b = task_body(&mut rng, &pid, n);
                    // A patch changes a few fields; keep the name unless the fuzz touched it.
                    b.as_object_mut().unwrap().retain(|_, _| rng.gen_bool(0.3));
                    b
                } else {
                    random_json(&mut rng, 3)
                };
                let resp = s
                    .http
                    .patch(s.url(&format!("/api/v1/tasks/{tid}")))
                    .bearer_auth(&t)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (resp, format!("PATCH /tasks {body}"), false)
            }
        };
        let what: String = what.chars().take(400).collect();
        let ok = check(resp, &what, seed).await;
        let now = task_count(&s, &t).await;
        let want = if ok && creates { tasks + 1 } else { tasks };
        assert_eq!(now, want, "{what}: task count (seed {seed})");
        tasks = now;
        accepted += ok as usize;
    }
    assert!(
        accepted > 5 && accepted < 250,
        "{accepted} of 300 accepted (seed {seed})"
    );
    // Raw bytes that are not JSON at all.
    for _ in 0..60 {
        let body: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
        let resp = s
            .http
            .post(s.url("/api/v1/tasks"))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(!check(resp, "random bytes to POST /tasks", seed).await);
    }
    assert_eq!(task_count(&s, &t).await, tasks);
    s.stop().await;
}
