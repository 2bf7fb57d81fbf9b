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

/// Uploads `data` as project `name`'s first version (or, with `pid`, as its next): the project
/// id.
async fn upload_version(
    s: &Server,
    t: &str,
    pid: Option<&str>,
    file: &str,
    data: Vec<u8>,
) -> String {
    let (path, fields) = match pid {
        Some(pid) => (format!("/api/v1/projects/{pid}/versions"), vec![]),
        None => ("/api/v1/projects".to_string(), vec![("name", file)]),
    };
    let resp = s.upload(t, &path, (file, data), &fields).await;
    assert_eq!(resp.status(), 201, "{file}");
    let body: Value = resp.json().await.unwrap();
    pid.map_or_else(|| body["id"].as_str().unwrap().to_string(), str::to_string)
}

/// `(path, size, binary)` of a version's listing.
async fn listed(s: &Server, t: &str, pid: &str, n: i64) -> Vec<(String, u64, bool)> {
    let resp = s
        .get(t, &format!("/api/v1/projects/{pid}/versions/{n}/files"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["truncated"], false);
    body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_string();
            (path, f["size"].as_u64().unwrap(), f["binary"] == true)
        })
        .collect()
}

#[tokio::test]
async fn versions_list_their_files_zip_tar_gz_and_single() {
    let s = start().await;
    let t = s.admin().await;
    let viewer = s.user_with_role(&t, "vi", "viewer").await;
    let zip = zip_of(&[
        ("main.py", b"import pkg.util\n"),
        ("pkg/util.py", b"X = 1\n"),
        ("logo.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
    ]);
    let zid = upload_version(&s, &t, None, "zipped.zip", zip).await;
    let want = vec![
        ("logo.png".to_string(), 10, true),
        ("main.py".to_string(), 16, false),
        ("pkg/util.py".to_string(), 6, false),
    ];
    assert_eq!(listed(&s, &viewer, &zid, 1).await, want);
    // Cached by bundle key: the same answer again.
    assert_eq!(listed(&s, &viewer, &zid, 1).await, want);

    let tgz = tar_gz_of(
        &[("main.py", b"print(1)\n"), ("data/a.txt", b"a\n")],
        &[("link.py", "main.py")],
    );
    let gid = upload_version(&s, &t, None, "tarred.tar.gz", tgz).await;
    let files: Value = s
        .get(&viewer, &format!("/api/v1/projects/{gid}/versions/1/files"))
        .await
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["data/a.txt", "link.py", "main.py"]);
    assert_eq!(files["files"][1]["link"], "main.py");

    let pid = upload_version(&s, &t, None, "single.py", b"print('one')\n".to_vec()).await;
    assert_eq!(
        listed(&s, &viewer, &pid, 1).await,
        vec![("single.py".to_string(), 13, false)]
    );
    let resp = s
        .get(&viewer, &format!("/api/v1/projects/{pid}/versions/9/files"))
        .await;
    problem(resp, 404).await;
    s.stop().await;
}

#[tokio::test]
async fn a_file_is_read_as_text_and_escapes_are_refused() {
    let s = start().await;
    let t = s.admin().await;
    let viewer = s.user_with_role(&t, "vi", "viewer").await;
    // Over 1 MiB unpacked, a few KiB zipped.
    let big = "# padding\n".repeat(120_000);
    let zip = zip_of(&[
        ("main.py", b"class A:\n    pass\n"),
        ("pkg/util.py", "s = 'caf\u{e9}'\n".as_bytes()),
        ("blob.bin", b"\x00\x01\x02\x03"),
        ("big.py", big.as_bytes()),
    ]);
    let pid = upload_version(&s, &t, None, "files.zip", zip).await;
    let file = |path: &str| format!("/api/v1/projects/{pid}/versions/1/files/{path}");
    let read = |path: String| {
        let s = &s;
        let viewer = &viewer;
        async move {
            let resp = s.get(viewer, &path).await;
            assert_eq!(resp.status(), 200, "{path}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let main = read(file("main.py")).await;
    assert_eq!(main["text"], "class A:\n    pass\n");
    assert_eq!(
        (main["binary"].clone(), main["too_large"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(read(file("pkg/util.py")).await["text"], "s = 'caf\u{e9}'\n");
    // Normalised like the listing: `./` and doubled slashes name the same file.
    assert_eq!(read(file("./pkg//util.py")).await["path"], "pkg/util.py");

    let bin = read(file("blob.bin")).await;
    assert_eq!(bin["binary"], true);
    assert!(bin.get("text").is_none(), "{bin}");
    let large = read(file("big.py")).await;
    assert_eq!(large["too_large"], true);
    assert_eq!(large["size"], big.len());
    assert!(large.get("text").is_none());

    problem(s.get(&viewer, &file("nope.py")).await, 404).await;
    // `..` and absolute paths, their slashes percent-encoded so the client does not resolve
    // the dots itself.
    for bad in [
        "..%2Fetc%2Fpasswd",
        "pkg%2F..%2F..%2Fx",
        "%2Fetc%2Fpasswd",
        "pkg%5C..%5C..%5Cx",
    ] {
        let body = problem(s.get(&viewer, &file(bad)).await, 400).await;
        assert!(
            body["detail"].as_str().unwrap().contains("path"),
            "{bad}: {body}"
        );
    }

    let single = upload_version(&s, &t, None, "one.py", b"def f():\n    return 1\n".to_vec()).await;
    let one = read(format!("/api/v1/projects/{single}/versions/1/files/one.py")).await;
    assert_eq!(one["text"], "def f():\n    return 1\n");
    let resp = s
        .get(
            &viewer,
            &format!("/api/v1/projects/{single}/versions/1/files/other.py"),
        )
        .await;
    problem(resp, 404).await;
    s.stop().await;
}

#[tokio::test]
async fn a_diff_shows_added_removed_and_modified_files() {
    let s = start().await;
    let t = s.admin().await;
    let viewer = s.user_with_role(&t, "vi", "viewer").await;
    let v1 = zip_of(&[
        ("main.py", b"import os\n\nprint('old')\nx = 1\n"),
        ("gone.py", b"bye = True\n"),
        ("same.txt", b"same\n"),
        ("img.bin", b"\x00\x01"),
    ]);
    let pid = upload_version(&s, &t, None, "diffs.zip", v1).await;
    let v2 = tar_gz_of(
        &[
            ("main.py", b"import os\n\nprint('new')\nx = 1\n"),
            ("fresh.py", b"hello = 1\n"),
            ("same.txt", b"same\n"),
            ("img.bin", b"\x00\x02"),
        ],
        &[],
    );
    upload_version(&s, &t, Some(&pid), "diffs.tar.gz", v2).await;
    let resp = s
        .get(&viewer, &format!("/api/v1/projects/{pid}/diff?from=1&to=2"))
        .await;
    assert_eq!(resp.status(), 200);
    let d: Value = resp.json().await.unwrap();
    assert_eq!((d["from"].clone(), d["to"].clone()), (json!(1), json!(2)));
    assert_eq!(d["unchanged"], 1);
    assert_eq!(d["truncated"], false);
    let by_path = |p: &str| {
        d["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == p)
            .unwrap_or_else(|| panic!("{p} not in {d}"))
            .clone()
    };
    let statuses: Vec<(&str, &str)> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("fresh.py", "added"),
            ("gone.py", "removed"),
            ("img.bin", "modified"),
            ("main.py", "modified")
        ]
    );
    let main = by_path("main.py");
    let text = main["diff"].as_str().unwrap();
    assert!(
        text.starts_with("--- a/main.py\n+++ b/main.py\n@@ "),
        "{text}"
    );
    assert!(text.contains("-print('old')\n+print('new')\n"), "{text}");
    assert!(by_path("fresh.py")["diff"]
        .as_str()
        .unwrap()
        .contains("+hello = 1\n"));
    assert!(by_path("gone.py")["diff"]
        .as_str()
        .unwrap()
        .contains("-bye = True\n"));
    let img = by_path("img.bin");
    assert_eq!(img["binary"], true);
    assert!(img.get("diff").is_none());

    // The other way round, removed and added trade places.
    let back: Value = s
        .get(&viewer, &format!("/api/v1/projects/{pid}/diff?from=2&to=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(back["files"][0]["status"], "removed");
    for bad in ["?from=1", "?from=1&to=x", "?from=1&to=7"] {
        let resp = s
            .get(&viewer, &format!("/api/v1/projects/{pid}/diff{bad}"))
            .await;
        let status = if bad.ends_with('7') { 404 } else { 400 };
        problem(resp, status).await;
    }
    s.stop().await;
}
