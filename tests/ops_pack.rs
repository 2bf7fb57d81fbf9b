//! The ops pack (`ops/grafana/`, `ops/prometheus/alerts.yml`) against the real split deployment:
//! `antcode control`, `scheduler`, `edge`, a direct runner and an enrolled gateway runner as OS
//! processes on PostgreSQL + Redis + S3. After runs of every kind (succeeded, failed, scheduled,
//! expired in a queue nobody serves, through the edge), a refused enrollment and a burst over the
//! edge's rate limit, every process's `/metrics` is scraped, and every metric and label named by
//! a PromQL expression of the dashboards and the alert rules must be there. The per-task
//! dashboard reads SQL: each of its queries runs on the deployment's PostgreSQL database.
//!
//! The same deployment exports traces to an OTLP receiver on loopback and is scraped by a real
//! Prometheus with exemplar storage: a run triggered with a `traceparent` is one trace from the
//! request through the publish, the runner's attempt and phases (and the edge's reports for a
//! gateway runner) to the recorder's writes; a scheduled run's trace starts at its fire; the
//! runner's log lines of the run name the trace; and the latency histograms' exemplars reach
//! Prometheus.
//!
//! Beside it, without a deployment: every alert links its runbook section, and the Kubernetes
//! manifests (`ops/k8s/`) name only flags and variables the binary reads. Schemas and rule unit
//! tests run in `ops/test.sh` (kubernetes-validate, promtool).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use antcode_testkit::api::Api;
use antcode_testkit::procs::{free_port, split_env, Procs};
use antcode_testkit::redis::redis_url;

#[path = "support/telemetry.rs"]
mod telemetry;
use telemetry::{Prometheus, Receiver, Span};

const BIN: &str = env!("CARGO_BIN_EXE_antcode");
const PASSWORD: &str = "ops-pack-password-not-default";
const EDGE_TOKEN: &str = "et-ops-pack-edge-token";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Label names every scraped series has in Prometheus (the target's labels).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Metric name → label names, from the text exposition format.
type Exposed = BTreeMap<String, BTreeSet<String>>;

fn parse_exposition(text: &str, into: &mut Exposed) {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = into.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').unwrap()];
            for pair in split_matchers(body) {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_string());
                }
            }
        }
    }
}

/// The comma-separated items of a `{…}` body, commas inside quotes left alone.
fn split_matchers(body: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (vec![], String::new(), false, false);
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// What a PromQL expression names: its metrics, each with the label names of its matchers, and
/// the label names of its `by`/`without`/`on`/`ignoring` clauses and `label_values` calls.
#[derive(Debug, Default, PartialEq)]
struct Named {
    metrics: BTreeMap<String, BTreeSet<String>>,
    grouping: BTreeSet<String>,
}

/// Words after which a parenthesis holds label names.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Binary operators and modifiers that name nothing.
const OPERATORS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "inf"];

const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The index of the first `close` at or after `from` outside a quoted string.
fn closing(chars: &[char], from: usize, close: char) -> usize {
    let mut quoted = false;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' if quoted => i += 1,
            '"' => quoted = !quoted,
            c if c == close && !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    panic!("no closing {close} in {}", chars.iter().collect::<String>());
}

fn parse_promql(expr: &str) -> Named {
    let mut named = Named::default();
    // `[5m]`, `[$__rate_interval]`: ranges name nothing.
    let mut s = String::new();
    let mut depth = 0;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' if depth == 0 => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => {
                depth -= 1;
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            s.push(c);
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            // A number (0.95, 1e3) or a duration (5m).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            // A Grafana variable outside a string: `$__interval` and the like.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            let lower = word.to_lowercase();
            if GROUPING.contains(&lower.as_str()) || OPERATORS.contains(&lower.as_str()) {
                grouping_next = GROUPING.contains(&lower.as_str());
                continue;
            }
            // Aggregations may put `by (…)` between their name and their parenthesis.
            if next == Some('(') || AGGREGATIONS.contains(&word.as_str()) {
                if word == "label_values" {
                    // label_values(metric, label)
                    let close = closing(&chars, j, ')');
                    let args: String = chars[j + 1..close].iter().collect();
                    let (m, l) = args.split_once(',').expect("label_values(metric, label)");
                    named
                        .metrics
                        .entry(m.trim().to_string())
                        .or_default()
                        .insert(l.trim().to_string());
                    i = close + 1;
                }
                // A function or an aggregation.
                continue;
            }
            let labels = named.metrics.entry(word).or_default();
            if next == Some('{') {
                let close = closing(&chars, j, '}');
                let body: String = chars[j + 1..close].iter().collect();
                for m in split_matchers(&body) {
                    let name: String = m
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    labels.insert(name);
                }
                i = close + 1;
            }
            continue;
        }
        if c == '(' && grouping_next {
            let close = closing(&chars, i, ')');
            let body: String = chars[i + 1..close].iter().collect();
            for l in body.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                named.grouping.insert(l.to_string());
            }
            grouping_next = false;
            i = close + 1;
            continue;
        }
        if c == '{' {
            // A selector without a metric name: `{__name__="…"}` is not used in the pack.
            panic!("a selector without a metric name in {expr}");
        }
        i += 1;
    }
    named
}

/// Every problem of `expr` against what the processes expose (empty when it is fine).
fn check_expr(source: &str, expr: &str, exposed: &Exposed) -> Vec<String> {
    let named = parse_promql(expr);
    let mut problems = vec![];
    if named.metrics.is_empty() {
        problems.push(format!("{source}: names no metric: {expr}"));
    }
    let mut all_labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for (metric, labels) in &named.metrics {
        let have = match (metric.as_str(), exposed.get(metric)) {
            // Prometheus's own series per target.
            ("up", _) => BTreeSet::new(),
            (_, Some(have)) => have.clone(),
            (_, None) => {
                problems.push(format!("{source}: metric {metric} is not exposed: {expr}"));
                continue;
            }
        };
        for l in labels {
            if !have.contains(l) && !TARGET_LABELS.contains(&l.as_str()) {
                problems.push(format!(
                    "{source}: {metric} has no label {l} (it has {have:?}): {expr}"
                ));
            }
        }
        all_labels.extend(have);
    }
    for l in &named.grouping {
        if !all_labels.contains(l) {
            problems.push(format!(
                "{source}: no metric of the expression has label {l}: {expr}"
            ));
        }
    }
    problems
}

/// A query and where it comes from (`file / panel`).
type Query = (String, String);

/// Every `expr` of every dashboard under `ops/grafana/`, and of the templating queries, with
/// where it comes from; and every `rawSql` (the per-task dashboard's).
fn dashboard_queries() -> (Vec<Query>, Vec<Query>) {
    let (mut promql, mut sql) = (vec![], vec![]);
    let dir = root().join("ops/grafana");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards in {}", dir.display());
    for file in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let at = format!("{name} / {}", p["title"].as_str().unwrap());
                if let Some(e) = t["expr"].as_str() {
                    promql.push((at, e.to_string()));
                } else if let Some(q) = t["rawSql"].as_str() {
                    sql.push((at, q.to_string()));
                } else {
                    panic!("{at}: a target with neither expr nor rawSql");
                }
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let at = format!("{name} / ${}", v["name"].as_str().unwrap());
            match &v["query"] {
                Value::Object(q) => promql.push((at, q["query"].as_str().unwrap().into())),
                Value::String(q) => sql.push((at, q.clone())),
                other => panic!("{at}: query {other}"),
            }
        }
    }
    (promql, sql)
}

/// Every `expr` of `ops/prometheus/alerts.yml`, with its alert's name.
fn alert_exprs() -> Vec<Query> {
    let text = std::fs::read_to_string(root().join("ops/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut out = vec![];
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap()
                .to_string();
            out.push((
                format!("alerts.yml / {name}"),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_promql_reader_finds_metrics_labels_and_groupings() {
    let n = parse_promql(
        "histogram_quantile(0.95, sum by (le, phase) (rate(a_seconds_bucket{instance=~\"$i\", x=\"a,b}\"}[$__rate_interval]))) > 2 and on (queue) max by(queue) (b) or absent(c) unless d offset 5m",
    );
    let metrics: Vec<_> = n.metrics.keys().cloned().collect();
    assert_eq!(metrics, ["a_seconds_bucket", "b", "c", "d"]);
    assert_eq!(
        n.metrics["a_seconds_bucket"],
        BTreeSet::from(["instance".to_string(), "x".to_string()])
    );
    assert_eq!(
        n.grouping,
        BTreeSet::from(["le".into(), "phase".into(), "queue".into()])
    );
    let n = parse_promql("label_values(antcode_runner_runs_total, instance)");
    assert_eq!(
        n.metrics["antcode_runner_runs_total"],
        BTreeSet::from(["instance".to_string()])
    );
    // A metric or label that is not exposed is named in the problems.
    let mut exposed = Exposed::new();
    parse_exposition(
        "# TYPE m counter\nm{queue=\"q\",s=\"a,b\"} 1\n",
        &mut exposed,
    );
    assert!(check_expr("t", "sum by (queue) (rate(m{s=\"x\"}[5m]))", &exposed).is_empty());
    assert_eq!(check_expr("t", "sum by (state) (m)", &exposed).len(), 1);
    assert_eq!(check_expr("t", "m{state=\"x\"}", &exposed).len(), 1);
    assert_eq!(
        check_expr("t", "rate(missing_total[5m])", &exposed).len(),
        1
    );
}

async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// A burst of `n` concurrent `GET path` calls through the edge on one HTTP/2 connection;
/// their statuses.
async fn burst(url: &str, ca: &str, path: &str, token: &str, n: usize) -> Vec<u16> {
    use tonic::codegen::{http, Service as _};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .unwrap()
        .connect()
        .await
        .expect("the edge accepts a connection");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut channel = channel.clone();
        let req = http::Request::builder()
            .uri(format!("{url}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(tonic::body::Body::empty())
            .unwrap();
        calls.spawn(async move {
            std::future::poll_fn(|cx| channel.poll_ready(cx))
                .await
                .unwrap();
            channel.call(req).await.map(|r| r.status().as_u16())
        });
    }
    calls
        .join_all()
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_name_only_what_the_split_deployment_exposes() {
    let (promql, sql) = dashboard_queries();
    let alerts = alert_exprs();

    // The cluster's certificates, as an operator would mount them.
    let mut d = Procs::new(
        BIN,
        split_env("opspack", redis_url(0, "opspack"), PASSWORD).await,
    );
    let database = d.env[0].1.clone();
    let otlp = Receiver::start().await;
    d.env.extend(otlp.env());
    let tls = d.dir.path().join("tls");
    antcode_edge::pki::load_or_create(&tls, &[]).unwrap();
    let file = |f: &str| tls.join(f).display().to_string();
    d.env.extend([
        ("ANTCODE_EDGE_TOKEN".into(), EDGE_TOKEN.into()),
        ("ANTCODE_CLUSTER_CA_CERT".into(), file("ca.pem")),
        ("ANTCODE_CLUSTER_CA_KEY".into(), file("ca-key.pem")),
        ("ANTCODE_TLS_CERT".into(), file("edge.pem")),
        ("ANTCODE_TLS_KEY".into(), file("edge-key.pem")),
    ]);
    let port = d.spawn_control().await;
    d.env.push((
        "ANTCODE_CONTROL_URL".into(),
        format!("http://127.0.0.1:{port}"),
    ));
    let scheduler = d.spawn_scheduler("scheduler");
    let (edge, edge_ops, runner, gateway) = (free_port(), free_port(), free_port(), free_port());
    let at = |p: u16| format!("127.0.0.1:{p}");
    d.spawn(
        "edge",
        &["edge", "--listen", &at(edge), "--ops-listen", &at(edge_ops)],
    );
    let base = d.dir.path().to_path_buf();
    let data = |name: &str| base.join(name).display().to_string();
    let runner_dir = data("runner");
    // Its run log lines are info: they must name the run's trace.
    d.env.push(("RUST_LOG".into(), "info".into()));
    d.spawn(
        "runner",
        &[
            "runner",
            "--mode",
            "direct",
            "--name",
            "runner",
            "--data-dir",
            &runner_dir,
            "--ops-listen",
            &at(runner),
        ],
    );
    d.env.pop();
    let api = Api::login(port, PASSWORD).await;

    // A gateway runner for the queue `edge`, enrolled through the edge.
    let (status, key) = api
        .post(
            "/worker-keys",
            json!({"note": "ops pack", "queues": ["edge"], "ttl_s": 600}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let edge_url = format!("https://127.0.0.1:{edge}");
    let gateway_dir = data("gateway");
    let ca = file("ca.pem");
    d.spawn(
        "gateway",
        &[
            "runner",
            "--mode",
            "gateway",
            "--edge",
            &edge_url,
            "--ca",
            &ca,
            "--enroll",
            key["key"].as_str().unwrap(),
            "--name",
            "gateway",
            "--data-dir",
            &gateway_dir,
            "--ops-listen",
            &at(gateway),
        ],
    );
    let targets = [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{scheduler}"),
        format!("127.0.0.1:{edge_ops}"),
        format!("127.0.0.1:{runner}"),
        format!("127.0.0.1:{gateway}"),
    ];
    let prometheus = Prometheus::start(d.dir.path(), free_port(), &targets);
    // A refused enrollment: an auth failure at the edge.
    let refused = tokio::process::Command::new(BIN)
        .args([
            "runner", "--mode", "gateway", "--edge", &edge_url, "--ca", &ca,
        ])
        .args(["--enroll", "not-a-key", "--data-dir", &data("refused")])
        .args(["--ops-listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());

    // Runs of every kind.
    let hello = api
        .script_task("hello", "print('hello')\n", json!({}))
        .await;
    let fails = api
        .script_task(
            "fails",
            "raise SystemExit(3)\n",
            json!({"retry": {"max_attempts": 2, "backoff_s": 0, "max_backoff_s": 0}}),
        )
        .await;
    let far = api
        .script_task("far", "print('via the edge')\n", json!({"queue": "edge"}))
        .await;
    let nowhere = api
        .script_task(
            "nowhere",
            "print('never')\n",
            json!({"queue": "nowhere", "queue_timeout_s": 1}),
        )
        .await;
    let ticks = api
        .script_task(
            "ticks",
            "print('tick')\n",
            json!({"schedule": {"kind": "interval", "every_s": 1}}),
        )
        .await;
    let mut runs = vec![];
    for task in [&hello, &hello, &fails, &far, &nowhere] {
        runs.push(api.triggered(task).await);
    }
    // Two runs triggered inside a caller's trace: on the direct runner and through the edge.
    let (near_trace, far_trace) = (hex32(), hex32());
    let near_run = traced_trigger(&api, &hello, &near_trace).await;
    let far_run = traced_trigger(&api, &far, &far_trace).await;
    runs.extend([near_run.clone(), far_run.clone()]);
    for run in &runs {
        let done = api.wait_done(&d, run).await;
        assert_ne!(done["state"], "queued", "{done}");
    }
    let (status, body) = api.post(&format!("/tasks/{ticks}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let first = api.get(&format!("/runs/{}", runs[0])).await;
    assert_eq!(first["state"], "succeeded", "{first}\n{}", d.logs());

    // One trace per run, from the caller's span to the recorder's writes.
    let trigger = "POST /api/v1/tasks/{id}/trigger";
    let want = [
        ("antcode-control", trigger),
        ("antcode-control", "publish"),
        ("antcode-runner", "run"),
        ("antcode-runner", "report_started"),
        ("antcode-runner", "cleanup"),
    ];
    let near = otlp.trace(&near_trace, |s| whole(s, &want)).await;
    check_trace(&near, &want, &d);
    assert_eq!(has(&near, "antcode-scheduler", "record"), 2, "{near:#?}");
    let want_far = [
        ("antcode-control", trigger),
        ("antcode-runner", "run"),
        ("antcode-edge", "report started"),
        ("antcode-edge", "complete"),
    ];
    let far = otlp.trace(&far_trace, |s| whole(s, &want_far)).await;
    check_trace(&far, &want_far, &d);
    assert_eq!(has(&far, "antcode-scheduler", "record"), 2, "{far:#?}");
    // A scheduled run's trace starts at its fire.
    let want_fired = [("antcode-scheduler", "publish"), ("antcode-runner", "run")];
    let deadline = Instant::now() + Duration::from_secs(30);
    let fired = loop {
        let spans = otlp.spans();
        let ended = spans
            .iter()
            .filter(|s| s.name == "schedule fire" && s.attributes["antcode.task_id"] == ticks)
            .map(|fire| -> Vec<Span> {
                let id = &fire.trace_id;
                spans
                    .iter()
                    .filter(|s| &s.trace_id == id)
                    .cloned()
                    .collect()
            })
            .find(|trace| whole(trace, &want_fired));
        match ended {
            Some(trace) => break trace,
            None if Instant::now() > deadline => panic!("no fire's trace ended\n{spans:#?}"),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    check_trace(&fired, &want_fired, &d);
    // Every log line of the run names its trace.
    let runner_log = std::fs::read_to_string(d.dir.path().join("runner.log")).unwrap();
    let lines: Vec<&str> = runner_log
        .lines()
        .filter(|l| l.contains(&near_run))
        .collect();
    assert!(!lines.is_empty(), "{runner_log}");
    for line in lines {
        assert!(
            line.contains(&near_trace),
            "a line without its trace: {line}"
        );
    }

    // Over the edge's per-identity limit (200 calls a second by default).
    let statuses = burst(
        &edge_url,
        &std::fs::read_to_string(&ca).unwrap(),
        "/api/v1/auth/me",
        &api.token,
        600,
    )
    .await;
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "no call was limited: {statuses:?}");

    // Scrape until every name is there (gauges are refreshed every few seconds).
    let targets = [
        format!("http://127.0.0.1:{port}/metrics"),
        format!("http://127.0.0.1:{scheduler}/metrics"),
        format!("http://127.0.0.1:{edge_ops}/metrics"),
        format!("http://127.0.0.1:{runner}/metrics"),
        format!("http://127.0.0.1:{gateway}/metrics"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let problems = loop {
        let mut exposed = Exposed::new();
        for t in &targets {
            parse_exposition(&scrape(t).await, &mut exposed);
        }
        let problems: Vec<String> = promql
            .iter()
            .chain(&alerts)
            .flat_map(|(at, e)| check_expr(at, e, &exposed))
            .collect();
        if problems.is_empty() || Instant::now() > deadline {
            break problems;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), d.logs());

    // Prometheus scraped every process in OpenMetrics and kept the latency exemplars.
    let traced: BTreeSet<String> = otlp.spans().into_iter().map(|s| s.trace_id).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing = vec![];
    loop {
        let up = prometheus.api("query?query=up").await;
        let up: Vec<String> = up["result"]
            .as_array()
            .map(|r| r.iter().map(|s| s["value"][1].to_string()).collect())
            .unwrap_or_default();
        missing.clear();
        if up.len() != targets.len() || up.iter().any(|v| v != "\"1\"") {
            missing.push(format!("up: {up:?}"));
        }
        for metric in [
            "antcode_runner_run_duration_seconds_bucket",
            "antcode_runner_phase_seconds_bucket",
            "antcode_run_duration_seconds_bucket",
            "antcode_scheduler_recorder_lag_seconds_bucket",
            "antcode_control_http_request_duration_seconds_bucket",
        ] {
            let end = antcode_core::time::now_ms() / 1000 + 60;
            let found = prometheus
                .api(&format!(
                    "query_exemplars?query={metric}&start={}&end={end}",
                    end - 900
                ))
                .await;
            let ids: Vec<&str> = found
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
                .filter_map(|e| e["labels"]["trace_id"].as_str())
                .collect();
            if !ids.iter().any(|id| traced.contains(*id)) {
                missing.push(format!("{metric}: exemplars {ids:?}"));
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let prom_log = std::fs::read_to_string(d.dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(missing.is_empty(), "{missing:?}\n{prom_log}");

    // The per-task dashboard's SQL, with Grafana's macros as the last hour, on the database.
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(&database).await.unwrap();
    for (at, q) in &sql {
        let q = q
            .replace("$task", &hello)
            .replace(
                "$__unixEpochFrom()",
                "(extract(epoch from now())::bigint - 3600)",
            )
            .replace(
                "$__unixEpochTo()",
                "(extract(epoch from now())::bigint + 60)",
            );
        assert!(!q.contains('$'), "{at}: a macro left in {q}");
        let rows = sqlx::query(&q)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{at}: {e}\n{q}"));
        if at.ends_with("Runs by state") {
            let states: Vec<String> = rows.iter().map(|r| r.get("metric")).collect();
            assert_eq!(states, ["succeeded"], "{at}");
        }
        if at.ends_with("$task") {
            assert_eq!(rows.len(), 5, "{at}: every task is listed");
        }
    }
    for name in ["gateway", "runner", "edge", "scheduler", "control"] {
        d.proc(name).terminate();
    }
}

/// A random 32-digit hex trace id.
fn hex32() -> String {
    format!("{:032x}", rand::random::<u128>() | 1)
}

/// Triggers `task` inside the caller's trace `trace_id`; returns the run's id.
async fn traced_trigger(api: &Api, task: &str, trace_id: &str) -> String {
    let resp = api
        .http
        .post(format!("{}/tasks/{task}/trigger", api.base))
        .bearer_auth(&api.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// How many spans of `trace` `service` wrote under `name`.
fn has(trace: &[Span], service: &str, name: &str) -> usize {
    trace
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .count()
}

/// Whether all of `trace` has arrived: the recorder's two writes (the start and the end) and each
/// of `want`. Each process exports on its own schedule, so the last spans of one process (the
/// runner's attempt ends after its report is written) may come after another's.
fn whole(trace: &[Span], want: &[(&str, &str)]) -> bool {
    has(trace, "antcode-scheduler", "record") >= 2
        && want
            .iter()
            .all(|(service, name)| has(trace, service, name) > 0)
}

/// `trace` has each of `want` (service, span name), and is one tree: every span's parent is in
/// it, except the root's (the caller's span, or none).
fn check_trace(trace: &[Span], want: &[(&str, &str)], d: &Procs) {
    for (service, name) in want {
        assert!(
            has(trace, service, name) > 0,
            "no {name:?} span from {service}\n{trace:#?}\n{}",
            d.logs()
        );
    }
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&Span> = trace
        .iter()
        .filter(|s| !ids.contains(s.parent.as_str()))
        .collect();
    let parents: BTreeSet<&str> = roots.iter().map(|s| s.parent.as_str()).collect();
    assert_eq!(parents.len(), 1, "more than one root: {roots:#?}");
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_links_a_runbook_section_and_every_section_an_alert() {
    let runbook = std::fs::read_to_string(root().join("ops/prometheus/RUNBOOK.md")).unwrap();
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let text = std::fs::read_to_string(root().join("ops/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut linked = BTreeSet::new();
    for rule in doc["groups"][0]["rules"].as_sequence().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (file, section) = url.split_once('#').unwrap();
        assert_eq!(file, "ops/prometheus/RUNBOOK.md", "{name}");
        assert!(sections.contains(section), "{name}: no section #{section}");
        assert!(
            runbook.contains(&format!("`{name}`")),
            "{name} is not named in its runbook section"
        );
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].as_str().is_some(), "{name}: {key}");
        }
        assert!(rule["labels"]["severity"].as_str().is_some(), "{name}");
        linked.insert(section.to_string());
    }
    assert_eq!(linked, sections, "a runbook section without its alert");
}

/// The Kubernetes manifests name only flags and variables the binary reads: each container's
/// flags are in its subcommand's `--help`, each `ANTCODE_*` variable (set directly or through a
/// config map or a generated secret) is a flag's variable there or one the code reads by name.
#[test]
fn kubernetes_manifests_use_the_binarys_flags_and_variables() {
    let k8s = root().join("ops/k8s");
    // Variables the code reads by name rather than as a flag's `env`.
    let sources: String = [
        "src/main.rs",
        "src/cli.rs",
        "core/src/blob/s3.rs",
        "runner/src/sandbox/probe.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(root().join(f)).unwrap())
    .collect();
    let help = |sub: &str| {
        let out = std::process::Command::new(BIN)
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "antcode {sub} --help");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut config_keys = BTreeSet::new();
    let mut containers = vec![];
    for entry in std::fs::read_dir(&k8s).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = serde_yaml::Value::deserialize(doc).unwrap();
            match doc["kind"].as_str() {
                Some("ConfigMap") => {
                    for k in doc["data"].as_mapping().unwrap().keys() {
                        config_keys.insert(k.as_str().unwrap().to_string());
                    }
                }
                Some("Deployment") => {
                    for c in doc["spec"]["template"]["spec"]["containers"]
                        .as_sequence()
                        .unwrap()
                    {
                        containers.push((name.clone(), c.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(containers.len() >= 4, "{containers:?}");
    let mut checked = 0;
    for (file, c) in &containers {
        let args: Vec<&str> = c["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let help = help(args[0]);
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}=")),
                "{file}: antcode {} has no flag {flag}",
                args[0]
            );
            checked += 1;
        }
        let mut vars: Vec<String> = c["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        if c["envFrom"].as_sequence().is_some() {
            vars.extend(config_keys.iter().cloned());
        }
        for var in vars.iter().filter(|v| v.starts_with("ANTCODE_")) {
            assert!(
                help.contains(&format!("env: {var}="))
                    || help.contains(&format!("env: {var}]"))
                    || sources.contains(&format!("\"{var}\"")),
                "{file}: antcode {} reads no {var}",
                args[0]
            );
            checked += 1;
        }
    }
    for example in ["app.env.example", "runner.env.example"] {
        let text = std::fs::read_to_string(k8s.join("secrets").join(example)).unwrap();
        for line in text.lines().filter(|l| l.starts_with("ANTCODE_")) {
            let var = line.split('=').next().unwrap();
            assert!(
                containers.iter().any(|(_, c)| c["env"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|e| e["name"] == var)),
                "secrets/{example}: {var} is given to no container"
            );
        }
    }
    assert!(checked > 20, "{checked}");
}
