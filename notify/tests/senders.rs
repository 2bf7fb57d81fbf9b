//! Every sender against a real receiver on loopback: `support/receivers.py` emulates each vendor's
//! endpoint and checks its signature as the vendor documents it, and runs real SMTP servers
//! (aiosmtpd) with STARTTLS and with implicit TLS, both requiring AUTH.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use antcode_core::time::{Clock, ManualClock, SystemClock};
use antcode_notify::{ChannelConfig, Event, Notification, SendError, Sender};
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "whsec-0123456789abcdef";
const DINGTALK_SECRET: &str = "SEC0123456789abcdef0123456789abcdef";
const FEISHU_SECRET: &str = "feishu-secret-abc";

struct Receivers {
    http: u16,
    smtp_starttls: u16,
    smtps: u16,
    ca_pem: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// One receiver process for the whole test binary (it exits when our stdin pipe closes).
fn receivers() -> &'static Receivers {
    static R: OnceLock<Receivers> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let (cert, keyfile) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&keyfile, key.serialize_pem()).unwrap();
        let config = json!({
            "webhook_secret": WEBHOOK_SECRET,
            "dingtalk_token": "dt-token", "dingtalk_secret": DINGTALK_SECRET,
            "feishu_token": "fs-token", "feishu_secret": FEISHU_SECRET,
            "wecom_key": "wc-key",
            "slack_path": "T000/B000/XXXX",
            "cert": cert, "key": keyfile,
            "smtp_user": "alerts", "smtp_password": "s3cret pass",
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/receivers.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (ops/test.sh installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("receivers.py did not start (is aiosmtpd installed?): {line:?}")
        });
        let port = |k: &str| ports[k].as_u64().unwrap() as u16;
        Receivers {
            http: port("http"),
            smtp_starttls: port("smtp_starttls"),
            smtps: port("smtps"),
            ca_pem: ca_cert.pem(),
            _child: child,
            _dir: dir,
        }
    })
}

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", receivers().http)
}

/// What the receivers recorded of kind `kind` mentioning `marker`.
async fn received(kind: &str, marker: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(url("/_received"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.into_iter()
        .filter(|r| r["kind"] == kind && r.to_string().contains(marker))
        .collect()
}

fn notification(marker: &str) -> Notification {
    let event = Event {
        kind: "run.failed".into(),
        summary: "failed".into(),
        task_id: Some("tsk_1".into()),
        task_name: Some(format!("nightly-{marker}")),
        run_id: Some(format!("run_{marker}")),
        run_url: Some("http://antcode.example/runs/run_1".into()),
        state: Some("failed".into()),
        attempt: Some(2),
        exit_code: Some(3),
        error: Some("exit code 3".into()),
        duration_ms: Some(61_000),
        log_tail: vec!["line one".into(), "Traceback: 失败".into()],
        occurred_at: 1_700_000_000_000,
        count: 1,
        ..Event::default()
    };
    Notification::render(&format!("dlv_{marker}"), event, None, None)
}

fn sender() -> Sender {
    Sender::new(Arc::new(SystemClock), Duration::from_secs(10))
}

fn config(v: Value) -> ChannelConfig {
    let c: ChannelConfig = serde_json::from_value(v).unwrap();
    c.validate().unwrap();
    c
}

async fn refused(c: &ChannelConfig, marker: &str) -> SendError {
    sender()
        .send(c, &notification(marker))
        .await
        .expect_err("the receiver refuses it")
}

#[tokio::test]
async fn webhook_is_signed_over_timestamp_and_body() {
    let c = config(json!({"kind": "webhook", "url": url("/webhook"), "secret": WEBHOOK_SECRET}));
    let receipt = sender().send(&c, &notification("wh1")).await.unwrap();
    assert_eq!(receipt.detail, "HTTP 200");
    let got = received("webhook", "dlv_wh1").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ok"], true);
    assert_eq!(got[0]["delivery"], "dlv_wh1");
    let payload = &got[0]["payload"];
    assert_eq!(payload["event"]["kind"], "run.failed");
    assert_eq!(payload["event"]["exit_code"], 3);
    assert_eq!(payload["title"], "[AntCode] nightly-wh1: failed");
    assert!(payload["text"]
        .as_str()
        .unwrap()
        .contains("Traceback: 失败"));
}

#[tokio::test]
async fn webhook_with_a_wrong_secret_or_an_old_timestamp_is_refused_for_good() {
    let wrong = config(
        json!({"kind": "webhook", "url": url("/webhook"), "secret": "not-the-shared-secret"}),
    );
    let e = refused(&wrong, "wh2").await;
    assert!(!e.retryable && e.detail.starts_with("HTTP 401"), "{e:?}");
    assert_eq!(
        received("webhook", "dlv_wh2").await[0]["why"],
        "bad signature"
    );

    // Signed correctly, but ten minutes ago: outside the receiver's 300 s window.
    let clock = ManualClock::new(SystemClock.now_ms() - 600_000);
    let old = Sender::new(Arc::new(clock), Duration::from_secs(10));
    let c = config(json!({"kind": "webhook", "url": url("/webhook"), "secret": WEBHOOK_SECRET}));
    let e = old.send(&c, &notification("wh3")).await.unwrap_err();
    assert!(!e.retryable && e.detail.starts_with("HTTP 401"), "{e:?}");
    assert_eq!(
        received("webhook", "dlv_wh3").await[0]["why"],
        "stale timestamp"
    );
}

#[tokio::test]
async fn dingtalk_signs_the_query_as_dingtalk_documents() {
    let base = url("/dingtalk/robot/send?access_token=dt-token");
    let c = config(json!({"kind": "dingtalk", "url": base, "secret": DINGTALK_SECRET}));
    let receipt = sender().send(&c, &notification("dt1")).await.unwrap();
    assert_eq!(receipt.detail, "errcode 0 ok");
    let got = received("dingtalk", "nightly-dt1").await;
    assert_eq!(got.len(), 1);
    assert!(got[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("[AntCode] nightly-dt1: failed\n\nTask:"));

    let wrong = config(json!({"kind": "dingtalk", "url": base, "secret": "SECwrong"}));
    let e = refused(&wrong, "dt2").await;
    assert_eq!(e, SendError::permanent("errcode 310000: sign not match"));
}

#[tokio::test]
async fn feishu_signs_the_body_as_feishu_documents() {
    let base = url("/feishu/open-apis/bot/v2/hook/fs-token");
    let c = config(json!({"kind": "feishu", "url": base, "secret": FEISHU_SECRET}));
    sender().send(&c, &notification("fs1")).await.unwrap();
    assert_eq!(received("feishu", "nightly-fs1").await.len(), 1);

    // A timestamp two hours old is refused by Feishu's one-hour check, whatever the signature.
    let clock = ManualClock::new(SystemClock.now_ms() - 7_200_000);
    let old = Sender::new(Arc::new(clock), Duration::from_secs(10));
    let e = old.send(&c, &notification("fs2")).await.unwrap_err();
    assert!(!e.retryable && e.detail.starts_with("code 19021"), "{e:?}");

    let unsigned = config(json!({"kind": "feishu", "url": base}));
    let e = refused(&unsigned, "fs3").await;
    assert!(e.detail.starts_with("code 19021"), "{e:?}");
}

#[tokio::test]
async fn wecom_fits_its_2048_byte_limit_and_reports_a_bad_key() {
    let c = config(json!({"kind": "wecom", "url": url("/wecom/cgi-bin/webhook/send?key=wc-key")}));
    let mut n = notification("wc1");
    n.text = format!("{}{}", n.text, "日志".repeat(2000));
    sender().send(&c, &n).await.unwrap();
    let got = received("wecom", "nightly-wc1").await;
    assert_eq!(got.len(), 1);
    assert!(got[0]["text"].as_str().unwrap().len() <= 2048);

    let wrong =
        config(json!({"kind": "wecom", "url": url("/wecom/cgi-bin/webhook/send?key=nope")}));
    let e = refused(&wrong, "wc2").await;
    assert_eq!(
        e,
        SendError::permanent("errcode 93000: invalid webhook url")
    );
}

#[tokio::test]
async fn slack_compatible_webhook_posts_text() {
    let c = config(json!({"kind": "slack", "url": url("/slack/services/T000/B000/XXXX")}));
    let receipt = sender().send(&c, &notification("sl1")).await.unwrap();
    assert_eq!(receipt.detail, "HTTP 200 ok");
    assert_eq!(received("slack", "nightly-sl1").await.len(), 1);
    let wrong = config(json!({"kind": "slack", "url": url("/slack/services/T000/B000/YYYY")}));
    let e = refused(&wrong, "sl2").await;
    assert_eq!(e, SendError::permanent("HTTP 404: no_service"));
}

#[tokio::test]
async fn failures_say_whether_a_retry_can_help() {
    for (status, retryable) in [
        (503, true),
        (429, true),
        (500, true),
        (400, false),
        (403, false),
    ] {
        let c = config(json!({"kind": "slack", "url": url(&format!("/status/{status}"))}));
        let e = refused(&c, "st").await;
        assert_eq!(e.retryable, retryable, "HTTP {status}: {e:?}");
    }
    // Nothing listens on a port we just released: the connection fails, which is retryable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = config(
        json!({"kind": "webhook", "url": format!("http://127.0.0.1:{port}/"), "secret": WEBHOOK_SECRET}),
    );
    let e = refused(&c, "conn").await;
    assert!(
        e.retryable && e.detail.starts_with("could not connect"),
        "{e:?}"
    );
}

fn smtp(port: u16, tls: &str, password: &str) -> ChannelConfig {
    config(json!({
        "kind": "smtp", "host": "127.0.0.1", "port": port, "tls": tls,
        "username": "alerts", "password": password,
        "from": "AntCode <antcode@example.com>", "to": ["ops@example.com", "oncall@example.com"],
        "ca_pem": receivers().ca_pem,
    }))
}

#[tokio::test]
async fn smtp_with_starttls_and_auth_delivers_the_alert() {
    let r = receivers();
    let receipt = sender()
        .send(
            &smtp(r.smtp_starttls, "starttls", "s3cret pass"),
            &notification("ml1"),
        )
        .await
        .unwrap();
    assert!(receipt.detail.starts_with("250"), "{receipt:?}");
    let got = received("smtp_starttls", "nightly-ml1").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["authenticated"], true);
    assert_eq!(got[0]["tls"], true);
    assert_eq!(got[0]["mail_from"], "antcode@example.com");
    assert_eq!(
        got[0]["rcpt_tos"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(got[0]["subject"], "[AntCode] nightly-ml1: failed");
    assert!(got[0]["body"].as_str().unwrap().contains("Traceback: 失败"));
}

#[tokio::test]
async fn smtp_with_implicit_tls_delivers_and_a_bad_password_is_permanent() {
    let r = receivers();
    sender()
        .send(&smtp(r.smtps, "tls", "s3cret pass"), &notification("ml2"))
        .await
        .unwrap();
    let got = received("smtps", "nightly-ml2").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], true);

    let e = refused(&smtp(r.smtp_starttls, "starttls", "wrong"), "ml3").await;
    assert!(!e.retryable && e.detail.contains("535"), "{e:?}");
}

#[tokio::test]
async fn smtp_refuses_an_untrusted_certificate() {
    let r = receivers();
    let mut c: Value =
        serde_json::to_value(smtp(r.smtp_starttls, "starttls", "s3cret pass")).unwrap();
    c.as_object_mut().unwrap().remove("ca_pem");
    let e = refused(&config(c), "ml4").await;
    assert!(e.detail.contains("SMTP"), "{e:?}");
    assert!(received("smtp_starttls", "nightly-ml4").await.is_empty());
}

#[test]
fn configurations_are_checked_and_never_shown_with_their_secrets() {
    let bad = |v: Value| {
        serde_json::from_value::<ChannelConfig>(v.clone())
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate())
            .expect_err(&v.to_string())
    };
    assert!(
        bad(json!({"kind": "webhook", "url": "ftp://x/", "secret": WEBHOOK_SECRET}))
            .contains("http")
    );
    assert!(
        bad(json!({"kind": "webhook", "url": "https://x/", "secret": "short"})).contains("secret")
    );
    assert!(bad(
        json!({"kind": "webhook", "url": "https://x/", "secret": WEBHOOK_SECRET, "extra": 1})
    )
    .contains("extra"));
    assert!(
        bad(json!({"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send"}))
            .contains("access_token")
    );
    assert!(bad(
        json!({"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"})
    )
    .contains("key"));
    assert!(bad(json!({"kind": "carrier_pigeon", "url": "https://x/"})).contains("carrier_pigeon"));
    assert!(bad(
        json!({"kind": "smtp", "host": "mail.example.com", "port": 0,
        "from": "a@example.com", "to": ["b@example.com"]})
    )
    .contains("port"));
    assert!(bad(
        json!({"kind": "smtp", "host": "mail", "tls": "none", "username": "u", "password": "p",
        "from": "a@example.com", "to": ["b@example.com"]})
    )
    .contains("clear"));
    assert!(
        bad(json!({"kind": "smtp", "host": "mail", "from": "a@example.com", "to": []}))
            .contains("to")
    );
    assert!(bad(
        json!({"kind": "smtp", "host": "mail", "from": "not an address", "to": ["b@example.com"]})
    )
    .contains("from"));

    let c = config(json!({"kind": "dingtalk",
        "url": "https://oapi.dingtalk.com/robot/send?access_token=tok123", "secret": "SECabc"}));
    let shown = c.redacted().to_string() + &format!("{c:?}");
    assert!(
        !shown.contains("tok123") && !shown.contains("SECabc"),
        "{shown}"
    );
    assert_eq!(
        c.redacted(),
        json!({"kind": "dingtalk", "url": "https://oapi.dingtalk.com/…", "secret_set": true})
    );
    let m = smtp(25, "starttls", "pw-xyz");
    assert!(!m.redacted().to_string().contains("pw-xyz"));
}
