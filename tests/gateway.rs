//! Gateway mode end to end, in process but over real TLS: `antcode up` (embedded runner off) on
//! ephemeral ports, an enrolled gateway runner that reaches nothing but the edge, and raw tonic
//! clients playing hostile or careless workers.
//! Past 800 lines: one scenario per test, each needing the whole system, sharing one harness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

use antcode::up::{self, Up, UpConfig};
use antcode_core::Shutdown;
use antcode_proto::worker::v1 as pb;
use antcode_proto::worker::v1::worker_service_client::WorkerServiceClient;
use antcode_runner::gateway::{self, GatewayConfig, GatewayError, GatewaySource};

use antcode_testkit::api::Api;

#[path = "support/edge.rs"]
mod edge;

const PASSWORD: &str = "gateway-password-not-default";
/// Calls per second one identity may make; low so a burst trips it.
const IDENTITY_RPS: u32 = 20;

/// The admin API of `up` (control's address on loopback).
async fn login(control: std::net::SocketAddr) -> Api {
    Api::login(control.port(), PASSWORD).await
}

/// A one-time enrollment key, created by the admin.
async fn enrollment_key(api: &Api) -> String {
    let (status, body) = api
        .post(
            "/worker-keys",
            json!({"note": "gateway test", "ttl_s": 600}),
        )
        .await;
    assert_eq!(status, 201, "create worker key: {body}");
    body["key"]
        .as_str()
        .expect("the key is shown once")
        .to_string()
}

/// `antcode up` in `dir/up` on ephemeral ports, with the embedded runner off.
fn up_config(dir: &std::path::Path) -> UpConfig {
    let mut cfg = UpConfig::new(dir.join("up"));
    cfg.control_addr = "127.0.0.1:0".parse().unwrap();
    cfg.edge_addr = "127.0.0.1:0".parse().unwrap();
    cfg.admin_password = PASSWORD.into();
    cfg.runner = false;
    cfg
}

/// `antcode up` in `dir` without a runner, the admin's client and the cluster CA's file.
async fn up_with_ca(dir: &std::path::Path) -> (Up, Api, std::path::PathBuf) {
    let up = up::start(up_config(dir)).await.expect("antcode up starts");
    let api = login(up.control_addr).await;
    (up, api, dir.join("up").join("tls").join("ca.pem"))
}

fn edge_url(up: &Up) -> String {
    format!("https://127.0.0.1:{}", up.edge_addr.port())
}

fn ca_pem(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("tls").join("ca.pem")).expect("up wrote the cluster CA")
}

/// A raw worker-protocol client: TLS trusting `ca`, optionally presenting a client certificate.
fn raw_client(url: &str, ca: &str, identity: Option<(&str, &str)>) -> WorkerServiceClient<Channel> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    WorkerServiceClient::new(channel)
}

fn with_key<T>(msg: T, api_key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {api_key}").parse().unwrap(),
    );
    r.set_timeout(Duration::from_secs(20));
    r
}

/// Enrolls a worker with an API key only (no CSR); returns (worker id, api key).
async fn enroll_raw(
    client: &mut WorkerServiceClient<Channel>,
    key: &str,
    name: &str,
) -> (String, String) {
    let r = client
        .enroll(pb::EnrollRequest {
            enrollment_key: key.to_string(),
            name: name.to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("enroll {name}: {s:?}"))
        .into_inner();
    assert!(
        !r.worker_id.is_empty() && r.api_key.starts_with("wk"),
        "{r:?}"
    );
    assert!(r.client_cert_pem.is_empty(), "no CSR, no certificate");
    (r.worker_id, r.api_key)
}

/// A `Lease` of one job from the worker's queues, waiting up to `wait_ms`.
fn lease_call(wait_ms: u32, api_key: &str) -> Request<pb::LeaseRequest> {
    with_key(
        pb::LeaseRequest {
            max_jobs: 1,
            wait_ms,
            ..Default::default()
        },
        api_key,
    )
}

fn heartbeat() -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        slots: 1,
        version: "test".into(),
        ..Default::default()
    }
}

/// A certificate and key signed by a freshly made CA that is not the cluster's.
fn foreign_client_cert() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "not the cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["intruder".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "intruder");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_runner_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = up_config(dir.path());
    cfg.lost_after = Duration::from_secs(5);
    cfg.edge_limits.per_identity_rps = IDENTITY_RPS;
    let up = up::start(cfg).await.expect("antcode up starts");
    let api = login(up.control_addr).await;
    let url = edge_url(&up);
    let ca = ca_pem(&dir.path().join("up"));
    let mut anon = raw_client(&url, &ca, None);

    // No credential at all: refused.
    let err = anon.heartbeat(heartbeat()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Two raw workers with API keys: B leases, C is the meddler (and later the bursty one).
    let (b_id, b_key) = enroll_raw(&mut anon, &enrollment_key(&api).await, "worker-b").await;
    let (_c_id, c_key) = enroll_raw(&mut anon, &enrollment_key(&api).await, "worker-c").await;

    let task = api
        .script_task(
            "hello",
            "import sys\nprint('hello through the edge', sys.version_info[0])\nprint('to stderr', file=sys.stderr)\n",
            json!({}),
        )
        .await;
    let run_id = api.triggered(&task).await;

    // A queue the enrollment key did not grant: refused, whatever the message asks for.
    let err = anon
        .lease(with_key(
            pb::LeaseRequest {
                queues: vec!["not-granted".into()],
                max_jobs: 1,
                wait_ms: 100,
            },
            &b_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // B leases the run (long-poll answered as soon as the job is there).
    let job = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = anon
                .lease(lease_call(2000, &b_key))
                .await
                .expect("B leases")
                .into_inner();
            if let Some(j) = r.jobs.into_iter().next() {
                break j;
            }
            assert!(Instant::now() < deadline, "no job for B");
        }
    };
    let b_lease = job.lease.clone().unwrap();
    assert_eq!(b_lease.run_id, run_id);

    // C reporting on B's lease: refused, and the run is untouched.
    let foreign_complete = pb::CompleteRequest {
        lease: Some(b_lease.clone()),
        state: "succeeded".into(),
        exit_code: Some(0),
        ..Default::default()
    };
    let err = anon
        .complete(with_key(foreign_complete.clone(), &c_key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nor does a header claiming B's identity help: the front strips what it sets itself.
    let forged = json!({"worker_id": b_id, "name": "worker-b", "queues": ["default"]}).to_string();
    let mut req = with_key(foreign_complete, &c_key);
    let hex: String = forged.bytes().map(|b| format!("{b:02x}")).collect();
    req.metadata_mut()
        .insert("x-antcode-identity", hex.parse().unwrap());
    let err = anon.complete(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = anon
        .report_started(with_key(
            pb::ReportStartedRequest {
                lease: Some(b_lease.clone()),
                started_unix_ms: 0,
            },
            &c_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Nor may C fetch B's bundle.
    let err = anon
        .fetch_bundle(with_key(
            pb::FetchBundleRequest {
                lease: Some(b_lease.clone()),
                key: job.bundle.clone().unwrap().key,
                bundle_mac: job.bundle_mac.clone(),
            },
            &c_key,
        ))
        .await
        .expect_err("C cannot fetch B's bundle");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = api.get(&format!("/runs/{run_id}")).await;
    assert_eq!(
        run["state"], "queued",
        "a foreign Complete changed the run: {run}"
    );

    // B's own Complete with a log archive that inflates past any bound (600 MiB of zeros,
    // under 1 MB gzipped): refused before it is stored, and the run is untouched.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..600 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        gz.finish().unwrap()
    };
    let err = anon
        .complete(with_key(
            pb::CompleteRequest {
                lease: Some(b_lease.clone()),
                state: "succeeded".into(),
                exit_code: Some(0),
                log_archive: bomb,
                ..Default::default()
            },
            &b_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("inflates past"), "{err:?}");
    assert_eq!(api.get(&format!("/runs/{run_id}")).await["state"], "queued");

    // B gives the job back; its old token is then stale.
    anon.complete(with_key(
        pb::CompleteRequest {
            lease: Some(b_lease.clone()),
            state: "handed_back".into(),
            ..Default::default()
        },
        &b_key,
    ))
    .await
    .expect("B hands the job back");
    let err = anon
        .report_started(with_key(
            pb::ReportStartedRequest {
                lease: Some(b_lease.clone()),
                started_unix_ms: 0,
            },
            &b_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(api.get(&format!("/runs/{run_id}")).await["state"], "queued");

    // The gateway runner A: enrolls with a CSR (mTLS from then on) and runs the job.
    let a_key = enrollment_key(&api).await;
    let a_dir = dir.path().join("runner-a");
    let gw = GatewayConfig {
        edge_url: url.clone(),
        ca_pem: ca.clone(),
        data_dir: a_dir.clone(),
        enroll_key: Some(a_key.clone()),
        name: "runner-a".into(),
        labels: Default::default(),
        queues: Vec::new(),
    };
    let cred = gateway::credential(&gw).await.expect("A enrolls");
    assert!(!cred.cert_pem.is_empty(), "a CSR gets a client certificate");
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(a_dir.join(gateway::CREDENTIAL_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let source = Arc::new(GatewaySource::new(&gw, cred.clone()).unwrap());
    let mut runner = antcode_runner::RunnerConfig::new(
        Arc::new(antcode_core::broker::memory::MemoryBroker::new()),
        antcode_core::seams::open_blobs(&a_dir.join("unused-blobs").display().to_string())
            .await
            .unwrap(),
        a_dir.clone(),
    );
    runner.name = "runner-a".into();
    runner.slots = 1;
    let mut engine = runner.engine_config();
    engine.worker_id = source.worker_id().to_string();
    engine.mode = "gateway".into();
    let runner_stop = Shutdown::new();
    let runner_task = tokio::spawn(antcode_runner::run_with_source(
        engine,
        source,
        runner_stop.clone(),
    ));

    // 2. The same enrollment key again: refused in plain words.
    let again = GatewayConfig {
        data_dir: dir.path().join("runner-again"),
        enroll_key: Some(a_key.clone()),
        name: "again".into(),
        ..gw
    };
    match gateway::credential(&again).await {
        Err(GatewayError::Enrollment(why)) => assert!(why.contains("already used"), "{why}"),
        Err(e) => panic!("reuse refused for the wrong reason: {e}"),
        Ok(_) => panic!("an enrollment key worked twice"),
    }

    // 1. The handed-back run runs to success on A, and its logs are readable.
    let started = Instant::now();
    let run = loop {
        let run = api.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap().to_string();
        if !["queued", "running"].contains(&state.as_str()) {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "run still {state}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(
        run["worker_id"].as_str(),
        Some(cred.worker_id.as_str()),
        "{run}"
    );
    let logs = api.text(&format!("/runs/{run_id}/logs")).await;
    assert!(logs.contains("hello through the edge 3"), "logs: {logs}");
    assert!(logs.contains("to stderr"), "logs: {logs}");

    // 5. A client certificate from another CA: the handshake is refused, even with a valid API
    // key on the call (with TLS 1.3 the client learns it when the server closes the connection).
    let (cert, key) = foreign_client_cert();
    let mut intruder = raw_client(&url, &ca, Some((&cert, &key)));
    let err = intruder
        .heartbeat(with_key(heartbeat(), &c_key))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "a foreign client certificate must fail the connection, got {err:?}"
    );
    // A's certificate, on its own (no API key), is accepted.
    let mut a_raw = raw_client(&url, &ca, Some((&cred.cert_pem, &cred.key_pem)));
    a_raw
        .heartbeat(heartbeat())
        .await
        .expect("the enrolled certificate alone identifies A");

    // 6. A burst past the per-identity limit gets RESOURCE_EXHAUSTED, then it recovers.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..IDENTITY_RPS * 3 {
        let mut c = anon.clone();
        let k = c_key.clone();
        burst.spawn(async move { c.heartbeat(with_key(heartbeat(), &k)).await });
    }
    let results: Vec<_> = burst.join_all().await;
    let exhausted: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|s| s.code() == Code::ResourceExhausted)
        .collect();
    assert!(
        !exhausted.is_empty(),
        "no call of the burst was limited: {results:?}"
    );
    assert!(exhausted[0].metadata().get("retry-after").is_some());
    assert!(
        results.iter().any(|r| r.is_ok()),
        "the burst was refused whole"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    anon.heartbeat(with_key(heartbeat(), &c_key))
        .await
        .expect("the limit recovers");

    // 3. Revoke B: its calls fail within 2 s (the edge caches decisions for 1 s).
    anon.heartbeat(with_key(heartbeat(), &b_key))
        .await
        .expect("B is still allowed before the revoke");
    let (status, body) = api.delete(&format!("/workers/{b_id}")).await;
    assert_eq!(status, 200, "revoke: {body}");
    let revoked_at = Instant::now();
    // The property: no call started more than 2 s after the revoke is accepted.
    let mut last_accepted = None;
    loop {
        let call_started = Instant::now();
        match anon.heartbeat(with_key(heartbeat(), &b_key)).await {
            Ok(_) => last_accepted = Some(call_started.duration_since(revoked_at)),
            Err(s) if s.code() == Code::Unauthenticated => break,
            Err(s) => panic!("unexpected refusal of a revoked worker: {s:?}"),
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "B still allowed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(after) = last_accepted {
        assert!(
            after <= Duration::from_secs(2),
            "a call made {after:?} after the revoke was still accepted"
        );
    }

    // 8. The REST API through the edge: same TLS port, proxied to control.
    let (status, me) = edge_http(&url, &ca, "/api/v1/auth/me", Some(&api.token)).await;
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("admin"), "{me}");
    let (status, body) = edge_http(&url, &ca, "/api/v1/auth/me", None).await;
    assert_eq!(status, 401, "control's own refusal passes through: {body}");
    let (status, body) = edge_http(&url, &ca, "/not-an-endpoint", None).await;
    assert_eq!(status, 404, "{body}");
    // The same per-identity limit holds for an API token: a burst gets 429 in part.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..IDENTITY_RPS * 3 {
        let (url, ca, token) = (url.clone(), ca.clone(), api.token.clone());
        burst.spawn(async move { edge_http(&url, &ca, "/api/v1/auth/me", Some(&token)).await });
    }
    let statuses: Vec<(u16, String)> = burst.join_all().await;
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "no API call of the burst was limited");
    assert!(limited[0].1.contains("retry after"), "{}", limited[0].1);
    assert!(
        statuses.iter().any(|(s, _)| *s == 200),
        "the burst was refused whole"
    );

    // 10. What the edge counted, on the process's /metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", up.control_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "antcode_edge_connections ",
        "antcode_edge_connections_total ",
        "antcode_edge_long_polls_parked ",
        "antcode_edge_leases_total ",
        "antcode_edge_lease_wait_seconds_bucket",
        "antcode_edge_auth_failures_total{reason=\"no_credential\"}",
        "antcode_edge_auth_failures_total{reason=\"rejected\"}",
        "antcode_edge_rate_limited_total{scope=\"identity\"}",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }

    runner_stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), runner_task)
        .await
        .expect("the gateway runner stops")
        .unwrap()
        .unwrap();
    up.stop().await.unwrap();
}

/// A GET through the edge with an optional bearer token: its status and body.
async fn edge_http(url: &str, ca: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| ("authorization", format!("Bearer {t}")));
    let headers: Vec<_> = auth.into_iter().collect();
    edge::request(url, ca, "GET", path, &headers, "").await
}

/// Waits for `run_id` to leave queued/running and returns it.
async fn wait_terminal(api: &Api, run_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let run = api.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap().to_string();
        if !["queued", "running"].contains(&state.as_str()) {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "run still {state}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The real binary: `antcode runner --mode gateway --edge URL --ca FILE [--enroll KEY]`.
fn spawn_runner(
    up: &Up,
    ca_file: &std::path::Path,
    data_dir: &std::path::Path,
    enroll: Option<&str>,
    extra: &[&str],
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_antcode"));
    cmd.arg("runner")
        .args(["--mode", "gateway", "--edge", &edge_url(up)])
        .arg("--ca")
        .arg(ca_file)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--ops-listen", "127.0.0.1:0", "--name", "cli-runner"])
        .args(if extra.contains(&"--slots") {
            &[][..]
        } else {
            &["--slots", "1"][..]
        })
        .args(extra)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(key) = enroll {
        cmd.args(["--enroll", key]);
    }
    cmd.spawn().expect("the antcode binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_runner_binary_enrolls_once_and_runs_work() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = up_config(dir.path());
    let up = up::start(cfg).await.expect("antcode up starts");
    let api = login(up.control_addr).await;
    let ca_file = dir.path().join("up").join("tls").join("ca.pem");
    let data_dir = dir.path().join("cli-runner");
    let task = api
        .script_task("cli", "print('ran by the gateway binary')\n", json!({}))
        .await;

    // First start enrolls and stores the credential.
    let key = enrollment_key(&api).await;
    let mut child = spawn_runner(&up, &ca_file, &data_dir, Some(&key), &[]);
    let run_id = api.triggered(&task).await;
    let run = wait_terminal(&api, &run_id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let cred: Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join(gateway::CREDENTIAL_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(run["worker_id"], cred["worker_id"], "{run}");
    let logs = api.text(&format!("/runs/{run_id}/logs")).await;
    assert!(logs.contains("ran by the gateway binary"), "logs: {logs}");
    child.kill().await.unwrap();

    // A restart needs no key: the stored credential is reused, same worker identity.
    let mut child = spawn_runner(&up, &ca_file, &data_dir, None, &[]);
    let run_id = api.triggered(&task).await;
    let run = wait_terminal(&api, &run_id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["worker_id"], cred["worker_id"], "{run}");
    child.kill().await.unwrap();

    // A fresh data dir with the used key: the binary exits with the refusal in plain words.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_antcode"))
        .arg("runner")
        .args(["--mode", "gateway", "--edge", &edge_url(&up)])
        .arg("--ca")
        .arg(&ca_file)
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .args(["--ops-listen", "127.0.0.1:0", "--enroll", &key])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already used"), "stderr: {stderr}");
    up.stop().await.unwrap();
}

/// Labels of a gateway runner are its enrollment key's: a task requiring them runs on it, a
/// task pinned to its name too, and one requiring a label the runner only claims (its
/// `--label`) waits, its page saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_runner_is_routed_by_the_labels_of_its_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let (up, api, ca_file) = up_with_ca(dir.path()).await;
    let (status, body) = api
        .post(
            "/worker-keys",
            json!({"note": "gpu box", "ttl_s": 600, "labels": {"gpu": "true"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let mut tasks = vec![];
    for (name, labels) in [
        ("gpu", json!({"gpu": "true"})),
        ("pinned", json!({"runner": "cli-runner"})),
        ("claimed", json!({"zone": "x"})),
    ] {
        let code = format!("print('{name}')\n");
        tasks.push(
            api.script_task(name, &code, json!({"labels": labels}))
                .await,
        );
    }
    let [gpu, pinned, claimed] = &tasks[..] else {
        unreachable!()
    };
    let claimed_run = api.triggered(claimed).await;
    let mut child = spawn_runner(
        &up,
        &ca_file,
        &dir.path().join("gpu-runner"),
        Some(&key),
        &["--label", "zone=x", "--label", "gpu=false"],
    );
    for task in [gpu, pinned] {
        let run_id = api.triggered(task).await;
        let run = wait_terminal(&api, &run_id).await;
        assert_eq!(run["state"], "succeeded", "{run}");
    }
    let run = api.get(&format!("/runs/{claimed_run}")).await;
    assert_eq!(
        run["state"], "queued",
        "a claimed label routes nothing: {run}"
    );
    assert_eq!(run["waiting"], "no live runner matches zone=x", "{run}");
    let (status, _) = api
        .post(&format!("/runs/{claimed_run}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    child.kill().await.unwrap();
}

/// The edge leases through the broker, so a task's `max_concurrency` holds for a gateway runner
/// as for a direct one: twelve runs queued at once, a runner with four slots, never more than
/// two of them running at once, all of them done. On the embedded broker and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_runner_keeps_to_a_task_s_max_concurrency() {
    const RUNS: usize = 12;
    const LIMIT: usize = 2;
    for broker in [
        "memory://".to_string(),
        antcode_testkit::redis::redis_url(0, "gw-gates"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = up_config(dir.path());
        cfg.broker_url = broker.clone();
        let up = up::start(cfg).await.expect("antcode up starts");
        let api = login(up.control_addr).await;
        let ca_file = dir.path().join("up").join("tls").join("ca.pem");
        let code = "import time\ntime.sleep(0.3)\nprint('capped')\n";
        let task = api
            .script_task("capped", code, json!({"max_concurrency": LIMIT}))
            .await;
        for _ in 0..RUNS {
            api.triggered(&task).await;
        }
        let key = enrollment_key(&api).await;
        let mut child = spawn_runner(
            &up,
            &ca_file,
            &dir.path().join("capped-runner"),
            Some(&key),
            &["--slots", "4"],
        );
        let runs = api
            .ended_runs(&task, RUNS, Duration::from_secs(300), &|| broker.clone())
            .await;
        assert!(
            runs.iter().all(|r| r["state"] == "succeeded"),
            "{broker}: {runs:?}"
        );
        let peak = antcode_testkit::api::peak_running(&runs);
        assert!(
            (2..=LIMIT).contains(&peak),
            "{broker}: {peak} runs at once under max_concurrency {LIMIT}"
        );
        child.kill().await.unwrap();
        up.stop().await.unwrap();
    }
}

/// A gateway runner stopped mid-run past its grace hands the run back through the edge: it is
/// queued again as attempt 2 of 2 and succeeds on the runner's next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_gateway_runner_hands_its_run_back() {
    let dir = tempfile::tempdir().unwrap();
    let (up, api, ca_file) = up_with_ca(dir.path()).await;
    let data_dir = dir.path().join("cli-runner");
    let code =
        "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('done', flush=True)\n";
    let task = api.script_task("slow", code, json!({})).await;

    let key = enrollment_key(&api).await;
    let grace = ["--grace", "0"];
    let mut child = spawn_runner(&up, &ca_file, &data_dir, Some(&key), &grace);
    let run_id = api.triggered(&task).await;
    let started = Instant::now();
    while !api
        .text(&format!("/runs/{run_id}/logs"))
        .await
        .contains("started")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the runner stops within 20 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
    let back = Instant::now();
    let run = loop {
        let run = api.get(&format!("/runs/{run_id}")).await;
        if run["attempt"] == 2 || back.elapsed() > Duration::from_secs(20) {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&run["state"], &run["attempt"]),
        (&json!("queued"), &json!(2)),
        "{run}"
    );
    assert!(
        run["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "interrupted"),
        "{run}"
    );

    let mut child = spawn_runner(&up, &ca_file, &data_dir, None, &[]);
    let run = wait_terminal(&api, &run_id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        (&run["attempt"], &run["max_attempts"]),
        (&json!(2), &json!(2)),
        "{run}"
    );
    child.kill().await.unwrap();
    up.stop().await.unwrap();
}

/// Starts an edge on `listener` for the cluster in `tls_dir`; returns its stop handle and task.
fn start_edge(
    listener: std::net::TcpListener,
    certs: &antcode_edge::pki::ClusterCerts,
    control: std::net::SocketAddr,
    broker: Arc<dyn antcode_core::broker::Broker>,
    blobs: Arc<dyn antcode_core::blob::BlobStore>,
) -> (
    Shutdown,
    tokio::task::JoinHandle<Result<(), antcode_edge::EdgeError>>,
) {
    let stop = Shutdown::new();
    let cfg = antcode_edge::EdgeConfig {
        listener,
        tls_cert_pem: certs.server_cert_pem.clone(),
        tls_key_pem: certs.server_key_pem.clone(),
        ca_cert_pem: certs.ca_cert_pem.clone(),
        control_url: format!("http://{control}"),
        edge_token: EDGE_TOKEN.into(),
        broker,
        blobs,
        limits: antcode_edge::Limits::default(),
    };
    let task = tokio::spawn(antcode_edge::run(cfg, stop.clone()));
    (stop, task)
}

const EDGE_TOKEN: &str = "et-gateway-test-edge-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_survives_an_edge_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = antcode_core::seams::open_store(&format!(
        "sqlite://{}",
        dir.path().join("antcode.db").display()
    ))
    .await
    .unwrap();
    let broker = antcode_core::seams::open_broker("memory://").await.unwrap();
    let blobs = antcode_core::seams::open_blobs(&dir.path().join("blobs").display().to_string())
        .await
        .unwrap();
    let certs = antcode_edge::pki::load_or_create(&dir.path().join("tls"), &[]).unwrap();
    let planes = Shutdown::new();

    let control_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let control_addr = control_listener.local_addr().unwrap();
    let control = antcode_control::ControlConfig {
        listener: control_listener,
        store: store.clone(),
        broker: broker.clone(),
        blobs: blobs.clone(),
        admin_password: PASSWORD.into(),
        dev: true,
        max_upload_bytes: antcode_control::DEFAULT_MAX_UPLOAD_BYTES,
        secrets: None,
        edge_token: Some(EDGE_TOKEN.into()),
        cluster_ca: Some((certs.ca_cert_pem.clone(), certs.ca_key_pem.clone())),
        trusted_proxies: vec![],
        public_url: None,
        edge_url: None,
        git: antcode_control::GitPolicy::default(),
    };
    let control_task = tokio::spawn(antcode_control::run(control, planes.clone()));
    let scheduler = antcode_scheduler::SchedulerConfig::new(store.clone(), broker.clone());
    let scheduler_task = tokio::spawn(antcode_scheduler::run(scheduler, planes.clone()));

    let edge_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let edge_addr = edge_listener.local_addr().unwrap();
    let (edge_stop, edge_task) = start_edge(
        edge_listener,
        &certs,
        control_addr,
        broker.clone(),
        blobs.clone(),
    );

    let api = login(control_addr).await;
    let runner_dir = dir.path().join("runner");
    let gw = GatewayConfig {
        edge_url: format!("https://127.0.0.1:{}", edge_addr.port()),
        ca_pem: certs.ca_cert_pem.clone(),
        data_dir: runner_dir.clone(),
        enroll_key: Some(enrollment_key(&api).await),
        name: "survivor".into(),
        labels: Default::default(),
        queues: Vec::new(),
    };
    let cred = gateway::credential(&gw).await.expect("enrolls");
    let source = Arc::new(GatewaySource::new(&gw, cred.clone()).unwrap());
    let runner =
        antcode_runner::RunnerConfig::new(broker.clone(), blobs.clone(), runner_dir.clone());
    let mut engine = runner.engine_config();
    engine.worker_id = cred.worker_id.clone();
    engine.mode = "gateway".into();
    let runner_stop = Shutdown::new();
    let runner_task = tokio::spawn(antcode_runner::run_with_source(
        engine,
        source,
        runner_stop.clone(),
    ));

    // The flag is put in the run's work dir, the only host directory its sandbox shows.
    let task = api
        .script_task(
            "survivor",
            "import os, time\nprint('before the restart', flush=True)\n\
             while not os.path.exists('edge-restarted'):\n    time.sleep(0.05)\n\
             print('after the restart', flush=True)\n",
            json!({}),
        )
        .await;
    let run_id = api.triggered(&task).await;
    let flag = runner_dir
        .join("work")
        .join(format!("{run_id}-1"))
        .join("edge-restarted");
    let started = Instant::now();
    while api.get(&format!("/runs/{run_id}")).await["state"] != "running" {
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stop the edge while the run is executing, then bring it back on the same address.
    edge_stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), edge_task)
        .await
        .expect("the edge stops")
        .unwrap()
        .unwrap();
    // Down for longer than a heartbeat interval, so the runner sees its calls fail.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listener = std::net::TcpListener::bind(edge_addr).unwrap();
    let (edge_stop, edge_task) = start_edge(listener, &certs, control_addr, broker, blobs);
    std::fs::write(&flag, b"").unwrap();

    let run = wait_terminal(&api, &run_id).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1, "the run was kept, not retried: {run}");
    assert_eq!(run["worker_id"].as_str(), Some(cred.worker_id.as_str()));
    let logs = api.text(&format!("/runs/{run_id}/logs")).await;
    assert!(logs.contains("before the restart"), "logs: {logs}");
    assert!(logs.contains("after the restart"), "logs: {logs}");

    runner_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), runner_task).await;
    edge_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), edge_task).await;
    planes.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), control_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), scheduler_task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_edge_answers_its_open_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = up_config(dir.path());
    // One long-poll per identity: a second one is refused while the first is parked, which is
    // how this test knows the first has arrived.
    cfg.edge_limits.long_polls_per_identity = 1;
    let up = up::start(cfg).await.expect("antcode up starts");
    let api = login(up.control_addr).await;
    let url = edge_url(&up);
    let ca = ca_pem(&dir.path().join("up"));
    let mut client = raw_client(&url, &ca, None);
    let (_id, key) = enroll_raw(&mut client, &enrollment_key(&api).await, "parked").await;

    let park = || {
        let mut c = client.clone();
        let k = key.clone();
        tokio::spawn(async move { c.lease(lease_call(20_000, &k)).await })
    };
    let mut parked = park();
    let waiting = Instant::now();
    loop {
        let probe = client.clone().lease(lease_call(1, &key)).await;
        // Only the parked call can hold the one slot, so a refused probe means it is parked.
        if matches!(&probe, Err(s) if s.code() == Code::ResourceExhausted) {
            break;
        }
        if parked.is_finished() {
            // The probe held the slot when the long-poll arrived: park it again.
            parked = park();
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the long-poll never parked: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopping = tokio::spawn(up.stop());
    let answer = tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("the parked long-poll is answered when the edge stops")
        .unwrap()
        .expect("answered, not cut: a transport error would make runners retry blindly");
    assert!(answer.into_inner().jobs.is_empty());
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("antcode up stops")
        .unwrap()
        .unwrap();
}
