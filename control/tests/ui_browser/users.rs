//! Users and the account page: create a user, lower their role and disable them (each asked
//! first), your own row locked; create, use and revoke an API token.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Create a user, then lower their role and disable them from the table (each confirmed first);
/// your own row offers neither.
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
    // Lowering a role asks first: Cancel keeps it, Confirm lowers it.
    css(c, role_select)
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    let asked = wait_js(
        c,
        "const d = document.querySelector('dialog.confirm[open]'); return d && d.textContent;",
        "the confirmation before lowering otto's role",
    )
    .await;
    assert!(
        asked
            .as_str()
            .unwrap_or_default()
            .contains("Lower otto from operator to viewer"),
        "{asked}"
    );
    click(c, "dialog.confirm button:not(.danger)").await;
    wait_js(
        c,
        &format!(
            "const s = document.querySelector({}); return !document.querySelector('dialog.confirm') && s.value === 'operator'",
            json!(role_select)
        ),
        "the select back on operator",
    )
    .await;
    assert_eq!(sys.get(admin, &otto).await["role"], "operator");
    css(c, role_select)
        .await
        .select_by_value("viewer")
        .await
        .unwrap();
    click(c, "dialog.confirm button.danger").await;
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

    // Disabling asks first too; Cancel changes nothing.
    let otto_row = "//main//tr[contains(., 'otto')]";
    click_xpath(c, &format!("{otto_row}//button[text()='Disable']")).await;
    let asked = wait_js(
        c,
        "const d = document.querySelector('dialog.confirm[open]'); return d && d.textContent;",
        "the confirmation before disabling otto",
    )
    .await;
    assert!(
        asked.as_str().unwrap_or_default().contains("Disable otto?"),
        "{asked}"
    );
    shot(c, "15-users-confirm-disable").await;
    click(c, "dialog.confirm button:not(.danger)").await;
    assert_eq!(sys.get(admin, &otto).await["disabled"], false);
    click_xpath(c, &format!("{otto_row}//button[text()='Disable']")).await;
    click(c, "dialog.confirm button.danger").await;
    sys.wait_for(admin, &otto, "otto to be disabled", |u| {
        u["disabled"] == true
    })
    .await;
    // Enabling gives back: no question.
    click_xpath(c, &format!("{otto_row}//button[text()='Enable']")).await;
    sys.wait_for(admin, &otto, "otto to be enabled", |u| {
        u["disabled"] == false
    })
    .await;

    // Your own row: the role cannot be changed (it says why) and there is no Disable.
    let me = sys.get(admin, "/auth/me").await;
    let name = me["user"]["username"].as_str().unwrap().to_string();
    let own = wait_js(
        c,
        &format!(
            "const s = document.querySelector({}); const row = s && s.closest('tr'); \
             const why = s && document.getElementById(s.getAttribute('aria-describedby')); \
             return s && [s.disabled, s.title === why.textContent, why.textContent, \
               [...row.querySelectorAll('button')].map(b => b.textContent)];",
            json!(format!("#main select[aria-label='Role of {name}']"))
        ),
        "your own row",
    )
    .await;
    assert_eq!(
        own,
        json!([
            true,
            true,
            "You cannot change your own role or disable yourself: another admin can.",
            ["Set password"]
        ])
    );
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
