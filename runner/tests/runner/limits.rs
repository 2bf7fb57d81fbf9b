//! Resource limits: open files, CPU and memory, pids, the size of `/tmp`.

use crate::*;

cold_and_warm!(resource_limits_stop_runaway_tasks);
async fn resource_limits_stop_runaway_tasks(mode: Mode) {
    // The runner's own policy: 64 open files. Tasks tighten memory and CPU through their env.
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.limits.open_files = Some(64);
    })
    .await;
    let files = r#"
import sys
held = []
try:
    for i in range(200):
        held.append(open(sys.argv[0]))
except OSError as e:
    print("opened", len(held), "then", e.errno, flush=True)
    sys.exit(7)
print("opened all 200")
"#;
    let job_files = h.py_job(files).await;
    h.publish(&job_files).await;

    let memory = r#"
import sys
try:
    block = bytearray(512 * 1024 * 1024)
except MemoryError:
    print("MemoryError", flush=True)
    sys.exit(8)
print("allocated 512 MiB")
"#;
    let mut job_memory = h.py_job(memory).await;
    job_memory
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "256".into());
    h.publish(&job_memory).await;

    // A modest allocation within the same limit still works: the limit is not a blanket failure.
    let mut job_small = h
        .py_job("block = bytearray(32 * 1024 * 1024)\nprint('ok')\n")
        .await;
    job_small
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "256".into());
    h.publish(&job_small).await;

    let mut job_cpu = h.py_job("while True:\n    pass\n").await;
    // Without the limit this would run into its timeout instead.
    job_cpu.timeout_s = 30;
    job_cpu
        .env
        .insert("ANTCODE_LIMIT_CPU_SECONDS".into(), "1".into());
    h.publish(&job_cpu).await;

    // A task cannot loosen the runner's policy: asking for more files changes nothing.
    let mut job_loosen = h.py_job(files).await;
    job_loosen
        .env
        .insert("ANTCODE_LIMIT_OPEN_FILES".into(), "100000".into());
    h.publish(&job_loosen).await;

    let mut job_bad = h.py_job("print(1)\n").await;
    job_bad
        .env
        .insert("ANTCODE_LIMIT_MEMORY_MB".into(), "lots".into());
    h.publish(&job_bad).await;

    for job in [&job_files, &job_loosen] {
        let outcome = h.finished(&job.run_id).await;
        assert_eq!(outcome.exit_code, Some(7), "{outcome:?}");
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        // errno 24 is EMFILE: the open-files limit, not something else.
        assert!(log.contains("then 24"), "{log}");
    }
    let outcome = h.finished(&job_memory.run_id).await;
    assert_eq!(outcome.exit_code, Some(8), "{outcome:?}");
    assert!(String::from_utf8(h.archive(&outcome).await)
        .unwrap()
        .contains("MemoryError"));
    let outcome = h.finished(&job_small.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let outcome = h.finished(&job_cpu.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    // SIGXCPU at the soft limit (SIGKILL would follow at the hard one).
    assert!(
        matches!(outcome.signal, Some(24) | Some(9)),
        "killed by the CPU limit: {outcome:?}"
    );
    let outcome = h.finished(&job_bad.run_id).await;
    assert_eq!(outcome.state, RunState::Failed);
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("ANTCODE_LIMIT_MEMORY_MB")),
        "{outcome:?}"
    );
    h.stop().await;
}

cold_and_warm!(a_fork_bomb_is_bounded_by_the_pids_limit);
async fn a_fork_bomb_is_bounded_by_the_pids_limit(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("forked", n, "then errno", e.errno, flush=True)
else:
    print("forked", n, flush=True)
"#;
    let mut job = h.py_job(code).await;
    job.limits.pids = 16;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    // EAGAIN once the run holds 16 processes (itself included).
    assert!(
        first_number_after(&log, "forked") < 16 && log.contains("errno 11"),
        "{log}"
    );
    h.stop().await;
}

cold_and_warm!(a_memory_hog_fails_with_the_memory_limit_and_the_runner_survives);
async fn a_memory_hog_fails_with_the_memory_limit_and_the_runner_survives(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // Written, not just reserved: every page is charged to the run.
    let mut hog = h
        .py_job("block = b'x' * (512 << 20)\nprint('held 512 MiB')\n")
        .await;
    hog.limits.memory_mb = 64;
    h.publish(&hog).await;
    let outcome = h.finished(&hog.run_id).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    assert_eq!(
        outcome.error.as_deref(),
        Some("memory limit 64 MiB exceeded"),
        "{outcome:?}"
    );
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    // The cgroup's peak: near the limit, never far above it.
    let peak = outcome.peak_rss_kb.unwrap_or(0);
    assert!(
        (32 << 10..=(64 << 10) + 1024).contains(&peak),
        "{outcome:?}"
    );
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(!log.contains("held 512 MiB"), "{log}");

    let next = h.py_job("print('still here')\n").await;
    h.publish(&next).await;
    let outcome = h.finished(&next.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    h.stop().await;
}

cold_and_warm!(a_big_temp_file_write_fails_at_tmp_mb);
async fn a_big_temp_file_write_fails_at_tmp_mb(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let code = r#"
import tempfile
written = 0
try:
    with tempfile.TemporaryFile() as f:
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
            f.flush()
            written += 1
except OSError as e:
    print("wrote", written, "MiB then errno", e.errno, flush=True)
else:
    print("wrote", written, "MiB", flush=True)
"#;
    let mut job = h.py_job(code).await;
    job.limits.tmp_mb = 4;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    // EFBIG at 4 MiB.
    assert!(
        first_number_after(&log, "wrote") <= 4 && log.contains("errno 27"),
        "{log}"
    );
    h.stop().await;
}
