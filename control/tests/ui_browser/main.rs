//! The web UI in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini, against the whole system in-process: control on an ephemeral port over SQLite,
//! the in-process broker and a local blob directory, plus a real runner (real Python under uv)
//! and the scheduler (whose recorder applies the runner's reports).
//!
//! Flows: log in with the keyboard; upload a project (file input set by path); edit its single
//! file into a new version; browse an archive's files and compare two of its versions; create a
//! task with the schedule builder (the next five fire times
//! shown are the scheduler's); pause and resume; trigger it and see a log line appear live while
//! it runs; cancel it from the keyboard and see `cancelled`; retry a run; the dashboard's chart and
//! queue depth; drain and undrain a worker; create an enrollment key, enroll with the key from the
//! runner command and revoke that worker; create a user and change their role; create, use and
//! revoke an API token; set and replace a secret (a run receives the new value); filter the audit
//! log from its form; make a webhook alert channel, send it a test alert, make and edit a rule
//! for it and read the delivery history; set the retention policy and preview it; keep a run
//! from pruning; a server error shown as a readable message; every page at phone width
//! without sideways scrolling; a viewer sees no mutating control; an operator may drain but sees
//! no admin control. Keyboard: login, the skip link, trigger with Enter, the confirm dialog
//! (Escape changes nothing, Shift+Tab then Enter confirms), the audit filter submitted with Enter.
//!
//! In a second browser (`theme.rs`): the colour theme follows the emulated system preference
//! until the header's switch picks light or dark, the choice survives a reload, and every page
//! keeps its text at 4.5:1 contrast in dark.
//!
//! In a browser of its own (`robust.rs`): a page that hangs (a skeleton, then "not answering"
//! with Retry), a read that times out, a proxy's HTML 502 shown as a clean message, and a
//! session revoked under a half-filled form renewed in a dialog without losing the form.
//!
//! In a third browser whose language is zh-CN (`i18n.rs`): the UI follows it, every page shows
//! no English word outside data, product names and units, and the header's switch goes to
//! English and back without a reload. The other browsers are forced to en-US.
//!
//! Each click is checked by its effect through the API (or the edge's internal API), not only by
//! what the page shows. On every page the console stays free of errors, no raw JS value
//! (`undefined`, `[object Object]`) is printed and every control has a label. A screenshot of
//! every page is written to `target/ui-screenshots/`.
//!
//! Needs `/usr/bin/chromedriver` and `/usr/bin/chromium` (Debian: `chromium chromium-driver`;
//! `ops/test.sh` installs them). Missing, the test fails and says so: it never skips.

mod alerts;
mod audit;
mod dashboard;
mod harness;
mod i18n;
mod login;
mod phone;
mod projects;
mod robust;
mod roles;
mod runs;
mod secrets;
mod tasks;
mod theme;
mod users;
mod workers;

use std::future::Future;
use std::time::{Duration, Instant};

use fantoccini::Client;
use futures::FutureExt;

use harness::*;

/// The pages in the order a new admin meets them, then the same pages at phone width and for
/// lesser roles.
async fn flows(c: &Client, sys: &System) {
    let started = Instant::now();
    let admin = login::sign_in(c, sys).await;
    let project_id = projects::upload_edit_and_roll_back(c, sys, &admin).await;
    projects::follow_a_git_repository(c, sys, &admin).await;
    projects::browse_and_compare(c, sys, &admin).await;
    let task_id = tasks::create_pause_and_edit(c, sys, &admin, &project_id).await;
    let run_id = runs::live_log_and_cancel(c, sys, &admin).await;
    eprintln!("[ui] cancelled after {:?}", started.elapsed());
    runs::finished_runs(c, sys, &admin, &project_id).await;
    runs::run_group(c, sys, &admin, &project_id).await;
    runs::a_long_log(c, sys, &admin).await;
    dashboard::dashboard_and_lists(c, sys, &admin, &project_id).await;
    workers::workers_page(c, sys, &admin).await;
    users::users_page(c, sys, &admin).await;
    users::account_page(c, sys).await;
    secrets::secrets_page(c, sys, &admin).await;
    audit::audit_page(c, sys).await;
    alerts::alerts_pages(c, sys, &admin).await;
    alerts::retention_and_keep(c, sys, &admin, &run_id).await;
    eprintln!("[ui] admin pages done after {:?}", started.elapsed());
    assert_clean_console(c, "across the admin pages").await;
    let ids = Ids {
        project_id,
        task_id,
        run_id,
    };
    phone::every_page_fits(c, sys, &ids).await;
    roles::viewer_and_operator(c, sys, &admin, &ids).await;
}

/// What the flows made that later pages look at again.
pub struct Ids {
    pub project_id: String,
    pub task_id: String,
    pub run_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_in_a_real_browser() {
    let sys = start_system().await;
    let log = screenshot_dir().join("chromedriver.log");
    let driver = start_chromedriver(&log).await;
    let profile = tempfile::tempdir().unwrap();
    let client = open_browser(&driver, profile.path(), &log).await;
    // Run the flows, then always close the browser before reporting the outcome.
    let outcome = std::panic::AssertUnwindSafe(with_deadline(flows(&client, &sys)))
        .catch_unwind()
        .await;
    if outcome.is_err() {
        picture(&client, "zz-failure").await;
    }
    let _ = client.close().await;
    drop(driver);
    sys.shutdown.cancel();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The flows must end within a bound, so a broken page fails the test instead of hanging it.
async fn with_deadline(f: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(480), f)
        .await
        .expect("the browser flows took longer than 480 s");
}
