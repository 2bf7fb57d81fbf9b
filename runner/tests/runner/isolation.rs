//! Isolation: escapees, network policies, the bundle cache, and hostile tasks in the sandbox.

use crate::*;

cold_and_warm!(a_daemonised_grandchild_does_not_outlive_its_run);
async fn a_daemonised_grandchild_does_not_outlive_its_run(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // One grandchild keeps the output pipe, the other closes it like a proper daemon; both leave
    // the process group with setsid(), so killing the group cannot reach them. The parent
    // waits for both, says so, and ends once the test has seen them ("go" in its directory).
    let code = r#"
import os, sys, time
for name, keep_pipe in (("holder", True), ("daemon", False)):
    if os.fork() == 0:
        os.setsid()
        if not keep_pipe:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        with open(name + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(name + ".tmp", name + ".pid")
        time.sleep(300)
        os._exit(0)
for name in ("holder", "daemon"):
    while not os.path.exists(name + ".pid"):
        time.sleep(0.01)
print("daemons ready", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
print("parent done", flush=True)
"#;
    let job = h.py_job(code).await;
    h.publish(&job).await;
    h.wait_for_log(&job.run_id, "daemons ready").await;
    let pids = marked(&job.run_id);
    assert!(pids.len() >= 3, "parent and two daemons: {pids:?}");
    let work_dir = h.data_dir.join("work").join(format!("{}-1", job.run_id));
    std::fs::write(work_dir.join("go"), "").unwrap();
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let archive = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(archive.contains("parent done"), "{archive}");
    for pid in pids {
        wait_gone(pid).await;
    }
    h.stop().await;
}

cold_and_warm!(a_scrubbed_daemon_dies_with_its_run_at_its_end_and_its_timeout);
async fn a_scrubbed_daemon_dies_with_its_run_at_its_end_and_its_timeout(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    // setsid, a second fork, every descriptor to /dev/null and execve with an empty
    // environment: neither the process group nor the run-id marker reaches it. The test finds
    // it from the host by its command line (the task may be in a PID namespace of its own);
    // the run ends only once the test has seen it ("go" in the run's directory).
    let code = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        os.execve("/bin/sh", ["sh", "-c", "echo $$ > d.tmp && mv d.tmp d.pid && exec sleep " + sys.argv[1]], {})
    os._exit(0)
while not os.path.exists("d.pid"):
    time.sleep(0.01)
pid = open("d.pid").read().strip()
while not open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"sleep"):
    time.sleep(0.01)
print("daemon started", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
if sys.argv[2] == "hang":
    time.sleep(300)
"#;
    for (how, timeout_s) in [("end", 0), ("hang", 3)] {
        let nap = format!("300.{}", rand_suffix());
        let mut job = h.py_job(code).await;
        job.args = vec![nap.clone(), how.into()];
        job.timeout_s = timeout_s;
        h.publish(&job).await;
        h.wait_for_log(&job.run_id, "daemon started").await;
        let pids = running(&["sleep", &nap]);
        assert_eq!(pids.len(), 1, "{pids:?}");
        let work_dir = h.data_dir.join("work").join(format!("{}-1", job.run_id));
        std::fs::write(work_dir.join("go"), "").unwrap();
        let outcome = h.finished(&job.run_id).await;
        let state = match how {
            "end" => RunState::Succeeded,
            _ => RunState::TimedOut,
        };
        assert_eq!(outcome.state, state, "{outcome:?}");
        wait_gone(pids[0]).await;
    }
    h.stop().await;
}

/// Connects to the Redis the tests run beside (127.0.0.1:6379) and prints how it went.
const CONNECT_REDIS: &str = r#"
import socket
try:
    socket.create_connection(("127.0.0.1", 6379), timeout=5).close()
    print("connect ok", flush=True)
except OSError as e:
    print("connect failed errno", e.errno, flush=True)
"#;

cold_and_warm!(network_policies_reach_only_what_they_allow);
async fn network_policies_reach_only_what_they_allow(mode: Mode) {
    use antcode_core::model::NetworkPolicy;
    // Warm: a run whose policy is not `full` starts cold (its zygote serves every policy).
    let mut h = Harness::start_in(mode, 2).await;
    let allow =
        |entries: &[&str]| NetworkPolicy::Allow(entries.iter().map(|e| e.to_string()).collect());
    let cases = [
        (NetworkPolicy::Full, true),
        (NetworkPolicy::None, false),
        (allow(&["localhost:6380", "*:443"]), false),
        (allow(&["localhost:6379"]), true),
    ];
    let mut jobs = Vec::new();
    for (policy, _) in &cases {
        let mut job = h.py_job(CONNECT_REDIS).await;
        job.network = policy.clone();
        h.publish(&job).await;
        jobs.push(job);
    }
    for ((policy, reaches), job) in cases.iter().zip(&jobs) {
        let outcome = h.finished(&job.run_id).await;
        assert_eq!(
            outcome.state,
            RunState::Succeeded,
            "{policy:?}: {outcome:?}"
        );
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        assert_eq!(log.contains("connect ok"), *reaches, "{policy:?}: {log}");
    }
    h.stop().await;
}

/// Connects to each port given on the command line, and sends it a datagram, and prints how
/// each went.
const CONNECT_PORTS: &str = r#"
import socket, sys
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
        print("port", port, "ok", flush=True)
    except OSError as e:
        print("port", port, "refused errno", e.errno, flush=True)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", int(port)))
        print("udp", port, "ok", flush=True)
    except OSError as e:
        print("udp", port, "refused errno", e.errno, flush=True)
"#;

cold_and_warm!(the_platforms_ports_are_shut_out_of_network_full);
async fn the_platforms_ports_are_shut_out_of_network_full(mode: Mode) {
    use antcode_core::model::NetworkPolicy;
    let platform = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (p, q) = (
        platform.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let mut h = Harness::start_with(2, |c| {
        mode.apply(c);
        c.protected_ports = vec![p];
    })
    .await;
    let cases = [
        // `full`: everything but the platform's ports.
        (NetworkPolicy::Full, false, true),
        // An allow-list that names a platform port reaches it: the task asked for it.
        (
            NetworkPolicy::Allow(vec![format!("localhost:{p}")]),
            true,
            false,
        ),
    ];
    for (policy, reaches_p, reaches_q) in cases {
        let mut job = h.py_job(CONNECT_PORTS).await;
        job.args = vec![p.to_string(), q.to_string()];
        job.network = policy.clone();
        h.publish(&job).await;
        let outcome = h.finished(&job.run_id).await;
        let log = String::from_utf8(h.archive(&outcome).await).unwrap();
        assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?} {log}");
        let reached = |port: u16| log.contains(&format!("port {port} ok"));
        assert_eq!(reached(p), reaches_p, "{policy:?}, platform port: {log}");
        assert_eq!(reached(q), reaches_q, "{policy:?}, another port: {log}");
        // Datagrams: `full` may not send to the platform's port; an allow-list restricts TCP
        // only, and a run with one is outside the guard.
        let sent = |port: u16| log.contains(&format!("udp {port} ok"));
        assert_eq!(
            sent(p),
            reaches_p,
            "{policy:?}, datagram to the platform port: {log}"
        );
        assert!(sent(q), "{policy:?}, datagram to another port: {log}");
    }
    h.stop().await;
}

cold_and_warm!(a_byte_appended_to_a_cached_bundle_is_found_and_the_bundle_fetched_again);
async fn a_byte_appended_to_a_cached_bundle_is_found_and_the_bundle_fetched_again(mode: Mode) {
    let mut h = Harness::start_in(mode, 2).await;
    let job = h.py_job("print('genuine')\n").await;
    h.publish(&job).await;
    let outcome = h.finished(&job.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    // What a task that could reach the cache would do to the next run of this project.
    let cached = h.data_dir.join("bundles").join(&job.bundle.sha256);
    let mode_bits =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cached).unwrap().permissions());
    assert_eq!(mode_bits & 0o777, 0o444, "cache files are read-only");
    let writable = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644);
    std::fs::set_permissions(&cached, writable).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&cached)
        .unwrap();
    f.write_all(b"\nprint('injected')\n").unwrap();
    drop(f);
    let mut again = job.clone();
    again.run_id = antcode_core::ids::new_id();
    h.publish(&again).await;
    let outcome = h.finished(&again.run_id).await;
    assert_eq!(outcome.state, RunState::Succeeded, "{outcome:?}");
    let log = String::from_utf8(h.archive(&outcome).await).unwrap();
    assert!(
        log.contains("genuine") && !log.contains("injected"),
        "{log}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&cached).unwrap()),
        job.bundle.sha256,
        "fetched again"
    );
    h.stop().await;
}

sandboxed!(a_task_reaches_nothing_of_the_runner);
async fn a_task_reaches_nothing_of_the_runner(warm: bool) {
    let secret = "runner-secret-value";
    std::env::set_var(
        format!("ANTCODE_SANDBOX_TEST_{}", std::process::id()),
        secret,
    );
    let mut h = sandboxed_harness(warm).await;
    for file in ["antcode.db", "secret.key", "tls/ca-key.pem"] {
        let path = h.data_dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, secret).unwrap();
    }
    let code = format!(
        "{PROBE}{}",
        r#"
runner, data = int(sys.argv[1]), sys.argv[2]
for pid in sorted({os.getppid(), 1, runner}):
    attempt(f"environ of {pid}", lambda: read(f"/proc/{pid}/environ"))
    attempt(f"mem of {pid}", lambda: read(f"/proc/{pid}/mem"))
for rel in ("antcode.db", "secret.key", "tls/ca-key.pem"):
    attempt("read " + rel, lambda: read(os.path.join(data, rel)))
attempt("write the bundle cache", lambda: write(os.path.join(data, "bundles", "x.py")))
attempt("write the venv", lambda: write(os.path.join(sys.prefix, "pyvenv.cfg")))
attempt("kill the runner", lambda: os.kill(runner, signal.SIGKILL))
try:
    # The run's init: pid 1 of the task's namespace, deaf to it (or, warm, outside its domain).
    os.kill(os.getppid(), signal.SIGKILL)
except PermissionError:
    pass
print(json.dumps(got))
"#
    );
    let mut job = h.py_job(&code).await;
    job.args = vec![
        std::process::id().to_string(),
        h.data_dir.display().to_string(),
    ];
    let got = attempts(&mut h, &job).await;
    assert!(got.len() >= 8, "{got:?}");
    for (name, result) in &got {
        let result = result.as_str().unwrap();
        assert!(result.starts_with("refused"), "{name}: {result}");
        assert!(!result.contains(secret), "{name}: {result}");
    }
    // The runner survived the kill of the task's parent and still runs tasks.
    let again = h.py_job("print('still here')\n").await;
    h.publish(&again).await;
    assert_eq!(h.finished(&again.run_id).await.state, RunState::Succeeded);
    let venv = std::fs::read_dir(h.data_dir.join("venvs")).unwrap();
    for entry in venv.flatten() {
        let cfg = std::fs::read_to_string(entry.path().join("pyvenv.cfg")).unwrap_or_default();
        assert!(!cfg.contains("injected"), "the venv was written");
    }
    h.stop().await;
}

sandboxed!(concurrent_runs_see_nothing_of_each_other);
async fn concurrent_runs_see_nothing_of_each_other(warm: bool) {
    let mut h = sandboxed_harness(warm).await;
    // One project version for both, so warm runs fork from one zygote.
    let code = format!(
        "{PROBE}{}",
        r#"
if sys.argv[1:] == ["hold"]:
    import time
    print("a ready", flush=True)
    time.sleep(300)
pids = [p for p in os.listdir("/proc") if p.isdigit()]
for pid in pids:
    attempt(f"environ of {pid}", lambda: b"a-secret-value" in read(f"/proc/{pid}/environ"))
work, mine = os.path.split(os.getcwd())
got["other work dirs"] = [d for d in os.listdir(work) if d != mine]
got["processes"] = len(pids)
print(json.dumps(got))
"#
    );
    let mut a = h.py_job(&code).await;
    a.args = vec!["hold".into()];
    a.secret_env
        .0
        .insert("A_SECRET".into(), "a-secret-value".into());
    h.publish(&a).await;
    h.wait_for_log(&a.run_id, "a ready").await;
    let b = job(a.bundle.clone(), "main.py");
    let got = attempts(&mut h, &b).await;
    assert_eq!(got["other work dirs"], serde_json::json!([]), "{got:?}");
    // Itself and its init.
    assert!(got["processes"].as_u64().unwrap() <= 2, "{got:?}");
    for (name, result) in &got {
        assert_ne!(result, "ok True", "{name}");
    }
    h.broker.cancel(&a.run_id).await.unwrap();
    h.finished(&a.run_id).await;
    h.stop().await;
}

/// The host pids of processes whose command line is `argv`.
fn running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|&pid| !process_gone(pid))
        .collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

sandboxed!(tmp_is_private_and_bounded);
async fn tmp_is_private_and_bounded(warm: bool) {
    let mut h = sandboxed_harness(warm).await;
    // Files of 1 MiB each, so the file size limit (`tmp_mb` too) is not what stops them.
    let code = r#"
import errno, json, os, tempfile
written = 0
error = None
try:
    for i in range(64):
        with open(os.path.join(tempfile.gettempdir(), "f%d" % i), "wb") as f:
            f.write(b"x" * (1 << 20))
        written += 1
except OSError as e:
    error = errno.errorcode.get(e.errno)
print(json.dumps({"tmp": tempfile.gettempdir(), "mib": written, "error": error}))
"#;
    let mut job = h.py_job(code).await;
    job.limits.tmp_mb = 8;
    let got = attempts(&mut h, &job).await;
    assert_eq!(got["tmp"], "/tmp", "{got:?}");
    assert_eq!(got["error"], "ENOSPC", "{got:?}");
    assert!(got["mib"].as_u64().unwrap() <= 8, "{got:?}");
    h.stop().await;
}
