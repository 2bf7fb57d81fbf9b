//! `antcode tasks ls|show|create|edit|pause|resume`.

use serde_json::{json, Map, Value};

use super::{connect, key_value, resolve};
use crate::api::Api;
use crate::args::{Page, TaskCreate, TaskEdit, TaskFields, Tasks, TasksCommand};
use crate::error::{Error, Result};
use crate::output::{self, field, Out};

/// The fields `tasks show` lists first.
const SHOW_FIRST: [&str; 10] = [
    "name",
    "id",
    "project_id",
    "entrypoint",
    "args",
    "queue",
    "schedule",
    "paused",
    "next_fire_at",
    "timeout_s",
];

pub async fn tasks(t: Tasks) -> Result<i32> {
    let (api, out) = connect(&t.conn)?;
    match t.command {
        TasksCommand::Ls(page) => ls(&api, &out, &page).await,
        TasksCommand::Show(r) => {
            let id = resolve(&api, "task", &r.task).await?;
            show(&out, &api.get(&format!("/tasks/{id}")).await?);
            Ok(0)
        }
        TasksCommand::Create(c) => create(&api, &out, c).await,
        TasksCommand::Edit(e) => edit(&api, &out, e).await,
        TasksCommand::Pause(r) => set_paused(&api, &out, &r.task, "pause").await,
        TasksCommand::Resume(r) => set_paused(&api, &out, &r.task, "resume").await,
    }
}

fn show(out: &Out, task: &Value) {
    out.answer(task, || out.all_fields(task, &SHOW_FIRST));
}

/// A schedule in a few words.
fn schedule(task: &Value) -> String {
    let s = &task["schedule"];
    match s["kind"].as_str() {
        Some("cron") => format!("cron {}", output::cell(&s["cron"])),
        Some("interval") => format!("every {}s", output::cell(&s["every_s"])),
        Some("once") => format!("once {}", output::cell(&s["at"])),
        _ => "-".into(),
    }
}

async fn ls(api: &Api, out: &Out, page: &Page) -> Result<i32> {
    let list = api.get_query("/tasks", &page.query()).await?;
    let header = ["NAME", "ID", "QUEUE", "SCHEDULE", "PAUSED", "NEXT FIRE"];
    out.page(&list, &header, None, |t| {
        vec![
            field(t, "name"),
            field(t, "id"),
            field(t, "queue"),
            schedule(t),
            match t["paused"].as_bool() {
                Some(true) => "paused".into(),
                _ => "-".into(),
            },
            field(t, "next_fire_at"),
        ]
    });
    Ok(0)
}

/// Sets `value` at the dotted `key` of `body` (`limits.memory_mb` reaches into `limits`).
fn set_path(body: &mut Map<String, Value>, key: &str, value: Value) -> Result<()> {
    let mut parts = key.split('.').peekable();
    let mut here = body;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Error::usage(format!("--set {key}: an empty field name")));
        }
        if parts.peek().is_none() {
            here.insert(part.to_string(), value);
            return Ok(());
        }
        let next = here
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        here = next
            .as_object_mut()
            .ok_or_else(|| Error::usage(format!("--set {key}: {part} is not an object")))?;
    }
    Ok(())
}

/// The body fields the flags give.
fn body(fields: &TaskFields) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    if !fields.args.is_empty() {
        body.insert("args".into(), json!(fields.args));
    }
    if let Some(t) = fields.timeout_s {
        body.insert("timeout_s".into(), json!(t));
    }
    if let Some(q) = &fields.queue {
        body.insert("queue".into(), json!(q));
    }
    if let Some(c) = &fields.cron {
        body.insert("schedule".into(), json!({"kind": "cron", "cron": c}));
    }
    if let Some(e) = fields.every_s {
        body.insert("schedule".into(), json!({"kind": "interval", "every_s": e}));
    }
    for raw in &fields.set {
        let (key, value) = key_value(raw, "--set")?;
        set_path(&mut body, &key, value)?;
    }
    Ok(body)
}

async fn create(api: &Api, out: &Out, c: TaskCreate) -> Result<i32> {
    let project = resolve(api, "project", &c.project).await?;
    let mut body = body(&c.fields)?;
    body.insert("name".into(), json!(c.name));
    body.insert("project_id".into(), json!(project));
    let task = api.post("/tasks", Some(&Value::Object(body))).await?;
    out.answer(&task, || {
        println!(
            "created task {} ({})",
            field(&task, "name"),
            field(&task, "id")
        )
    });
    Ok(0)
}

async fn edit(api: &Api, out: &Out, e: TaskEdit) -> Result<i32> {
    let id = resolve(api, "task", &e.task).await?;
    let mut body = body(&e.fields)?;
    if let Some(n) = &e.name {
        body.insert("name".into(), json!(n));
    }
    if body.is_empty() {
        return Err(Error::usage(
            "nothing to change: give --arg, --timeout-s, --queue, --cron, --every-s, --name or --set",
        ));
    }
    let task = api
        .patch(&format!("/tasks/{id}"), &Value::Object(body))
        .await?;
    show(out, &task);
    Ok(0)
}

async fn set_paused(api: &Api, out: &Out, task: &str, verb: &str) -> Result<i32> {
    let id = resolve(api, "task", task).await?;
    let task = api.post(&format!("/tasks/{id}/{verb}"), None).await?;
    out.answer(&task, || {
        let word = if verb == "pause" { "paused" } else { "resumed" };
        println!("{word} task {} ({id})", field(&task, "name"));
    });
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_fields_reach_into_objects() {
        let mut body = Map::new();
        set_path(&mut body, "limits.memory_mb", json!(512)).unwrap();
        set_path(&mut body, "limits.pids", json!(64)).unwrap();
        set_path(&mut body, "queue", json!("q")).unwrap();
        assert_eq!(
            Value::Object(body.clone()),
            json!({"limits": {"memory_mb": 512, "pids": 64}, "queue": "q"})
        );
        assert!(set_path(&mut body, "queue.x", json!(1)).is_err());
        assert!(set_path(&mut body, "a..b", json!(1)).is_err());
    }
}
