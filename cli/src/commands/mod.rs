//! One module per group of commands; here the dispatch and what they share: connecting, finding
//! a task or project by name, and reading `KEY=VALUE` flags.

mod login;
mod projects;
mod runs;
mod tasks;
mod workers;

use serde_json::Value;

use crate::api::Api;
use crate::args::{ClientCommand, Conn};
use crate::config;
use crate::error::{Error, Result};
use crate::output::Out;

/// The most pages of 500 read to find something by name.
const MAX_NAME_PAGES: usize = 40;

pub async fn dispatch(
    command: ClientCommand,
    full_command: impl FnOnce() -> clap::Command,
) -> Result<i32> {
    match command {
        ClientCommand::Login(a) => login::login(a).await,
        ClientCommand::Projects(p) => projects::projects(p).await,
        ClientCommand::Tasks(t) => tasks::tasks(t).await,
        ClientCommand::Run(a) => runs::trigger(a).await,
        ClientCommand::Invoke(a) => runs::invoke(a).await,
        ClientCommand::Runs(r) => runs::runs(r).await,
        ClientCommand::Logs(a) => runs::logs(a).await,
        ClientCommand::Cancel(r) => runs::cancel(r).await,
        ClientCommand::Retry(r) => runs::retry(r).await,
        ClientCommand::Workers(w) => workers::workers(w).await,
        ClientCommand::Keys(k) => workers::keys(k).await,
        ClientCommand::Completions(a) => {
            let mut cmd = full_command();
            clap_complete::generate(a.shell, &mut cmd, "antcode", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// The API of the server `conn` names, and how to print.
fn connect(conn: &Conn) -> Result<(Api, Out)> {
    let target = config::target(conn)?;
    Ok((Api::new(&target)?, Out::new(conn.output)))
}

/// Whether `s` has the shape of an id (a UUID).
fn is_id(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The item of list `path` (`/tasks`, `/projects`) named `name`, if any.
async fn by_name(api: &Api, path: &str, name: &str) -> Result<Option<Value>> {
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_NAME_PAGES {
        let mut query = vec![("limit", "500".to_string())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page = api.get_query(path, &query).await?;
        if let Some(hit) = crate::output::items(&page)
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
        {
            return Ok(Some(hit.clone()));
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(None),
        }
    }
    Err(Error::usage(format!(
        "no {path} item named {name:?} in the first {} (give its id)",
        MAX_NAME_PAGES * 500
    )))
}

/// The id of `what` (`task`, `project`) from its name or id.
async fn resolve(api: &Api, what: &str, name_or_id: &str) -> Result<String> {
    if is_id(name_or_id) {
        return Ok(name_or_id.to_string());
    }
    match by_name(api, &format!("/{what}s"), name_or_id).await? {
        Some(item) => Ok(item["id"].as_str().unwrap_or_default().to_string()),
        None => Err(Error::usage(format!("no {what} named {name_or_id:?}"))),
    }
}

/// `KEY=TEXT` (a string) or `KEY:=JSON` (any JSON value), as HTTPie reads them.
fn key_value(raw: &str, what: &str) -> Result<(String, Value)> {
    let eq = raw
        .find('=')
        .ok_or_else(|| Error::usage(format!("{what} {raw:?}: expected KEY=TEXT or KEY:=JSON")))?;
    let (key, value) = (&raw[..eq], &raw[eq + 1..]);
    let (key, value) = match key.strip_suffix(':') {
        Some(k) => {
            let v = serde_json::from_str(value)
                .map_err(|e| Error::usage(format!("{what} {k}: {value:?} is not JSON ({e})")))?;
            (k, v)
        }
        None => (key, Value::String(value.to_string())),
    };
    if key.is_empty() {
        return Err(Error::usage(format!("{what} {raw:?}: the key is empty")));
    }
    Ok((key.to_string(), value))
}

/// `KEY=VALUE` flags as a JSON object.
fn object(raws: &[String], what: &str) -> Result<serde_json::Map<String, Value>> {
    raws.iter().map(|r| key_value(r, what)).collect()
}

/// `KEY=VALUE` flags whose values are text (env, labels), as a JSON object.
fn text_object(raws: &[String], what: &str) -> Result<serde_json::Map<String, Value>> {
    let map = object(raws, what)?;
    match map.values().all(Value::is_string) {
        true => Ok(map),
        false => Err(Error::usage(format!("{what} takes KEY=VALUE (text only)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_text_unless_given_as_json() {
        assert_eq!(
            key_value("who=world", "--param").unwrap(),
            ("who".into(), json!("world"))
        );
        assert_eq!(
            key_value("n:=3", "--param").unwrap(),
            ("n".into(), json!(3))
        );
        assert_eq!(
            key_value("q=a=b", "--param").unwrap(),
            ("q".into(), json!("a=b"))
        );
        assert_eq!(
            key_value("o:={\"a\":[1]}", "--param").unwrap().1,
            json!({"a": [1]})
        );
        assert!(key_value("n:=nope", "--param").is_err());
        assert!(key_value("novalue", "--param").is_err());
        assert!(key_value("=x", "--param").is_err());
    }

    #[test]
    fn ids_are_told_from_names() {
        assert!(is_id("0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"));
        assert!(!is_id("hello"));
        assert!(!is_id("0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6"));
    }
}
