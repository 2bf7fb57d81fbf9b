//! Warm runs: one zygote per project version, forks that share no state, zygotes that die,
//! and the bounds on their number, memory and idle time.

use crate::*;

const PRELOAD_PYPROJECT: &str = "[project]\nname = \"demo\"\nversion = \"0.1\"\ndependencies = []\n\n[tool.antcode]\npreload = [\"helper\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_runs_fork_one_zygote_and_share_no_state() {
    // The runner's policy is cold: the task asks for warm itself (zygotes run unsandboxed).
    let mut h = Harness::start_with(1, |c| c.sandbox.off = true).await;
    let helper: &[u8] = b"import os\ncounter = 0\nseen = []\nLOADED_IN = os.getpid()\n";
    let main: &[u8] = br#"
import json, os, helper
helper.counter += 1
helper.seen.append(os.getpid())
print("state", helper.counter, len(helper.seen))
print("procs", os.getpid(), os.getppid(), helper.LOADED_IN)
"#;
    let bundle = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[
                ("main.py", main),
                ("helper.py", helper),
                ("pyproject.toml", PRELOAD_PYPROJECT.as_bytes()),
            ]),
            None,
        )
        .await;
    let mut zygotes = Vec::new();
    for warm in [true, true, false] {
        let mut j = job(bundle.clone(), "main.py");
        j.warm = warm;
        h.publish(&j).await;
        let outcome = h.finished(&j.run_id).await;
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
        // A module-level global mutated by the previous run is fresh again.
        assert_eq!(number_after(&log, "state"), vec![1, 1], "{log}");
        let procs = number_after(&log, "procs");
        let (pid, parent, loaded_in) = (procs[0], procs[1], procs[2]);
        if warm {
            assert_ne!(
                parent,
                std::process::id() as i32,
                "a warm run is not the runner's child"
            );
            // The preload ran in the zygote, before the fork.
            assert_eq!(loaded_in, parent, "{log}");
            zygotes.push(parent);
        } else {
            assert_eq!(
                parent,
                std::process::id() as i32,
                "a cold run is the runner's child"
            );
            assert_eq!(loaded_in, pid, "{log}");
        }
    }
    assert_eq!(
        zygotes[0], zygotes[1],
        "both warm runs forked from one zygote"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zygote_killed_mid_flight_fails_the_run_and_is_replaced() {
    // Unsandboxed, so the task can name its zygote (a sandboxed one is outside its PID
    // namespace); `a_sandboxed_zygote_killed_mid_flight_takes_its_runs_along` is the other half.
    let mut h = Harness::start_with(2, |c| {
        Mode::Warm.apply(c);
        c.sandbox.off = true;
    })
    .await;
    let code = "import os, sys, time\nprint('procs', os.getpid(), os.getppid(), flush=True)\nif sys.argv[1:] == ['sleep']:\n    time.sleep(300)\n";
    let mut first = h.py_job(code).await;
    first.args = vec!["sleep".into()];
    h.publish(&first).await;
    h.wait_for_log(&first.run_id, "procs").await;
    let procs = number_after(&h.live_log(&first.run_id).await, "procs");
    let (pid, zygote) = (procs[0], procs[1]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("zygote")),
        "{outcome:?}"
    );
    // The orphaned run did not outlive its report.
    wait_gone(pid).await;
    // The next run of the same project forks from a new zygote.
    let second = job(first.bundle.clone(), "main.py");
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    let parent = number_after(&log, "procs")[1];
    assert_ne!(parent, zygote, "{log}");
    assert_ne!(parent, std::process::id() as i32, "{log}");
    h.stop().await;
}

/// The host pids of the zygotes of the runner whose data dir is `data_dir` (not the runs they
/// forked, whose command line is the zygote's).
fn zygotes_of(data_dir: &std::path::Path) -> Vec<i32> {
    let dir = data_dir.display().to_string();
    let all: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("zygote.py") && cmdline.contains(&dir)
        })
        .filter(|&pid| !process_gone(pid))
        .collect();
    let parent = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        after.split_whitespace().nth(1).and_then(|p| p.parse().ok())
    };
    all.iter()
        .copied()
        .filter(|&pid| parent(pid).is_some_and(|p: i32| !all.contains(&p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_zygote_killed_mid_flight_takes_its_runs_along() {
    let mut h = Harness::start_in(Mode::Warm, 2).await;
    let code = "import sys, time\nprint('ready', flush=True)\nif sys.argv[1:] == ['sleep']:\n    time.sleep(300)\n";
    let mut first = h.py_job(code).await;
    first.args = vec!["sleep".into()];
    h.publish(&first).await;
    h.wait_for_log(&first.run_id, "ready").await;
    let zygotes = zygotes_of(&h.data_dir);
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    let pids = marked(&first.run_id);
    assert!(!pids.is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygotes[0]),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    // The run went with its zygote's PID namespace.
    for pid in pids {
        wait_gone(pid).await;
    }
    // The next run of the same project forks from a new zygote.
    let second = job(first.bundle.clone(), "main.py");
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let now = zygotes_of(&h.data_dir);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, zygotes);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zygotes_are_bounded_in_number_memory_and_idle_time() {
    type Tighten = fn(&mut antcode_runner::zygote::WarmConfig);
    let bounds: [(&str, Tighten); 3] = [
        ("count", |w| w.max_count = 1),
        ("memory", |w| w.max_memory_bytes = 0),
        ("idle", |w| w.idle_ttl = Duration::ZERO),
    ];
    for (bound, tighten) in bounds {
        // Unsandboxed, so a run can name its zygote (its parent).
        let mut h = Harness::start_with(1, |c| {
            Mode::Warm.apply(c);
            c.sandbox.off = true;
            tighten(&mut c.warm);
        })
        .await;
        let code = "import os\nprint('procs', os.getpid(), os.getppid())\n";
        let a = h.py_job(code).await.bundle;
        let b = h.py_job(&format!("{code}# another project\n")).await.bundle;
        let mut parents = Vec::new();
        for bundle in [&a, &b, &a] {
            let j = job(bundle.clone(), "main.py");
            h.publish(&j).await;
            let outcome = h.finished(&j.run_id).await;
            assert_eq!(outcome.state, RunState::Succeeded, "{bound}: {outcome:?}");
            let log = String::from_utf8(h.archive(&outcome).await).unwrap();
            parents.push(number_after(&log, "procs")[1]);
        }
        assert!(
            !parents.contains(&(std::process::id() as i32)),
            "{bound}: {parents:?}"
        );
        // b's zygote pushed a's out (the one about to be used always stays), so a's second run
        // needed a new one.
        assert_ne!(parents[0], parents[1], "{bound}");
        assert_ne!(parents[0], parents[2], "{bound}: a's first zygote was kept");
        assert_ne!(parents[1], parents[2], "{bound}");
        h.stop().await;
    }
}
