//! `antcode projects push|ls|sync`.

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::Value;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{by_name, connect};
use crate::api::Api;
use crate::args::{Page, Projects, ProjectsCommand, PushArgs};
use crate::error::{Error, Result};
use crate::output::{self, field, Out};
use crate::pack;

/// Bytes per piece of an upload (what the progress bar advances by).
const UPLOAD_PIECE: usize = 64 * 1024;

pub async fn projects(p: Projects) -> Result<i32> {
    let (api, out) = connect(&p.conn)?;
    match p.command {
        ProjectsCommand::Ls(page) => ls(&api, &out, &page).await,
        ProjectsCommand::Push(a) if a.git.is_some() => push_git(&api, &out, *a).await,
        ProjectsCommand::Push(a) => push(&api, &out, *a).await,
        ProjectsCommand::Sync { project } => sync(&api, &out, &project).await,
    }
}

async fn ls(api: &Api, out: &Out, page: &Page) -> Result<i32> {
    let list = api.get_query("/projects", &page.query()).await?;
    let header = ["NAME", "ID", "VERSION", "UPDATED"];
    out.page(&list, &header, None, |p| {
        ["name", "id", "current_version", "updated_at"]
            .map(|k| field(p, k))
            .to_vec()
    });
    Ok(0)
}

/// What goes up: the bytes and the file name the server detects the format by.
struct Upload {
    name: String,
    file_name: String,
    bytes: Vec<u8>,
}

/// `path` ready to send: a directory packed, a file read, both at most `max` bytes.
fn prepare(path: &Path, max: u64) -> Result<Upload> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let full = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let base = full
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("project")
        .to_string();
    if meta.is_dir() {
        let packed = pack::pack_dir(&full, max)?;
        return Ok(Upload {
            name: base.clone(),
            file_name: format!("{base}.tar.gz"),
            bytes: packed.bytes,
        });
    }
    if meta.len() > max {
        return Err(Error::usage(format!(
            "{} is {} bytes, more than the upload limit of {max} (--max-bytes)",
            path.display(),
            meta.len()
        )));
    }
    let stem = [".tar.gz", ".tgz", ".zip", ".py"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(&base)
        .to_string();
    let bytes = std::fs::read(&full).map_err(|e| Error::io(path, e))?;
    Ok(Upload {
        name: stem,
        file_name: base,
        bytes,
    })
}

/// The file part, streamed in pieces that advance a progress bar on a terminal.
fn file_part(upload: Upload) -> Result<(Part, Option<ProgressBar>)> {
    let len = upload.bytes.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(len);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("uploading {}", upload.file_name));
        bar
    });
    let data = bytes::Bytes::from(upload.bytes);
    let pieces: Vec<bytes::Bytes> = (0..data.len())
        .step_by(UPLOAD_PIECE)
        .map(|at| data.slice(at..(at + UPLOAD_PIECE).min(data.len())))
        .collect();
    let tick = bar.clone();
    let stream = futures::stream::iter(pieces).map(move |piece| {
        if let Some(bar) = &tick {
            bar.inc(piece.len() as u64);
        }
        Ok::<_, std::io::Error>(piece)
    });
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
        .file_name(upload.file_name)
        .mime_str("application/octet-stream")
        .map_err(|e| Error::usage(e.to_string()))?;
    Ok((part, bar))
}

async fn push(api: &Api, out: &Out, a: PushArgs) -> Result<i32> {
    let path: PathBuf = a
        .path
        .clone()
        .ok_or_else(|| Error::usage("give a directory or a file to push"))?;
    let upload = prepare(&path, a.max_bytes)?;
    let name = a.name.clone().unwrap_or_else(|| upload.name.clone());
    let size = upload.bytes.len();
    let existing = by_name(api, "/projects", &name).await?;
    let (part, bar) = file_part(upload)?;
    let mut form = Form::new().part("file", part);
    for (key, value) in [
        ("entrypoint", &a.entrypoint),
        ("python_version", &a.python_version),
    ] {
        if let Some(v) = value {
            form = form.text(key, v.clone());
        }
    }
    let (path, created) = match &existing {
        Some(p) => (format!("/projects/{}/versions", field(p, "id")), false),
        None => {
            form = form.text("name", name.clone());
            if let Some(d) = &a.description {
                form = form.text("description", d.clone());
            }
            ("/projects".to_string(), true)
        }
    };
    let sent = api
        .send(api.request(Method::POST, &path).multipart(form))
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let answer = api.json(sent.map_err(|e| too_large_hint(e, size))?).await?;
    if out.json() {
        out.print_json(&answer);
        return Ok(0);
    }
    let (id, version) = match created {
        true => (field(&answer, "id"), answer["version"]["version"].clone()),
        false => (field(&answer, "project_id"), answer["version"].clone()),
    };
    let files = answer
        .get("files")
        .or_else(|| answer["version"].get("files"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let what = if created { "created project" } else { "pushed" };
    println!(
        "{what} {name} ({id}) version {}: {size} bytes, {files} files",
        output::cell(&version)
    );
    Ok(0)
}

/// `push --git URL`: the project of that name (default: the repository's name) follows the
/// repository; a new one is created from it, an existing one re-pointed and synced.
async fn push_git(api: &Api, out: &Out, a: PushArgs) -> Result<i32> {
    let url = a.git.clone().unwrap_or_default();
    let name = match &a.name {
        Some(n) => n.clone(),
        None => repo_name(&url)
            .ok_or_else(|| Error::usage("--name: cannot tell a name from the URL; give one"))?,
    };
    let existing = by_name(api, "/projects", &name).await?;
    // Re-pointing keeps what the flags do not change (credential, interval, subdir, …).
    let mut git = existing
        .as_ref()
        .and_then(|p| p.get("source"))
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    git["url"] = Value::from(url.clone());
    for (key, value) in [
        ("ref", &a.reference),
        ("subdir", &a.subdir),
        ("entrypoint", &a.entrypoint),
        ("python_version", &a.python_version),
        ("credential", &a.credential),
    ] {
        if let Some(v) = value {
            git[key] = Value::from(v.clone());
        }
    }
    if let Some(s) = a.interval {
        git["interval_s"] = Value::from(s);
    }
    let answer = match existing {
        None => {
            let mut body = serde_json::json!({"name": name, "git": git});
            if let Some(d) = &a.description {
                body["description"] = Value::from(d.clone());
            }
            api.post("/projects", Some(&body)).await?
        }
        Some(p) => {
            let id = field(&p, "id");
            api.patch(&format!("/projects/{id}"), &serde_json::json!({"git": git}))
                .await?;
            let status = api.post(&format!("/projects/{id}/sync"), None).await?;
            serde_json::json!({"id": id, "name": name, "sync": status})
        }
    };
    if out.json() {
        out.print_json(&answer);
        return Ok(0);
    }
    let id = field(&answer, "id");
    match answer.get("version") {
        Some(v) => {
            println!(
                "created project {name} ({id}) version 1 from commit {}",
                short(&v["origin"]["commit"])
            );
            if let Some(push) = answer.get("push").filter(|p| !p["secret"].is_null()) {
                println!(
                    "push webhook: {} (content type application/json, secret {}; shown only now)",
                    field(push, "url"),
                    field(push, "secret")
                );
            }
        }
        None => print_sync(&name, &answer["sync"]),
    }
    Ok(0)
}

async fn sync(api: &Api, out: &Out, project: &str) -> Result<i32> {
    let id = super::resolve(api, "project", project).await?;
    let status = api.post(&format!("/projects/{id}/sync"), None).await?;
    if out.json() {
        out.print_json(&status);
    } else {
        print_sync(project, &status);
    }
    Ok(0)
}

fn print_sync(name: &str, status: &Value) {
    let commit = short(&status["commit"]);
    let version = output::cell(&status["version"]);
    match status["outcome"].as_str() {
        Some("created") => println!("synced {name}: version {version} from commit {commit}"),
        _ => println!("synced {name}: unchanged at commit {commit} (version {version})"),
    }
}

/// The first 12 characters of a commit id.
fn short(commit: &Value) -> String {
    commit.as_str().unwrap_or("?").chars().take(12).collect()
}

/// `repo` of `https://host/team/repo.git` or `git@host:team/repo`.
fn repo_name(url: &str) -> Option<String> {
    let last = url.trim_end_matches('/').rsplit(['/', ':']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then(|| name.to_string())
}

/// A 413 says which limit to raise.
fn too_large_hint(e: Error, size: usize) -> Error {
    match e {
        Error::Api { status, detail } if status.0 == 413 => Error::Api {
            status,
            detail: format!(
                "{detail} ({size} bytes sent; the server's limit is its ANTCODE_MAX_UPLOAD_BYTES)"
            ),
        },
        other => other,
    }
}
