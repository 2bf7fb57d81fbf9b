//! The web UI at `/`: a framework-free single-page app (vanilla ES modules and hand-written CSS
//! under `control/ui/`), embedded in the binary with `include_str!` so that a fresh clone builds
//! and runs with cargo alone — no Node toolchain, no build step, no files read at run time.
//!
//! The app talks to the REST API under `/api/v1` with the HttpOnly session cookie that login sets
//! and echoes the CSRF double-submit cookie in `X-CSRF-Token` (see `auth.rs`); it never stores a
//! token in script-readable storage. Every UI response carries a strict Content-Security-Policy
//! (scripts, styles and connections from this origin only), so an injected string cannot run.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::problem::Problem;
use crate::AppState;

/// One embedded file of `control/ui/`, served at `/ui/<path>` (`index.html` also at `/`).
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_str!(concat!("../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `control/ui/` (a test checks that none is missing from this table).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/graph.js", JS),
    asset!("js/pages/login.js", JS),
    asset!("js/pages/dashboard.js", JS),
    asset!("js/pages/projects.js", JS),
    asset!("js/pages/tasks.js", JS),
    asset!("js/pages/schedule.js", JS),
    asset!("js/pages/runs.js", JS),
    asset!("js/pages/workers.js", JS),
    asset!("js/pages/users.js", JS),
    asset!("js/pages/account.js", JS),
    asset!("js/pages/secrets.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("js/pages/alerts.js", JS),
    asset!("js/pages/channels.js", JS),
    asset!("js/pages/rules.js", JS),
    asset!("js/pages/deliveries.js", JS),
    asset!("js/pages/retention.js", JS),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// A weak validator per file, computed once: the files cannot change while the binary runs.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h = DefaultHasher::new();
                a.body.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| a.path == asset.path)
        .and_then(|i| tags.get(i))
        .map_or("\"0\"", String::as_str)
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    // Revalidate every time (cheap with the ETag) so an upgrade never mixes old and new modules.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(a) => serve(a, &headers),
        None => Problem::not_found("the web UI is not built into this binary").into_response(),
    }
}

async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    match find(&path) {
        Some(a) => serve(a, &headers),
        None => Problem::not_found(format!("no UI file /ui/{path}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added under `ui/` but not to [`ASSETS`] would be a 404 in the browser.
    #[test]
    fn every_ui_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut stack = vec![root.clone()];
        let mut files = vec![];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read ui dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&root).expect("under ui/");
                    files.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
    }

    #[test]
    fn etags_differ_between_files() {
        let a = etag(&ASSETS[0]);
        let b = etag(&ASSETS[1]);
        assert_ne!(a, b);
        assert!(a.starts_with('"') && a.ends_with('"'));
    }
}
