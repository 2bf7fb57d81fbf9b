//! The colour theme in its own browser: the system preference (emulated through the DevTools
//! protocol) decides until the header's switch picks light or dark; that choice survives a
//! reload, is the only thing the UI keeps in localStorage, and every page stays readable in dark
//! (each visible text at least 4.5:1 against what is behind it, WCAG AA).

use std::time::Duration;

use fantoccini::Client;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::harness::*;

/// The relative luminance of body's background and text, `[background, text]`.
const BODY_LUMINANCE: &str = "
  const lum = (c) => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = Number(v) / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const st = getComputedStyle(document.body);
  return [lum(st.backgroundColor), lum(st.color)];";

/// Every visible element with its own text whose colour is below 4.5:1 against the nearest
/// opaque background behind it (SVG text, drawn with `fill`, is left to the screenshot).
const LOW_CONTRAST: &str = "
  const rgba = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgba(c).slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const opaque = (c) => { const v = rgba(c); return v.length < 4 || v[3] > 0.5; };
  const behind = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (opaque(bg)) return bg;
    }
    return getComputedStyle(document.body).backgroundColor;
  };
  const bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el instanceof SVGElement || el.closest('.sr-only, option') || el.disabled) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const fg = getComputedStyle(el).color, bg = behind(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) bad.push(`${ratio.toFixed(2)} ${fg} on ${bg}: <${el.tagName.toLowerCase()} class=${el.className}> ${el.textContent.trim().slice(0, 40)}`);
  }
  return bad;";

async fn body_luminance(c: &Client) -> (f64, f64) {
    let v = c.execute(BODY_LUMINANCE, vec![]).await.unwrap();
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

async fn assert_dark(c: &Client, when: &str) {
    let (bg, fg) = body_luminance(c).await;
    assert!(
        bg < 0.2 && fg > 0.7,
        "{when}: body is not dark (background {bg:.3}, text {fg:.3})"
    );
}

async fn assert_light(c: &Client, when: &str) {
    let (bg, fg) = body_luminance(c).await;
    assert!(
        bg > 0.8 && fg < 0.2,
        "{when}: body is not light (background {bg:.3}, text {fg:.3})"
    );
}

/// The `data-theme` of <html> (null under "system") and what the switch shows.
async fn theme_state(c: &Client) -> Value {
    c.execute(
        "return [document.documentElement.getAttribute('data-theme'), document.getElementById('theme').value]",
        vec![],
    )
    .await
    .unwrap()
}

async fn choose(c: &Client, theme: &str) {
    css(c, "#theme").await.select_by_value(theme).await.unwrap();
    let want = if theme == "system" {
        json!(null)
    } else {
        json!(theme)
    };
    wait_js(
        c,
        &format!("return document.documentElement.getAttribute('data-theme') === {want}"),
        &format!("the {theme} theme"),
    )
    .await;
}

async fn flow(c: &Client, sys: &System) {
    let base = sys.base.as_str();
    let admin = sys.token("admin", ADMIN_PASSWORD).await;
    // Something on every list: a project, a task no runner serves and its queued run.
    let project = json!({"name": "theme-project", "code": "print('hi')\n"});
    let (project, task_id, run_id) = seed_run(sys, &admin, project, unserved("theme-task")).await;
    second_version(sys, &admin, &project).await;

    // The system says light: light, and the switch says "system".
    emulate_color_scheme(c, "light").await;
    login(c, base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(theme_state(c).await, json!([null, "system"]));
    assert_light(c, "system theme, light system").await;

    // Dark from the switch, whatever the system says; only the choice is stored.
    choose(c, "dark").await;
    assert_dark(c, "dark chosen").await;
    let stored = local_storage(c).await;
    assert_eq!(stored, json!([["antcode.theme", "dark"]]));

    // Every page readable in dark.
    let run_page = format!("/runs/{run_id}");
    for (i, (route, name)) in every_page(&project, &task_id, &run_id)
        .into_iter()
        .enumerate()
    {
        let route = route.as_str();
        go(c, base, route).await;
        page_ready(c, route).await;
        if route == run_page {
            css(c, "pre.log").await;
        }
        let low = c.execute(LOW_CONTRAST, vec![]).await.unwrap();
        assert_eq!(low, json!([]), "{route}: text too faint in dark");
        assert_dark(c, route).await;
        shot(c, &format!("t{:02}-dark-{name}", i + 1)).await;
    }

    // The choice survives a reload, applied by the blocking script in <head>.
    go(c, base, "/").await;
    c.refresh().await.unwrap();
    heading_is(c, "Dashboard").await;
    assert_eq!(theme_state(c).await, json!(["dark", "dark"]));
    assert_dark(c, "after a reload").await;

    // The header still fits at phone width with the switch in it.
    c.set_window_size(390, 844).await.unwrap();
    assert_fits(c, "the dashboard with the theme switch").await;
    picture(c, "t20-dark-phone").await;
    c.set_window_size(1280, 900).await.unwrap();

    // Light from the switch wins over a dark system.
    emulate_color_scheme(c, "dark").await;
    choose(c, "light").await;
    assert_light(c, "light chosen, dark system").await;
    assert_eq!(
        c.execute("return localStorage.getItem('antcode.theme')", vec![])
            .await
            .unwrap(),
        json!("light")
    );

    // Back to "system": nothing stored, and the page follows the system both ways.
    choose(c, "system").await;
    assert_dark(c, "system theme, dark system").await;
    assert_eq!(
        c.execute("return localStorage.length", vec![])
            .await
            .unwrap(),
        json!(0)
    );
    emulate_color_scheme(c, "light").await;
    assert_light(c, "system theme, light system again").await;
    c.refresh().await.unwrap();
    heading_is(c, "Dashboard").await;
    assert_eq!(theme_state(c).await, json!([null, "system"]));

    // The sign-in page is readable in dark too (the switch lives in the header it hides, the
    // stored choice still applies).
    choose(c, "dark").await;
    css(c, "#logout").await.click().await.unwrap();
    heading_is(c, "Sign in to AntCode").await;
    assert_dark(c, "the sign-in page").await;
    let low = c.execute(LOW_CONTRAST, vec![]).await.unwrap();
    assert_eq!(low, json!([]), "sign-in page: text too faint in dark");
    shot(c, "t21-dark-login").await;
    assert_clean_console(c, "across the theme flow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_theme_follows_the_system_until_switched() {
    in_own_browser("theme", None, Duration::from_secs(240), |c, sys| {
        flow(c, sys).boxed()
    })
    .await;
}
