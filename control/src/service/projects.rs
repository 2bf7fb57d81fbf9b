//! Projects and their versions: what a valid name is, and the writes that pair a bundle in
//! the blob store with a row in the store.
//!
//! A bundle is stored before its row; if the row is refused (a name taken, a lost race) the
//! bundle this request wrote is removed again, so a refused upload leaves nothing behind.
//! Bundles are content-addressed and may be shared: one another request or version uses stays.

use serde::Deserialize;

use antcode_core::git::{GitSource, SyncOutcome, SyncStatus};
use antcode_core::ids;
use antcode_core::model::{BundleFormat, Project, ProjectVersion};
use antcode_core::store::StoreError;

use super::{git, name_taken, tasks};
use crate::bounds;
use crate::problem::{check_id, named, ApiResult, Problem};
use crate::upload::{prepare, store_blob, Prepared, UploadForm};
use crate::AppState;

/// The body of `PATCH /projects/{id}`. `git` replaces a Git project's source (or makes an
/// uploaded project follow a repository); the next sync fetches from it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    name: Option<String>,
    description: Option<String>,
    current_version: Option<i64>,
    git: Option<GitSource>,
}

impl ProjectPatch {
    /// The Git source this patch sets, if it sets one.
    pub fn git(&self) -> Option<&GitSource> {
        self.git.as_ref()
    }
}

/// Whether pointing a project whose source is `before` at `after` takes an admin: a source
/// that fetches with a credential may be given a new URL or credential only by an admin, as
/// only admins manage credentials (an operator could otherwise send a token to any host).
pub fn needs_admin(before: Option<&GitSource>, after: &GitSource) -> bool {
    after.credential.is_some()
        && before.is_none_or(|b| b.url != after.url || b.credential != after.credential)
}

/// The JSON body of `POST /projects` that creates a project from Git.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitCreate {
    name: String,
    #[serde(default)]
    description: String,
    git: GitSource,
}

impl GitCreate {
    pub fn git(&self) -> &GitSource {
        &self.git
    }
}

fn check_name(name: &str) -> ApiResult<String> {
    bounds::check_len("name", name, bounds::NAME_CHARS)?;
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "name must be 1-100 printable characters",
        ));
    }
    Ok(name.to_string())
}

fn new_version_row(project_id: &str, number: i64, prepared: &Prepared, now: i64) -> ProjectVersion {
    ProjectVersion {
        project_id: project_id.to_string(),
        version: number,
        bundle: prepared.bundle.clone(),
        entrypoint: prepared.entrypoint.clone(),
        requirements: prepared.requirements.clone(),
        python_version: prepared.python_version.clone(),
        files: prepared.files.clone(),
        created_at: now,
        origin: None,
    }
}

/// Removes the bundle under `key` if this request `wrote` it.
async fn forget_blob(state: &AppState, wrote: bool, key: &str) {
    if wrote {
        if let Err(e) = state.blobs.delete(key).await {
            tracing::warn!(error = %e, key, "could not remove the bundle of a refused upload");
        }
    }
}

pub async fn load(state: &AppState, id: &str) -> ApiResult<Project> {
    check_id(id, "project")?;
    state.store.project(id).await.map_err(named("project", id))
}

/// Version `n` of project `id`, or a 404 naming it.
pub async fn version(state: &AppState, id: &str, n: i64) -> ApiResult<ProjectVersion> {
    state
        .store
        .version(id, n)
        .await
        .map_err(named("version", &n.to_string()))
}

/// A checked new project name and description, the name not yet taken.
async fn check_new(state: &AppState, name: &str, description: &str) -> ApiResult<String> {
    let name = check_name(name)?;
    bounds::check_len("description", description, bounds::DESCRIPTION_CHARS)?;
    match state.store.project_by_name(&name).await {
        Ok(_) => Err(Problem::conflict(format!(
            "a project named {name:?} already exists"
        ))),
        Err(StoreError::NotFound) => Ok(name),
        Err(e) => Err(e.into()),
    }
}

/// A new project from an upload form, its version 1 the form's bundle.
pub async fn create(
    state: &AppState,
    form: &UploadForm,
    now: i64,
) -> ApiResult<(Project, ProjectVersion)> {
    let name = form
        .name
        .as_deref()
        .ok_or_else(|| Problem::bad_request("the `name` field is required"))?;
    let description = form.description.clone().unwrap_or_default();
    let name = check_new(state, name, &description).await?;
    let prepared = prepare(form).await?;
    let wrote = store_blob(state, &prepared).await?;
    let project = Project {
        id: ids::new_id(),
        name,
        description,
        current_version: 1,
        created_at: now,
        updated_at: now,
        source: None,
        sync: None,
    };
    let version = new_version_row(&project.id, 1, &prepared, now);
    if let Err(e) = state.store.create_project(&project, &version).await {
        forget_blob(state, wrote, &prepared.bundle.key).await;
        return Err(name_taken("project", &project.name)(e));
    }
    Ok((project, version))
}

/// A new project from Git: its version 1 is the ref's commit, fetched now (a source that
/// cannot be fetched creates nothing). Returns the project, its version and, when control can
/// seal one, the push webhook's secret (shown only here).
pub async fn create_from_git(
    state: &AppState,
    body: GitCreate,
    now: i64,
) -> ApiResult<(Project, ProjectVersion, Option<String>)> {
    let name = check_new(state, &body.name, &body.description).await?;
    let source = git::check_source(state, body.git).await?;
    let fetched = git::fetch(state, &source).await?;
    let wrote = store_blob(state, &fetched.prepared).await?;
    let id = ids::new_id();
    let version = git::version_row(&id, &fetched, now);
    let project = Project {
        id,
        name,
        description: body.description,
        current_version: 1,
        created_at: now,
        updated_at: now,
        sync: Some(SyncStatus {
            at: now,
            outcome: SyncOutcome::Created,
            commit: Some(fetched.origin.commit.clone()),
            version: Some(1),
            error: None,
            trigger: "create".into(),
        }),
        source: Some(source),
    };
    if let Err(e) = state.store.create_project(&project, &version).await {
        forget_blob(state, wrote, &fetched.prepared.bundle.key).await;
        return Err(name_taken("project", &project.name)(e));
    }
    // Without a secret key the project has no push webhook; it still syncs.
    let minted = state
        .secrets
        .as_deref()
        .map(|sealer| git::mint_push_secret(sealer, &project.id));
    let secret = match minted.transpose()? {
        Some((secret, sealed)) => {
            state
                .store
                .set_hook_secret(&project.id, Some(&sealed))
                .await?;
            Some(secret)
        }
        None => None,
    };
    Ok((project, version, secret))
}

/// A new version of project `id` from an upload form; it becomes current.
pub async fn add_version(
    state: &AppState,
    id: &str,
    form: &UploadForm,
    now: i64,
) -> ApiResult<ProjectVersion> {
    if form.name.is_some() {
        return Err(Problem::bad_request(
            "`name` is not part of a new version; PATCH the project to rename it",
        ));
    }
    let prepared = prepare(form).await?;
    let wrote = store_blob(state, &prepared).await?;
    let row = new_version_row(id, 0, &prepared, now);
    let number = match state.store.add_version(&row).await {
        Ok(n) => n,
        Err(e) => {
            forget_blob(state, wrote, &prepared.bundle.key).await;
            return Err(e.into());
        }
    };
    Ok(state.store.version(id, number).await?)
}

/// What a `PATCH` changed: the project after it, its current version, and whether that version
/// moved (a rollback or roll-forward).
pub struct Updated {
    pub project: Project,
    pub version: ProjectVersion,
    pub moved: bool,
}

/// Applies `patch` to `before` (project `id`); a `current_version` must exist.
pub async fn update(
    state: &AppState,
    before: &Project,
    patch: ProjectPatch,
    now: i64,
) -> ApiResult<Updated> {
    let id = &before.id;
    let mut project = before.clone();
    if let Some(name) = &patch.name {
        project.name = check_name(name)?;
    }
    if let Some(d) = patch.description {
        bounds::check_len("description", &d, bounds::DESCRIPTION_CHARS)?;
        project.description = d;
    }
    if let Some(src) = patch.git {
        project.source = Some(git::check_source(state, src).await?);
    }
    if let Some(n) = patch.current_version {
        state.store.version(id, n).await.map_err(|e| match e {
            StoreError::NotFound => {
                Problem::bad_request(format!("current_version: project {id} has no version {n}"))
            }
            other => other.into(),
        })?;
        project.current_version = n;
    }
    project.updated_at = now;
    state
        .store
        .update_project(&project)
        .await
        .map_err(name_taken("project", &project.name))?;
    let version = state.store.version(id, project.current_version).await?;
    let moved = patch
        .current_version
        .is_some_and(|n| n != before.current_version);
    Ok(Updated {
        project,
        version,
        moved,
    })
}

/// Deletes project `id` unless a task uses it: tasks point at projects, and deleting one out
/// from under them would break every later run. Its bundles stay (past runs name them).
pub async fn remove(state: &AppState, id: &str) -> ApiResult<()> {
    if let Some(t) = tasks::tasks_where(state, 1, |t| t.project_id == id)
        .await?
        .first()
    {
        return Err(Problem::conflict(format!(
            "task {} ({}) uses this project; delete it first",
            t.id, t.name
        )));
    }
    Ok(state.store.delete_project(id).await?)
}

/// The file name and media type a download of version `v` of `project` is offered as.
pub fn download_name(project: &Project, v: &ProjectVersion) -> (String, &'static str) {
    let safe: String = project
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let n = v.version;
    match v.bundle.format {
        BundleFormat::Py => (
            v.bundle
                .file_name
                .clone()
                .unwrap_or_else(|| "main.py".into()),
            "text/x-python",
        ),
        BundleFormat::Zip => (format!("{safe}-v{n}.zip"), "application/zip"),
        BundleFormat::TarGz => (format!("{safe}-v{n}.tar.gz"), "application/gzip"),
    }
}
