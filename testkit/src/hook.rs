//! A webhook receiver on loopback (`testkit/hook.py`) that checks AntCode's signature as
//! `notify/src/webhook.rs` documents it and records each alert it accepts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The receiver process; it exits when its stdin closes (on drop).
pub struct Hook {
    pub port: u16,
    child: Child,
}

impl Hook {
    /// Starts a receiver that accepts alerts signed with `secret`.
    pub fn start(secret: &str) -> Hook {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hook.py");
        let mut child = Command::new("python3")
            .args([script, secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: Value = serde_json::from_str(&line).expect("hook.py printed its port");
        Hook {
            port: port["port"].as_u64().unwrap() as u16,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Makes the receiver answer 503 (and record nothing) until `set_down(false)`.
    pub async fn set_down(&self, down: bool) {
        let path = if down { "/_down" } else { "/_up" };
        reqwest::Client::new()
            .post(self.url(path))
            .send()
            .await
            .unwrap();
    }

    /// The accepted alerts, oldest first: `{"delivery": id, "payload": body}`.
    pub async fn received(&self) -> Vec<Value> {
        reqwest::get(self.url("/_received"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
