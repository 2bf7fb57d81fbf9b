//! Following a run's log live (`GET /runs/{id}/logs?follow=true`, server-sent events) until its
//! `end` event, across lost connections and server restarts.
//!
//! Each `log` event's id is the chunk's cursor; a reconnect sends the last one as
//! `Last-Event-ID`, so the server resumes after it and nothing is printed twice. Once a stream
//! was answered, a cut one is retried with backoff (up to [`MAX_BACKOFF`]) while the failure
//! looks transient, for at most [`GIVE_UP_AFTER`] without an answer; a first connection that
//! gets no answer fails at once. After a reconnect the server may have lost its live
//! window (a restart of `up` empties the in-process broker), so at the end the attempt's archive
//! supplies whatever the stream did not: the archive is the same bytes the chunks carried.
//!
//! Before the process starts, `progress` events tell what the run waits on (its environment
//! being built): a spinner on a terminal, plain lines otherwise, on standard error, so standard
//! output is the log alone.

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::error::{Error, Result};

/// The longest pause between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long to go on trying without getting an answer.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// The longest event accepted (a log chunk is at most 64 KiB of text, escaped as JSON).
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// How a followed run ended.
#[derive(Debug, Clone)]
pub struct End {
    pub state: String,
    pub exit_code: Option<i64>,
}

impl End {
    /// The exit code a command following the run exits with: the run's own, else 1 when it did
    /// not succeed (timed out, cancelled, lost, or killed by a signal).
    pub fn exit_code(&self) -> i32 {
        match (self.state.as_str(), self.exit_code) {
            ("succeeded", _) => 0,
            (_, Some(code)) if (1..=255).contains(&code) => code as i32,
            _ => 1,
        }
    }
}

/// One server-sent event.
#[derive(Debug, Default)]
struct Event {
    name: String,
    id: Option<String>,
    data: String,
}

/// Parses an event stream as it arrives; lines past [`MAX_EVENT_BYTES`] are an error.
#[derive(Default)]
struct Parser {
    line: Vec<u8>,
    event: Event,
    size: usize,
}

impl Parser {
    /// Feeds `bytes`; the events they complete.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<()> {
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                self.size += 1;
                if self.size > MAX_EVENT_BYTES {
                    return Err(Error::usage(format!(
                        "a log event is larger than {MAX_EVENT_BYTES} bytes"
                    )));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                self.size = 0;
                let event = std::mem::take(&mut self.event);
                if !event.name.is_empty() || !event.data.is_empty() {
                    out.push(event);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event.name = value.to_string(),
                "id" => self.event.id = Some(value.to_string()),
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                _ => {} // comments (keep-alives) and unknown fields
            }
        }
        Ok(())
    }
}

/// Where the follow is: what was printed of each attempt, and the stream's position.
struct Progress {
    json: bool,
    /// The last `log` event id seen, sent as `Last-Event-ID` on a reconnect.
    cursor: Option<String>,
    /// Bytes printed of each attempt's log.
    printed: BTreeMap<u64, u64>,
    attempt: Option<u64>,
    reconnected: bool,
    /// What the run is waiting on (an environment being built), as a spinner on a terminal.
    waiting: Waiting,
}

/// `text` without control characters. A progress step is written by the runner, which may be a
/// gateway runner on another machine: none of its escape sequences reach the user's terminal.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// `progress` events on standard error: a spinner with the latest step on a terminal, which
/// gives way to the log (leaving the last step printed), else one line per step.
#[derive(Default)]
struct Waiting {
    spinner: Option<(ProgressBar, String)>,
}

impl Waiting {
    fn step(&mut self, text: &str) {
        if !std::io::stderr().is_terminal() {
            eprintln!("antcode: {text}");
            return;
        }
        let (bar, last) = self.spinner.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            (bar, String::new())
        });
        bar.set_message(text.to_string());
        *last = text.to_string();
    }

    /// The wait is over (the log or the end arrived).
    fn done(&mut self) {
        if let Some((bar, last)) = self.spinner.take() {
            bar.finish_and_clear();
            eprintln!("{last}");
        }
    }
}

impl Progress {
    /// Shows one `progress` event: a step the run waits on before its process starts.
    fn progress(&mut self, event: &Event) -> Result<()> {
        let chunk: Value = serde_json::from_str(&event.data)
            .map_err(|e| Error::usage(format!("a progress event is not JSON: {e}")))?;
        if let Some(id) = &event.id {
            self.cursor = Some(id.clone());
        }
        if self.json {
            let line = json!({"event": "progress", "chunk": chunk});
            let mut out = std::io::stdout().lock();
            return writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(Error::stdout);
        }
        let text = chunk.get("data").and_then(Value::as_str).unwrap_or("");
        self.waiting.step(&printable(text));
        Ok(())
    }

    /// Prints one `log` event's chunk; a new attempt after output of another is announced on
    /// standard error.
    fn log(&mut self, event: &Event) -> Result<()> {
        self.waiting.done();
        let chunk: Value = serde_json::from_str(&event.data)
            .map_err(|e| Error::usage(format!("a log event is not JSON: {e}")))?;
        let attempt = chunk.get("attempt").and_then(Value::as_u64).unwrap_or(1);
        let data = chunk.get("data").and_then(Value::as_str).unwrap_or("");
        if self.attempt.is_some_and(|a| a != attempt) && !self.json {
            eprintln!("--- attempt {attempt} ---");
        }
        self.attempt = Some(attempt);
        if let Some(id) = &event.id {
            self.cursor = Some(id.clone());
        }
        *self.printed.entry(attempt).or_default() += data.len() as u64;
        let mut out = std::io::stdout().lock();
        let written = match self.json {
            true => writeln!(out, "{}", json!({"event": "log", "chunk": chunk})),
            false => out.write_all(data.as_bytes()),
        };
        written.and_then(|_| out.flush()).map_err(Error::stdout)
    }
}

/// Follows run `id`'s log until the run ends; prints it (or, with `json`, one JSON object per
/// event) on standard output.
pub async fn follow(api: &Api, id: &str, json: bool) -> Result<End> {
    let mut progress = Progress {
        json,
        cursor: None,
        printed: BTreeMap::new(),
        attempt: None,
        reconnected: false,
        waiting: Waiting::default(),
    };
    let mut backoff = Duration::from_millis(250);
    let mut failing_since: Option<Instant> = None;
    loop {
        match stream_once(api, id, &mut progress).await {
            Ok(Some(end)) => {
                // The run's end is known: a failed top-up loses log lines, not the exit code.
                if progress.reconnected {
                    if let Err(e) = top_up(api, id, &progress).await {
                        eprintln!("antcode: the rest of run {id}'s log could not be read: {e}");
                    }
                }
                if json {
                    let end =
                        json!({"event": "end", "state": end.state, "exit_code": end.exit_code});
                    println!("{end}");
                }
                return Ok(end);
            }
            // The stream stopped without `end` after an answer: the server is stopping.
            Ok(None) => {
                eprintln!("antcode: the log stream of run {id} was cut; reconnecting");
                failing_since = Some(Instant::now());
                backoff = Duration::from_millis(250);
            }
            // No answer yet at all: a wrong URL or a server that is down, not a restart.
            Err(e) if !progress.reconnected => return Err(e),
            Err(e) if e.is_transient() => {
                let since = *failing_since.get_or_insert_with(|| {
                    eprintln!("antcode: {e}; retrying");
                    Instant::now()
                });
                if since.elapsed() > GIVE_UP_AFTER {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        progress.reconnected = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: its events until `end` (`Some`) or until the stream stops or is cut
/// (`None`). No answer, or an error status, is an `Err`.
async fn stream_once(api: &Api, id: &str, progress: &mut Progress) -> Result<Option<End>> {
    let mut req = api
        .request(Method::GET, &format!("/runs/{id}/logs"))
        .query(&[("follow", "true")]);
    if let Some(cursor) = &progress.cursor {
        req = req.header("last-event-id", cursor);
    }
    let resp = api.send(req).await?;
    let mut body = resp.bytes_stream();
    let mut parser = Parser::default();
    let mut events = Vec::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Ok(None); // cut mid-stream: reconnect from the cursor
        };
        parser.push(&chunk, &mut events)?;
        for event in events.drain(..) {
            match event.name.as_str() {
                "log" => progress.log(&event)?,
                "progress" => progress.progress(&event)?,
                "end" => {
                    progress.waiting.done();
                    let v: Value = serde_json::from_str(&event.data).unwrap_or_default();
                    return Ok(Some(End {
                        state: v["state"].as_str().unwrap_or("unknown").to_string(),
                        exit_code: v["exit_code"].as_i64(),
                    }));
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

/// After a reconnect: prints what the final attempt's archive holds beyond what was printed of
/// it (nothing when the stream delivered it all).
async fn top_up(api: &Api, id: &str, progress: &Progress) -> Result<()> {
    let run = api.get(&format!("/runs/{id}")).await?;
    let Some(attempt) = run.get("attempt").and_then(Value::as_u64) else {
        return Ok(());
    };
    let mut skip = progress.printed.get(&attempt).copied().unwrap_or(0);
    let req = api
        .request(Method::GET, &format!("/runs/{id}/logs"))
        .query(&[("attempt", attempt.to_string())]);
    let mut body = api.send(req).await?.bytes_stream();
    let mut announce = progress.attempt.is_some_and(|a| a != attempt) && !progress.json;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| api.unreachable(&e))?;
        let from = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
        skip -= from as u64;
        let data = &chunk[from..];
        if data.is_empty() {
            continue;
        }
        if std::mem::take(&mut announce) {
            eprintln!("--- attempt {attempt} ---");
        }
        let mut out = std::io::stdout().lock();
        let written = match progress.json {
            true => {
                let text = String::from_utf8_lossy(data);
                let chunk = json!({"attempt": attempt, "stream": "archive", "data": text});
                writeln!(out, "{}", json!({"event": "log", "chunk": chunk}))
            }
            false => out.write_all(data),
        };
        written.and_then(|_| out.flush()).map_err(Error::stdout)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_chunking() {
        let stream = b": keep-alive\n\nevent: log\nid: 7\ndata: {\"data\":\"a\"}\n\nevent: end\ndata: {\"state\":\"failed\",\"exit_code\":3}\r\n\r\n";
        for cut in [1, 3, 10, stream.len()] {
            let mut parser = Parser::default();
            let mut events = Vec::new();
            for piece in stream.chunks(cut) {
                parser.push(piece, &mut events).unwrap();
            }
            assert_eq!(events.len(), 2, "cut every {cut}");
            assert_eq!(
                (events[0].name.as_str(), events[0].id.as_deref()),
                ("log", Some("7"))
            );
            assert_eq!(events[1].name, "end");
        }
    }

    #[test]
    fn a_progress_step_cannot_drive_the_terminal() {
        assert_eq!(
            printable("building\u{1b}]0;owned\u{7}\u{1b}[2J the environment\r\n"),
            "building]0;owned[2J the environment"
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(parser.push(&big, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_run_that_did_not_succeed_never_exits_zero() {
        let end = |state: &str, code| End {
            state: state.into(),
            exit_code: code,
        };
        assert_eq!(end("succeeded", Some(0)).exit_code(), 0);
        assert_eq!(end("failed", Some(3)).exit_code(), 3);
        assert_eq!(end("failed", Some(0)).exit_code(), 1);
        assert_eq!(end("timed_out", None).exit_code(), 1);
        assert_eq!(end("failed", Some(-9)).exit_code(), 1);
    }
}
