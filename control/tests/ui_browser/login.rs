//! Signing in: a wrong password, the login form from the keyboard, the session cookie
//! out of scripts' reach, and the skip link.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Signs in as the admin through the page: the admin's API token, the test's own view of the
/// truth.
pub async fn sign_in(c: &Client, sys: &System) -> String {
    let base = sys.base.as_str();
    // --- login -------------------------------------------------------------------------------
    go(c, base, "/").await;
    heading_is(c, "Sign in to AntCode").await;
    assert!(current_hash(c).await.starts_with("/login"));
    shot(c, "01-login").await;
    // A wrong password is told plainly, and the form stays.
    fill(c, "#login-form input[name=username]", "admin").await;
    fill(c, "#login-form input[name=password]", "not-the-password").await;
    css(c, "#login-form input[name=password]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    let message = wait_js(
        c,
        "const e = document.querySelector('#login-form .error'); return e && !e.hidden && e.textContent;",
        "the login error",
    )
    .await;
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("invalid username or password")),
        "{message}"
    );
    shot(c, "01-login-error").await;
    for e in console_errors(c).await {
        assert!(e.contains("401"), "unexpected console error: {e}");
    }
    login(c, base, "admin", ADMIN_PASSWORD).await;
    assert_clean_console(c, "after login").await;
    // No token in script-readable storage: the session is the HttpOnly cookie.
    let storage = c
        .execute(
            "return [localStorage.length, sessionStorage.length, document.cookie.includes('antcode_session')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(storage, json!([0, 0, false]));
    // The skip link (the first Tab stop) moves focus to the page's content and keeps the route.
    c.execute("document.querySelector('a.skip').focus()", vec![])
        .await
        .unwrap();
    press(c, ENTER).await;
    wait_js(
        c,
        "return document.activeElement.closest('#main') && location.hash === '#/'",
        "focus in the content after the skip link",
    )
    .await;
    heading_is(c, "Dashboard").await;
    // The test's own view of the truth, to check that each click had its effect.
    sys.token("admin", ADMIN_PASSWORD).await
}
