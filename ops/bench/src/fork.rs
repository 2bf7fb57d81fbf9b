//! The warm fork alone: no-op runs forked through the runner's zygote pool directly, without
//! the API, the store, the broker or the runner's loop. What a warm run's fresh process costs by
//! itself (the zygote's fork, the child's set-up, its exit), measured as machine CPU per run.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Instant;

use anyhow::{bail, Context};

use antcode_core::model::{BundleFormat, BundleRef};
use antcode_runner::execute::task_env;
use antcode_runner::process::{Limits, ATTEMPT_VAR, RUN_ID_VAR};
use antcode_runner::uv::{find_uv, Deps, GcPolicy, Venvs};
use antcode_runner::zygote::{Request, WarmConfig, ZygoteKey, Zygotes};

/// Forks per measurement; the first [`WARM_UP`] are not counted.
const WARM_UP: usize = 20;

/// What one warm no-op run cost, on average.
pub struct PerRun {
    pub cpu_ms: f64,
    pub wall_ms: f64,
    pub switches: f64,
}

/// `n` sequential warm no-op runs.
pub async fn measure(n: usize) -> anyhow::Result<PerRun> {
    let dir = tempfile::tempdir()?;
    let bundle_file = dir.path().join("noop.py");
    std::fs::write(&bundle_file, "pass\n")?;
    let bundle = BundleRef {
        key: "bench/noop.py".into(),
        sha256: "bench".into(),
        format: BundleFormat::Py,
        size_bytes: 5,
        file_name: Some("noop.py".into()),
    };
    let uv = find_uv(None).map_err(anyhow::Error::msg)?;
    let venvs = Venvs::with_gc(dir.path().join("venvs"), uv, GcPolicy::default());
    let venv = venvs.ensure(None, &Deps::Requirements(String::new()))?;
    let zygotes = Zygotes::new(dir.path(), WarmConfig::default(), None);
    let key = ZygoteKey {
        venv: venv.dir.clone(),
        project_id: "bench".into(),
        project_version: 1,
        bundle_sha256: bundle.sha256.clone(),
    };
    let work = dir.path().join("work");
    antcode_runner::bundles::unpack(&bundle, &bundle_file, &work, &mut |p| {
        std::fs::File::create(p)
    })?;
    let mut env = task_env(&venv, &work, &BTreeMap::new());
    env.insert(RUN_ID_VAR.into(), "bench".into());
    env.insert(ATTEMPT_VAR.into(), "1".into());
    let req = Request {
        argv: vec!["noop.py".into()],
        env,
        cwd: work.clone(),
        limits: Limits::default(),
        cgroup: Vec::new(),
        work_dir: work,
        tmp_bytes: 0,
    };
    let run = || async {
        let mut s = zygotes
            .spawn(&key, &venv, (&bundle, &bundle_file), &req)
            .await
            .map_err(anyhow::Error::msg)
            .context("warm fork")?;
        // The no-op prints nothing: its pipes close at once, and reading them here is brief.
        let mut out = Vec::new();
        s.stdout.read_to_end(&mut out)?;
        s.stderr.read_to_end(&mut out)?;
        let info = s.wait.await?;
        if info.code != Some(0) {
            bail!(
                "the warm no-op ended {info:?}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        anyhow::Ok(())
    };
    for _ in 0..WARM_UP {
        run().await?;
    }
    let (cpu, switches, t) = (
        crate::machine_cpu_ms(),
        crate::machine_switches(),
        Instant::now(),
    );
    for _ in 0..n {
        run().await?;
    }
    let n = n as f64;
    Ok(PerRun {
        cpu_ms: (crate::machine_cpu_ms() - cpu) / n,
        wall_ms: t.elapsed().as_secs_f64() * 1000.0 / n,
        switches: (crate::machine_switches() - switches) / n,
    })
}
