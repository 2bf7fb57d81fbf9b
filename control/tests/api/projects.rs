//! Projects: uploads of every bundle format, versions, downloads, and refused uploads.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn uploads_py_zip_and_tar_gz_with_versions_and_download() {
    let s = start().await;
    let t = s.admin().await;

    let py = b"print('hello')\n".to_vec();
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("hello.py", py.clone()),
            &[
                ("name", "single"),
                ("requirements", "six==1.17.0\n"),
                ("python_version", " 3.12 "),
            ],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["current_version"], 1);
    assert_eq!(p["version"]["entrypoint"], "hello.py");
    assert_eq!(p["version"]["requirements"], "six==1.17.0\n");
    assert_eq!(p["version"]["python_version"], "3.12");
    assert_eq!(p["version"]["bundle"]["format"], "py");
    let pid = p["id"].as_str().unwrap().to_string();
    let dl = s
        .get(&t, &format!("/api/v1/projects/{pid}/versions/1/download"))
        .await;
    assert_eq!(dl.status(), 200);
    assert_eq!(dl.bytes().await.unwrap().to_vec(), py);

    let zip = zip_of(&[
        ("main.py", b"import lib\n"),
        ("lib.py", b"X=1\n"),
        ("requirements.txt", b"requests\n"),
    ]);
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("proj.zip", zip.clone()),
            &[("name", "zipped")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let z: Value = resp.json().await.unwrap();
    assert_eq!(z["version"]["entrypoint"], "main.py");
    assert_eq!(z["version"]["requirements"], "requests\n");
    assert_eq!(z["version"]["bundle"]["format"], "zip");
    assert_eq!(
        z["version"]["files"],
        json!(["lib.py", "main.py", "requirements.txt"])
    );

    let tgz = tar_gz_of(&[("app/run.py", b"print(1)\n")], &[]);
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("proj.tar.gz", tgz),
            &[("name", "tarred"), ("entrypoint", "app/run.py")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let g: Value = resp.json().await.unwrap();
    assert_eq!(g["version"]["entrypoint"], "app/run.py");
    assert_eq!(g["version"]["bundle"]["format"], "tar.gz");

    // Inline code.
    let resp = s
        .post_json(
            &t,
            "/api/v1/projects",
            json!({"name": "inline", "code": "print(2)\n"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let i: Value = resp.json().await.unwrap();
    assert_eq!(i["version"]["entrypoint"], "main.py");

    // A new version, then a rollback to the first.
    let resp = s
        .upload(
            &t,
            &format!("/api/v1/projects/{pid}/versions"),
            ("hello.py", b"print('v2')\n".to_vec()),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["version"], 2);
    let versions: Value = s
        .get(&t, &format!("/api/v1/projects/{pid}/versions"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    let resp = s
        .http
        .patch(s.url(&format!("/api/v1/projects/{pid}")))
        .bearer_auth(&t)
        .json(&json!({"current_version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back: Value = resp.json().await.unwrap();
    assert_eq!(back["current_version"], 1);
    assert_eq!(back["version"]["version"], 1);

    let list: Value = s
        .get(&t, "/api/v1/projects?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["next_cursor"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn bad_uploads_are_refused_and_write_nothing() {
    let s = start().await;
    let t = s.admin().await;
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("a.py", b"print(1)\n".to_vec()),
            &[("name", "taken")],
        )
        .await;
    assert_eq!(resp.status(), 201);
    let files_before = count_files(&s.blob_dir);
    let projects_before: Value = s.get(&t, "/api/v1/projects").await.json().await.unwrap();
    for bad in ["3", "3.x", "3.12.1", "v3.12", "3.1234"] {
        let resp = s
            .upload(
                &t,
                "/api/v1/projects",
                ("a.py", b"print(1)\n".to_vec()),
                &[("name", "py"), ("python_version", bad)],
            )
            .await;
        assert_eq!(resp.status(), 400, "python_version {bad:?}");
        let p: Value = resp.json().await.unwrap();
        assert!(
            p["detail"].as_str().unwrap().contains("python_version"),
            "{p}"
        );
    }

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "blob.bin",
            b"\x7fELF\x02\x01garbage".to_vec(),
            "not a Python file",
        ),
        (
            "evil.zip",
            zip_of(&[("../x.py", b"print(1)")]),
            "parent directory",
        ),
        (
            "abs.tar.gz",
            tar_gz_of(&[("/abs.py", b"print(1)")], &[]),
            "absolute",
        ),
        (
            "link.tar.gz",
            tar_gz_of(&[("main.py", b"print(1)")], &[("pw", "/etc/passwd")]),
            "symlink",
        ),
        (
            // Issue 23: each link looks inside alone; through the first, the second leaves the
            // root, and the file written at `esc` would land above it.
            "chain.tar.gz",
            tar_gz_in_order(&[
                ("main.py", None, b"print(1)"),
                ("a/b/c/d/up", Some("../../../.."), b""),
                ("esc", Some("a/b/c/d/up/../../../../X"), b""),
                ("esc", None, b"owned"),
            ]),
            "outside the bundle",
        ),
        (
            "nomain.zip",
            zip_of(&[("a.py", b"1"), ("b.py", b"2")]),
            "entrypoint",
        ),
        (
            "corrupt.zip",
            b"PK\x03\x04 this is not really a zip".to_vec(),
            "corrupt",
        ),
    ];
    for (i, (name, data, needle)) in cases.into_iter().enumerate() {
        let pname = format!("bad-{i}");
        let resp = s
            .upload(&t, "/api/v1/projects", (name, data), &[("name", &pname)])
            .await;
        let body = problem(resp, 400).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{name}: {detail}");
    }
    // Entry point named but absent.
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("ok.zip", zip_of(&[("main.py", b"1")])),
            &[("name", "x"), ("entrypoint", "nope.py")],
        )
        .await;
    problem(resp, 400).await;
    // Duplicate name.
    let resp = s
        .upload(
            &t,
            "/api/v1/projects",
            ("b.py", b"print(2)\n".to_vec()),
            &[("name", "taken")],
        )
        .await;
    problem(resp, 409).await;
    // Too large: 413.
    let big = vec![b'#'; 2 * 1024 * 1024];
    let resp = s
        .upload(&t, "/api/v1/projects", ("big.py", big), &[("name", "big")])
        .await;
    assert_eq!(resp.status(), 413);

    assert_eq!(
        count_files(&s.blob_dir),
        files_before,
        "a refused upload left a blob behind"
    );
    let projects_after: Value = s.get(&t, "/api/v1/projects").await.json().await.unwrap();
    assert_eq!(projects_before["items"], projects_after["items"]);
    s.stop().await;
}

/// A form refused at its first field is answered, not cut off while the client still sends the
/// rest: the server reads what is left (within the body limit) before it answers.
#[tokio::test]
async fn an_upload_refused_early_gets_its_answer() {
    let s = start().await;
    let t = s.admin().await;
    for _ in 0..5 {
        let form = reqwest::multipart::Form::new()
            .text("name", "n".repeat(10_000))
            .part(
                "file",
                reqwest::multipart::Part::bytes(vec![b'#'; 900 * 1024]).file_name("big.py"),
            );
        let resp = s
            .http
            .post(s.url("/api/v1/projects"))
            .bearer_auth(&t)
            .multipart(form)
            .send()
            .await
            .expect("an answer, not a broken connection");
        let body = problem(resp, 422).await;
        assert!(
            body["detail"].as_str().unwrap().starts_with("name"),
            "{body}"
        );
    }
}
