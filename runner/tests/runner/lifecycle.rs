//! An attempt's life: success, failure, timeout, cancel, output, bad bundles, stops, drain.

use crate::*;

cold_and_warm!(success_is_archived_with_live_log_and_result);
async fn success_is_archived_with_live_log_and_result(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import sys
print("hello from antcode")
print("to stderr", file=sys.stderr)
print(" ".join(sys.argv[1:]))
print('{"answer": 42}')
"#;
    let mut job = h.py_job(code).await;
    job.args = vec!["a b".into(), "c".into()];
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.result, Some(serde_json::json!({"answer": 42})));
    assert!(outcome.peak_rss_kb.unwrap_or(0) > 0, "{outcome:?}");
    let started = &h.events[&job.run_id][0];
    assert!(
        matches!(started.kind, RunEventKind::Started),
        "Started comes first"
    );
    assert_eq!(started.attempt, 1);
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("hello from antcode\n"), "{archive}");
    assert!(archive.contains("to stderr\n"), "{archive}");
    // argv, not a shell: "a b" stays one argument.
    assert!(archive.contains("a b c\n"), "{archive}");
    assert_eq!(
        h.live_log(&job.run_id).await,
        archive,
        "live log and archive agree"
    );
    // Right after the report, the lease is released and the work dir removed.
    let until = Instant::now() + PATIENCE;
    loop {
        let work: Vec<_> = std::fs::read_dir(h.data_dir.join("work"))
            .unwrap()
            .collect();
        let alive = h
            .broker
            .lease_alive(&job.run_id, &started.lease_token)
            .await
            .unwrap();
        if work.is_empty() && !alive {
            break;
        }
        assert!(Instant::now() < until, "work dir left behind: {work:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

cold_and_warm!(requirements_are_installed_once_and_reused);
async fn requirements_are_installed_once_and_reused(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let main = b"import six\nprint('six', six.__version__)\n";
    let bundle = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[("main.py", main), ("requirements.txt", b"six\n")]),
            None,
        )
        .await;
    // Control copies requirements.txt into the job; the runner also finds it in the bundle.
    let mut first = job(bundle.clone(), "main.py");
    first.requirements = "six\n".into();
    h.publish(&first).await;
    let outcome = h.finished(&first.run_id).await;
    assert_eq!(
        outcome.state,
        RunState::Succeeded,
        "{outcome:?} {}",
        String::from_utf8_lossy(&h.archive(&outcome).await)
    );
    assert!(String::from_utf8(h.archive(&outcome).await)
        .unwrap()
        .contains("six 1."));
    assert_eq!(h.venv_builds(), 1);

    // A second run of the same project reuses the environment: nothing rebuilt or reinstalled.
    let mut second = job(bundle.clone(), "main.py");
    second.requirements = "# same thing\nsix\n".into();
    h.publish(&second).await;
    let outcome = h.finished(&second.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 1, "the second run built a new venv");

    // Requirements only in the bundle are honoured too (same set, so the same environment).
    let third = job(bundle, "main.py");
    h.publish(&third).await;
    let outcome = h.finished(&third.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    assert_eq!(h.venv_builds(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_of_one_project_build_one_venv() {
    let mut h = Harness::start(3).await;
    let bundle = h
        .put_bundle(
            BundleFormat::Py,
            b"import six\nprint('ok')\n".to_vec(),
            Some("main.py"),
        )
        .await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let mut j = job(bundle.clone(), "main.py");
        j.requirements = "six".into();
        h.publish(&j).await;
        jobs.push(j);
    }
    for j in &jobs {
        let outcome = h.finished(&j.run_id).await;
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    }
    assert_eq!(h.venv_builds(), 1);
    h.stop().await;
}

cold_and_warm!(non_zero_exit_fails_with_its_code);
async fn non_zero_exit_fails_with_its_code(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let job = h.py_job("import sys\nprint('bye')\nsys.exit(3)\n").await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.signal, None);

    let job = h
        .py_job("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
        .await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(timeout_kills_the_whole_process_group);
async fn timeout_kills_the_whole_process_group(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import os, sys, time
if os.fork() == 0:
    # the grandchild: ignores nothing, just outlives its parent unless the group is killed
    print("grandchild started", flush=True)
    time.sleep(300)
    os._exit(0)
print("parent sleeping", flush=True)
time.sleep(300)
"#;
    let mut job = h.py_job(code).await;
    job.timeout_s = 2;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "grandchild started").await;
    let pids = marked(&job.run_id);
    assert!(pids.len() >= 2, "parent and grandchild: {pids:?}");
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::TimedOut, "{outcome:?}");
    for pid in pids {
        wait_gone(pid).await;
    }
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("parent sleeping"), "{archive}");
    assert!(archive.contains("timed out"), "{archive}");
    h.stop().await;
}

cold_and_warm!(cancel_stops_a_running_task);
async fn cancel_stops_a_running_task(mode: Mode) {
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.kill_grace = Duration::from_secs(30);
    })
    .await;
    // SIGTERM ends a sleeping Python at once; the long grace proves we do not wait it out.
    let job = h
        .py_job("import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
        .await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    h.broker.cancel(&job.run_id).await.unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Cancelled, "{outcome:?}");
    assert_eq!(outcome.signal, Some(15), "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(the_runner_environment_is_invisible_to_the_task);
async fn the_runner_environment_is_invisible_to_the_task(mode: Mode) {
    let name = format!("ANTCODE_RUNNER_TEST_SECRET_{}", std::process::id());
    std::env::set_var(&name, "leaked");
    let mut h = Harness::start_in(mode, 2).await;
    let code = "import os, json, sys\nprint(json.dumps({'env': dict(os.environ)}))\n";
    let mut job = h.py_job(code).await;
    job.env.insert("TASK_VAR".into(), "mine".into());
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let env = outcome.result.as_ref().unwrap()["env"]
        .as_object()
        .unwrap()
        .clone();
    assert!(!env.contains_key(&name), "runner env leaked: {env:?}");
    assert_eq!(env["TASK_VAR"], "mine");
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    assert!(env["VIRTUAL_ENV"].as_str().unwrap().contains("venvs"));
    for k in env.keys() {
        let base = [
            "PATH",
            "HOME",
            "LANG",
            "VIRTUAL_ENV",
            "PYTHONUNBUFFERED",
            "TMPDIR",
            "TASK_VAR",
            "ANTCODE_RUN_ID",
            "ANTCODE_ATTEMPT",
            "ANTCODE_RESULT_FILE",
        ];
        // Python itself may add LC_CTYPE when it coerces the locale.
        assert!(
            base.contains(&k.as_str()) || k == "LC_CTYPE",
            "unexpected variable {k}"
        );
    }
    h.stop().await;
}

cold_and_warm!(invalid_utf8_and_missing_newlines_are_kept);
async fn invalid_utf8_and_missing_newlines_are_kept(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import sys
sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
sys.stdout.buffer.write(b"x" * 100000)
sys.stdout.buffer.write(b"\nno newline at the end")
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let mut raw = b"bad \xff\xfe bytes\n".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 100000));
    raw.extend(b"\nno newline at the end");
    let expected = String::from_utf8_lossy(&raw).into_owned();
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(
        archive == expected,
        "archive differs: {} vs {} bytes",
        archive.len(),
        expected.len()
    );
    let live = h.live_log(&job.run_id).await;
    assert!(
        live == expected,
        "live log differs: {} vs {} bytes",
        live.len(),
        expected.len()
    );
    h.stop().await;
}

cold_and_warm!(large_output_is_captured_byte_exact);
async fn large_output_is_captured_byte_exact(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // 200,000 lines of 100 bytes: 20 MB.
    let code = r#"
import sys
w = sys.stdout.write
pad = "abcdefghij" * 9
for i in range(200000):
    w("%08d %s\n" % (i, pad))
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let mut expected = Sha256::new();
    let pad = "abcdefghij".repeat(9);
    for i in 0..200_000 {
        expected.update(format!("{i:08} {pad}\n").as_bytes());
    }
    let archive = h.archive(&outcome).await;
    assert_eq!(archive.len(), 20_000_000);
    assert_eq!(sha256_hex(&archive), hex::encode(expected.finalize()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_fail_with_one_line() {
    let mut h = Harness::start(2).await;
    let slip = h
        .put_bundle(
            BundleFormat::Zip,
            zip_of(&[("main.py", b"print(1)\n"), ("../evil.py", b"x")]),
            None,
        )
        .await;
    let job1 = job(slip, "main.py");
    h.publish(&job1).await;
    let outcome = h.finished(&job1.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    let err = outcome.error.unwrap();
    assert!(err.contains("unsafe") && !err.contains('\n'), "{err}");
    assert!(!h.data_dir.join("work/evil.py").exists());

    let mut tampered = h.py_job("print(1)\n").await.bundle;
    tampered.sha256 = sha256_hex(b"something else");
    let job2 = job(tampered, "main.py");
    h.publish(&job2).await;
    let outcome = h.finished(&job2.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(outcome.error.unwrap().contains("checksum"));

    let mut missing = h.py_job("print(1)\n").await;
    missing.entrypoint = "nope.py".into();
    h.publish(&missing).await;
    let outcome = h.finished(&missing.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(outcome.error.unwrap().contains("nope.py"));
    h.stop().await;
}

cold_and_warm!(a_second_stop_hands_unfinished_runs_back);
async fn a_second_stop_hands_unfinished_runs_back(mode: Mode) {
    let hurry = Shutdown::new();
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.grace = Duration::from_secs(60);
        c.hurry = hurry.clone();
    })
    .await;
    let job = h
        .py_job("import time\nprint('ready', flush=True)\ntime.sleep(300)\n")
        .await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    h.shutdown.cancel();
    // The second stop request ends the 60 s grace period at once.
    hurry.cancel();
    let runner = h.runner.take().unwrap();
    tokio::time::timeout(Duration::from_secs(20), runner)
        .await
        .expect("the runner stops well within its grace period")
        .unwrap()
        .unwrap();
    let RunEventKind::Interrupted(outcome) = h.ended(&job.run_id).await else {
        panic!("the run was not handed back");
    };
    assert_eq!(
        outcome.error.as_deref(),
        Some(INTERRUPTED_BY_SHUTDOWN),
        "{outcome:?}"
    );
    assert_eq!(outcome.signal, Some(15), "{outcome:?}");
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("ready"), "{archive}");
    assert!(archive.contains(INTERRUPTED_BY_SHUTDOWN), "{archive}");
}

cold_and_warm!(a_reclaimed_lease_stops_the_process_without_a_report);
async fn a_reclaimed_lease_stops_the_process_without_a_report(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = "import time\nprint('ready', flush=True)\ntime.sleep(300)\n";
    let job = h.py_job(code).await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "ready").await;
    let pids = marked(&job.run_id);
    assert!(!pids.is_empty());
    // The scheduler's reaper takes the lease away (as if heartbeats had stopped).
    let reclaimed = h.broker.reap_expired(i64::MAX).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    for pid in pids {
        wait_gone(pid).await;
    }
    // Give a wrong report every chance to show up.
    h.pump_events(Duration::from_secs(2)).await;
    let events = &h.events[&job.run_id];
    assert!(
        events
            .iter()
            .all(|e| matches!(e.kind, RunEventKind::Started)),
        "a reclaimed attempt reported: {events:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_python_version_fails_clearly() {
    // Routing keeps such a run from runners without that Python: this one says it has it.
    let mut h = Harness::start_with(2, |c| {
        c.labels.insert("python3.99".into(), "yes".into());
    })
    .await;
    let mut job = h.py_job("print(1)\n").await;
    job.python_version = Some("3.99".into());
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    let err = outcome.error.unwrap();
    assert!(
        err.contains("python 3.99 is not available") && !err.contains('\n'),
        "{err}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_leasing_until_cleared() {
    let mut worker_id = String::new();
    let mut h = Harness::start_with(2, |c| worker_id = c.worker_id.clone()).await;
    h.broker.set_drain(&worker_id, true).await.unwrap();
    // The runner says it is draining once a heartbeat carried the flag to it.
    let until = Instant::now() + PATIENCE;
    loop {
        let workers = h.broker.workers().await.unwrap();
        if workers.iter().any(|w| w.id == worker_id && w.draining) {
            break;
        }
        assert!(Instant::now() < until, "worker never reported draining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = h.py_job("print('after drain')\n").await;
    h.publish(&job).await;
    // Several heartbeats later the job is still waiting in its queue (a lease that was already
    // parked when the flag arrived hands it straight back).
    let seen = h.broker.workers().await.unwrap()[0].last_seen_ms;
    let until = Instant::now() + PATIENCE;
    while h.broker.workers().await.unwrap()[0].last_seen_ms < seen + 1000 {
        assert!(Instant::now() < until, "heartbeats stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let depths = h.broker.queue_depths().await.unwrap();
    assert_eq!(
        depths,
        vec![("default".to_string(), 1)],
        "a draining runner took work"
    );
    h.broker.set_drain(&worker_id, false).await.unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_gets_its_directories_where_a_recycled_directory_kept_a_file() {
    let mut h = Harness::start(1).await;
    // A leaves a file named like the directory C's archive needs; B's sweep makes A's
    // directory ready, and C takes it (spares go out in the order they came back).
    let a = h
        .py_job("open('data', 'w').write('left by a')\nopen('more', 'w').write('x')\n")
        .await;
    let b = h.py_job("pass\n").await;
    let archive = zip_of(&[
        (
            "main.py",
            b"import os\nprint(sorted(os.listdir('.')), open('data/x.txt').read())\n",
        ),
        ("data/x.txt", b"from the bundle"),
    ]);
    let c = job(
        h.put_bundle(BundleFormat::Zip, archive, None).await,
        "main.py",
    );
    for (run, pause) in [(&a, 0), (&b, 400), (&c, 0)] {
        h.publish(run).await;
        let outcome = h.finished(&run.run_id).await;
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
        if run.run_id == c.run_id {
            let log = String::from_utf8(h.archive(&outcome).await).unwrap();
            assert!(
                log.contains("['.tmp', 'data', 'main.py'] from the bundle"),
                "{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    h.stop().await;
}
