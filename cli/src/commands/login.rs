//! `antcode login`: trades a password for an API token and keeps the token in a profile.
//!
//! The password is exchanged for a login session, the session creates an API token with the
//! user's role as its scope, and the session is then logged out: only the token, which expires
//! and can be revoked on its own, is stored. The password is never stored, and never read from
//! the command line.

use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};

use crate::api::Api;
use crate::args::LoginArgs;
use crate::config::{self, Profile, Target};
use crate::error::{Error, Result};
use crate::output::Out;

/// The longest password line read from standard input.
const MAX_PASSWORD_BYTES: usize = 8 * 1024;
/// The URL offered when there is none yet.
const DEFAULT_URL: &str = "http://127.0.0.1:8000";

pub async fn login(a: LoginArgs) -> Result<i32> {
    let profile_name = config::profile_name(&a.conn).to_string();
    let url = match &a.conn.url {
        Some(url) => url.clone(),
        None => {
            let answer = ask(&format!("Server URL [{DEFAULT_URL}]: "))?;
            match answer.is_empty() {
                true => DEFAULT_URL.to_string(),
                false => answer,
            }
        }
    };
    let url = config::normalize_url(&url);
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Error::usage(format!(
            "{url:?} is not an http:// or https:// URL"
        )));
    }
    let username = match &a.username {
        Some(u) => u.clone(),
        None => ask("Username: ")?,
    };
    let password = match a.password_stdin {
        true => stdin_line()?,
        false => rpassword::prompt_password("Password: ").map_err(|e| {
            Error::usage(format!(
                "cannot read the password from the terminal ({e}); use --password-stdin"
            ))
        })?,
    };
    let ca = match &a.conn.ca {
        Some(p) => Some(std::fs::canonicalize(p).map_err(|e| Error::io(p, e))?),
        None => None,
    };
    let target = Target {
        url: url.clone(),
        token: None,
        ca: ca.clone(),
    };
    let api = Api::new(&target)?;
    let req = api
        .request(Method::POST, "/auth/login")
        .json(&json!({"username": username, "password": password}));
    let (_, session) = api.call(req).await?;
    let session_token = session["token"]
        .as_str()
        .ok_or_else(|| Error::usage("the login answer has no token"))?;
    let role = session["user"]["role"].as_str().unwrap_or("viewer");
    let scope = match role {
        "admin" => "admin",
        "operator" => "write",
        _ => "read",
    };
    let as_session = api.with_token(session_token);
    let body = json!({"name": token_name(), "scopes": [scope], "expires_in_s": a.days * 86_400});
    let created = as_session.post("/tokens", Some(&body)).await;
    // The session has done its job either way; only the API token is kept.
    let _ = as_session.post("/auth/logout", None).await;
    let created = created?;
    let token = created["token"]
        .as_str()
        .ok_or_else(|| Error::usage("the token answer has no token"))?;
    let path = config::save(
        &profile_name,
        Profile {
            url: url.clone(),
            token: Some(token.to_string()),
            ca,
            user: Some(username.clone()),
            expires_at: created["expires_at"].as_str().map(str::to_string),
        },
    )?;
    let out = Out::new(a.conn.output);
    if out.json() {
        let mut shown = created.clone();
        shown["token"] = Value::String("(stored)".into());
        out.print_json(&json!({"profile": profile_name, "url": url, "user": username, "role": role, "config": path, "token": shown}));
    } else {
        println!(
            "logged in to {url} as {username} ({role}); token saved in profile {profile_name} ({}), expires {}",
            path.display(),
            created["expires_at"].as_str().unwrap_or("-")
        );
    }
    Ok(0)
}

/// The API token's name: what made it and where.
fn token_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().take(60).collect();
    match host.is_empty() {
        true => "antcode-cli".into(),
        false => format!("antcode-cli on {host}"),
    }
}

/// Asks `prompt` on the terminal; the answer, trimmed.
fn ask(prompt: &str) -> Result<String> {
    let no_tty = |e: std::io::Error| {
        Error::usage(format!(
            "no terminal to ask on ({e}): give --url and --username"
        ))
    };
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    tty.write_all(prompt.as_bytes()).map_err(no_tty)?;
    let mut line = String::new();
    std::io::BufReader::new(tty)
        .take(4096)
        .read_line(&mut line)
        .map_err(no_tty)?;
    Ok(line.trim().to_string())
}

/// The first line of standard input, without its line end.
fn stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD_BYTES as u64)
        .read_line(&mut line)
        .map_err(|e| Error::usage(format!("cannot read the password from standard input: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(Error::usage(
            "--password-stdin: standard input has no password",
        ));
    }
    Ok(line)
}
