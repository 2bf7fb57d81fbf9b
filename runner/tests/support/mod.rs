//! What the runner's integration tests share: the job a test publishes.

use std::collections::BTreeMap;

use antcode_core::model::{BundleRef, Job};

/// A first attempt of a fresh run on the `default` queue, running `entrypoint` of `bundle` with
/// no arguments, environment, requirements or secrets, cold, with a 120 s timeout.
pub fn job(bundle: BundleRef, entrypoint: &str) -> Job {
    Job {
        run_id: antcode_core::ids::new_id(),
        attempt: 1,
        queue: "default".into(),
        task_id: "task".into(),
        project_id: "project".into(),
        project_version: 1,
        bundle,
        entrypoint: entrypoint.into(),
        requirements: String::new(),
        python_version: None,
        args: vec![],
        env: BTreeMap::new(),
        timeout_s: 120,
        secrets: vec![],
        secret_env: Default::default(),
        warm: false,
        limits: Default::default(),
        network: Default::default(),
    }
}
