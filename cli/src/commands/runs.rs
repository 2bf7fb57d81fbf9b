//! `antcode run`, `invoke`, `runs ls|show`, `logs`, `cancel`, `retry`.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::{connect, object, resolve, text_object};
use crate::api::Api;
use crate::args::{InvokeArgs, LogsArgs, RunArgs, RunInput, RunRef, Runs, RunsCommand, RunsLs};
use crate::error::{Error, Result};
use crate::follow::{self, End};
use crate::output::{self, field, Out};

/// The fields `runs show` lists first.
const SHOW_FIRST: [&str; 12] = [
    "id",
    "task_id",
    "state",
    "attempt",
    "max_attempts",
    "exit_code",
    "error",
    "trigger",
    "queue",
    "worker_id",
    "queued_at",
    "finished_at",
];

/// The trigger body: params, args and env, each only when given.
fn input_body(input: &RunInput) -> Result<Value> {
    let mut body = Map::new();
    if !input.params.is_empty() {
        body.insert(
            "params".into(),
            Value::Object(object(&input.params, "--param")?),
        );
    }
    if !input.args.is_empty() {
        body.insert("args".into(), json!(input.args));
    }
    if !input.env.is_empty() {
        let env = text_object(&input.env, "--env")?;
        body.insert("env".into(), Value::Object(env));
    }
    Ok(Value::Object(body))
}

pub async fn trigger(a: RunArgs) -> Result<i32> {
    let (api, out) = connect(&a.conn)?;
    let id = resolve(&api, "task", &a.task).await?;
    let body = input_body(&a.input)?;
    let run = api
        .post(&format!("/tasks/{id}/trigger"), Some(&body))
        .await?;
    let run_id = field(&run, "id");
    if !a.follow {
        out.answer(&run, || {
            println!(
                "started run {run_id} ({})",
                out.state(&field(&run, "state"))
            )
        });
        return Ok(0);
    }
    if !out.json() {
        eprintln!("run {run_id} started; following its log");
    }
    let end = follow::follow(&api, &run_id, out.json()).await?;
    Ok(finish(&out, &run_id, &end))
}

/// Says how a followed run ended (on standard error, after its log); its exit code.
fn finish(out: &Out, run_id: &str, end: &End) -> i32 {
    if !out.json() {
        let code = end
            .exit_code
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        eprintln!("run {run_id} {} (exit code {code})", out.state(&end.state));
    }
    end.exit_code()
}

pub async fn invoke(a: InvokeArgs) -> Result<i32> {
    let (api, out) = connect(&a.conn)?;
    let id = resolve(&api, "task", &a.task).await?;
    let req = api
        .request(Method::POST, &format!("/tasks/{id}/invoke"))
        .query(&[("wait_s", a.wait_s.to_string())])
        .json(&input_body(&a.input)?)
        .timeout(crate::api::CALL_TIMEOUT + Duration::from_secs(a.wait_s));
    let resp = api.send(req).await?;
    let status = resp.status().as_u16();
    let answer = api.json(resp).await?;
    if out.json() {
        out.print_json(&answer);
    }
    let state = field(&answer, "state");
    if status == 202 {
        if !out.json() {
            eprintln!(
                "run {} is still {state} after {} s; follow it with: antcode logs -f {}",
                field(&answer, "id"),
                a.wait_s,
                field(&answer, "id")
            );
        }
        return Ok(1);
    }
    if !out.json() {
        match &answer["result"] {
            Value::Null => {
                let text = answer["output"].as_str().unwrap_or("");
                print!("{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    println!();
                }
            }
            result => println!("{result}"),
        }
        if state != "succeeded" {
            eprintln!(
                "run {} {} (exit code {})",
                field(&answer, "id"),
                out.state(&state),
                field(&answer, "exit_code")
            );
        }
    }
    let end = End {
        state,
        exit_code: answer["exit_code"].as_i64(),
    };
    Ok(end.exit_code())
}

pub async fn runs(r: Runs) -> Result<i32> {
    let (api, out) = connect(&r.conn)?;
    match r.command {
        RunsCommand::Ls(ls) => list(&api, &out, ls).await,
        RunsCommand::Show(id) => show(&api, &out, &id.run).await,
    }
}

/// `--since` (or `--until`, named by `flag`): an RFC 3339 time as it is, or an age (`90s`,
/// `15m`, `2h`, `7d`) before now.
fn since(flag: &str, raw: &str) -> Result<String> {
    if raw.contains('T') {
        return Ok(raw.to_string());
    }
    let bad = || {
        Error::usage(format!(
            "{flag} {raw:?}: give an RFC 3339 time or an age such as 90s, 15m, 2h, 7d"
        ))
    };
    let (num, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Ok(rfc3339(now.saturating_sub(secs)))
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC; days to civil date after Howard
/// Hinnant's `civil_from_days`).
fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Task names by id, from the first page of tasks (a run list shows names where it can).
async fn task_names(api: &Api) -> BTreeMap<String, String> {
    let page = api
        .get_query("/tasks", &[("limit", "500".to_string())])
        .await
        .unwrap_or_default();
    output::items(&page)
        .iter()
        .map(|t| (field(t, "id"), field(t, "name")))
        .collect()
}

async fn list(api: &Api, out: &Out, ls: RunsLs) -> Result<i32> {
    let mut query = ls.page.query();
    if let Some(t) = &ls.task {
        query.push(("task_id", resolve(api, "task", t).await?));
    }
    if let Some(s) = &ls.state {
        query.push(("state", s.clone()));
    }
    if let Some(s) = &ls.since {
        query.push(("since", since("--since", s)?));
    }
    if let Some(s) = &ls.until {
        query.push(("until", since("--until", s)?));
    }
    for (name, value) in [
        ("trigger", &ls.trigger),
        ("error", &ls.error),
        ("worker_id", &ls.worker),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let list = api.get_query("/runs", &query).await?;
    let names = match out.json() {
        true => BTreeMap::new(),
        false => task_names(api).await,
    };
    let header = [
        "ID", "TASK", "STATE", "ATTEMPT", "EXIT", "QUEUED", "DURATION",
    ];
    out.page(&list, &header, Some(2), |r| {
        let task = field(r, "task_id");
        vec![
            field(r, "id"),
            names.get(&task).cloned().unwrap_or(task),
            field(r, "state"),
            field(r, "attempt"),
            field(r, "exit_code"),
            field(r, "queued_at"),
            output::duration(r["duration_ms"].as_i64()),
        ]
    });
    Ok(0)
}

async fn show(api: &Api, out: &Out, id: &str) -> Result<i32> {
    let run = api.get(&format!("/runs/{id}")).await?;
    if out.json() {
        out.print_json(&run);
        return Ok(0);
    }
    let mut fields = run.clone();
    let history = fields
        .as_object_mut()
        .and_then(|m| m.remove("history"))
        .unwrap_or_default();
    out.all_fields(&fields, &SHOW_FIRST);
    let rows: Vec<Vec<String>> = history
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|h| {
            vec![
                field(h, "at"),
                field(h, "attempt"),
                field(h, "kind"),
                field(h, "detail"),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        out.table(&["AT", "ATTEMPT", "EVENT", "DETAIL"], &rows, None);
    }
    Ok(0)
}

pub async fn logs(a: LogsArgs) -> Result<i32> {
    let (api, out) = connect(&a.conn)?;
    if a.follow {
        let end = follow::follow(&api, &a.run, out.json()).await?;
        return Ok(finish(&out, &a.run, &end));
    }
    let mut req = api.request(Method::GET, &format!("/runs/{}/logs", a.run));
    if let Some(n) = a.attempt {
        req = req.query(&[("attempt", n.to_string())]);
    }
    let mut body = api.send(req).await?.bytes_stream();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| api.unreachable(&e))?;
        stdout.write_all(&chunk).map_err(Error::stdout)?;
    }
    let _ = stdout.flush();
    Ok(0)
}

pub async fn cancel(r: RunRef) -> Result<i32> {
    let (api, out) = connect(&r.conn)?;
    let run = api.post(&format!("/runs/{}/cancel", r.run), None).await?;
    out.answer(&run, || {
        let asked = run["cancel_requested"].as_bool() == Some(true)
            && !matches!(run["state"].as_str(), Some("cancelled"));
        let what = if asked {
            "cancel requested for"
        } else {
            "cancelled"
        };
        println!(
            "{what} run {} ({})",
            r.run,
            out.state(&field(&run, "state"))
        );
    });
    Ok(0)
}

pub async fn retry(r: RunRef) -> Result<i32> {
    let (api, out) = connect(&r.conn)?;
    let run = api.post(&format!("/runs/{}/retry", r.run), None).await?;
    out.answer(&run, || {
        println!("started run {} (a retry of {})", field(&run, "id"), r.run)
    });
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_become_times_before_now() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            since("--since", "2024-01-01T00:00:00Z").unwrap(),
            "2024-01-01T00:00:00Z"
        );
        assert!(since("--since", "15m").unwrap().ends_with('Z'));
        assert!(since("--since", "15w").is_err());
        assert!(since("--since", "m").is_err());
        assert!(since("--since", "").is_err());
    }
}
