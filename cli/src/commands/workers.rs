//! `antcode workers ls|drain` and `antcode keys create`.

use serde_json::{json, Map, Value};

use super::{connect, text_object};
use crate::api::Api;
use crate::args::{DrainArgs, KeyCreate, Keys, KeysCommand, Workers, WorkersCommand};
use crate::error::{Error, Result};
use crate::output::{self, field, Out};

pub async fn workers(w: Workers) -> Result<i32> {
    let (api, out) = connect(&w.conn)?;
    match w.command {
        WorkersCommand::Ls => ls(&api, &out).await,
        WorkersCommand::Drain(d) => drain(&api, &out, d).await,
    }
}

async fn ls(api: &Api, out: &Out) -> Result<i32> {
    let list = api.get("/workers").await?;
    let header = ["NAME", "ID", "MODE", "QUEUES", "RUNNING", "DRAINING"];
    out.page(&list, &header, None, |w| {
        let queues: Vec<String> = w["queues"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(output::cell)
            .collect();
        vec![
            field(w, "name"),
            field(w, "id"),
            field(w, "mode"),
            queues.join(","),
            format!("{}/{}", field(w, "running"), field(w, "slots")),
            match w["draining"].as_bool() {
                Some(true) => "draining".into(),
                _ => "-".into(),
            },
        ]
    });
    Ok(0)
}

/// The id of the live worker named or numbered `which`.
async fn worker_id(api: &Api, which: &str) -> Result<String> {
    let list = api.get("/workers").await?;
    let items = output::items(&list);
    if let Some(w) = items.iter().find(|w| w["id"].as_str() == Some(which)) {
        return Ok(field(w, "id"));
    }
    let named: Vec<&Value> = items
        .iter()
        .filter(|w| w["name"].as_str() == Some(which))
        .collect();
    match named.as_slice() {
        [one] => Ok(field(one, "id")),
        [] => Err(Error::usage(format!("no live worker named {which:?}"))),
        _ => Err(Error::usage(format!(
            "{} live workers are named {which:?}: give the id",
            named.len()
        ))),
    }
}

async fn drain(api: &Api, out: &Out, d: DrainArgs) -> Result<i32> {
    let id = worker_id(api, &d.worker).await?;
    let verb = if d.undo { "undrain" } else { "drain" };
    let worker = api.post(&format!("/workers/{id}/{verb}"), None).await?;
    out.answer(&worker, || {
        let word = if d.undo { "undrained" } else { "draining" };
        println!("{word} worker {} ({id})", field(&worker, "name"));
    });
    Ok(0)
}

pub async fn keys(k: Keys) -> Result<i32> {
    let (api, out) = connect(&k.conn)?;
    match k.command {
        KeysCommand::Create(c) => create_key(&api, &out, c).await,
    }
}

async fn create_key(api: &Api, out: &Out, c: KeyCreate) -> Result<i32> {
    let mut body = Map::new();
    if let Some(n) = &c.note {
        body.insert("note".into(), json!(n));
    }
    if !c.queues.is_empty() {
        body.insert("queues".into(), json!(c.queues));
    }
    if !c.labels.is_empty() {
        let labels = text_object(&c.labels, "--label")?;
        body.insert("labels".into(), Value::Object(labels));
    }
    if let Some(t) = c.ttl_s {
        body.insert("ttl_s".into(), json!(t));
    }
    let key = api.post("/worker-keys", Some(&Value::Object(body))).await?;
    out.answer(&key, || {
            println!("{}", field(&key, "key"));
            eprintln!(
                "enrollment key {} (shown once; expires {}): antcode runner --mode gateway --edge https://EDGE:50051 --ca ca.pem --enroll KEY",
                field(&key, "id"),
                field(&key, "expires_at")
            );
        });
    Ok(0)
}
