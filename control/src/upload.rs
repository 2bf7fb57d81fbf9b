//! Project uploads: reading the form (multipart or JSON with inline code), checking the bundle
//! with the same walker the runner unpacks with, and storing it content-addressed.
//!
//! Everything is validated before anything is written, so a refused upload leaves neither a
//! blob nor a row behind.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use bytes::Bytes;
use serde::Deserialize;

use antcode_core::blob::bundle_key;
use antcode_core::bundle::{self, Limits};
use antcode_core::ids::sha256_hex;
use antcode_core::model::{BundleFormat, BundleRef};

use crate::bounds;
use crate::problem::{parse_json, ApiResult, Problem};
use crate::AppState;

/// What a create-project or new-version request carried.
#[derive(Debug, Default)]
pub struct UploadForm {
    pub name: Option<String>,
    pub description: Option<String>,
    pub entrypoint: Option<String>,
    pub requirements: Option<String>,
    /// The Python its runs need, `major.minor` (checked by [`check_python_version`]).
    pub python_version: Option<String>,
    /// `(file name, bytes)` of the uploaded file.
    pub file: Option<(String, Bytes)>,
    /// Inline source for a single-file project (JSON bodies).
    pub code: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineBody {
    name: Option<String>,
    description: Option<String>,
    code: String,
    entrypoint: Option<String>,
    requirements: Option<String>,
    python_version: Option<String>,
}

/// Reads a multipart form, or a JSON body left for the caller to parse.
pub async fn read_body(req: Request, state: &AppState) -> ApiResult<Body> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(req, state).await.map_err(|e| {
            Problem::bad_request(format!("malformed multipart body: {}", e.body_text()))
        })?;
        read_multipart(multipart).await.map(Body::Form)
    } else if content_type.starts_with("application/json") {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large("the request body is too large")
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        Ok(Body::Json(body))
    } else {
        Err(Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send multipart/form-data (name, file, entrypoint?, requirements?, python_version?, description?), or application/json with inline `code` or a `git` source",
        ))
    }
}

/// A create-project or new-version body: a multipart upload, or JSON read but not yet parsed
/// (inline code, or a Git source).
pub enum Body {
    Form(UploadForm),
    Json(Bytes),
}

/// Reads a multipart form or a JSON body with inline `code`.
pub async fn read_form(req: Request, state: &AppState) -> ApiResult<UploadForm> {
    match read_body(req, state).await? {
        Body::Form(form) => Ok(form),
        Body::Json(body) => inline_form(&body),
    }
}

/// The form of a JSON body with inline `code`.
pub fn inline_form(body: &[u8]) -> ApiResult<UploadForm> {
    let inline: InlineBody = parse_json(body)?;
    for (field, value, max) in [
        ("name", &inline.name, bounds::NAME_CHARS),
        (
            "description",
            &inline.description,
            bounds::DESCRIPTION_CHARS,
        ),
        ("entrypoint", &inline.entrypoint, bounds::ENTRYPOINT_CHARS),
        (
            "requirements",
            &inline.requirements,
            bounds::REQUIREMENTS_CHARS,
        ),
    ] {
        bounds::check_len(field, value.as_deref().unwrap_or(""), max)?;
    }
    Ok(UploadForm {
        name: inline.name,
        description: inline.description,
        entrypoint: inline.entrypoint,
        requirements: inline.requirements,
        python_version: check_python_version(inline.python_version)?,
        file: None,
        code: Some(inline.code),
    })
}

async fn read_multipart(mut multipart: Multipart) -> ApiResult<UploadForm> {
    let read = read_fields(&mut multipart).await;
    if read.is_err() {
        drain(&mut multipart).await;
    }
    read
}

/// Reads what a refused upload is still sending (no more than the body limit lets through):
/// a server that answers and closes while the client writes leaves the client with a broken
/// pipe instead of the answer.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

async fn read_fields(multipart: &mut Multipart) -> ApiResult<UploadForm> {
    let mut form = UploadForm::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().unwrap_or("").to_string();
                let data = field.bytes().await?;
                if form.file.is_some() {
                    return Err(Problem::bad_request("send exactly one `file` field"));
                }
                form.file = Some((file_name, data));
            }
            "name" | "description" | "entrypoint" | "requirements" => {
                let (slot, max) = match name.as_str() {
                    "name" => (&mut form.name, bounds::NAME_CHARS),
                    "description" => (&mut form.description, bounds::DESCRIPTION_CHARS),
                    "entrypoint" => (&mut form.entrypoint, bounds::ENTRYPOINT_CHARS),
                    _ => (&mut form.requirements, bounds::REQUIREMENTS_CHARS),
                };
                *slot = Some(read_text(field, &name, max).await?);
            }
            "python_version" => {
                let raw = read_text(field, &name, PYTHON_VERSION_CHARS).await?;
                form.python_version = check_python_version(Some(raw))?;
            }
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown form field `{other}` (expected name, file, entrypoint, requirements, python_version, description)"
                )))
            }
        }
    }
    Ok(form)
}

const PYTHON_VERSION_CHARS: usize = 8;

/// A `python_version` as `major.minor` (`3.12`), or none when empty: runs of the project go to
/// runners that have that Python (`antcode_core::broker::routing`).
pub fn check_python_version(raw: Option<String>) -> ApiResult<Option<String>> {
    let Some(v) = raw.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ok = v.len() <= PYTHON_VERSION_CHARS
        && antcode_core::broker::routing::python_label(&v).is_some()
        && v.split('.').count() == 2;
    if !ok {
        return Err(Problem::bad_request(format!(
            "python_version: {v:?} is not major.minor, such as 3.12"
        )));
    }
    Ok(Some(v))
}

/// A text field of at most `max` characters, read no further than the bytes they can take.
async fn read_text(
    mut field: axum::extract::multipart::Field<'_>,
    name: &str,
    max: usize,
) -> ApiResult<String> {
    let mut raw = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        raw.extend_from_slice(&chunk);
        if raw.len() > max * 4 {
            return Err(bounds::too_large(name, format!("at most {max} characters")));
        }
    }
    let text = String::from_utf8(raw)
        .map_err(|_| Problem::bad_request(format!("{name}: not UTF-8 text")))?;
    bounds::check_len(name, &text, max)?;
    Ok(text)
}

/// A checked upload, ready to be stored.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub data: Bytes,
    pub bundle: BundleRef,
    pub entrypoint: String,
    pub requirements: String,
    pub python_version: Option<String>,
    pub files: Vec<String>,
}

/// A plain Python file name: no directories, nothing a shell or a path could misread.
fn py_file_name(raw: &str, what: &str) -> ApiResult<String> {
    let ok = raw.ends_with(".py")
        && raw.len() > 3
        && raw.len() <= 200
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !raw.starts_with('.');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Problem::bad_request(format!(
            "{what} {raw:?} must be a plain Python file name like main.py"
        )))
    }
}

/// Validates the form's bundle without writing anything.
pub async fn prepare(form: &UploadForm) -> ApiResult<Prepared> {
    if let Some(code) = &form.code {
        if form.file.is_some() {
            return Err(Problem::bad_request(
                "send either `file` or `code`, not both",
            ));
        }
        let name = py_file_name(
            form.entrypoint.as_deref().unwrap_or("main.py"),
            "entrypoint",
        )?;
        return Ok(single_file(Bytes::from(code.clone()), name, form));
    }
    let Some((file_name, data)) = &form.file else {
        return Err(Problem::bad_request(
            "the `file` field (a .py, .zip or .tar.gz) is required",
        ));
    };
    if data.is_empty() {
        return Err(Problem::bad_request("the uploaded file is empty"));
    }
    // Browsers send a bare name; some tools send a path. Only the last segment names the file.
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or("");
    let format = bundle::detect_format(base, data)?;
    if format == BundleFormat::Py {
        let name = py_file_name(base, "file name")?;
        if let Some(ep) = &form.entrypoint {
            if ep != &name {
                return Err(Problem::bad_request(format!(
                    "entrypoint {ep:?} is not in the bundle (the upload is the single file {name:?})"
                )));
            }
        }
        return Ok(single_file(data.clone(), name, form));
    }
    let bytes = data.clone();
    let manifest =
        tokio::task::spawn_blocking(move || bundle::inspect(format, &bytes, Limits::default()))
            .await
            .map_err(Problem::internal)??;
    let entrypoint = match &form.entrypoint {
        Some(ep) if !ep.trim().is_empty() => ep.trim().trim_start_matches("./").to_string(),
        _ => {
            let py: Vec<&String> = manifest
                .files
                .iter()
                .filter(|f| f.ends_with(".py"))
                .collect();
            if manifest.files.iter().any(|f| f == "main.py") || py.len() != 1 {
                "main.py".to_string()
            } else {
                py[0].clone()
            }
        }
    };
    if !manifest.files.iter().any(|f| f == &entrypoint) {
        return Err(Problem::bad_request(format!(
            "the entrypoint {entrypoint:?} is not in the bundle; give the `entrypoint` field"
        )));
    }
    let sha = sha256_hex(data);
    let ext = format.as_str();
    Ok(Prepared {
        bundle: BundleRef {
            key: bundle_key(&sha, ext),
            sha256: sha,
            format,
            size_bytes: data.len() as i64,
            file_name: None,
        },
        data: data.clone(),
        entrypoint,
        requirements: manifest
            .requirements
            .or_else(|| form.requirements.clone())
            .unwrap_or_default(),
        python_version: form.python_version.clone(),
        files: manifest.files,
    })
}

fn single_file(data: Bytes, name: String, form: &UploadForm) -> Prepared {
    let sha = sha256_hex(&data);
    Prepared {
        bundle: BundleRef {
            key: bundle_key(&sha, "py"),
            sha256: sha,
            format: BundleFormat::Py,
            size_bytes: data.len() as i64,
            file_name: Some(name.clone()),
        },
        data,
        entrypoint: name.clone(),
        requirements: form.requirements.clone().unwrap_or_default(),
        python_version: form.python_version.clone(),
        files: vec![name],
    }
}

/// Stores the bundle unless the same content is already there. Returns true when this call wrote
/// it, so the caller can remove it again if the row that would point at it is refused.
pub async fn store_blob(state: &AppState, prepared: &Prepared) -> ApiResult<bool> {
    if state.blobs.exists(&prepared.bundle.key).await? {
        return Ok(false);
    }
    state
        .blobs
        .put(&prepared.bundle.key, prepared.data.clone())
        .await?;
    Ok(true)
}
