//! Projects synced from Git (`antcode_core::git`): checking a source, the sealed credentials
//! its fetches use, a sync, the automatic syncs, and a push webhook's signature.
//!
//! A sync resolves the ref, fetches that one commit with `antcode_git` (no shell, bounded in
//! time and size, private addresses refused unless control allows them) and hands the tree's
//! bundle to the same checks as an upload. The store makes a version only when the files
//! differ from the latest version's ([`GitStore::add_synced_version`]), so repeated, racing or
//! redundant syncs leave one version per change. Fetches run on blocking threads, at most
//! [`CONCURRENT_SYNCS`] at once per control process.
//!
//! [`GitStore::add_synced_version`]: antcode_core::store::GitStore::add_synced_version

use std::io::Read as _;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use antcode_core::git::{
    self as model, GitCredentialKind, GitCredentialMeta, GitOrigin, GitSource, SealedGitCredential,
    SyncOutcome, SyncStatus, INTERVAL_S, MAX_ENTRYPOINT_CHARS, MAX_MESSAGE_CHARS, MAX_PATH_CHARS,
    MAX_URL_CHARS,
};
use antcode_core::ids;
use antcode_core::model::{Project, ProjectVersion};
use antcode_core::store::StoreError;
use antcode_core::time::now_ms;

use crate::bounds;
use crate::problem::{ApiResult, Problem};
use crate::upload::{self, UploadForm};
use crate::AppState;

/// Fetches one control process runs at once: each may hold a repository's pack and bundle.
pub const CONCURRENT_SYNCS: usize = 2;
/// How often the automatic-sync loop looks for projects that are due.
const INTERVAL_TICK: std::time::Duration = std::time::Duration::from_secs(15);
/// Longest token or private key accepted.
pub(crate) const MAX_SECRET_CHARS: usize = 16 * 1024;
/// Longest `known_hosts` text accepted.
pub(crate) const MAX_KNOWN_HOSTS_CHARS: usize = 64 * 1024;

/// The limits on concurrent fetches.
pub struct Syncs(Semaphore);

impl Default for Syncs {
    fn default() -> Syncs {
        Syncs(Semaphore::new(CONCURRENT_SYNCS))
    }
}

/// Checks a source as a user sent it and returns it normalised. The URL is checked against
/// the policy (a private address is refused unless control allows them); DNS is asked, so this
/// runs on a blocking thread.
pub async fn check_source(state: &AppState, mut src: GitSource) -> ApiResult<GitSource> {
    bounds::check_len("git.url", &src.url, MAX_URL_CHARS)?;
    src.url = src.url.trim().to_string();
    for (field, value) in [
        ("git.ref", &mut src.reference),
        ("git.subdir", &mut src.subdir),
        ("git.requirements", &mut src.requirements),
    ] {
        bounds::check_len(field, value, MAX_PATH_CHARS)?;
        *value = value.trim().trim_matches('/').to_string();
        if value.chars().any(char::is_control) {
            return Err(Problem::bad_request(format!("{field}: control characters")));
        }
    }
    for (field, path) in [
        ("git.subdir", &src.subdir),
        ("git.requirements", &src.requirements),
    ] {
        if path.split('/').any(|s| s == ".." || s == ".") || path.starts_with('\\') {
            return Err(Problem::bad_request(format!(
                "{field}: {path:?} must be a relative path inside the repository"
            )));
        }
    }
    if let Some(ep) = &src.entrypoint {
        // A version's entrypoint column holds 255 characters on PostgreSQL and MySQL.
        bounds::check_len("git.entrypoint", ep, MAX_ENTRYPOINT_CHARS)?;
    }
    if let Some(s) = src.interval_s {
        let (least, most) = INTERVAL_S;
        if !(least..=most).contains(&s) {
            return Err(Problem::bad_request(format!(
                "git.interval_s: must be between {least} and {most} seconds, got {s}"
            )));
        }
    }
    src.python_version = upload::check_python_version(src.python_version.take())?;
    if let Some(name) = &src.credential {
        match state.store.git_credential(name).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(Problem::bad_request(format!(
                    "git.credential: no Git credential named {name:?}"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let url = src.url.clone();
    let policy = state.git.clone();
    tokio::task::spawn_blocking(move || antcode_git::check_url(&url, &policy))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| fetch_problem(e, "git.url"))?;
    Ok(src)
}

/// A fetch error as a problem: the caller's fault (a refused URL, a ref that does not exist,
/// credentials the server rejects) is a 422; the server's a 502; a fetch past its time a 504.
fn fetch_problem(e: antcode_git::Error, field: &str) -> Problem {
    use antcode_git::Error;
    use axum::http::StatusCode;
    match e {
        Error::Refused(why) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "git-refused",
            format!("{field}: {why}"),
        ),
        Error::Auth(why) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "git-auth", why),
        Error::Remote(why) => Problem::new(StatusCode::BAD_GATEWAY, "git-remote", why),
        Error::Timeout => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "git-timeout",
            "the Git server did not deliver the commit in time",
        ),
    }
}

fn sealer(state: &AppState) -> ApiResult<&antcode_core::secrets::SecretBox> {
    super::sealer(state, "Git credentials and push secrets are kept")
}

/// The body of `PUT /git-credentials/{name}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    kind: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    known_hosts: Option<String>,
}

/// Checks and seals a credential; `created_at` is kept by the store on replace.
pub fn seal_credential(
    state: &AppState,
    name: &str,
    body: CredentialBody,
    by: &str,
) -> ApiResult<SealedGitCredential> {
    let valid = (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        return Err(Problem::bad_request(format!(
            "{name:?} is not a valid credential name (letters, digits and _ . -, 1-100 characters)"
        )));
    }
    let kind = GitCredentialKind::parse(&body.kind).ok_or_else(|| {
        Problem::bad_request(format!(
            "kind: {:?} is not one of token, ssh_key",
            body.kind
        ))
    })?;
    bounds::check_len("username", &body.username, bounds::NAME_CHARS)?;
    let (secret, known_hosts) = match kind {
        GitCredentialKind::Token => {
            if body.private_key.is_some() || body.known_hosts.is_some() {
                return Err(Problem::bad_request(
                    "a token credential takes `token` and `username` only",
                ));
            }
            let token = body
                .token
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| Problem::bad_request("token: required for kind token"))?;
            (token, String::new())
        }
        GitCredentialKind::SshKey => {
            if body.token.is_some() {
                return Err(Problem::bad_request(
                    "an ssh_key credential takes `private_key` and `known_hosts`",
                ));
            }
            let key = body.private_key.unwrap_or_default();
            if !key.trim_start().starts_with("-----BEGIN ") {
                return Err(Problem::bad_request(
                    "private_key: an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)",
                ));
            }
            let hosts = body.known_hosts.unwrap_or_default();
            bounds::check_len("known_hosts", &hosts, MAX_KNOWN_HOSTS_CHARS)?;
            if !hosts
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                return Err(Problem::bad_request(
                    "known_hosts: required for ssh_key — the server's host key lines (ssh-keyscan HOST)",
                ));
            }
            (key, hosts)
        }
    };
    bounds::check_len("secret", &secret, MAX_SECRET_CHARS)?;
    let sealed = sealer(state)?
        .seal(&model::seal_name(name), &secret)
        .map_err(Problem::internal)?;
    let now = now_ms();
    Ok(SealedGitCredential {
        meta: GitCredentialMeta {
            name: name.to_string(),
            kind,
            username: if kind == GitCredentialKind::Token {
                body.username.trim().to_string()
            } else {
                String::new()
            },
            known_hosts,
            created_at: now,
            updated_at: now,
            updated_by: by.to_string(),
        },
        sealed,
    })
}

/// Refuses to delete a credential a project fetches with.
pub async fn check_unused(state: &AppState, name: &str) -> ApiResult<()> {
    let users = state.store.git_projects().await?;
    if let Some(p) = users
        .iter()
        .find(|p| p.source.as_ref().and_then(|s| s.credential.as_deref()) == Some(name))
    {
        return Err(Problem::conflict(format!(
            "project {} ({}) fetches with this credential; change its source first",
            p.id, p.name
        )));
    }
    Ok(())
}

/// The credential a fetch of `src` uses, opened.
async fn credential(state: &AppState, src: &GitSource) -> ApiResult<antcode_git::Credential> {
    let Some(name) = &src.credential else {
        return Ok(antcode_git::Credential::None);
    };
    let stored = match state.store.git_credential(name).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => {
            return Err(Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "git-auth",
                format!("the Git credential {name:?} no longer exists"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let secret = sealer(state)?
        .open(&model::seal_name(name), &stored.sealed)
        .map_err(Problem::internal)?;
    Ok(match stored.meta.kind {
        GitCredentialKind::Token => antcode_git::Credential::Token {
            username: stored.meta.username,
            token: secret,
        },
        GitCredentialKind::SshKey => antcode_git::Credential::SshKey {
            private_key: secret,
            known_hosts: stored.meta.known_hosts,
        },
    })
}

fn git_source(src: &GitSource) -> antcode_git::Source {
    antcode_git::Source {
        url: src.url.clone(),
        reference: src.reference.clone(),
        subdir: src.subdir.clone(),
        submodules: src.submodules,
    }
}

/// A fetched commit, checked as an upload is and ready to store.
pub struct Fetched {
    pub prepared: upload::Prepared,
    pub origin: GitOrigin,
}

/// Fetches `src`'s commit and checks its bundle. Waits for a free fetch slot.
pub async fn fetch(state: &AppState, src: &GitSource) -> ApiResult<Fetched> {
    let snap = remote(state, src, antcode_git::fetch).await?;
    let (tar_gz, path) = (bytes::Bytes::from(snap.tar_gz), src.requirements.clone());
    let bundle = tar_gz.clone();
    let requirements = tokio::task::spawn_blocking(move || requirements_of(&bundle, &path))
        .await
        .map_err(Problem::internal)??;
    let form = UploadForm {
        entrypoint: src.entrypoint.clone(),
        requirements,
        python_version: src.python_version.clone(),
        file: Some(("source.tar.gz".into(), tar_gz)),
        ..UploadForm::default()
    };
    let mut prepared = upload::prepare(&form).await?;
    // The requirements file the source names is the one that counts: none when it is missing,
    // even if the bundle has a requirements.txt at its root.
    prepared.requirements = form.requirements.clone().unwrap_or_default();
    let message: String = snap.message.chars().take(MAX_MESSAGE_CHARS).collect();
    Ok(Fetched {
        prepared,
        origin: GitOrigin {
            url: src.url.clone(),
            reference: src.reference.clone(),
            commit: snap.commit,
            author: snap.author,
            message,
            committed_at: snap.committed_at,
            tree: snap.tree,
        },
    })
}

/// Runs `call` (a resolve or a fetch of `src`) on a blocking thread, once one of the
/// [`CONCURRENT_SYNCS`] slots is free.
async fn remote<T: Send + 'static>(
    state: &AppState,
    src: &GitSource,
    call: fn(
        &antcode_git::Source,
        &antcode_git::Credential,
        &antcode_git::Policy,
    ) -> Result<T, antcode_git::Error>,
) -> ApiResult<T> {
    let cred = credential(state, src).await?;
    let _slot = state
        .git_syncs
        .0
        .acquire()
        .await
        .map_err(Problem::internal)?;
    let (source, policy) = (git_source(src), state.git.clone());
    tokio::task::spawn_blocking(move || call(&source, &cred, &policy))
        .await
        .map_err(Problem::internal)?
        .map_err(|e| fetch_problem(e, "git"))
}

/// The text of file `path` in a bundle, if it has one; a requirements file larger than an
/// upload's `requirements` field may be is refused.
fn requirements_of(tar_gz: &[u8], path: &str) -> ApiResult<Option<String>> {
    if path.is_empty() {
        return Ok(None);
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    let entries = archive.entries().map_err(Problem::internal)?;
    for entry in entries {
        let mut entry = entry.map_err(Problem::internal)?;
        let name = entry.path().map_err(Problem::internal)?;
        if name.to_str().map(|n| n.trim_start_matches("./")) != Some(path) {
            continue;
        }
        let mut text = String::new();
        std::io::Read::by_ref(&mut entry)
            .take(bounds::REQUIREMENTS_CHARS as u64 * 4 + 1)
            .read_to_string(&mut text)
            .map_err(|_| {
                Problem::bad_request(format!("git.requirements: {path} is not UTF-8 text"))
            })?;
        bounds::check_len("git.requirements", &text, bounds::REQUIREMENTS_CHARS)?;
        return Ok(Some(text));
    }
    Ok(None)
}

/// The version row of a fetched commit, numbered by the store.
pub fn version_row(project_id: &str, fetched: &Fetched, now: i64) -> ProjectVersion {
    let p = &fetched.prepared;
    ProjectVersion {
        project_id: project_id.to_string(),
        version: 1,
        bundle: p.bundle.clone(),
        entrypoint: p.entrypoint.clone(),
        requirements: p.requirements.clone(),
        python_version: p.python_version.clone(),
        files: p.files.clone(),
        created_at: now,
        origin: Some(fetched.origin.clone()),
    }
}

/// A new push secret for project `id`: the secret to show once, and sealed as the store keeps
/// it.
pub fn mint_push_secret(
    sealer: &antcode_core::secrets::SecretBox,
    id: &str,
) -> ApiResult<(String, String)> {
    let secret = ids::new_token("acg");
    let sealed = sealer
        .seal(&push_seal_name(id), &secret)
        .map_err(Problem::internal)?;
    Ok((secret, sealed))
}

/// The secret key's box for push secrets, or the 503 that says one is needed.
pub fn push_sealer(state: &AppState) -> ApiResult<&antcode_core::secrets::SecretBox> {
    super::sealer(state, "push secrets are kept")
}

fn push_seal_name(project_id: &str) -> String {
    format!("git-push:{project_id}")
}

/// Syncs `project` (as just read) now: resolves its ref and, unless nothing can have changed since the
/// last sync, fetches it and makes a version if the files changed. Records the outcome on the
/// project (a failure too) and returns it; a failure is also the `Err`.
pub async fn sync(
    state: &AppState,
    project: &Project,
    trigger: &'static str,
) -> ApiResult<SyncStatus> {
    let id = project.id.as_str();
    let Some(src) = project.source.clone() else {
        return Err(Problem::conflict(format!(
            "project {id} is not synced from Git; upload a new version instead"
        )));
    };
    let started = now_ms();
    let result = sync_source(state, project, &src).await;
    let mut status = SyncStatus {
        at: started,
        outcome: SyncOutcome::Failed,
        commit: None,
        version: None,
        error: None,
        trigger: trigger.to_string(),
    };
    match &result {
        Ok((outcome, commit, version)) => {
            status.outcome = *outcome;
            status.commit = Some(commit.clone());
            status.version = Some(*version);
        }
        Err(p) => status.error = Some(p.detail.clone()),
    }
    crate::metrics::git_sync(outcome_label(status.outcome), trigger);
    match state.store.record_sync(id, &status).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => tracing::warn!(error = %e, project = id, "could not record a sync"),
    }
    result.map(|_| status)
}

fn outcome_label(o: SyncOutcome) -> &'static str {
    match o {
        SyncOutcome::Created => "created",
        SyncOutcome::Unchanged => "unchanged",
        SyncOutcome::Failed => "failed",
    }
}

/// The work of [`sync`]: its outcome, the commit and the version that holds it.
async fn sync_source(
    state: &AppState,
    project: &Project,
    src: &GitSource,
) -> ApiResult<(SyncOutcome, String, i64)> {
    // Cheap first: when the ref still names the commit the last good sync took and nothing
    // of the project was written since that sync started (`at` is its start, so an edit made
    // while it ran counts), nothing can have changed.
    if let Some(last) = &project.sync {
        let unedited = project.updated_at < last.at;
        if last.outcome != SyncOutcome::Failed && unedited {
            if let (Some(commit), Some(version)) = (&last.commit, last.version) {
                let now = remote(state, src, antcode_git::resolve).await?;
                if &now == commit {
                    return Ok((SyncOutcome::Unchanged, now, version));
                }
            }
        }
    }
    let fetched = fetch(state, src).await?;
    // Whoever wrote the bundle, it stays: bundles are content-addressed, and a sync of the same
    // commit racing this one may just have made it a version's (an orphan costs only space).
    upload::store_blob(state, &fetched.prepared).await?;
    let row = version_row(&project.id, &fetched, now_ms());
    let commit = fetched.origin.commit.clone();
    match state.store.add_synced_version(&row).await {
        Ok(Some(n)) => {
            tracing::info!(project = %project.id, version = n, commit = %commit, "git sync made a version");
            Ok((SyncOutcome::Created, commit, n))
        }
        Ok(None) => {
            let latest = state
                .store
                .list_versions(&project.id)
                .await?
                .first()
                .map_or(project.current_version, |v| v.version);
            Ok((SyncOutcome::Unchanged, commit, latest))
        }
        Err(e) => Err(e.into()),
    }
}

/// Syncs every Git project whose interval has passed since its last sync, until shutdown.
/// Several control processes may each sync a project: the store keeps one version per change.
pub fn spawn_interval_syncs(state: AppState) {
    tokio::spawn(async move {
        let shutdown = state.shutdown.clone();
        let mut tick = tokio::time::interval(INTERVAL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let due = match due_projects(&state).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the Git projects to sync");
                    continue;
                }
            };
            for project in due {
                if shutdown.is_cancelled() {
                    return;
                }
                let id = project.id.as_str();
                let result = sync(&state, &project, "interval").await;
                if let Err(p) = &result {
                    tracing::warn!(project = %id, error = %p.detail, "automatic git sync failed");
                }
                // No handler runs this sync, so it is audited here, as the system's.
                let system = crate::client::Client {
                    address: "-".into(),
                    user_agent: "interval sync".into(),
                };
                audit_sync(&state, "system", &system, id, &result).await;
            }
        }
    });
}

/// Audits a sync no user asked for (an interval's, a push's) under `actor`; unchanged ones are
/// not written, so a quiet repository does not fill the trail.
pub async fn audit_sync(
    state: &AppState,
    actor: &str,
    client: &crate::client::Client,
    id: &str,
    result: &ApiResult<SyncStatus>,
) {
    let (after, outcome) = match result {
        Ok(s) if s.outcome == SyncOutcome::Unchanged => return,
        Ok(s) => (crate::audit::to_value(s), "ok"),
        Err(p) => (Some(serde_json::json!({"error": p.detail})), "failed"),
    };
    crate::audit::record_as(
        state,
        actor,
        client,
        "project.sync",
        id,
        None,
        after,
        outcome,
    )
    .await;
}

async fn due_projects(state: &AppState) -> Result<Vec<Project>, StoreError> {
    let now = now_ms();
    Ok(state
        .store
        .git_projects()
        .await?
        .into_iter()
        .filter(|p| {
            let every = p.source.as_ref().and_then(|s| s.interval_s);
            let last = p.sync.as_ref().map_or(p.created_at, |s| s.at);
            every.is_some_and(|s| now - last >= s as i64 * 1000)
        })
        .collect())
}

/// What a push webhook call named.
pub struct Push {
    /// The full ref pushed (`refs/heads/main`), if the body named one.
    pub reference: Option<String>,
    /// `ping` (GitHub's and Gitea's test delivery) rather than a push.
    pub ping: bool,
}

/// Checks a push webhook call for project `id`: GitHub's and Gitea's HMAC-SHA256 signature of
/// the body (`X-Hub-Signature-256`, `X-Gitea-Signature`) or GitLab's token (`X-Gitlab-Token`).
/// Every failure is the same 401, and an unknown project costs the same work as a known one.
pub async fn verify_push(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(Project, Push)> {
    let project = if ids::is_valid_id(id) {
        match state.store.project(id).await {
            Ok(p) => Some(p),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    // An unknown project costs the same reads and the same opening as a known one, so the
    // answer's time does not tell which ids exist.
    let sealed = state
        .store
        .hook_secret(project.as_ref().map_or(id, |p| p.id.as_str()))
        .await;
    let sealed = match (&project, sealed) {
        (Some(_), Ok(s)) => s,
        (None, _) | (_, Err(StoreError::NotFound)) => None,
        (Some(_), Err(e)) => return Err(e.into()),
    };
    let secret = match (sealed, state.secrets.as_deref()) {
        (Some(s), Some(sealer)) => sealer.open(&push_seal_name(id), &s).ok(),
        (None, Some(sealer)) => {
            let _ = sealer.open(&push_seal_name("decoy"), decoy_sealed(sealer));
            None
        }
        _ => None,
    };
    let key = secret.as_deref().unwrap_or("decoy-secret-never-matches");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = if let Some(sig) = header("x-hub-signature-256") {
        sig.strip_prefix("sha256=")
            .is_some_and(|hex| mac_matches(key, body, hex))
    } else if let Some(sig) = header("x-gitea-signature") {
        mac_matches(key, body, sig)
    } else if let Some(token) = header("x-gitlab-token") {
        token.as_bytes().ct_eq(key.as_bytes()).into()
    } else {
        false
    };
    let (Some(project), true, true) = (project, signed, secret.is_some()) else {
        return Err(Problem::unauthorized("missing or invalid push signature"));
    };
    let event = header("x-github-event")
        .or_else(|| header("x-gitea-event"))
        .or_else(|| header("x-gitlab-event"))
        .unwrap_or("push");
    let ping = event.eq_ignore_ascii_case("ping");
    let reference = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    Ok((project, Push { reference, ping }))
}

/// A sealed secret opened when the project is unknown, as a known one's is.
fn decoy_sealed(sealer: &antcode_core::secrets::SecretBox) -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        sealer
            .seal(&push_seal_name("decoy"), &ids::new_token("acg"))
            .unwrap_or_default()
    })
}

fn mac_matches(key: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(given) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Whether a push of `pushed` (a full ref) may move a source following `reference`: a branch
/// or tag of that name; any branch when the source follows the default branch (which one that
/// is only the server knows); never a pinned commit.
pub fn push_concerns(reference: &str, pushed: Option<&str>) -> bool {
    if is_commit(reference) {
        return false;
    }
    let Some(pushed) = pushed else {
        return true;
    };
    if reference.is_empty() {
        return pushed.starts_with("refs/heads/");
    }
    if reference.starts_with("refs/") {
        return pushed == reference;
    }
    pushed == format!("refs/heads/{reference}") || pushed == format!("refs/tags/{reference}")
}

fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_concern_the_followed_ref() {
        assert!(push_concerns("main", Some("refs/heads/main")));
        assert!(push_concerns("v1", Some("refs/tags/v1")));
        assert!(!push_concerns("main", Some("refs/heads/dev")));
        assert!(push_concerns("", Some("refs/heads/dev")));
        assert!(!push_concerns("", Some("refs/tags/v1")));
        assert!(push_concerns("main", None));
        assert!(push_concerns("refs/heads/main", Some("refs/heads/main")));
        assert!(!push_concerns("refs/heads/main", Some("refs/heads/dev")));
        assert!(!push_concerns(&"a".repeat(40), Some("refs/heads/main")));
    }

    #[test]
    fn signatures_are_checked() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"{}");
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(mac_matches("s3cret", b"{}", &good));
        assert!(!mac_matches("other", b"{}", &good));
        assert!(!mac_matches("s3cret", b"{ }", &good));
        assert!(!mac_matches("s3cret", b"{}", "zz"));
    }
}
