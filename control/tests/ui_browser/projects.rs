//! Projects: upload one, a server error shown readably, edit its single file into a new
//! version, upload another version and roll back; follow a Git repository and sync it; browse an
//! archive's files with a highlighted viewer and compare two of its versions.

use fantoccini::Client;

use crate::harness::*;

/// Uploads project `hello` and takes it through three versions: the project's id.
pub async fn upload_edit_and_roll_back(c: &Client, sys: &System, admin: &str) -> String {
    let base = sys.base.as_str();
    let work = tempfile::tempdir().unwrap();
    // --- upload a project --------------------------------------------------------------------
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    let script = work.path().join("hello.py");
    std::fs::write(&script, SCRIPT).unwrap();
    fill(c, "#upload-form input[name=name]", "hello").await;
    css(c, "#upload-form input[name=file]")
        .await
        .send_keys(script.to_str().unwrap())
        .await
        .unwrap();
    shot(c, "02-projects-upload").await;
    click(c, "#upload-form button[type=submit]").await;
    heading_is(c, "hello").await;
    let project_id = current_hash(c)
        .await
        .trim_start_matches("/projects/")
        .to_string();
    wait_js(
        c,
        "const b = document.querySelector('#file-browser .file-tree'); return b && b.textContent.includes('hello.py')",
        "the project's file list",
    )
    .await;
    shot(c, "03-project-detail").await;

    // A server error is shown readably (problem+json title and detail): same name again.
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    fill(c, "#upload-form input[name=name]", "hello").await;
    css(c, "#upload-form input[name=file]")
        .await
        .send_keys(script.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#upload-form button[type=submit]").await;
    let message = wait_js(
        c,
        "const e = document.querySelector('#upload-form .error'); return e && !e.hidden && e.textContent;",
        "the conflict message",
    )
    .await;
    let message = message.as_str().unwrap_or_default();
    assert!(
        message.contains("Conflict") && message.contains("already exists"),
        "{message}"
    );
    shot(c, "04-error-message").await;
    // The only console entry allowed here is the failed request itself.
    for e in console_errors(c).await {
        assert!(e.contains("409"), "unexpected console error: {e}");
    }

    // --- edit the single file into a new version -----------------------------------------------
    go(c, base, &format!("/projects/{project_id}/edit")).await;
    heading_is(c, "Edit hello").await;
    wait_js(
        c,
        "return document.querySelector('#editor-form textarea[name=code]').value.includes('hello-from-ui-test')",
        "the code in the editor",
    )
    .await;
    c.execute(
        "const t = document.querySelector('#editor-form textarea[name=code]'); t.value += '# edited in the browser\\n';",
        vec![],
    )
    .await
    .unwrap();
    shot(c, "05-project-editor").await;
    click(c, "#editor-form button[type=submit]").await;
    heading_is(c, "hello").await;
    wait_js(
        c,
        "return document.querySelector('#main .facts').textContent.includes('v2')",
        "version 2 current",
    )
    .await;
    let v2 = sys
        .api
        .get(format!(
            "{}/api/v1/projects/{project_id}/versions/2/download",
            sys.base
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        v2.contains("hello-from-ui-test") && v2.ends_with("# edited in the browser\n"),
        "version 2 is not the edited file: {v2}"
    );

    // --- upload a version from the project page, then roll back to v2 ------------------------------
    let v3_dir = work.path().join("v3");
    std::fs::create_dir(&v3_dir).unwrap();
    let v3_file = v3_dir.join("hello.py");
    std::fs::write(&v3_file, format!("{SCRIPT}# v3\n")).unwrap();
    css(c, "#version-form input[name=file]")
        .await
        .send_keys(v3_file.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#version-form button[type=submit]").await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] .facts'); return f && f.textContent.includes('v3')",
        "version 3 current",
    )
    .await;
    let project_path = format!("/projects/{project_id}");
    assert_eq!(sys.get(admin, &project_path).await["current_version"], 3);
    click_xpath(c, "//main//button[text()='Make v2 current']").await;
    sys.wait_for(admin, &project_path, "the rollback to v2", |p| {
        p["current_version"] == 2
    })
    .await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] .facts'); return f && f.textContent.includes('v2') && !f.textContent.includes('v3')",
        "version 2 current again",
    )
    .await;
    project_id
}

/// Creates project `from-git` from a repository served on loopback, reads its push webhook's
/// secret (shown once), then pushes a change and syncs it with *Sync now*.
pub async fn follow_a_git_repository(c: &Client, sys: &System, admin: &str) {
    let base = sys.base.as_str();
    let git = antcode_testkit::git::GitHttp::start(None);
    let repo = antcode_testkit::git::Repo::create(git.root(), "ui.git");
    repo.write("main.py", "print('from git')\n");
    repo.commit("first from git");
    repo.push("main");
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    fill(c, "#git-form input[name=name]", "from-git").await;
    fill(c, "#git-form input[name=url]", &git.url("ui.git")).await;
    fill(c, "#git-form input[name=ref]", "main").await;
    click(c, "#git-form button[type=submit]").await;
    let secret = wait_js(
        c,
        "const n = document.querySelector('#git-form .notice'); return n && n.textContent;",
        "the push webhook's secret",
    )
    .await;
    assert!(
        secret.as_str().unwrap_or_default().contains("acg"),
        "{secret}"
    );
    shot(c, "03b-project-from-git").await;
    click_xpath(c, "//form[@id='git-form']//a[text()='Open the project']").await;
    heading_is(c, "from-git").await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] .facts'); return f && f.textContent.includes('Git source') && f.textContent.includes('created (create)')",
        "the Git source and its first sync",
    )
    .await;
    repo.write("main.py", "print('again')\n");
    repo.commit("second from git");
    repo.push("main");
    click_xpath(c, "//main//button[text()='Sync now']").await;
    wait_js(
        c,
        "const t = document.querySelector('.page[aria-busy=false] table'); return t && t.textContent.includes('second from git')",
        "version 2 from the pushed commit",
    )
    .await;
    shot(c, "03c-project-synced").await;
    let list = sys.get(admin, "/projects?limit=500").await;
    let made = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "from-git");
    assert_eq!(made.map(|p| p["current_version"].clone()), Some(2.into()));
}

/// The two versions of the archive project `browsed`: v1 has `gone.py`, v2 has `fresh.py` and
/// changes a line of `main.py`.
const BROWSED_V1: &[(&str, &[u8])] = &[
    (
        "main.py",
        b"import os\n\n\n@dataclass\nclass Greeter:\n    \"\"\"Says hello.\"\"\"\n    count = 3  # times\n\n    def greet(self):\n        return 'old greeting'\n",
    ),
    ("pkg/util.py", b"X = 1\n"),
    ("gone.py", b"bye = True\n"),
];

/// Uploads an archive project in two versions through the forms, browses its files (a Python
/// file highlighted, with line numbers; another version picked), then compares the versions.
pub async fn browse_and_compare(c: &Client, sys: &System, admin: &str) {
    let base = sys.base.as_str();
    let work = tempfile::tempdir().unwrap();
    let v1 = work.path().join("browsed.zip");
    std::fs::write(&v1, antcode_testkit::fixtures::zip_of(BROWSED_V1)).unwrap();
    go(c, base, "/projects").await;
    heading_is(c, "Projects").await;
    fill(c, "#upload-form input[name=name]", "browsed").await;
    css(c, "#upload-form input[name=file]")
        .await
        .send_keys(v1.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#upload-form button[type=submit]").await;
    heading_is(c, "browsed").await;
    let project_id = current_hash(c)
        .await
        .trim_start_matches("/projects/")
        .to_string();
    let main = String::from_utf8(BROWSED_V1[0].1.to_vec())
        .unwrap()
        .replace("'old greeting'", "'new greeting'");
    let v2 = work.path().join("browsed-2.tar.gz");
    let tgz = antcode_testkit::fixtures::tar_gz_of(
        &[
            ("main.py", main.as_bytes()),
            ("pkg/util.py", b"X = 1\n"),
            ("fresh.py", b"hello = 1\n"),
        ],
        &[],
    );
    std::fs::write(&v2, tgz).unwrap();
    css(c, "#version-form input[name=file]")
        .await
        .send_keys(v2.to_str().unwrap())
        .await
        .unwrap();
    click(c, "#version-form button[type=submit]").await;
    sys.wait_for(
        admin,
        &format!("/projects/{project_id}"),
        "version 2",
        |p| p["current_version"] == 2,
    )
    .await;

    // The browser opens the entrypoint of the current version, highlighted, lines numbered.
    wait_js(
        c,
        "const v = document.querySelector('.page[aria-busy=false] #file-view pre.code-view'); \
         return v && [...v.querySelectorAll('.tok-kw')].some(s => s.textContent === 'class') \
           && v.querySelector('.tok-dec').textContent === '@dataclass' \
           && v.querySelector('.tok-str').textContent.startsWith('\"\"\"') \
           && v.querySelector('.tok-com').textContent === '# times' \
           && v.querySelector('.line[data-n=\"10\"]').textContent.includes('new greeting')",
        "main.py highlighted",
    )
    .await;
    let tree = wait_js(
        c,
        "return [...document.querySelectorAll('#file-browser .file-tree button')].map(b => b.dataset.path).join(' ')",
        "the file list",
    )
    .await;
    assert_eq!(tree, "fresh.py main.py pkg/util.py");
    click(c, "#file-browser button[data-path='pkg/util.py']").await;
    wait_js(
        c,
        "const v = document.querySelector('#file-view'); return v.querySelector('code').textContent === 'pkg/util.py' \
           && v.querySelector('.tok-num').textContent === '1'",
        "pkg/util.py in the viewer",
    )
    .await;
    shot(c, "03d-project-files").await;
    css(c, "#file-browser select[name=files-version]")
        .await
        .select_by_value("1")
        .await
        .unwrap();
    wait_js(
        c,
        "return [...document.querySelectorAll('#file-browser .file-tree button')].map(b => b.dataset.path).join(' ') === 'gone.py main.py pkg/util.py' \
           && document.querySelector('#file-view pre').textContent.includes('old greeting')",
        "version 1's files",
    )
    .await;

    // Compare: v1 → v2 has an added file, a removed one and a changed line.
    click_xpath(
        c,
        "//section[@id='file-browser']//a[text()='Compare versions']",
    )
    .await;
    heading_is(c, "Compare versions of browsed").await;
    wait_js(
        c,
        "const d = document.querySelector('#diff'); if (!d) return false; \
         const status = [...d.querySelectorAll('.diff-file')].map(f => `${f.dataset.path}:${f.dataset.status}`).join(' '); \
         const lines = (kind) => [...d.querySelectorAll(`.line.${kind}`)].map(l => l.textContent.trim()); \
         return status === 'fresh.py:added gone.py:removed main.py:modified' \
           && lines('add').includes(\"+        return 'new greeting'\") \
           && lines('del').includes(\"-        return 'old greeting'\") \
           && lines('add').includes('+hello = 1') && lines('del').includes('-bye = True')",
        "the diff of v1 and v2",
    )
    .await;
    shot(c, "03e-project-compare").await;
    // The other way round, picked in the form.
    css(c, "#compare-form select[name=from]")
        .await
        .select_by_value("2")
        .await
        .unwrap();
    css(c, "#compare-form select[name=to]")
        .await
        .select_by_value("1")
        .await
        .unwrap();
    click(c, "#compare-form button[type=submit]").await;
    wait_js(
        c,
        "const f = document.querySelector('.page[aria-busy=false] #diff .diff-file'); \
         return f && f.dataset.path === 'fresh.py' && f.dataset.status === 'removed'",
        "the diff of v2 and v1",
    )
    .await;
    let diff = sys
        .get(admin, &format!("/projects/{project_id}/diff?from=1&to=2"))
        .await;
    assert_eq!(diff["unchanged"], 1, "{diff}");
}
