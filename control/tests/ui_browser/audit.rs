//! The audit log filtered from its form, with the keyboard.

use fantoccini::Client;
use serde_json::json;

use crate::harness::*;

/// Filter the audit trail from its form, with the keyboard.
pub async fn audit_page(c: &Client, sys: &System) {
    go(c, &sys.base, "/audit").await;
    heading_is(c, "Audit log").await;
    fill(c, "input[name=action]", "run.").await;
    css(c, "input[name=action]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    wait_js(
        c,
        &audit_shows("#/audit?action=run.", &["run.cancel", "run.retry"], "run."),
        "the audit log filtered to run actions",
    )
    .await;
    shot(c, "18-audit").await;
    fill(c, "input[name=actor]", "admin").await;
    fill(c, "input[name=action]", "user.").await;
    css(c, "input[name=action]")
        .await
        .send_keys(ENTER)
        .await
        .unwrap();
    wait_js(
        c,
        &audit_shows(
            "#/audit?actor=admin&action=user.",
            &["user.create", "user.update"],
            "user.",
        ),
        "the audit log filtered to admin's user changes",
    )
    .await;
}

/// A script true once the page at `hash` lists each of `actions` and only actions under `prefix`.
fn audit_shows(hash: &str, actions: &[&str], prefix: &str) -> String {
    format!(
        "if (location.hash !== {hash} || !document.querySelector('.page[aria-busy=false]')) return false; \
         const acts = [...document.querySelectorAll('#main tbody tr')].map(r => r.cells[2].textContent); \
         return acts.every(a => a.startsWith({prefix})) && {wanted}.every(a => acts.includes(a));",
        hash = json!(hash),
        prefix = json!(prefix),
        wanted = json!(actions),
    )
}
