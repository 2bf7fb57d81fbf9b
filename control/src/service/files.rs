//! A project version's files for the file browser: the listing, one file's text, and the
//! per-file line diff of two versions.
//!
//! Every answer is bounded: at most [`MAX_LISTED`] entries listed, a file's text only up to
//! [`MAX_TEXT_BYTES`], a diff of at most [`MAX_DIFF_FILES`] changed files with at most
//! [`MAX_FILE_DIFF_BYTES`] of diff text each and [`MAX_DIFF_BYTES`] in all, reading at most
//! [`MAX_DIFF_READ_BYTES`] of content to make it. Past a bound the answer says `truncated`.
//!
//! Bundles are read from the blob store and walked in memory by `antcode_core::bundle`, the
//! walker uploads were checked with, so nothing is written to disk. Listings are cached by bundle
//! key (content-addressed, so a key always names the same listing) in [`Listings`], a small
//! bounded LRU.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use similar::TextDiff;

use antcode_core::bundle::{self, FileBytes, FileEntry, Limits};
use antcode_core::model::{BundleFormat, ProjectVersion};

use crate::problem::{ApiResult, Problem};
use crate::AppState;

/// Most entries a listing reports.
pub const MAX_LISTED: usize = 10_000;
/// Largest file whose text is served or diffed.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;
/// Most changed files a diff reports.
pub const MAX_DIFF_FILES: usize = 2_000;
/// Most unified-diff text of one file.
pub const MAX_FILE_DIFF_BYTES: usize = 256 * 1024;
/// Most unified-diff text of one answer.
pub const MAX_DIFF_BYTES: usize = 2 * 1024 * 1024;
/// Most file content (both sides) read into memory to make one diff.
pub const MAX_DIFF_READ_BYTES: u64 = 32 * 1024 * 1024;
/// Longest requested path, in bytes (Linux's `PATH_MAX`, as uploads are held to).
pub const MAX_PATH_BYTES: usize = 4096;
/// How long one file's diff may search for the shortest edit before it settles for a longer one.
const DIFF_TIME: Duration = Duration::from_millis(500);

/// Listings kept in [`Listings`].
const CACHED_LISTINGS: usize = 32;
/// A listing larger than this (paths and digests, roughly) is not cached.
const CACHED_LISTING_BYTES: usize = 512 * 1024;

/// A version's files, sorted by path.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub files: Vec<FileEntryView>,
    /// More entries than [`MAX_LISTED`]; the rest are left out.
    pub truncated: bool,
}

/// One listed entry, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntryView {
    pub path: String,
    pub size: u64,
    pub binary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub sha256: String,
}

impl From<FileEntry> for FileEntryView {
    fn from(e: FileEntry) -> Self {
        FileEntryView {
            path: e.path,
            size: e.size,
            binary: e.binary,
            link: e.link,
            sha256: e.sha256,
        }
    }
}

/// The recent listings by bundle key, least recently used first.
#[derive(Default)]
pub struct Listings(Mutex<VecDeque<(String, Arc<Listing>)>>);

impl Listings {
    fn get(&self, key: &str) -> Option<Arc<Listing>> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = q.iter().position(|(k, _)| k == key)?;
        let hit = q.remove(i)?;
        let listing = hit.1.clone();
        q.push_back(hit);
        Some(listing)
    }

    fn put(&self, key: &str, listing: Arc<Listing>) {
        let weight: usize = listing.files.iter().map(|f| f.path.len() + 128).sum();
        if weight > CACHED_LISTING_BYTES {
            return;
        }
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|(k, _)| k != key);
        if q.len() >= CACHED_LISTINGS {
            q.pop_front();
        }
        q.push_back((key.to_string(), listing));
    }
}

/// The name a single-file version's file has.
fn single_name(v: &ProjectVersion) -> String {
    v.bundle
        .file_name
        .clone()
        .unwrap_or_else(|| v.entrypoint.clone())
}

/// The files of version `v`.
pub async fn listing(state: &AppState, v: &ProjectVersion) -> ApiResult<Arc<Listing>> {
    if v.bundle.format == BundleFormat::Py {
        let entry = FileEntryView {
            path: single_name(v),
            size: v.bundle.size_bytes.max(0) as u64,
            binary: false,
            link: None,
            sha256: v.bundle.sha256.clone(),
        };
        return Ok(Arc::new(Listing {
            files: vec![entry],
            truncated: false,
        }));
    }
    if let Some(hit) = state.listings.get(&v.bundle.key) {
        return Ok(hit);
    }
    let _turn = crate::inflate::archive_turn().await;
    let data = state.blobs.get(&v.bundle.key).await?;
    let format = v.bundle.format;
    let mut files =
        tokio::task::spawn_blocking(move || bundle::list(format, &data, Limits::default()))
            .await
            .map_err(Problem::internal)??;
    let truncated = files.len() > MAX_LISTED;
    files.truncate(MAX_LISTED);
    let listing = Arc::new(Listing {
        files: files.into_iter().map(FileEntryView::from).collect(),
        truncated,
    });
    state.listings.put(&v.bundle.key, listing.clone());
    Ok(listing)
}

/// A requested file path, normalised as listings give them (`/`-separated, no `.` or empty
/// components); `..`, an absolute path and control characters are refused.
pub fn check_path(raw: &str) -> ApiResult<String> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(Problem::bad_request(format!(
            "path: at most {MAX_PATH_BYTES} bytes"
        )));
    }
    if raw.starts_with(['/', '\\']) || raw.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "path must be relative to the bundle's root, without control characters",
        ));
    }
    let mut parts = vec![];
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Problem::bad_request(
                    "path must not leave the bundle (`..` components are refused)",
                ))
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(Problem::bad_request("path names no file"));
    }
    Ok(parts.join("/"))
}

/// One file of a version as the viewer shows it: its text when it is UTF-8 text of at most
/// [`MAX_TEXT_BYTES`], otherwise the flag that says why not.
#[derive(Debug, Serialize)]
pub struct FileText {
    pub path: String,
    pub size: u64,
    pub binary: bool,
    pub too_large: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl FileText {
    fn of(path: String, file: FileBytes) -> FileText {
        let too_large = file.size > MAX_TEXT_BYTES as u64;
        let head = &file.data[..file.data.len().min(bundle::SNIFF_BYTES)];
        let mut out = FileText {
            path,
            size: file.size,
            binary: file.link.is_none() && bundle::looks_binary(head),
            too_large,
            link: file.link,
            text: None,
        };
        if out.link.is_none() && !out.binary && !too_large {
            match String::from_utf8(file.data) {
                Ok(text) if !text.contains('\0') => out.text = Some(text),
                _ => out.binary = true,
            }
        }
        out
    }
}

/// The bytes of `paths` in version `v`, each cut just past [`MAX_TEXT_BYTES`].
async fn read_files(
    state: &AppState,
    v: &ProjectVersion,
    paths: BTreeSet<String>,
) -> ApiResult<BTreeMap<String, FileBytes>> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let data = state.blobs.get(&v.bundle.key).await?;
    if v.bundle.format == BundleFormat::Py {
        let name = single_name(v);
        let mut out = BTreeMap::new();
        if paths.contains(&name) {
            let size = data.len() as u64;
            let kept = data.len().min(MAX_TEXT_BYTES + 1);
            let file = FileBytes {
                data: data[..kept].to_vec(),
                size,
                link: None,
            };
            out.insert(name, file);
        }
        return Ok(out);
    }
    let format = v.bundle.format;
    let _turn = crate::inflate::archive_turn().await;
    tokio::task::spawn_blocking(move || {
        bundle::read(format, &data, &paths, MAX_TEXT_BYTES + 1, Limits::default())
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::from)
}

/// File `path` (checked with [`check_path`]) of version `v`, or a 404 naming it.
pub async fn file(state: &AppState, v: &ProjectVersion, path: String) -> ApiResult<FileText> {
    let mut files = read_files(state, v, BTreeSet::from([path.clone()])).await?;
    let file = files
        .remove(&path)
        .ok_or_else(|| Problem::not_found(format!("version {} has no file {path:?}", v.version)))?;
    Ok(FileText::of(path, file))
}

/// How a file differs between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Added,
    Removed,
    Modified,
}

/// One changed file of a diff.
#[derive(Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub status: Status,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    /// Either side is binary (or a symlink): no line diff.
    pub binary: bool,
    /// The line diff was cut, or left out, at a bound.
    pub truncated: bool,
    /// Unified diff (`---`/`+++` header, `@@` hunks) of the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// The per-file changes from one version to another.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub from: i64,
    pub to: i64,
    pub files: Vec<FileChange>,
    /// Files the same in both versions.
    pub unchanged: usize,
    /// A bound left changed files out, or cut or left out a diff.
    pub truncated: bool,
}

/// The changes from listing `a` to `b`, by path, without their text; and the unchanged count.
fn changes(a: &Listing, b: &Listing) -> (Vec<FileChange>, usize) {
    let old: BTreeMap<&str, &FileEntryView> =
        a.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &FileEntryView> =
        b.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let paths: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let mut out = vec![];
    let mut unchanged = 0;
    for path in paths {
        let (o, n) = (old.get(path), new.get(path));
        let status = match (o, n) {
            (Some(o), Some(n)) if o.sha256 == n.sha256 && o.link == n.link => {
                unchanged += 1;
                continue;
            }
            (Some(_), Some(_)) => Status::Modified,
            (Some(_), None) => Status::Removed,
            _ => Status::Added,
        };
        let opaque = |f: &&FileEntryView| f.binary || f.link.is_some();
        out.push(FileChange {
            path: path.to_string(),
            status,
            old_size: o.map(|f| f.size),
            new_size: n.map(|f| f.size),
            binary: o.is_some_and(opaque) || n.is_some_and(opaque),
            truncated: false,
            diff: None,
        });
    }
    (out, unchanged)
}

/// The changes whose text is read to diff them, in path order, within [`MAX_DIFF_READ_BYTES`];
/// the others are marked truncated (a file past [`MAX_TEXT_BYTES`] is never diffed).
fn pick_texts(files: &mut [FileChange]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut old, mut new) = (BTreeSet::new(), BTreeSet::new());
    let mut budget = MAX_DIFF_READ_BYTES;
    for f in files.iter_mut().filter(|f| !f.binary) {
        let cost = f.old_size.unwrap_or(0) + f.new_size.unwrap_or(0);
        let fits = f.old_size.unwrap_or(0) <= MAX_TEXT_BYTES as u64
            && f.new_size.unwrap_or(0) <= MAX_TEXT_BYTES as u64
            && cost <= budget;
        if !fits {
            f.truncated = true;
            continue;
        }
        budget -= cost;
        if f.old_size.is_some() {
            old.insert(f.path.clone());
        }
        if f.new_size.is_some() {
            new.insert(f.path.clone());
        }
    }
    (old, new)
}

/// A side's text: empty when the file is absent on that side, `None` when it is not UTF-8.
fn side_text(side: &mut BTreeMap<String, FileBytes>, path: &str, present: bool) -> Option<String> {
    if !present {
        return Some(String::new());
    }
    let file = side.remove(path)?;
    String::from_utf8(file.data)
        .ok()
        .filter(|t| !t.contains('\0'))
}

/// The unified diff of `old` and `new` named `path`, at most `room` bytes of it (whole hunks,
/// or the first hunk cut at a line); true when something was left out.
fn unified(path: &str, old: &str, new: &str, room: usize) -> (String, bool) {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIME)
        .diff_lines(old, new);
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        let text = hunk.to_string();
        if out.len() + text.len() > room {
            let left = room.saturating_sub(out.len());
            let cut = text[..floor_char(&text, left)]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            out.push_str(&text[..cut]);
            return (out, true);
        }
        out.push_str(&text);
    }
    (out, false)
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The changes from version `a` to version `b` of one project.
pub async fn diff(state: &AppState, a: &ProjectVersion, b: &ProjectVersion) -> ApiResult<Diff> {
    let (la, lb) = (listing(state, a).await?, listing(state, b).await?);
    let (mut files, unchanged) = changes(&la, &lb);
    let mut truncated = la.truncated || lb.truncated || files.len() > MAX_DIFF_FILES;
    files.truncate(MAX_DIFF_FILES);
    let (want_old, want_new) = pick_texts(&mut files);
    let old = read_files(state, a, want_old).await?;
    let new = read_files(state, b, want_new).await?;
    // Each file's diff may search for up to its deadline: off the async threads.
    let files = tokio::task::spawn_blocking(move || diff_texts(files, old, new))
        .await
        .map_err(Problem::internal)?;
    truncated |= files.iter().any(|f| f.truncated);
    Ok(Diff {
        from: a.version,
        to: b.version,
        files,
        unchanged,
        truncated,
    })
}

/// Fills in the unified diff of each text file of `files` from the two sides' bytes, within
/// [`MAX_DIFF_BYTES`] in all.
fn diff_texts(
    mut files: Vec<FileChange>,
    mut old: BTreeMap<String, FileBytes>,
    mut new: BTreeMap<String, FileBytes>,
) -> Vec<FileChange> {
    let mut room = MAX_DIFF_BYTES;
    for f in files.iter_mut().filter(|f| !f.binary && !f.truncated) {
        let texts = (
            side_text(&mut old, &f.path, f.old_size.is_some()),
            side_text(&mut new, &f.path, f.new_size.is_some()),
        );
        let (Some(o), Some(n)) = texts else {
            f.binary = true;
            continue;
        };
        if room == 0 {
            f.truncated = true;
            continue;
        }
        let (text, cut) = unified(&f.path, &o, &n, room.min(MAX_FILE_DIFF_BYTES));
        room -= text.len().min(room);
        f.truncated = cut;
        f.diff = Some(text);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_escapes_refused() {
        assert_eq!(check_path("./pkg//a.py").unwrap(), "pkg/a.py");
        assert_eq!(check_path("pkg\\a.py").unwrap(), "pkg/a.py");
        for bad in ["../x", "a/../../x", "/etc/passwd", "\\x", "", ".", "a\nb"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a/".repeat(3000)).is_err());
    }

    #[test]
    fn a_diff_is_cut_at_a_line_within_its_room() {
        let old: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let new = old
            .replace("line 5\n", "five\n")
            .replace("line 900\n", "nine hundred\n");
        let (whole, cut) = unified("a.py", &old, &new, 1 << 20);
        assert!(!cut);
        assert!(whole.contains("-line 5\n+five\n") && whole.contains("+nine hundred\n"));
        let (part, cut) = unified("a.py", &old, &new, 120);
        assert!(cut && part.len() <= 120 && part.ends_with('\n'), "{part}");
    }

    #[test]
    fn the_cache_drops_the_least_recent() {
        let cache = Listings::default();
        let one = || {
            Arc::new(Listing {
                files: vec![],
                truncated: false,
            })
        };
        for i in 0..CACHED_LISTINGS + 1 {
            cache.put(&i.to_string(), one());
        }
        assert!(cache.get("0").is_none());
        assert!(cache.get("1").is_some());
    }
}
