//! antcode-runner: the execution plane.
//!
//! A runner pulls leases for the queues it serves, fetches and verifies each project bundle,
//! builds (once) or reuses a uv virtualenv for the project's requirements, and runs the entrypoint
//! in its own session and process group with a minimal environment (never the runner's own). It
//! streams the output as sequenced log chunks, archives the whole log in the BlobStore, and reports
//! `Started` / `Finished` events fenced by the lease token. Heartbeats run on their own task and
//! carry cancels, lost leases and drain requests back.
//!
//! Where the work comes from is behind [`WorkSource`]: [`DirectSource`] reads the broker and blob
//! store directly (direct mode); a gateway transport through the edge implements the same trait.
//!
//! Modules: [`source`] (the work source), [`uv`] (interpreters and virtualenvs), [`bundles`]
//! (bundle cache and extraction), [`process`] (spawning, killing and reaping), [`logs`] (line
//! cutting, shipping, archiving), [`execute`] (one attempt end to end), [`engine`] (leasing,
//! slots, heartbeats, drain and shutdown), [`stats`] (host CPU/memory/disk for heartbeats),
//! [`sweeper`] (finished runs' escaped descendants, killed in batches), [`workdirs`] (attempts'
//! working directories, recycled),
//! [`zygote`] (warm starts: runs forked from a pre-started interpreter per project version),
//! [`cgroup`] (per-run memory, CPU and process bounds; killing all of a run), [`netpolicy`]
//! (a task's network policy: own namespace, or a Landlock port allow-list), [`sandbox`] (the
//! namespaces, mounts, seccomp and Landlock every cold run starts in).

pub mod backoff;
pub mod bundles;
pub mod cgroup;
pub mod engine;
pub mod execute;
pub mod gateway;
pub mod logs;
pub mod netpolicy;
pub mod process;
pub mod releases;
pub mod sandbox;
pub mod source;
pub mod stats;
pub mod sweeper;
pub mod uv;
pub mod workdirs;
pub mod zygote;

/// A mutex's guard, also when a panic elsewhere poisoned it: nothing the runner keeps under a
/// mutex is left half-updated by a panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use antcode_core::blob::BlobStore;
use antcode_core::broker::{routing, Broker};
use antcode_core::Shutdown;

pub use engine::{run_with_source, EngineConfig};
pub use source::{DirectSource, SourceError, WorkSource};

/// Everything a direct-mode runner needs: the engine's settings (reached through `Deref`, so
/// `config.slots = 4` works) and the seams it leases from.
#[derive(Clone)]
pub struct RunnerConfig {
    pub engine: EngineConfig,
    pub broker: Arc<dyn Broker>,
    pub blobs: Arc<dyn BlobStore>,
}

impl std::ops::Deref for RunnerConfig {
    type Target = EngineConfig;
    fn deref(&self) -> &EngineConfig {
        &self.engine
    }
}

impl std::ops::DerefMut for RunnerConfig {
    fn deref_mut(&mut self) -> &mut EngineConfig {
        &mut self.engine
    }
}

/// [`EngineConfig::max_limits`]'s default.
pub fn default_max_limits() -> antcode_core::model::RunLimits {
    antcode_core::model::RunLimits {
        memory_mb: 8192,
        cpu_millicores: 4000,
        pids: 4096,
        tmp_mb: 8192,
    }
}

impl RunnerConfig {
    /// Defaults for everything but the seams and the data directory; a fresh worker id.
    pub fn new(
        broker: Arc<dyn Broker>,
        blobs: Arc<dyn BlobStore>,
        data_dir: PathBuf,
    ) -> RunnerConfig {
        let host = stats::hostname();
        // Runs start in their own directories, so every path derived from the data dir (venv
        // interpreters, bundles) must be absolute whatever the caller passed.
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        RunnerConfig {
            engine: EngineConfig {
                worker_id: antcode_core::ids::new_id(),
                name: host,
                mode: "direct".into(),
                queues: vec!["default".into()],
                labels: BTreeMap::new(),
                slots: 2,
                data_dir,
                heartbeat_interval: Duration::from_secs(2),
                lease_ttl: Duration::from_secs(15),
                kill_grace: Duration::from_secs(10),
                grace: Duration::from_secs(30),
                hurry: Shutdown::new(),
                uv: None,
                limits: process::Limits {
                    open_files: Some(4096),
                    ..process::Limits::default()
                },
                venv_gc: uv::GcPolicy::default(),
                warm: zygote::WarmConfig::default(),
                max_limits: default_max_limits(),
                sandbox: sandbox::SandboxConfig::from_env(),
                protected_ports: Vec::new(),
            },
            broker,
            blobs,
        }
    }

    /// The transport-independent part of the configuration.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            slots: self.slots.max(1),
            ..self.engine.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// uv is missing and could not be installed; the message says how to get it.
    #[error(transparent)]
    Uv(#[from] uv::UvMissing),
    /// The kernel refuses part of the sandbox (and weak sandboxes are not allowed).
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("the runner's blocking pool failed: {0}")]
    Pool(#[from] tokio::task::JoinError),
    #[error("runner data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
}

/// Runs a direct-mode runner until `shutdown` is cancelled, then drains: running attempts get
/// `grace` to finish, the rest are stopped and reported interrupted (run again as a new
/// attempt that costs no retry); leased but unstarted jobs are handed back.
pub async fn run(config: RunnerConfig, shutdown: Shutdown) -> Result<(), RunnerError> {
    let engine = config.engine_config();
    let source = Arc::new(DirectSource::new(
        config.broker.clone(),
        config.blobs.clone(),
        config.worker_id.clone(),
        config.queues.clone(),
        routing::with_runner(&config.labels, &config.name),
        config.lease_ttl,
    ));
    run_with_source(engine, source, shutdown).await
}
