//! Projects: upload one, a server error shown readably, edit its single file into a new
//! version, upload another version and roll back; follow a Git repository and sync it.

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
        "return document.querySelector('#main .files').textContent.includes('hello.py')",
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
