//! Dispatch: the one path by which a run's job reaches the broker.
//!
//! A task declares secret *names*; [`RunStore::create_run`](crate::store::RunStore::create_run)
//! copies the names into the run's [`Job`] (which is what `runs.job` stores, so SQL never holds
//! a plaintext value). Whoever publishes a job (control's trigger/invoke/retry, the scheduler's
//! tick and compensation) goes through [`publish_job`] or [`publish_jobs`], which open the named
//! secrets into [`Job::secret_env`] just for the broker message, and only if the run's project is
//! granted the secret ([`SecretGrant`](crate::secrets::SecretGrant)). A secret that cannot be
//! resolved or is not granted fails the run with a message saying which one, rather than running
//! it without.

use crate::broker::{Broker, BrokerError};
use crate::model::{Job, Outcome, RunState};
use crate::secrets::{SecretBox, SecretEnv, SecretError};
use crate::store::{Store, StoreError};
use crate::telemetry::trace::{self, Kind, RunSpan};

/// Why a job's secrets cannot be opened into its message.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("secret {0:?} is not defined")]
    Missing(String),
    /// The secret exists but the run's project may not read it (no grant, or it was revoked).
    #[error("secret {0:?} is not granted to project {1}")]
    NotGranted(String, String),
    #[error(
        "the task declares secrets but this process has no secret key (set ANTCODE_SECRET_KEY)"
    )]
    NoKey,
    /// The sealed value does not open under this process's key, or is malformed.
    #[error(transparent)]
    Sealed(#[from] SecretError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The job as it must be published: `secret_env` filled with the values of `job.secrets`.
/// Store errors are transient (try again later); the others mean the run cannot get its secrets.
pub async fn resolve_job(
    store: &dyn Store,
    secrets: Option<&SecretBox>,
    job: &Job,
) -> Result<Job, ResolveError> {
    let mut out = job.clone();
    out.secret_env = SecretEnv::default();
    if job.secrets.is_empty() {
        return Ok(out);
    }
    let sbox = secrets.ok_or(ResolveError::NoKey)?;
    for name in &job.secrets {
        let row = match store.secret_for(name, &job.project_id).await {
            Ok((row, true)) => row,
            Ok((_, false)) => {
                return Err(ResolveError::NotGranted(
                    name.clone(),
                    job.project_id.clone(),
                ))
            }
            Err(StoreError::NotFound) => return Err(ResolveError::Missing(name.clone())),
            Err(e) => return Err(e.into()),
        };
        let value = sbox.open(name, &row.sealed)?;
        out.secret_env.0.insert(name.clone(), value);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The run was failed because its secrets cannot be resolved.
    #[error("run failed: {0}")]
    RunFailed(ResolveError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

/// Publishes `job` with its secrets resolved — the one way every plane puts a job in the broker
/// (a batch goes through [`publish_jobs`], which this is one job of).
///
/// If a declared secret is missing, is not granted to the run's project, or does not open under
/// this process's key (or there is no key), the attempt is failed in SQL with an error naming
/// the secret (then retried per the task's policy, so adding or granting the secret lets a later
/// attempt run) and `RunFailed` is returned. A store or broker error leaves the run queued for
/// compensation to publish later.
pub async fn publish_job(
    store: &dyn Store,
    broker: &dyn Broker,
    secrets: Option<&SecretBox>,
    job: &Job,
) -> Result<bool, PublishError> {
    match publish_jobs(store, broker, secrets, std::slice::from_ref(job))
        .await?
        .pop()
    {
        Some(Ok(added)) => Ok(added),
        Some(Err(e)) => Err(PublishError::RunFailed(e)),
        None => Ok(false),
    }
}

/// [`publish_job`] for a batch, in one broker call. The result lines up with `jobs`: whether
/// each was added (false: it already was in the broker), or why its run was failed. A store or
/// broker error is the whole batch's: every run stays queued for compensation.
pub async fn publish_jobs(
    store: &dyn Store,
    broker: &dyn Broker,
    secrets: Option<&SecretBox>,
    jobs: &[Job],
) -> Result<Vec<Result<bool, ResolveError>>, PublishError> {
    let mut out: Vec<Result<bool, ResolveError>> = Vec::with_capacity(jobs.len());
    let mut ready = Vec::with_capacity(jobs.len());
    // With traces on, a publish is a span of its run's trace (a new trace for a run created
    // without one, such as a run another run's end started), and the message names that span,
    // so the runner's span hangs under it. Ended when this returns.
    let mut spans = Vec::new();
    for job in jobs {
        match resolve_job(store, secrets, job).await {
            Ok(mut resolved) => {
                if trace::enabled() {
                    let span = RunSpan::start("publish", Kind::Producer, job.trace.as_deref());
                    span.set("antcode.run_id", job.run_id.clone());
                    span.set("antcode.attempt", i64::from(job.attempt));
                    span.set("messaging.destination.name", job.route().into_owned());
                    resolved.trace = span.traceparent().or(resolved.trace);
                    spans.push(span);
                }
                ready.push(resolved);
                out.push(Ok(false));
            }
            Err(ResolveError::Store(e)) => return Err(PublishError::Store(e)),
            Err(e) => {
                fail_unresolvable(store, job, &e).await?;
                out.push(Err(e));
            }
        }
    }
    let published = broker.publish_many(&ready).await;
    if let Err(e) = &published {
        spans.iter().for_each(|s| s.fail(e.to_string()));
    }
    let mut added = published?.into_iter();
    for slot in out.iter_mut().filter(|r| r.is_ok()) {
        *slot = Ok(added.next().unwrap_or(false));
    }
    Ok(out)
}

/// Fails the attempt of a job whose secrets cannot be resolved, naming the reason.
async fn fail_unresolvable(
    store: &dyn Store,
    job: &Job,
    e: &ResolveError,
) -> Result<(), StoreError> {
    metrics::counter!("antcode_secret_resolve_failures_total").increment(1);
    tracing::warn!(run_id = %job.run_id, attempt = job.attempt, error = %e, "failing the run: its secrets cannot be resolved");
    let outcome = Outcome {
        state: RunState::Failed,
        exit_code: None,
        signal: None,
        error: Some(format!("not started: {e}")),
        duration_ms: 0,
        peak_rss_kb: None,
        log_key: None,
        result: None,
    };
    match store
        .finish_attempt(
            &job.run_id,
            job.attempt,
            None,
            &outcome,
            crate::time::now_ms(),
        )
        .await
    {
        // Stale: the run moved on (cancelled, already failed); nothing to do.
        Ok(_) | Err(StoreError::Stale(_)) | Err(StoreError::NotFound) => Ok(()),
        Err(other) => Err(other),
    }
}
