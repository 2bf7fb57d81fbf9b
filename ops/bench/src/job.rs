//! The job the benches publish, shared by the bench binaries that need one (`mod job;`).

use std::collections::BTreeMap;

use antcode_core::model::{BundleFormat, BundleRef, Job};

/// A job of about the size the scheduler publishes for a small task.
pub fn job(run_id: String, queue: &str) -> Job {
    Job {
        trace: None,
        prefer: None,
        run_id,
        attempt: 1,
        queue: queue.to_string(),
        task_id: "task-bench".into(),
        project_id: "proj-bench".into(),
        project_version: 1,
        bundle: BundleRef {
            key: format!("bundles/ab/{}", "ab".repeat(32)),
            sha256: "ab".repeat(32),
            format: BundleFormat::Zip,
            size_bytes: 1234,
            file_name: None,
        },
        entrypoint: "main.py".into(),
        requirements: String::new(),
        python_version: None,
        args: vec![],
        env: BTreeMap::new(),
        timeout_s: 60,
        secrets: vec![],
        secret_env: Default::default(),
        warm: false,
        limits: Default::default(),
        network: Default::default(),
        params: None,
        labels: BTreeMap::new(),
        gates: BTreeMap::new(),
    }
}
