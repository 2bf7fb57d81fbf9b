//! When the server misbehaves, in a browser of its own: a page that hangs shows a skeleton, then
//! says the server is not answering and retries on request; a read that hangs is given up; a
//! proxy's HTML error page becomes a clean message; a session revoked under a half-filled form
//! is renewed in a dialog and the form's request goes through. The hang and the proxy are
//! simulated in the page by replacing `window.fetch` for one path.

use std::time::Duration;

use fantoccini::Client;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::harness::*;

/// Makes the page's requests to `path` (a prefix under `/api/v1`) hang until aborted, as a
/// server that never answers would.
const HANG: &str = "
  const [path] = arguments;
  window.realFetch ||= window.fetch;
  window.fetch = (url, init) => String(url).startsWith(path)
    ? new Promise((_, reject) => {
        const s = init && init.signal;
        if (s) s.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      })
    : window.realFetch(url, init);
";

/// Makes the page's requests to `path` answer what an nginx in front would on a dead upstream.
const PROXY_502: &str = "
  const [path] = arguments;
  window.realFetch ||= window.fetch;
  const page = '<html>\\r\\n<head><title>502 Bad Gateway</title></head>\\r\\n<body>\\r\\n' +
    '<center><h1>502 Bad Gateway</h1></center>\\r\\n<hr><center>nginx/1.24.0</center>\\r\\n</body>\\r\\n</html>';
  window.fetch = (url, init) => String(url).startsWith(path)
    ? Promise.resolve(new Response(page, { status: 502, statusText: 'Bad Gateway', headers: { 'content-type': 'text/html' } }))
    : window.realFetch(url, init);
";

const RESTORE: &str = "if (window.realFetch) window.fetch = window.realFetch;";

async fn intercept(c: &Client, script: &str, path: &str) {
    c.execute(script, vec![json!(path)]).await.unwrap();
}

/// Moves to `route` without reloading (a reload would drop the replaced fetch).
async fn hash_to(c: &Client, route: &str) {
    c.execute(
        "location.hash = arguments[0]",
        vec![json!(format!("#{route}"))],
    )
    .await
    .unwrap();
}

/// A page that never loads: skeleton, then "not answering" with Retry, then the read gives up;
/// Retry after the server is back draws the page.
async fn hung_page(c: &Client) {
    intercept(c, HANG, "/api/v1/secrets").await;
    hash_to(c, "/secrets").await;
    let loading = wait_js(
        c,
        "const l = document.querySelector('#loading [role=status]'); \
         return l && document.querySelector('.page[aria-busy=true]') && l.textContent;",
        "the loading skeleton",
    )
    .await;
    assert_eq!(loading, json!("Loading…"));
    shot(c, "r01-loading").await;
    // After ~10 s the page says what is wrong and offers to try again.
    wait_js(
        c,
        "const n = document.querySelector('#not-answering'); \
         return n && n.textContent.includes('The server is not answering') && document.querySelector('#retry-page')",
        "the not-answering notice",
    )
    .await;
    shot(c, "r02-not-answering").await;
    // After ~15 s the read itself is given up: the page says so and still offers Retry.
    let failed = load_error(c, "the read to time out").await;
    let failed = failed.as_str();
    assert!(
        failed.contains("The server is not answering") && failed.contains("15 s"),
        "{failed}"
    );
    // The page drew its heading before it read the list: that much stays.
    heading_is(c, "Secrets").await;
    c.execute(RESTORE, vec![]).await.unwrap();
    click(c, "#retry-page").await;
    wait_js(
        c,
        "return !document.getElementById('load-error') && document.querySelector('.page[aria-busy=false] .card :is(table, .empty)')",
        "the page drawn again, its list read",
    )
    .await;
}

/// A proxy's HTML 502 page: the message names the status in words, never the markup.
async fn proxy_error(c: &Client, title: &str, expect: &str) {
    intercept(c, PROXY_502, "/api/v1/secrets").await;
    hash_to(c, "/account").await;
    page_ready(c, "/account").await;
    hash_to(c, "/secrets").await;
    let message = load_error(c, "the 502 message").await;
    let message = message.as_str();
    assert!(
        !message.contains('<') && message.contains("502") && message.contains(expect),
        "{message}"
    );
    shot(c, title).await;
    c.execute(RESTORE, vec![]).await.unwrap();
    click(c, "#retry-page").await;
    wait_js(
        c,
        "return !document.getElementById('load-error') && document.querySelector('.page[aria-busy=false] .card :is(table, .empty)')",
        "the page drawn again, its list read",
    )
    .await;
}

/// Ends the browser's session on the server (as an expiry or a revocation would).
async fn revoke_session(c: &Client, sys: &System) {
    let cookie = c
        .get_named_cookie("antcode_session")
        .await
        .expect("the session cookie");
    let token = cookie.value().to_string();
    let (status, body) = sys
        .request(&token, reqwest::Method::POST, "/auth/logout", Value::Null)
        .await;
    assert!((200..300).contains(&status), "logout: {status} {body}");
    assert_eq!(sys.me_status(&token).await, 401, "the session still works");
}

/// The session ends while a secret is half entered: Save asks to sign in again, the form keeps
/// its values, and once signed in the save goes through without a second click.
async fn session_expires_mid_form(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/secrets").await;
    heading_is(c, "Secrets").await;
    fill(c, "#secret-form input[name=secret-name]", "AFTER_REAUTH").await;
    fill(c, "#secret-form textarea[name=secret-value]", "kept-value").await;
    revoke_session(c, sys).await;
    click(c, "#secret-form button[type=submit]").await;
    let asked = wait_js(
        c,
        "const d = document.querySelector('dialog#reauth[open]'); \
         return d && [d.querySelector('h2').textContent, d.querySelector('input[name=reauth-username]').value, \
           document.activeElement.name, location.hash, \
           document.querySelector('#secret-form input[name=secret-name]').value, \
           document.querySelector('#secret-form textarea[name=secret-value]').value];",
        "the session-expired dialog",
    )
    .await;
    assert_eq!(
        asked,
        json!([
            "Your session expired — sign in again",
            "admin",
            "reauth-password",
            "#/secrets",
            "AFTER_REAUTH",
            "kept-value"
        ])
    );
    picture(c, "r04-session-expired").await;
    // A wrong password is told in the dialog, which stays.
    fill(c, "#reauth input[name=reauth-password]", "wrong-password").await;
    click(c, "#reauth button[type=submit]").await;
    wait_js(
        c,
        "const e = document.querySelector('#reauth .error'); return e && !e.hidden && e.textContent.includes('invalid username or password')",
        "the dialog's error",
    )
    .await;
    fill(c, "#reauth input[name=reauth-password]", ADMIN_PASSWORD).await;
    click(c, "#reauth button[type=submit]").await;
    wait_js(
        c,
        "return !document.querySelector('dialog#reauth') && document.getElementById('toasts').textContent.includes('AFTER_REAUTH')",
        "the save after signing in again",
    )
    .await;
    let names: Vec<Value> = sys.get(admin, "/secrets").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert!(names.contains(&json!("AFTER_REAUTH")), "{names:?}");
    assert_eq!(current_hash(c).await, "/secrets");
}

/// In Chinese: the dialog and a proxy's error in the UI's language; Cancel goes to sign in.
async fn in_chinese(c: &Client, sys: &System) {
    css(c, "#lang")
        .await
        .select_by_value("zh-CN")
        .await
        .unwrap();
    heading_is(c, "密钥").await;
    proxy_error(c, "r05-proxy-502-zh", "网关错误").await;
    revoke_session(c, sys).await;
    hash_to(c, "/tasks").await;
    let title = wait_js(
        c,
        "const d = document.querySelector('dialog#reauth[open]'); return d && d.querySelector('h2').textContent;",
        "the dialog in Chinese",
    )
    .await;
    assert_eq!(title, json!("会话已过期，请重新登录"));
    picture(c, "r06-session-expired-zh").await;
    click(c, "#reauth button[type=button]").await;
    heading_is(c, "登录 AntCode").await;
    assert!(current_hash(c).await.starts_with("/login?next="));
}

async fn flow(c: &Client, sys: &System) {
    let admin = sys.token("admin", ADMIN_PASSWORD).await;
    login(c, &sys.base, "admin", ADMIN_PASSWORD).await;
    go(c, &sys.base, "/account").await;
    page_ready(c, "/account").await;
    hung_page(c).await;
    proxy_error(c, "r03-proxy-502", "Bad Gateway").await;
    session_expires_mid_form(c, sys, &admin).await;
    in_chinese(c, sys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_copes_with_a_failing_server() {
    in_own_browser("robust", None, Duration::from_secs(240), |c, sys| {
        flow(c, sys).boxed()
    })
    .await;
}

/// The text of the page's load error once it shows, with its Retry button.
async fn load_error(c: &Client, what: &str) -> String {
    let text = wait_js(
        c,
        "const e = document.getElementById('load-error'); \
         return e && !e.hidden && document.querySelector('.page #retry-page') && e.textContent;",
        what,
    )
    .await;
    text.as_str().unwrap_or_default().to_string()
}
