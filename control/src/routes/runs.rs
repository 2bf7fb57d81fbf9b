//! Runs: `GET /runs` (filters), `GET /runs/{id}` (with history), `POST /runs/{id}/cancel`,
//! `POST /runs/{id}/retry`, `GET /runs/{id}/logs` (text, one attempt's with `?attempt=N`, a part
//! of it with `Range`, a gzip download with `?format=gzip`, or SSE with `?follow=true`),
//! `GET /runs/{id}/logs/search` (matching lines, see [`crate::logread`]) and
//! `GET /runs/{id}/events` (SSE of state changes), `GET /runs/{id}/group` (its run group) and
//! `GET /stats/runs` (counts, success rate and duration percentiles per time bucket).
//!
//! Live views read the broker (logs) and the store (state), never process memory, so any number
//! of viewers on any number of control instances see the same stream, and a late joiner gets the
//! history first. `Last-Event-ID` resumes a log stream after the last chunk the client saw.

use std::convert::Infallible;
use std::time::Duration;

use std::io::Write;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use antcode_core::broker::{changed, LogChunk, PROGRESS_STREAM};
use antcode_core::model::{Role, Run, RunState};
use antcode_core::time::now_ms;

use super::{attachment, created, ok, PageQuery, P, Q};
use crate::audit::{self, to_value};
use crate::auth::Ctx;
use crate::inflate;
use crate::logread;
use crate::problem::{ApiResult, Problem};
use crate::service::runs::{self, load};
use crate::service::stats;
use crate::AppState;

/// How often live views look at the run's state in the store.
const STATE_POLL: Duration = Duration::from_millis(250);
/// How long one broker log read waits for new chunks.
const LOG_WAIT: Duration = Duration::from_millis(500);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", get(list))
        .route("/runs/{id}", get(show))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/runs/{id}/retry", post(retry))
        .route("/runs/{id}/logs", get(logs))
        .route("/runs/{id}/logs/search", get(search_log))
        .route("/runs/{id}/events", get(events))
        .route("/runs/{id}/group", get(group))
        .route("/stats/runs", get(stats))
}

#[derive(Deserialize)]
struct RunQuery {
    task_id: Option<String>,
    state: Option<String>,
    worker_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    trigger: Option<String>,
    error: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(ctx: Ctx, Q(q): Q<RunQuery>) -> ApiResult<Response> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let filter = runs::filter(runs::ListQuery {
        task_id: q.task_id,
        state: q.state,
        worker_id: q.worker_id,
        since: q.since,
        until: q.until,
        trigger: q.trigger,
        error: q.error,
    })?;
    let mut runs = ctx
        .state
        .store
        .list_runs(&filter, page.limit()?, page.cursor()?)
        .await?;
    for run in &mut runs.items {
        runs::mask(ctx.who.role, run);
    }
    Ok(ok(runs))
}

/// Figures per time bucket for the runs the query's filters match (see [`stats::StatsQuery`]).
async fn stats(ctx: Ctx, Q(q): Q<stats::StatsQuery>) -> ApiResult<Response> {
    Ok(ok(stats::run_stats(&ctx.state, q).await?))
}

async fn show(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let mut run = load(&ctx.state, &id).await?;
    runs::mask(ctx.who.role, &mut run);
    let history = ctx.state.store.run_history(&id).await?;
    let mut body = serde_json::to_value(&run).map_err(Problem::internal)?;
    body["history"] = serde_json::to_value(history).map_err(Problem::internal)?;
    if run.state == RunState::Queued {
        if let Some(why) = runs::unservable(&ctx.state, &run).await {
            body["waiting"] = why.into();
        }
    }
    Ok(ok(body))
}

/// The run group of run `id`: its runs (the first 1,000) and what started what.
async fn group(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let run = load(&ctx.state, &id).await?;
    Ok(ok(runs::group(&ctx.state, ctx.who.role, &run).await?))
}

async fn cancel(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "run.cancel", &id).await?;
    let before = load(&ctx.state, &id).await?;
    let run = runs::cancel(&ctx.state, &before, now_ms()).await?;
    audit::record(
        &ctx,
        "run.cancel",
        &id,
        to_value(&before),
        to_value(&run),
        "ok",
    )
    .await;
    Ok(ok(run))
}

async fn retry(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    ctx.require(Role::Operator, "run.retry", &id).await?;
    let old = load(&ctx.state, &id).await?;
    let run = runs::retry(&ctx.state, &old).await?;
    audit::record(&ctx, "run.retry", &id, to_value(&old), to_value(&run), "ok").await;
    Ok(created(run))
}

/// The log as pieces: the archive as it is inflated, else the live chunks the broker holds (a
/// bounded window). With `attempt`, that attempt's archive (each attempt's log is stored under
/// its own key) or its live chunks.
async fn log_pieces(
    state: &AppState,
    run: &Run,
    attempt: Option<u32>,
) -> ApiResult<mpsc::Receiver<std::io::Result<Bytes>>> {
    let archive = match attempt {
        Some(n) => runs::attempt_archive(state, run, n).await?,
        None => runs::archived(state, run).await?,
    };
    if let Some(pieces) = archive {
        return Ok(pieces);
    }
    // Each chunk its own piece: the window is held once (as the broker answered it), not
    // copied into one string beside it.
    let chunks = state.broker.read_log(&run.id, 0, Duration::ZERO).await?;
    let pieces: Vec<Bytes> = chunks
        .into_iter()
        .filter(|c| attempt.is_none_or(|n| c.attempt == n) && c.stream != PROGRESS_STREAM)
        .map(|c| Bytes::from(c.data))
        .collect();
    let (tx, rx) = mpsc::channel(pieces.len().max(1));
    for piece in pieces {
        let _ = tx.try_send(Ok(piece));
    }
    Ok(rx)
}

/// `GET /runs/{id}/logs` without `follow`: the log as text, streamed as it is inflated; with a
/// `Range: bytes=…` header that part of it (206), so a viewer can open at the tail.
async fn plain_log(
    state: &AppState,
    run: &Run,
    attempt: Option<u32>,
    range: Option<logread::ByteRange>,
) -> ApiResult<Response> {
    let pieces = log_pieces(state, run, attempt).await?;
    let mut resp = match range {
        None => {
            axum::body::Body::from_stream(futures::stream::unfold(pieces, |mut rx| async move {
                rx.recv().await.map(|p| (p, rx))
            }))
            .into_response()
        }
        Some(range) => {
            let slice = logread::read_range(pieces, range)
                .await
                .map_err(Problem::internal)?;
            let status = match slice.satisfiable() {
                true => StatusCode::PARTIAL_CONTENT,
                false => StatusCode::RANGE_NOT_SATISFIABLE,
            };
            let mut resp = (status, slice.bytes.clone()).into_response();
            if let Ok(v) = HeaderValue::from_str(&slice.content_range()) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(resp)
}

/// `GET /runs/{id}/logs?format=gzip`: the log as a gzip file to download. A finished attempt's
/// archive is sent as stored (never inflated here); a live log is compressed as it is now.
async fn gzip_log(state: &AppState, run: &Run, attempt: Option<u32>) -> ApiResult<Response> {
    let key = match attempt {
        Some(n) => Some(antcode_core::blob::log_key(&run.id, n)),
        None => run.log_key.clone(),
    };
    let name = match attempt {
        Some(n) => format!("run-{}-attempt-{n}.log.gz", run.id),
        None => format!("run-{}.log.gz", run.id),
    };
    let stored = match key {
        Some(key) => match state.blobs.get_stream(&key).await {
            Ok(blob) => Some(blob),
            Err(antcode_core::blob::BlobError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let body = match stored {
        Some(blob) => axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(blob)),
        None => {
            let mut pieces = log_pieces(state, run, attempt).await?;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            while let Some(piece) = pieces.recv().await {
                gz.write_all(&piece.map_err(Problem::internal)?)
                    .map_err(Problem::internal)?;
            }
            axum::body::Body::from(gz.finish().map_err(Problem::internal)?)
        }
    };
    Ok(attachment(body, "application/gzip", &name))
}

#[derive(Deserialize)]
struct LogQuery {
    follow: Option<bool>,
    /// One attempt's log (1 is the first), not with `follow`.
    attempt: Option<String>,
    /// `gzip`: the log as a gzip file to download.
    format: Option<String>,
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    attempt: Option<String>,
}

/// `attempt` of a log request: a number from 1 to the run's current attempt.
fn log_attempt(run: &Run, raw: Option<&str>) -> ApiResult<Option<u32>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let n = raw.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        Problem::bad_request(format!("attempt: {raw:?} is not a positive whole number"))
    })?;
    if n > run.attempt {
        return Err(Problem::not_found(format!(
            "run {} has no attempt {n} (its latest is {})",
            run.id, run.attempt
        )));
    }
    Ok(Some(n))
}

async fn logs(
    ctx: Ctx,
    P(id): P<String>,
    Q(q): Q<LogQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = load(&ctx.state, &id).await?;
    let attempt = log_attempt(&run, q.attempt.as_deref())?;
    match q.format.as_deref() {
        None | Some("text") => {}
        Some("gzip") if !q.follow.unwrap_or(false) => {
            return gzip_log(&ctx.state, &run, attempt).await;
        }
        Some("gzip") => {
            return Err(Problem::bad_request(
                "format: a followed log is a stream of events; leave out format or follow",
            ))
        }
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "format: {other:?} is not text or gzip"
            )))
        }
    }
    if !q.follow.unwrap_or(false) {
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| logread::parse_range(Some(v)));
        return plain_log(&ctx.state, &run, attempt, range).await;
    }
    if attempt.is_some() {
        return Err(Problem::bad_request(
            "attempt: a followed log streams every attempt; leave out attempt or follow",
        ));
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(follow_log(ctx.state.clone(), run, after, tx));
    Ok(sse(rx, ctx.revoked()))
}

/// `GET /runs/{id}/logs/search?q=TEXT`: the lines of the log (or of one attempt's) that contain
/// `q`, ignoring ASCII case, with their line numbers and byte offsets (at most
/// [`logread::MAX_MATCHES`]).
async fn search_log(ctx: Ctx, P(id): P<String>, Q(q): Q<SearchQuery>) -> ApiResult<Response> {
    let query = q.q.unwrap_or_default();
    let chars = query.chars().count();
    if chars == 0 || chars > logread::MAX_QUERY_CHARS {
        return Err(Problem::bad_request(format!(
            "q: 1 to {} characters to look for",
            logread::MAX_QUERY_CHARS
        )));
    }
    let run = load(&ctx.state, &id).await?;
    let attempt = log_attempt(&run, q.attempt.as_deref())?;
    let pieces = log_pieces(&ctx.state, &run, attempt).await?;
    let found = logread::search(pieces, &query)
        .await
        .map_err(Problem::internal)?;
    Ok(ok(found))
}

/// The events `rx` receives as SSE, until the caller's credential is `revoked` (the stream then
/// ends, and its producer with it at its next send).
fn sse(
    rx: mpsc::Receiver<Event>,
    revoked: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    sse_response(futures::StreamExt::take_until(stream, revoked))
}

fn sse_response(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One chunk as a `log` event whose id is the chunk's cursor; a chunk of the progress stream
/// (what the run waits on before its process starts) as a `progress` event without an id, so
/// `Last-Event-ID` always names a chunk of the log (a client that saw only progress resumes
/// from nothing and gets the archive).
fn log_event(c: &LogChunk) -> Event {
    match c.stream == PROGRESS_STREAM {
        true => Event::default()
            .event("progress")
            .data(json!(c).to_string()),
        false => Event::default()
            .event("log")
            .id(c.cursor().to_string())
            .data(json!(c).to_string()),
    }
}

fn end_event(run: &Run) -> Event {
    Event::default()
        .event("end")
        .data(json!({"state": run.state, "exit_code": run.exit_code}).to_string())
}

/// Replays the log from `after`, then tails it until the run is terminal (or the client leaves,
/// or the server shuts down). Each `log` event carries one chunk as JSON, its id is the chunk's
/// cursor; `progress` events (same shape) tell what the run waits on before it starts; an `end`
/// event with the final state closes the stream.
async fn follow_log(state: AppState, mut run: Run, mut after: u64, tx: mpsc::Sender<Event>) {
    // Whether this stream sent any of the log (progress chunks are not the log), and whether
    // the client saw some before it reconnected: only a first stream that sent none replays
    // the archive.
    let (mut sent_any, resumed) = (false, after > 0);
    loop {
        let read = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            r = state.broker.read_log(&run.id, after, LOG_WAIT) => r,
        };
        let chunks = match read {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, run_id = %run.id, "log tail: broker read failed");
                tokio::time::sleep(STATE_POLL).await;
                vec![]
            }
        };
        for c in &chunks {
            if tx.send(log_event(c)).await.is_err() {
                return;
            }
            after = c.cursor();
            sent_any |= c.stream != PROGRESS_STREAM;
        }
        if !chunks.is_empty() {
            continue;
        }
        match state.store.run(&run.id).await {
            Ok(r) => run = r,
            Err(e) => {
                tracing::warn!(error = %e, run_id = %run.id, "log tail: store read failed");
                continue;
            }
        }
        if run.state.is_terminal() {
            // Finished: whatever arrived in the meantime, else the archive (the broker keeps only
            // a bounded window, and none at all after a restart).
            let rest = state
                .broker
                .read_log(&run.id, after, Duration::ZERO)
                .await
                .unwrap_or_default();
            for c in &rest {
                if tx.send(log_event(c)).await.is_err() {
                    return;
                }
                sent_any |= c.stream != PROGRESS_STREAM;
            }
            if !sent_any && !resumed && !replay_archive(&state, &run, &tx).await {
                return;
            }
            let _ = tx.send(end_event(&run)).await;
            return;
        }
    }
}

/// Sends a finished run's archive as `log` events of the `archive` stream, one per piece
/// inflated (numbered by `seq` from 0), so the replay costs a few pieces of memory whatever the
/// log's size. False when the client left.
async fn replay_archive(state: &AppState, run: &Run, tx: &mpsc::Sender<Event>) -> bool {
    let Ok(Some(mut pieces)) = runs::archived(state, run).await else {
        return true;
    };
    let mut text = inflate::Utf8Pieces::default();
    let mut seq = 0u64;
    while let Some(Ok(piece)) = pieces.recv().await {
        let chunk = json!({"attempt": run.attempt, "seq": seq, "stream": "archive", "data": text.push(&piece)});
        if tx
            .send(Event::default().event("log").data(chunk.to_string()))
            .await
            .is_err()
        {
            return false;
        }
        seq += 1;
    }
    true
}

async fn events(ctx: Ctx, P(id): P<String>) -> ApiResult<Response> {
    let run = load(&ctx.state, &id).await?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(watch_state(ctx.state.clone(), run, ctx.who.role, tx));
    Ok(sse(rx, ctx.revoked()))
}

/// The run as a `state` event, masked as the watcher's `role` may see it.
fn state_event(run: &Run, role: Role) -> Event {
    let mut run = run.clone();
    runs::mask(role, &mut run);
    Event::default()
        .event("state")
        .data(serde_json::to_string(&run).unwrap_or_default())
}

/// Emits the run as a `state` event now and on every change, then `end` once it is terminal.
async fn watch_state(state: AppState, mut run: Run, role: Role, tx: mpsc::Sender<Event>) {
    if tx.send(state_event(&run, role)).await.is_err() {
        return;
    }
    let key = |r: &Run| (r.state, r.attempt, r.worker_id.clone(), r.cancel_requested);
    let mut changes = state.broker.watch_changes();
    while !run.state.is_terminal() {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = changed(&mut changes, &run.id, STATE_POLL) => {}
        }
        if tx.is_closed() {
            return;
        }
        let now = match state.store.run(&run.id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, run_id = %run.id, "run events: store read failed");
                continue;
            }
        };
        if key(&now) != key(&run) && tx.send(state_event(&now, role)).await.is_err() {
            return;
        }
        run = now;
    }
    let _ = tx.send(end_event(&run)).await;
}
