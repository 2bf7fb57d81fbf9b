//! The web UI at `/`: a framework-free single-page app (vanilla ES modules and hand-written CSS
//! under `control/ui/`), embedded in the binary with `include_str!` so that a fresh clone builds
//! and runs with cargo alone — no Node toolchain, no build step, no files read at run time.
//!
//! The app talks to the REST API under `/api/v1` with the HttpOnly session cookie that login sets
//! and echoes the CSRF double-submit cookie in `X-CSRF-Token` (see `auth.rs`); it never stores a
//! token in script-readable storage. Every UI response carries a strict Content-Security-Policy
//! (scripts, styles and connections from this origin only), so an injected string cannot run.
//!
//! Caching: every file except `index.html` is also served under `/ui/v/<version>/<path>`, where
//! `<version>` is one SHA-256 over all those files ([`version`]). Such a URL names fixed bytes, so
//! it is sent `Cache-Control: public, max-age=31536000, immutable` and a browser never asks for it
//! again; a directory prefix (rather than a hash per file name) keeps the modules' relative
//! imports (`./dom.js`, `./pages/runs.js`) inside the same version. `index.html` is the one entry
//! point: it is rewritten once to name the versioned URLs and always revalidated (`no-cache` and
//! an ETag), so an upgrade is picked up on the next load and old and new modules never mix. The
//! plain `/ui/<path>` URLs, and a version that is not the current one (a tab opened before an
//! upgrade, loading a page module later), still answer with the current file, revalidated.
//!
//! Languages: every string the UI shows goes through `t(key)` of `js/i18n.js`, with English and
//! Simplified Chinese catalogs under `js/locales/` (the header's switch, else the browser's
//! language); a test below checks that both catalogs have the same keys and placeholders and that
//! every key the code uses exists.
//!
//! Compression: each file is compressed once, on its first request, with brotli and gzip and
//! kept in memory ([`served`]); a request gets the encoding its `Accept-Encoding` prefers (brotli,
//! then gzip, else identity), with `Content-Encoding` and `Vary: Accept-Encoding`. A compressed
//! form not smaller than the file is dropped.

use std::io::Write;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use sha2::{Digest, Sha256};

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

const INDEX: &str = "index.html";

/// Every file of `control/ui/` (a test checks that none is missing from this table). No file may
/// live under `ui/v/`: that prefix names versions.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/theme.js", JS),
    asset!("js/i18n.js", JS),
    asset!("js/locales/en.js", JS),
    asset!("js/locales/zh-CN.js", JS),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/graph.js", JS),
    asset!("js/logview.js", JS),
    asset!("js/highlight.js", JS),
    asset!("js/reading.js", JS),
    asset!("js/pages/login.js", JS),
    asset!("js/pages/dashboard.js", JS),
    asset!("js/pages/projects.js", JS),
    asset!("js/pages/versions.js", JS),
    asset!("js/pages/tasks.js", JS),
    asset!("js/pages/schedule.js", JS),
    asset!("js/pages/runs.js", JS),
    asset!("js/pages/workers.js", JS),
    asset!("js/pages/users.js", JS),
    asset!("js/pages/account.js", JS),
    asset!("js/pages/secrets.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("js/pages/alerts.js", JS),
    asset!("js/pages/analysis.js", JS),
    asset!("js/pages/channels.js", JS),
    asset!("js/pages/rules.js", JS),
    asset!("js/pages/deliveries.js", JS),
    asset!("js/pages/retention.js", JS),
];

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// A versioned URL never changes meaning, so the browser may keep it for a year unasked.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Revalidate every time (cheap with the ETag) so an upgrade never mixes old and new modules.
const REVALIDATE: &str = "no-cache";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*path}", get(asset))
}

fn find(path: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.path == path)
}

/// The version of a set of `(path, body)` files: the first 16 hex digits of a SHA-256 over each
/// path and body, length-prefixed so that moving bytes from one file to the next changes it too.
fn build_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (path, body) in files {
        for part in [path, body] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// The version of the embedded UI: every file but `index.html` (which names the version).
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        build_hash(
            ASSETS
                .iter()
                .filter(|a| a.path != INDEX)
                .map(|a| (a.path, a.body)),
        )
    })
}

/// `index.html` with every `/ui/…` it references moved under `/ui/v/<version>/`.
fn versioned_index(html: &str, version: &str) -> String {
    html.replace("=\"/ui/", &format!("=\"/ui/v/{version}/"))
}

/// An asset as sent: its bytes in each encoding and a validator per encoding.
struct Served {
    identity: Bytes,
    gzip: Option<Bytes>,
    br: Option<Bytes>,
    /// Quoted strong ETag of the identity bytes; the encoded forms append `-gz` / `-br`, as a
    /// strong validator must differ between representations.
    etag: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Br,
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

fn brotli(body: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams::default(); // quality 11, the densest
    let mut out = Vec::new();
    match brotli::BrotliCompress(&mut &body[..], &mut out, &params) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

impl Served {
    fn new(body: Bytes) -> Self {
        let digest = Sha256::digest(&body);
        // Keep a compressed form only when it saves bytes (an empty one means it failed).
        let smaller = |c: Vec<u8>| (!c.is_empty() && c.len() < body.len()).then(|| Bytes::from(c));
        Served {
            gzip: smaller(gzip(&body)),
            br: smaller(brotli(&body)),
            etag: format!("\"{}\"", hex::encode(&digest[..8])),
            identity: body,
        }
    }

    /// The bytes and ETag to send: the first of `accepted` that was kept, else identity.
    fn pick(&self, accepted: &[Encoding]) -> (Encoding, &Bytes, String) {
        for &e in accepted {
            match (e, &self.br, &self.gzip) {
                (Encoding::Br, Some(br), _) => return (e, br, self.tag("-br")),
                (Encoding::Gzip, _, Some(gz)) => return (e, gz, self.tag("-gz")),
                _ => {}
            }
        }
        (Encoding::Identity, &self.identity, self.etag.clone())
    }

    fn tag(&self, suffix: &str) -> String {
        format!("{}{suffix}\"", self.etag.trim_end_matches('"'))
    }
}

/// Asset `i` as served, compressed on first use and kept: the files cannot change while the
/// binary runs, so no request pays for compression after the first.
fn served(i: usize) -> &'static Served {
    static SERVED: [OnceLock<Served>; ASSETS.len()] = [const { OnceLock::new() }; ASSETS.len()];
    SERVED[i].get_or_init(|| {
        let a = &ASSETS[i];
        let body = if a.path == INDEX {
            Bytes::from(versioned_index(a.body, version()))
        } else {
            Bytes::from_static(a.body.as_bytes())
        };
        Served::new(body)
    })
}

/// The encodings `Accept-Encoding` accepts among those we make, best first: by q-value above
/// zero, brotli before gzip on a tie. Identity, always acceptable here, is left implicit.
fn negotiate(accept: Option<&str>) -> Vec<Encoding> {
    let Some(accept) = accept else {
        return vec![];
    };
    let q = |names: &[&str]| -> Option<f32> {
        let mut star = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    (k.trim().eq_ignore_ascii_case("q")).then(|| v.trim().parse::<f32>().ok())?
                })
                .unwrap_or(1.0);
            if names.contains(&name.as_str()) {
                return Some(weight);
            }
            if name == "*" {
                star = Some(weight);
            }
        }
        star
    };
    let br = q(&["br"]).unwrap_or(0.0);
    let gz = q(&["gzip", "x-gzip"]).unwrap_or(0.0);
    let mut ranked = vec![(br, Encoding::Br), (gz, Encoding::Gzip)];
    ranked.retain(|(q, _)| *q > 0.0);
    // Stable: on equal weights brotli (listed first) stays first.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.into_iter().map(|(_, e)| e).collect()
}

/// Asset `i`; `pinned` when asked for under the current version (so it may be cached for good).
fn serve(i: usize, pinned: bool, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let accepted = negotiate(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let (encoding, body, tag) = served(i).pick(&accepted);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag)
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.clone().into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    if !fresh {
        match encoding {
            Encoding::Br => h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br")),
            Encoding::Gzip => h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            Encoding::Identity => None,
        };
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if pinned { IMMUTABLE } else { REVALIDATE }),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
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
    match find(INDEX) {
        Some(i) => serve(i, false, &headers),
        None => Problem::not_found("the web UI is not built into this binary").into_response(),
    }
}

async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    // `v/<version>/<file>`: pinned only under the current version; an older one (a tab opened
    // before an upgrade) gets today's file, revalidated, rather than a broken page.
    let (file, pinned) = match path.strip_prefix("v/").and_then(|r| r.split_once('/')) {
        Some((v, file)) => (file, v == version()),
        None => (path.as_str(), false),
    };
    match find(file) {
        Some(i) => serve(i, pinned && file != INDEX, &headers),
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
    fn the_version_changes_with_any_byte_of_any_file() {
        let a = build_hash([("app.css", "body{}"), ("js/app.js", "x")]);
        assert_eq!(a, build_hash([("app.css", "body{}"), ("js/app.js", "x")]));
        assert_ne!(a, build_hash([("app.css", "body{ }"), ("js/app.js", "x")]));
        assert_ne!(a, build_hash([("app.css", "body{}"), ("js/app.js", "y")]));
        // The same bytes split differently between files are another set of files.
        assert_ne!(a, build_hash([("app.css", "body{}j"), ("s/app.js", "x")]));
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(version().len(), 16);
    }

    #[test]
    fn compressed_forms_round_trip_to_the_same_bytes() {
        for (i, asset) in ASSETS.iter().enumerate() {
            let s = served(i);
            let gz = s.gzip.as_ref().expect("every UI file gzips smaller");
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
                .unwrap();
            assert_eq!(out, s.identity, "{}", asset.path);
            let br =
                s.br.as_ref()
                    .expect("every UI file brotli-compresses smaller");
            let mut out = Vec::new();
            brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
            assert_eq!(out, s.identity, "{}", asset.path);
        }
    }

    /// Prints the sizes of the whole set (`--nocapture`); compression must at least halve it.
    #[test]
    fn the_asset_set_compresses() {
        let (mut raw, mut gz, mut br) = (0, 0, 0);
        for i in 0..ASSETS.len() {
            let s = served(i);
            raw += s.identity.len();
            gz += s.gzip.as_ref().map_or(s.identity.len(), Bytes::len);
            br += s.br.as_ref().map_or(s.identity.len(), Bytes::len);
        }
        eprintln!("UI assets: {raw} bytes, gzip {gz}, brotli {br}");
        assert!(gz * 2 < raw && br <= gz, "{raw} {gz} {br}");
    }

    #[test]
    fn index_names_only_versioned_urls_that_resolve() {
        let html = std::str::from_utf8(&served(find(INDEX).unwrap()).identity).unwrap();
        let prefix = format!("/ui/v/{}/", version());
        let mut named = 0;
        for (i, _) in html.match_indices("/ui/") {
            let rest = &html[i..];
            assert!(
                rest.starts_with(&prefix),
                "unversioned URL in index.html: {}",
                &rest[..40.min(rest.len())]
            );
            let file = &rest[prefix.len()..rest.find('"').unwrap()];
            assert!(
                find(file).is_some_and(|f| ASSETS[f].path != INDEX),
                "{file}"
            );
            named += 1;
        }
        assert_eq!(named, 4, "theme script, icon, stylesheet and app module");
    }

    /// app.css states the dark palette twice (for the system preference and for the switch's
    /// `data-theme="dark"`); CSS cannot share one block between a media query and a selector.
    #[test]
    fn both_dark_palettes_are_the_same() {
        let css = ASSETS[find("app.css").unwrap()].body;
        let block = |after: &str| {
            let start = css
                .find(after)
                .unwrap_or_else(|| panic!("no {after} in app.css"));
            let body = &css[start + after.len()..];
            let body = &body[body.find('{').unwrap() + 1..];
            body[..body.find('}').unwrap()]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let system = block(":root:not([data-theme=\"light\"])");
        assert!(system.contains("color-scheme: dark") && system.contains("--bg:"));
        assert_eq!(system, block(":root[data-theme=\"dark\"]"));
    }

    /// A catalog's object: the JSON after `export default`.
    fn catalog(path: &str) -> serde_json::Map<String, serde_json::Value> {
        let body = ASSETS[find(path).unwrap_or_else(|| panic!("no {path}"))].body;
        let start = body.find("export default ").expect("export default") + 15;
        let end = body.rfind('}').expect("closing brace") + 1;
        match serde_json::from_str(&body[start..end]) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("{path} is not a JSON object: {other:?}"),
        }
    }

    /// The texts of a catalog value: a string, or the forms of a plural (`one`, `other`, …).
    fn forms(key: &str, v: &serde_json::Value) -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Object(m) => {
                assert!(m.contains_key("other"), "{key}: a plural needs `other`");
                m.values()
                    .map(|f| {
                        f.as_str()
                            .unwrap_or_else(|| panic!("{key}: {f}"))
                            .to_string()
                    })
                    .collect()
            }
            other => panic!("{key}: not text: {other}"),
        }
    }

    /// The `{name}` placeholders of some texts.
    fn placeholders(texts: &[String]) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for text in texts {
            let mut rest = text.as_str();
            while let Some(i) = rest.find('{') {
                rest = &rest[i + 1..];
                if let Some(j) = rest.find('}') {
                    let name = &rest[..j];
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        out.insert(name.to_string());
                    }
                }
            }
        }
        out
    }

    /// The string literal arguments of every `name('…'` call in `src` (single-quoted, as the UI's
    /// style has it).
    fn literal_args(src: &str, name: &str) -> Vec<String> {
        let needle = format!("{name}('");
        let mut out = vec![];
        for (i, _) in src.match_indices(&needle) {
            let before = src[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue; // `format(`, `x.t(`: another function
            }
            let rest = &src[i + needle.len()..];
            if let Some(end) = rest.find('\'') {
                out.push(rest[..end].to_string());
            }
        }
        out
    }

    /// Both catalogs have exactly the same keys, no empty text, the same placeholders per key;
    /// every key the code names (`t('…')`, `data-i18n="…"`) exists; every key is used, by name
    /// or through a `label('group', value)` group.
    #[test]
    fn the_catalogs_match_each_other_and_the_code() {
        let en = catalog("js/locales/en.js");
        let zh = catalog("js/locales/zh-CN.js");
        let en_keys: Vec<_> = en.keys().collect();
        let zh_keys: Vec<_> = zh.keys().collect();
        let only_en: Vec<_> = en_keys.iter().filter(|k| !zh.contains_key(**k)).collect();
        let only_zh: Vec<_> = zh_keys.iter().filter(|k| !en.contains_key(**k)).collect();
        assert!(
            only_en.is_empty() && only_zh.is_empty(),
            "keys only in en: {only_en:?}; only in zh-CN: {only_zh:?}"
        );
        for (key, v) in &en {
            let (e, z) = (forms(key, v), forms(key, &zh[key]));
            assert!(
                e.iter().chain(&z).all(|s| !s.trim().is_empty()),
                "{key}: an empty text"
            );
            assert_eq!(
                placeholders(&e),
                placeholders(&z),
                "{key}: the placeholders differ between en and zh-CN"
            );
            assert!(
                key.split('.').count() >= 2
                    && key.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '_'
                        || c == '.'),
                "{key}: keys are dotted ids"
            );
        }
        assert!(en.len() > 500, "{} keys", en.len());

        let mut used = std::collections::BTreeSet::new();
        let mut groups = std::collections::BTreeSet::new();
        for a in ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") && !a.path.starts_with("js/locales/"))
        {
            used.extend(literal_args(a.body, "t"));
            groups.extend(literal_args(a.body, "label"));
        }
        let index = ASSETS[find(INDEX).unwrap()].body;
        for attr in ["data-i18n=\"", "data-i18n-aria=\""] {
            for (i, _) in index.match_indices(attr) {
                let rest = &index[i + attr.len()..];
                used.insert(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        assert!(
            used.len() > 400,
            "only {} keys found in the code",
            used.len()
        );
        let missing: Vec<_> = used.iter().filter(|k| !en.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "keys the code uses but no catalog has: {missing:?}"
        );
        let unused: Vec<_> = en
            .keys()
            .filter(|k| {
                !used.contains(*k) && !groups.contains(k.split('.').next().unwrap_or_default())
            })
            .collect();
        assert!(unused.is_empty(), "catalog keys no code uses: {unused:?}");
    }

    #[test]
    fn accept_encoding_is_negotiated() {
        use Encoding::*;
        assert_eq!(negotiate(None), []);
        assert_eq!(negotiate(Some("")), []);
        assert_eq!(negotiate(Some("gzip, deflate")), [Gzip]);
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd")), [Br, Gzip]);
        assert_eq!(negotiate(Some("br;q=0, gzip")), [Gzip]);
        assert_eq!(negotiate(Some("br;q=0.5, gzip;q=0.8")), [Gzip, Br]);
        assert_eq!(negotiate(Some("gzip;q=0, identity")), []);
        assert_eq!(negotiate(Some("*")), [Br, Gzip]);
        assert_eq!(negotiate(Some("*;q=0.1, br;q=0")), [Gzip]);
        assert_eq!(negotiate(Some("deflate")), []);
        assert_eq!(negotiate(Some("GZIP ; Q=1")), [Gzip]);
    }

    /// A form that was not kept (not smaller) is skipped for the next one the client accepts,
    /// never swapped for one it did not ask for.
    #[test]
    fn a_dropped_form_falls_back_to_what_the_client_accepts() {
        let s = Served {
            identity: Bytes::from_static(b"x"),
            gzip: Some(Bytes::from_static(b"g")),
            br: None,
            etag: "\"t\"".into(),
        };
        assert_eq!(s.pick(&[Encoding::Br]).0, Encoding::Identity);
        assert_eq!(s.pick(&[Encoding::Br, Encoding::Gzip]).0, Encoding::Gzip);
    }

    #[test]
    fn each_representation_has_its_own_etag() {
        let s = served(find("app.css").unwrap());
        let tags = [[].as_slice(), &[Encoding::Gzip], &[Encoding::Br]].map(|e| s.pick(e).2);
        assert!(tags.iter().all(|t| t.starts_with('"') && t.ends_with('"')));
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
        assert_ne!(served(0).etag, s.etag);
    }
}
