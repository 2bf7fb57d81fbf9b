//! Users and the account page: create a user and change their role; create, use and revoke an
//! API token.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Create a user, then change their role from the table.
pub async fn users_page(c: &Client, sys: &System, admin: &str) {
    go(c, &sys.base, "/users").await;
    heading_is(c, "Users").await;
    fill(c, "#user-form input[name=new-username]", "otto").await;
    fill(c, "#user-form input[name=new-password]", "otto-password-1").await;
    css(c, "#user-form select[name=new-role]")
        .await
        .select_by_value("operator")
        .await
        .unwrap();
    click(c, "#user-form button[type=submit]").await;
    let role_select = "#main select[aria-label='Role of otto']";
    css(c, role_select).await;
    let users = sys.get(admin, "/users").await;
    let otto = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "otto")
        .unwrap_or_else(|| panic!("no user otto: {users}"));
    assert_eq!(otto["role"], "operator");
    let otto = format!("/users/{}", otto["id"].as_str().unwrap());
    css(c, role_select)
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    sys.wait_for(admin, &otto, "otto to become a viewer", |u| {
        u["role"] == "viewer"
    })
    .await;
    wait_js(
        c,
        &format!(
            "const s = document.querySelector({}); return s && s.value === 'viewer' && !s.disabled",
            json!(role_select)
        ),
        "the table to show the new role",
    )
    .await;
    shot(c, "15-users").await;

    // Demoting yourself asks first; Cancel leaves the role as it was.
    let me = sys.get(admin, "/auth/me").await;
    let name = me["user"]["username"].as_str().unwrap().to_string();
    let mine = format!("#main select[aria-label='Role of {name}']");
    css(c, &mine).await.select_by_value("viewer").await.unwrap();
    let asked = wait_js(
        c,
        "const d = document.querySelector('dialog.confirm[open]'); return d && d.textContent;",
        "the confirmation before demoting yourself",
    )
    .await;
    assert!(
        asked.as_str().unwrap_or_default().contains("signed out"),
        "{asked}"
    );
    click(c, "dialog.confirm button:not(.danger)").await;
    wait_js(
        c,
        &format!(
            "const s = document.querySelector({}); return s && s.value === 'admin'",
            json!(mine)
        ),
        "the select back on admin",
    )
    .await;
    assert_eq!(sys.get(admin, "/auth/me").await["role"], "admin");
}

/// Create an API token (shown once), use it, revoke it from the list: it stops working.
pub async fn account_page(c: &Client, sys: &System) {
    go(c, &sys.base, "/account").await;
    heading_is(c, "Account & tokens").await;
    fill(c, "#token-form input[name=token-name]", "ci").await;
    click(c, "#token-form button[type=submit]").await;
    let token = wait_js(
        c,
        "const s = document.querySelector('#token-form .secret'); \
         const v = s && !s.hidden && s.querySelector('input').value; return v && v.startsWith('act_') && v;",
        "the new token shown once",
    )
    .await;
    let token = token.as_str().unwrap_or_default().to_string();
    assert_eq!(sys.me_status(&token).await, 200, "the new token works");
    shot(c, "16-account").await;
    let revoke = "//main//button[starts-with(@aria-label, 'Revoke token ci ')]";
    click_xpath(c, revoke).await;
    click(c, "dialog.confirm button.danger").await;
    wait_js(
        c,
        "return ![...document.querySelectorAll('#main button')].some(b => (b.getAttribute('aria-label') || '').startsWith('Revoke token ci '))",
        "the token to leave the list",
    )
    .await;
    assert_eq!(sys.me_status(&token).await, 401, "a revoked token works");
}
