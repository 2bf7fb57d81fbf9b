//! The OpenAPI 3.1 document served at `/api/openapi.json`, built from [`ROUTES`], the table of
//! every operation this crate routes (a test walks it against the live router, so the two cannot
//! drift apart silently).

use serde_json::{json, Map, Value};

use crate::bounds;
use antcode_core::model::ConcurrencyKey;
use antcode_core::secrets::MAX_NAME_LEN as MAX_SECRET_NAME;

/// `(method, path, summary, least role, request body kind)`. Roles: `none` (public), `hook` (a
/// webhook's own secret, no session), or the least user role. Body kinds: `json`, `json?` (may
/// be left out), `upload` (multipart or JSON inline code), `""` for none.
#[rustfmt::skip]
pub const ROUTES: &[(&str, &str, &str, &str, &str)] = &[
    ("post", "/api/v1/auth/login", "Log in; returns a bearer token", "none", "json"),
    ("post", "/api/v1/auth/logout", "Revoke the current session", "viewer", ""),
    ("get", "/api/v1/auth/me", "The current user and effective role", "viewer", ""),
    ("get", "/api/v1/users", "List users", "admin", ""),
    ("post", "/api/v1/users", "Create a user", "admin", "json"),
    ("get", "/api/v1/users/{id}", "Get a user", "admin", ""),
    ("patch", "/api/v1/users/{id}", "Change a user's role, password or disabled flag (your own password: anyone, with current_password and a credential that can write)", "admin", "json"),
    ("delete", "/api/v1/users/{id}", "Delete a user", "admin", ""),
    ("get", "/api/v1/tokens", "List your API tokens", "viewer", ""),
    ("post", "/api/v1/tokens", "Create an API token (shown once)", "viewer", "json"),
    ("delete", "/api/v1/tokens/{id}", "Revoke an API token", "viewer", ""),
    ("get", "/api/v1/projects", "List projects", "viewer", ""),
    ("post", "/api/v1/projects", "Create a project from an upload, inline code, or a Git repository ({name, git: {url, ref, …}}: fetched now; the answer holds the push webhook's URL and secret, shown once)", "operator", "upload"),
    ("get", "/api/v1/projects/{id}", "Get a project with its current version", "viewer", ""),
    ("patch", "/api/v1/projects/{id}", "Rename, describe, roll back a project, or replace its Git source", "operator", "json"),
    ("delete", "/api/v1/projects/{id}", "Delete a project no task uses", "operator", ""),
    ("get", "/api/v1/projects/{id}/versions", "List a project's versions", "viewer", ""),
    ("post", "/api/v1/projects/{id}/versions", "Upload a new version", "operator", "upload"),
    ("get", "/api/v1/projects/{id}/versions/{n}", "Get one version", "viewer", ""),
    ("get", "/api/v1/projects/{id}/versions/{n}/download", "Download a version's bundle", "viewer", ""),
    ("get", "/api/v1/projects/{id}/versions/{n}/files", "List a version's files (path, size, binary, symlink target, sha256), sorted by path", "viewer", ""),
    ("get", "/api/v1/projects/{id}/versions/{n}/files/{path}", "One file of a version: its text, or binary / too_large (over 1 MiB) without it; a path with `..` or a leading / is refused (400)", "viewer", ""),
    ("get", "/api/v1/projects/{id}/diff", "The files changed between two versions (added, removed, modified), with a unified line diff of each text file", "viewer", ""),
    ("post", "/api/v1/projects/{id}/sync", "Sync a Git project now: a new version if the ref's files changed", "operator", ""),
    ("post", "/api/v1/projects/{id}/push", "A Git server's push webhook (GitHub/Gitea: X-Hub-Signature-256 or X-Gitea-Signature; GitLab: X-Gitlab-Token): 202 when a sync started, 200 when the push is to another ref; 401 for any bad signature", "hook", "json?"),
    ("post", "/api/v1/projects/{id}/push/rotate", "Give a Git project's push webhook a new secret (shown once)", "operator", ""),
    ("get", "/api/v1/git-credentials", "List Git credentials (never their secrets)", "viewer", ""),
    ("put", "/api/v1/git-credentials/{name}", "Create or replace a Git credential {kind: token, username, token} or {kind: ssh_key, private_key, known_hosts}", "admin", "json"),
    ("delete", "/api/v1/git-credentials/{name}", "Delete a Git credential no project uses", "admin", ""),
    ("get", "/api/v1/tasks", "List tasks", "viewer", ""),
    ("post", "/api/v1/tasks", "Create a task", "operator", "json"),
    ("get", "/api/v1/tasks/{id}", "Get a task", "viewer", ""),
    ("patch", "/api/v1/tasks/{id}", "Change a task", "operator", "json"),
    ("delete", "/api/v1/tasks/{id}", "Delete a task", "operator", ""),
    ("post", "/api/v1/tasks/{id}/pause", "Pause a task's schedule", "operator", ""),
    ("post", "/api/v1/tasks/{id}/resume", "Resume a task's schedule", "operator", ""),
    ("post", "/api/v1/tasks/{id}/trigger", "Start a run now, optionally with {params}", "operator", "json?"),
    ("post", "/api/v1/tasks/{id}/invoke", "Run (optionally with {params}) and wait up to wait_s for the result", "operator", "json?"),
    ("get", "/api/v1/tasks/{id}/stats", "Counts by state and duration percentiles", "viewer", ""),
    ("get", "/api/v1/tasks/{id}/preview", "The next five fire times of the task's schedule", "viewer", ""),
    ("post", "/api/v1/schedules/validate", "Validate a schedule and preview its next five fire times (intervals counted from anchor)", "viewer", "json"),
    ("get", "/api/v1/runs", "List runs (task_id, state, worker_id, since, until, trigger, error)", "viewer", ""),
    ("get", "/api/v1/runs/{id}", "Get a run with its history", "viewer", ""),
    ("post", "/api/v1/runs/{id}/cancel", "Cancel a run", "operator", ""),
    ("post", "/api/v1/runs/{id}/retry", "Start a new run of the same task", "operator", ""),
    ("get", "/api/v1/runs/{id}/logs/search", "The lines of the run's log that contain q, with line numbers and byte offsets", "viewer", ""),
    ("get", "/api/v1/runs/{id}/logs", "The run's log as text; attempt=N for one attempt's (404 if the run has no such attempt); follow=true for SSE (log events, progress events while the run's environment is built, one end event)", "viewer", ""),
    ("get", "/api/v1/runs/{id}/events", "SSE of the run's state changes", "viewer", ""),
    ("get", "/api/v1/stats/runs", "Runs per time bucket: counts by state, success rate and duration percentiles (task_id, worker_id, trigger, error, since, until: 24 h to now by default, bucket seconds: picked for at most 60 buckets by default)", "viewer", ""),
    ("get", "/api/v1/runs/{id}/group", "The run's run group: its runs and what started what", "viewer", ""),
    ("get", "/api/v1/workers", "List live workers", "viewer", ""),
    ("get", "/api/v1/workers/{id}", "Get a worker", "viewer", ""),
    ("post", "/api/v1/workers/{id}/drain", "Ask a worker to drain", "operator", ""),
    ("post", "/api/v1/workers/{id}/undrain", "Take back a drain request", "operator", ""),
    ("delete", "/api/v1/workers/{id}", "Revoke an enrolled worker's credential", "admin", ""),
    ("get", "/api/v1/queues", "Jobs waiting in each broker queue", "viewer", ""),
    ("get", "/api/v1/enrolled-workers", "Enrolled worker identities, revoked or not, online or not", "admin", ""),
    ("get", "/api/v1/edge", "Where runners reach the edge, and whether its CA can be downloaded", "viewer", ""),
    ("get", "/api/v1/edge/ca.pem", "The cluster CA's certificate (PEM), which gateway runners trust the edge by", "viewer", ""),
    ("get", "/api/v1/worker-keys", "List enrollment keys (never the keys themselves)", "admin", ""),
    ("post", "/api/v1/worker-keys", "Create a one-time enrollment key (shown once)", "admin", "json"),
    ("get", "/api/v1/secrets", "List task secrets (names and timestamps, never values)", "viewer", ""),
    ("put", "/api/v1/secrets/{name}", "Create or replace a task secret {value}", "admin", "json"),
    ("delete", "/api/v1/secrets/{name}", "Delete a task secret no task declares", "admin", ""),
    ("get", "/api/v1/secrets/{name}/grants", "The projects whose tasks may read a secret", "admin", ""),
    ("put", "/api/v1/secrets/{name}/grants", "Replace a secret's grants {projects, all_projects}", "admin", "json"),
    ("delete", "/api/v1/secrets/{name}/grants", "Revoke every grant of a secret", "admin", ""),
    ("get", "/api/v1/audit", "The audit trail (actor, action, resource)", "admin", ""),
    ("get", "/api/v1/notifications/channels", "List alert channels (summaries, never credentials)", "admin", ""),
    ("post", "/api/v1/notifications/channels", "Create an alert channel {name, config{kind, …}}", "admin", "json"),
    ("get", "/api/v1/notifications/channels/{id}", "Get an alert channel", "admin", ""),
    ("patch", "/api/v1/notifications/channels/{id}", "Rename, enable, disable or reconfigure an alert channel", "admin", "json"),
    ("delete", "/api/v1/notifications/channels/{id}", "Delete an alert channel no rule uses", "admin", ""),
    ("post", "/api/v1/notifications/channels/{id}/test", "Queue a test alert to a channel (202 with the delivery)", "admin", ""),
    ("get", "/api/v1/notifications/rules", "List alert rules", "viewer", ""),
    ("post", "/api/v1/notifications/rules", "Create an alert rule (a global one needs admin)", "operator", "json"),
    ("get", "/api/v1/notifications/rules/{id}", "Get an alert rule", "viewer", ""),
    ("patch", "/api/v1/notifications/rules/{id}", "Change an alert rule", "operator", "json"),
    ("delete", "/api/v1/notifications/rules/{id}", "Delete an alert rule", "operator", ""),
    ("get", "/api/v1/notifications/deliveries", "The alert delivery history, newest first", "operator", ""),
    ("get", "/api/v1/notifications/deliveries/{id}", "Get an alert delivery", "operator", ""),
    ("get", "/api/v1/retention", "The global retention policy", "admin", ""),
    ("put", "/api/v1/retention", "Replace the global retention policy", "admin", "json"),
    ("get", "/api/v1/retention/preview", "What the pruner would delete now (dry run)", "admin", ""),
    ("patch", "/api/v1/runs/{id}", "Pin or unpin a run {keep}: a pinned run is never pruned", "operator", "json"),
    ("get", "/api/v1/tasks/{id}/hooks", "List a task's webhooks (never their secrets)", "viewer", ""),
    ("post", "/api/v1/tasks/{id}/hooks", "Create a webhook {name, auth: token|hmac, rate_per_min}: its secret and URL are shown only in this answer", "operator", "json"),
    ("post", "/api/v1/tasks/{id}/hooks/{hook_id}/rotate", "Give a webhook a new secret (shown once); the old one stops working at once", "operator", ""),
    ("delete", "/api/v1/tasks/{id}/hooks/{hook_id}", "Revoke a webhook", "operator", ""),
    ("post", "/api/v1/hooks/{hook_id}", "Call a webhook with the trigger body: 202 with the run, or with wait_s 200 with its result; authenticated by the hook's secret (Bearer or X-AntCode-Signature), Idempotency-Key honoured for 24 h; 401 for any bad credential, 429 with Retry-After past the hook's rate", "hook", "json?"),
    ("get", "/healthz", "Liveness", "none", ""),
    ("get", "/readyz", "Readiness: store and broker reachable", "none", ""),
    ("get", "/metrics", "Prometheus metrics", "none", ""),
];

fn query_params(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, ty: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}});
    let mut params = vec![];
    if method == "get"
        && [
            "/api/v1/projects",
            "/api/v1/tasks",
            "/api/v1/runs",
            "/api/v1/audit",
            "/api/v1/notifications/deliveries",
        ]
        .contains(&path)
    {
        params.push(json!({"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": 500}}));
        params.push(q("cursor", "string"));
    }
    match path {
        "/api/v1/runs" | "/api/v1/stats/runs" => {
            for name in ["task_id", "worker_id"] {
                params.push(q(name, "string"));
            }
            for (name, what) in [("since", "queued at or after"), ("until", "queued before")] {
                params.push(json!({"name": name, "in": "query", "required": false,
                    "description": format!("{what} (RFC 3339)"),
                    "schema": {"type": "string", "format": "date-time", "maxLength": bounds::TIME_CHARS}}));
            }
            params.push(json!({"name": "trigger", "in": "query", "required": false,
                "description": "how runs were started: manual, schedule, webhook, retry, …",
                "schema": {"type": "string", "maxLength": crate::service::runs::MAX_TRIGGER_CHARS}}));
            params.push(json!({"name": "error", "in": "query", "required": false,
                "description": "text the run's error contains, case ignored",
                "schema": {"type": "string", "maxLength": crate::service::runs::MAX_ERROR_FILTER_CHARS}}));
            if path == "/api/v1/stats/runs" {
                params.push(json!({"name": "bucket", "in": "query", "required": false,
                    "description": "bucket length in seconds; at most 1000 buckets a window of at most 400 days",
                    "schema": {"type": "integer", "minimum": 60, "maximum": 2_678_400}}));
            } else {
                params.push(json!({"name": "state", "in": "query", "required": false, "schema": {"type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"]}}));
            }
        }
        "/api/v1/audit" => {
            for name in ["actor", "action", "resource"] {
                params.push(q(name, "string"));
            }
        }
        "/api/v1/notifications/deliveries" => {
            for name in ["channel_id", "rule_id"] {
                params.push(q(name, "string"));
            }
            params.push(json!({"name": "state", "in": "query", "required": false,
                "schema": {"type": "string", "enum": ["pending", "sent", "failed"]}}));
        }
        "/api/v1/runs/{id}/logs" => {
            params.push(q("follow", "boolean"));
            params.push(json!({"name": "attempt", "in": "query", "required": false,
                "description": "one attempt's log, 1 for the first; not with follow",
                "schema": {"type": "integer", "minimum": 1}}));
            params.push(json!({"name": "format", "in": "query", "required": false,
                "description": "gzip: the log as a .log.gz file to download; not with follow",
                "schema": {"type": "string", "enum": ["text", "gzip"]}}));
            params.push(json!({"name": "Range", "in": "header", "required": false,
                "description": format!("one bytes= range of the log (bytes=-65536 is its tail), answered with 206 and Content-Range; at most {} bytes an answer", crate::logread::MAX_RANGE_BYTES),
                "schema": {"type": "string"}}));
        }
        "/api/v1/runs/{id}/logs/search" => {
            params.push(json!({"name": "q", "in": "query", "required": true,
                "description": "text to look for, ignoring ASCII case",
                "schema": {"type": "string", "minLength": 1, "maxLength": crate::logread::MAX_QUERY_CHARS}}));
            params.push(json!({"name": "attempt", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1}}));
        }
        "/api/v1/schedules/validate" => params.push(q("anchor", "string")),
        "/api/v1/projects/{id}/diff" => {
            for (name, what) in [("from", "the older version"), ("to", "the newer version")] {
                params.push(json!({"name": name, "in": "query", "required": true,
                    "description": what, "schema": {"type": "integer"}}));
            }
        }
        "/api/v1/tasks/{id}/invoke" => params
            .push(json!({"name": "wait_s", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 0, "maximum": 300}})),
        "/api/v1/hooks/{hook_id}" => {
            params.push(json!({"name": "wait_s", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 0, "maximum": 300}}));
            params.push(
                json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "a repeat within 24 h answers with the first call's run",
                "schema": {"type": "string", "minLength": 1,
                    "maxLength": antcode_core::hooks::MAX_KEY_LEN}}),
            );
            params.push(json!({"name": "X-AntCode-Signature", "in": "header", "required": false,
                "description": "hmac hooks: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>, within 300 s of now",
                "schema": {"type": "string"}}));
        }
        _ => {}
    }
    for seg in path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let schema = if name == "n" {
                json!({"type": "integer"})
            } else {
                json!({"type": "string"})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    params
}

const CRON_GRAMMAR: &str = "crontab(5): `minute hour day-of-month month day-of-week`, or a \
    leading `second` as a sixth field; `*`, `N`, `A-B`, `/step`, lists; weekdays 0-7 (0 and 7 = \
    Sunday) or SUN-SAT, months 1-12 or JAN-DEC; a day matching either day field fires when both \
    are restricted; or @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.";

/// A `$ref` to the component schema `name`.
fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `{items, next_cursor}` of `item`s: a page of a list (`next_cursor` null on the last one).
fn page_of(item: &str) -> Value {
    json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": schema_ref(item)},
        "next_cursor": {"type": ["string", "null"]}}})
}

/// `base` with more `fields` (name → schema), all of them required unless listed in `optional`.
/// Where a Git server sends a project's pushes, with `secret` (its schema).
fn push_hook(secret: Value) -> Value {
    let mut secret = secret;
    secret["type"] = json!(["string", "null"]);
    json!({"type": "object", "required": ["url", "content_type", "secret"], "properties": {
        "url": {"type": "string"}, "content_type": {"const": "application/json"},
        "secret": secret}})
}

fn with_fields(base: &str, fields: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = fields
        .as_object()
        .map(|f| {
            f.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({"allOf": [schema_ref(base),
        {"type": "object", "required": required, "properties": fields}]})
}

/// The component schemas the operations name: the model types' own and the request bodies',
/// derived from them (`utoipa::ToSchema`, so a field added to a type shows up here), and `Task`
/// and `AlertRule`, whose settings are their bodies' schemas.
fn components() -> Map<String, Value> {
    use antcode_core::model as m;
    let mut out = Map::new();
    add::<m::User>(&mut out);
    add::<m::ApiToken>(&mut out);
    add::<m::Project>(&mut out);
    add::<m::ProjectVersion>(&mut out);
    add::<m::Run>(&mut out);
    add::<m::RunHistoryEntry>(&mut out);
    add::<m::AuditEntry>(&mut out);
    add::<m::WorkerStatus>(&mut out);
    add::<m::WorkerKey>(&mut out);
    add::<m::WorkerRecord>(&mut out);
    add::<antcode_core::secrets::SecretMeta>(&mut out);
    add::<antcode_core::secrets::SecretGrant>(&mut out);
    add::<antcode_core::retention::RetentionPolicy>(&mut out);
    add::<antcode_core::hooks::Hook>(&mut out);
    add::<antcode_core::git::SyncStatus>(&mut out);
    add::<antcode_core::git::GitCredentialMeta>(&mut out);
    add::<antcode_core::alerting::AlertChannel>(&mut out);
    add::<antcode_core::alerting::Delivery>(&mut out);
    request_components(&mut out);
    let time = json!({"type": "string", "format": "date-time"});
    let stored = |body: &str, extra: Vec<(&str, Value)>, required: Value| {
        let mut schema = out[body].clone();
        schema["additionalProperties"] = json!(true);
        for (name, field) in extra {
            schema["properties"][name] = field;
        }
        schema["required"] = required;
        schema
    };
    let rule = stored(
        "RuleBody",
        vec![
            ("id", json!({"type": "string"})),
            ("created_at", time.clone()),
            ("updated_at", time.clone()),
        ],
        json!(["id", "name", "enabled", "created_at", "updated_at"]),
    );
    let task = stored(
        "TaskBody",
        vec![
            ("id", json!({"type": "string"})),
            (
                "next_fire_at",
                json!({"type": ["string", "null"], "format": "date-time"}),
            ),
            ("created_at", time.clone()),
            ("updated_at", time),
        ],
        json!([
            "id",
            "name",
            "project_id",
            "paused",
            "created_at",
            "updated_at"
        ]),
    );
    out.insert("AlertRule".into(), rule);
    out.insert("Task".into(), task);
    out.insert(
        "Problem".into(),
        json!({"type": "object",
        "description": "RFC 9457 problem details; detail says what to fix",
        "required": ["type", "title", "status", "detail"],
        "properties": {"type": {"type": "string", "description": "urn:antcode:problem:KIND"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"}}}),
    );
    out
}

/// The success answers of an operation, where they are documented beyond "success": each
/// status with its body schema (`Null`: no body).
fn success(method: &str, path: &str) -> Vec<(&'static str, Value)> {
    let time = json!({"type": "string", "format": "date-time"});
    let secret = |what: &str| json!({"type": "string", "description": what});
    let ok = |schema: Value| vec![("200", schema)];
    let created = |schema: Value| vec![("201", schema)];
    match (method, path) {
        ("post", "/api/v1/auth/login") => ok(json!({"type": "object",
            "required": ["token", "expires_at", "user"], "properties": {
                "token": secret("the bearer token of this session"),
                "expires_at": time, "user": schema_ref("User")}})),
        ("get", "/api/v1/auth/me") => ok(json!({"type": "object",
            "required": ["user", "role", "credential"], "properties": {
                "user": schema_ref("User"), "role": schema_ref("Role"),
                "credential": {"type": "string", "enum": ["session", "api"]}}})),
        ("get", "/api/v1/users") => ok(page_of("User")),
        ("post", "/api/v1/users") => created(schema_ref("User")),
        ("get" | "patch", "/api/v1/users/{id}") => ok(schema_ref("User")),
        ("get", "/api/v1/tokens") => ok(page_of("ApiToken")),
        ("post", "/api/v1/tokens") => created(with_fields(
            "ApiToken",
            json!({"token": secret("the token itself, shown only in this answer")}),
            &[],
        )),
        ("get", "/api/v1/projects") => ok(page_of("Project")),
        ("post", "/api/v1/projects") => created(with_fields(
            "Project",
            json!({"version": schema_ref("ProjectVersion"), "push": push_hook(secret(
                "the push webhook's secret (null without a secret key), shown only in this answer"))}),
            &["push"],
        )),
        ("post", "/api/v1/projects/{id}/sync") => ok(schema_ref("SyncStatus")),
        ("post", "/api/v1/projects/{id}/push") => {
            let answer = json!({"type": "object", "required": ["status"], "properties": {
                "status": {"enum": ["syncing", "ignored", "pong"]},
                "detail": {"type": "string"}}});
            vec![("200", answer.clone()), ("202", answer)]
        }
        ("post", "/api/v1/projects/{id}/push/rotate") => ok(push_hook(secret(
            "the new secret, shown only in this answer",
        ))),
        ("get", "/api/v1/git-credentials") => ok(page_of("GitCredentialMeta")),
        ("put", "/api/v1/git-credentials/{name}") => vec![
            ("200", schema_ref("GitCredentialMeta")),
            ("201", schema_ref("GitCredentialMeta")),
        ],
        ("get" | "patch", "/api/v1/projects/{id}") => ok(with_fields(
            "Project",
            json!({"version": schema_ref("ProjectVersion")}),
            &[],
        )),
        ("get", "/api/v1/projects/{id}/versions") => ok(page_of("ProjectVersion")),
        ("post", "/api/v1/projects/{id}/versions") => created(schema_ref("ProjectVersion")),
        ("get", "/api/v1/projects/{id}/versions/{n}") => ok(schema_ref("ProjectVersion")),
        ("get", "/api/v1/tasks") => ok(page_of("Task")),
        ("post", "/api/v1/tasks") => created(schema_ref("Task")),
        ("get" | "patch", "/api/v1/tasks/{id}")
        | ("post", "/api/v1/tasks/{id}/pause" | "/api/v1/tasks/{id}/resume") => {
            ok(schema_ref("Task"))
        }
        ("post", "/api/v1/tasks/{id}/trigger") => created(schema_ref("Run")),
        ("post", "/api/v1/tasks/{id}/invoke") => vec![
            (
                "200",
                with_fields(
                    "Run",
                    json!({
                "output": {"type": "string", "description": "the end of the run's log"},
                "output_truncated": {"type": "boolean"}}),
                    &[],
                ),
            ),
            // Still running after wait_s.
            ("202", schema_ref("Run")),
        ],
        ("get", "/api/v1/runs") => ok(page_of("Run")),
        ("get", "/api/v1/runs/{id}") => ok(with_fields(
            "Run",
            json!({
            "history": {"type": "array", "items": schema_ref("RunHistoryEntry")},
            "waiting": {"type": "string", "description": "why a queued run is not leased yet"}}),
            &["waiting"],
        )),
        ("patch", "/api/v1/runs/{id}") | ("post", "/api/v1/runs/{id}/cancel") => {
            ok(schema_ref("Run"))
        }
        ("post", "/api/v1/runs/{id}/retry") => created(schema_ref("Run")),
        ("get", "/api/v1/runs/{id}/logs") => ok(json!({"type": "string"})),
        ("get", "/api/v1/runs/{id}/logs/search") => ok(json!({"type": "object",
            "required": ["matches", "truncated", "lines", "bytes"], "properties": {
            "matches": {"type": "array", "maxItems": crate::logread::MAX_MATCHES, "items": {"type": "object",
                "required": ["line", "offset", "text"], "properties": {
                "line": {"type": "integer", "minimum": 1}, "offset": {"type": "integer", "minimum": 0},
                "text": {"type": "string"}}}},
            "truncated": {"type": "boolean"}, "lines": {"type": "integer", "minimum": 0},
            "bytes": {"type": "integer", "minimum": 0}}})),
        ("get", "/api/v1/workers") => ok(page_of("WorkerStatus")),
        ("get", "/api/v1/workers/{id}") => ok(schema_ref("WorkerStatus")),
        ("get", "/api/v1/worker-keys") => ok(page_of("WorkerKey")),
        ("get", "/api/v1/edge") => ok(
            json!({"type": "object", "required": ["url", "ca"], "properties": {
            "url": {"type": ["string", "null"], "description": "https://EDGE_HOST:PORT, null when unknown"},
            "ca": {"type": "boolean"}}}),
        ),
        ("get", "/api/v1/edge/ca.pem") => ok(json!({"type": "string"})),
        ("post", "/api/v1/worker-keys") => created(with_fields(
            "WorkerKey",
            json!({"key": secret("the enrollment key itself, shown only in this answer")}),
            &[],
        )),
        ("get", "/api/v1/enrolled-workers") => ok(page_of("WorkerRecord")),
        ("get", "/api/v1/audit") => ok(page_of("AuditEntry")),
        ("post", "/api/v1/workers/{id}/drain" | "/api/v1/workers/{id}/undrain") => {
            ok(schema_ref("WorkerStatus"))
        }
        ("delete", "/api/v1/workers/{id}") => ok(schema_ref("WorkerRecord")),
        ("get", "/api/v1/queues") => ok(json!({"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"type": "object",
                "required": ["name", "depth"], "properties": {"name": {"type": "string"},
                    "depth": {"type": "integer", "minimum": 0}}}},
                "next_cursor": {"type": ["string", "null"]}}})),
        ("get", "/api/v1/secrets") => ok(page_of("SecretMeta")),
        ("put", "/api/v1/secrets/{name}") => {
            vec![
                ("200", schema_ref("SecretMeta")),
                ("201", schema_ref("SecretMeta")),
            ]
        }
        ("get" | "put", "/api/v1/secrets/{name}/grants") => ok(page_of("SecretGrant")),
        ("get" | "put", "/api/v1/retention") => ok(schema_ref("RetentionPolicy")),
        ("get", "/api/v1/tasks/{id}/hooks") => ok(page_of("Hook")),
        ("post", "/api/v1/tasks/{id}/hooks" | "/api/v1/tasks/{id}/hooks/{hook_id}/rotate") => {
            let shown = json!({"type": "object", "required": ["hook", "secret", "url"],
                "properties": {"hook": schema_ref("Hook"),
                    "secret": secret("the hook's secret, shown only in this answer"),
                    "url": {"type": "string", "description": "where to call it"}}});
            match path.ends_with("/rotate") {
                true => ok(shown),
                false => created(shown),
            }
        }
        ("get", "/api/v1/notifications/channels") => ok(page_of("AlertChannel")),
        ("post", "/api/v1/notifications/channels") => created(schema_ref("AlertChannel")),
        ("get" | "patch", "/api/v1/notifications/channels/{id}") => ok(schema_ref("AlertChannel")),
        ("post", "/api/v1/notifications/channels/{id}/test") => {
            vec![("202", schema_ref("Delivery"))]
        }
        ("get", "/api/v1/notifications/rules") => ok(page_of("AlertRule")),
        ("post", "/api/v1/notifications/rules") => created(schema_ref("AlertRule")),
        ("get" | "patch", "/api/v1/notifications/rules/{id}") => ok(schema_ref("AlertRule")),
        ("get", "/api/v1/notifications/deliveries") => ok(page_of("Delivery")),
        ("get", "/api/v1/notifications/deliveries/{id}") => ok(schema_ref("Delivery")),
        ("get", "/api/v1/tasks/{id}/preview") => ok(json!({"type": "object",
            "required": ["task_id", "paused", "description", "next"], "properties": {
                "task_id": {"type": "string"}, "paused": {"type": "boolean"},
                "description": {"type": ["string", "null"]},
                "next": {"type": "array", "maxItems": 5,
                    "items": {"type": "string", "format": "date-time"}}}})),
        ("get", "/api/v1/tasks/{id}/stats") => ok(json!({"type": "object",
            "required": ["task_id", "runs", "counts", "duration_ms_p50", "duration_ms_p95"],
            "description": "over the task's latest 1000 runs",
            "properties": {"task_id": {"type": "string"},
                "runs": {"type": "integer", "minimum": 0, "maximum": 1000},
                "counts": {"type": "object", "description": "runs by state",
                    "additionalProperties": {"type": "integer", "minimum": 0}},
                "duration_ms_p50": {"type": ["integer", "null"]},
                "duration_ms_p95": {"type": ["integer", "null"]}}})),
        ("get", "/api/v1/stats/runs") => ok(run_stats_schema()),
        ("get", "/api/v1/runs/{id}/group") => ok(json!({"type": "object",
            "required": ["group", "runs", "edges", "truncated"], "properties": {
                "group": {"type": "string", "description": "the id of the group's first run"},
                "runs": {"type": "array", "maxItems": 1000, "items": schema_ref("Run")},
                "edges": {"type": "array", "items": {"type": "object",
                    "required": ["from", "to", "kind"], "properties": {
                        "from": {"type": "string"}, "to": {"type": "string"},
                        "kind": {"type": "string"}}}},
                "truncated": {"type": "boolean"}}})),
        ("get", "/api/v1/retention/preview") => ok(json!({"type": "object",
            "required": ["policy", "runs", "audit", "slices"], "properties": {
                "policy": schema_ref("RetentionPolicy"),
                "runs": {"type": "integer", "minimum": 0,
                    "description": "runs the policies expire now (an upper bound)"},
                "audit": {"type": "integer", "minimum": 0},
                "slices": {"type": "array", "items": {"type": "object",
                    "required": ["ended_before", "runs"], "properties": {
                        "task_id": {"type": ["string", "null"]},
                        "ended_before": {"type": "string", "format": "date-time"},
                        "runs": {"type": "integer", "minimum": 0}}}}}})),
        ("post", "/api/v1/hooks/{hook_id}") => vec![
            (
                "200",
                json!({"type": "object", "description": "with wait_s, once the run ended",
            "required": ["run_id", "state", "exit_code", "result", "output", "output_truncated"],
            "properties": {"run_id": {"type": "string"}, "state": schema_ref("RunState"),
                "exit_code": {"type": ["integer", "null"]}, "result": {},
                "output": {"type": "string"}, "output_truncated": {"type": "boolean"}}}),
            ),
            // The run started (or is still running after wait_s).
            (
                "202",
                json!({"type": "object", "required": ["run_id", "run"], "properties": {
                "run_id": {"type": "string"}, "run": schema_ref("Run")}}),
            ),
        ],
        ("get", "/api/v1/projects/{id}/versions/{n}/files") => ok(file_listing()),
        ("get", "/api/v1/projects/{id}/versions/{n}/files/{path}") => ok(file_text()),
        ("get", "/api/v1/projects/{id}/diff") => ok(version_diff()),
        ("get", "/api/v1/projects/{id}/versions/{n}/download") => {
            ok(json!({"type": "string", "contentMediaType": "application/octet-stream"}))
        }
        ("get", "/api/v1/runs/{id}/events") => {
            ok(json!({"type": "string", "description": "text/event-stream"}))
        }
        ("get", "/healthz") => ok(json!({"type": "object", "required": ["status"],
            "properties": {"status": {"const": "ok"}}})),
        ("get", "/readyz") => {
            let state = json!({"type": "object",
            "required": ["status", "store", "broker"], "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "store": {"enum": ["ok", "unavailable"]},
                "broker": {"enum": ["ok", "unavailable"]}}});
            vec![("200", state.clone()), ("503", state)]
        }
        ("get", "/metrics") => ok(json!({"type": "string"})),
        ("post", "/api/v1/auth/logout")
        | ("delete", "/api/v1/projects/{id}" | "/api/v1/tasks/{id}" | "/api/v1/tokens/{id}")
        | ("delete", "/api/v1/users/{id}" | "/api/v1/secrets/{name}")
        | ("delete", "/api/v1/git-credentials/{name}")
        | ("delete", "/api/v1/secrets/{name}/grants" | "/api/v1/tasks/{id}/hooks/{hook_id}")
        | ("delete", "/api/v1/notifications/channels/{id}" | "/api/v1/notifications/rules/{id}") => {
            vec![("204", Value::Null)]
        }
        _ => success_schema(method, path).map_or_else(Vec::new, ok),
    }
}

/// `GET …/versions/{n}/files`: a version's files, bounded.
fn file_listing() -> Value {
    use crate::service::files::MAX_LISTED;
    json!({"type": "object", "required": ["files", "truncated"], "properties": {
        "files": {"type": "array", "maxItems": MAX_LISTED, "items": {"type": "object",
            "required": ["path", "size", "binary", "sha256"], "properties": {
                "path": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
                "binary": {"type": "boolean"},
                "link": {"type": "string", "description": "a symlink's target"},
                "sha256": {"type": "string"}}}},
        "truncated": {"type": "boolean", "description": format!("more than {MAX_LISTED} entries; the rest are left out")}}})
}

/// `GET …/versions/{n}/files/{path}`: one file's text, or why there is none.
fn file_text() -> Value {
    json!({"type": "object", "required": ["path", "size", "binary", "too_large"], "properties": {
        "path": {"type": "string"}, "size": {"type": "integer", "minimum": 0},
        "binary": {"type": "boolean", "description": "not UTF-8 text: no `text`"},
        "too_large": {"type": "boolean", "description": format!(
            "over {} bytes: no `text`", crate::service::files::MAX_TEXT_BYTES)},
        "link": {"type": "string", "description": "a symlink's target: no `text`"},
        "text": {"type": "string"}}})
}

/// `GET /projects/{id}/diff`: the changed files, bounded.
fn version_diff() -> Value {
    use crate::service::files as f;
    let size = json!({"type": ["integer", "null"], "minimum": 0});
    json!({"type": "object", "required": ["from", "to", "files", "unchanged", "truncated"],
        "properties": {"from": {"type": "integer"}, "to": {"type": "integer"},
        "files": {"type": "array", "maxItems": f::MAX_DIFF_FILES, "items": {"type": "object",
            "required": ["path", "status", "old_size", "new_size", "binary", "truncated"],
            "properties": {"path": {"type": "string"},
                "status": {"enum": ["added", "removed", "modified"]},
                "old_size": size, "new_size": size,
                "binary": {"type": "boolean", "description": "either side is binary or a symlink: no diff"},
                "truncated": {"type": "boolean", "description": "the diff was cut or left out at a bound"},
                "diff": {"type": "string", "description": format!(
                    "unified diff, at most {} bytes", f::MAX_FILE_DIFF_BYTES)}}}},
        "unchanged": {"type": "integer", "minimum": 0},
        "truncated": {"type": "boolean", "description": format!(
            "files or diffs were left out: at most {} changed files, {} bytes of diff in all, \
             files of at most {} bytes", f::MAX_DIFF_FILES, f::MAX_DIFF_BYTES, f::MAX_TEXT_BYTES)}}})
}

/// The 200 answer of an operation, where it is documented beyond "success".
fn success_schema(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("post", "/api/v1/schedules/validate") => Some(json!({"type": "object",
            "required": ["valid", "schedule", "description", "next"], "properties": {
            "valid": {"type": "boolean"},
            "schedule": {"type": "object"},
            "description": {"type": "string",
                "description": "the schedule in words, e.g. \"At 08:30, Monday through Friday, Asia/Shanghai\""},
            "next": {"type": "array", "maxItems": 5,
                "items": {"type": "string", "format": "date-time"}}}})),
        _ => None,
    }
}

/// The component schema of each operation's JSON body: `(method, path, component)`. The PATCH
/// bodies merged over what is stored (`*Patch`) are the POST body's schema with no field
/// required.
#[rustfmt::skip]
const BODIES: &[(&str, &str, &str)] = &[
    ("post", "/api/v1/auth/login", "LoginBody"),
    ("post", "/api/v1/users", "NewUser"),
    ("patch", "/api/v1/users/{id}", "UserPatch"),
    ("post", "/api/v1/tokens", "NewToken"),
    ("put", "/api/v1/secrets/{name}", "SecretBody"),
    ("put", "/api/v1/secrets/{name}/grants", "GrantsBody"),
    ("post", "/api/v1/tasks/{id}/hooks", "HookBody"),
    ("post", "/api/v1/tasks/{id}/trigger", "RunInput"),
    ("post", "/api/v1/tasks/{id}/invoke", "RunInput"),
    ("post", "/api/v1/hooks/{hook_id}", "RunInput"),
    ("post", "/api/v1/tasks", "TaskBody"),
    ("patch", "/api/v1/tasks/{id}", "TaskPatch"),
    ("patch", "/api/v1/projects/{id}", "ProjectPatch"),
    ("put", "/api/v1/git-credentials/{name}", "CredentialBody"),
    ("post", "/api/v1/schedules/validate", "Schedule"),
    ("post", "/api/v1/worker-keys", "NewKey"),
    ("post", "/api/v1/notifications/channels", "ChannelBody"),
    ("patch", "/api/v1/notifications/channels/{id}", "ChannelPatch"),
    ("post", "/api/v1/notifications/rules", "RuleBody"),
    ("patch", "/api/v1/notifications/rules/{id}", "RulePatch"),
    ("put", "/api/v1/retention", "RetentionPolicy"),
    ("patch", "/api/v1/runs/{id}", "RunPatch"),
];

/// The JSON body schema of an operation: a `$ref` to the schema derived from the type its
/// handler parses ([`BODIES`]), a generic object for the bodies no handler reads as a type.
fn json_schema(method: &str, path: &str) -> Value {
    BODIES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or_else(
            || json!({"type": "object"}),
            |(_, _, name)| schema_ref(name),
        )
}

/// Adds `T`'s schema, and those it names, to `out` under their names.
fn add<T: utoipa::ToSchema>(out: &mut Map<String, Value>) {
    let mut deps = vec![];
    T::schemas(&mut deps);
    for (name, schema) in deps {
        out.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    let schema = serde_json::to_value(T::schema()).unwrap_or_default();
    out.insert(T::name().into_owned(), schema);
}

/// The request bodies' schemas, derived (`utoipa::ToSchema`) from the types the handlers parse,
/// so a field added to one shows up here; then [`bounds_overlay`] states the bounds the
/// handlers check. Answers the bounds that found no property (a test keeps this empty).
fn request_components(out: &mut Map<String, Value>) -> Vec<String> {
    use crate::routes as r;
    use crate::service as s;
    add::<r::auth::LoginBody>(out);
    add::<r::users::NewUser>(out);
    add::<r::users::UserPatch>(out);
    add::<s::tokens::NewToken>(out);
    add::<r::secrets::SecretBody>(out);
    add::<s::secrets::GrantsBody>(out);
    add::<r::hooks::HookBody>(out);
    add::<s::runs::RunInput>(out);
    add::<s::tasks::TaskBody>(out);
    add::<s::projects::ProjectPatch>(out);
    add::<s::projects::GitCreate>(out);
    add::<s::git::CredentialBody>(out);
    add::<s::workers::NewKey>(out);
    add::<r::notifications::ChannelBody>(out);
    add::<r::notifications::RuleBody>(out);
    add::<r::retention::RunPatch>(out);
    add::<antcode_core::retention::RetentionPolicy>(out);
    // The rule's flattened spec, as one object (a PATCH body must be able to leave any out).
    if let Some(rule) = out.get("RuleBody").cloned() {
        let merged = merge_all_of(out, rule);
        out.insert("RuleBody".into(), merged);
    }
    let mut missed = vec![];
    for (component, property, bound) in bounds_overlay() {
        let hits = out
            .get_mut(component)
            .map_or(0, |schema| overlay(schema, property, &bound));
        if hits == 0 {
            missed.push(format!("{component}.{property}"));
        }
    }
    close_tagged_variants(out);
    for (post, patch) in [
        ("TaskBody", "TaskPatch"),
        ("ChannelBody", "ChannelPatch"),
        ("RuleBody", "RulePatch"),
    ] {
        let mut schema = out[post].clone();
        if let Some(o) = schema.as_object_mut() {
            o.remove("required");
        }
        out.insert(patch.into(), schema);
    }
    missed
}

/// utoipa derives an internally tagged enum of types (`ChannelConfig`: `kind` and a webhook,
/// SMTP, … configuration) as `oneOf` parts, each the `allOf` of the type and `{tag}`. When the
/// type is closed (`additionalProperties: false`) that refuses every body, since the type does
/// not know the tag: each such part becomes one object, closed as its type was.
fn close_tagged_variants(out: &mut Map<String, Value>) {
    let tagged: Vec<String> = out
        .iter()
        .filter(|(_, s)| {
            s["oneOf"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|p| p.get("allOf").is_some()))
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in tagged {
        let mut schema = out[&name].clone();
        for part in schema["oneOf"].as_array_mut().into_iter().flatten() {
            let Some(parts) = part.get("allOf").and_then(Value::as_array) else {
                continue;
            };
            let closed = parts.iter().any(|p| {
                let r = p["$ref"].as_str().unwrap_or_default();
                out.get(r.trim_start_matches("#/components/schemas/"))
                    .is_some_and(|t| t["additionalProperties"] == json!(false))
            });
            let mut merged = merge_all_of(out, part.clone());
            if closed {
                merged["additionalProperties"] = json!(false);
            }
            *part = merged;
        }
        out.insert(name, schema);
    }
}

/// `schema`'s `allOf` parts (`$ref`s resolved in `out`) as one object.
fn merge_all_of(out: &Map<String, Value>, schema: Value) -> Value {
    let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
        return schema;
    };
    let mut merged = json!({"type": "object", "properties": {}, "required": []});
    for part in parts {
        let part = match part["$ref"].as_str() {
            Some(r) => out
                .get(r.trim_start_matches("#/components/schemas/"))
                .cloned()
                .unwrap_or_default(),
            None => part.clone(),
        };
        if let Some(props) = part["properties"].as_object() {
            for (k, v) in props {
                merged["properties"][k] = v.clone();
            }
        }
        if let (Some(req), Some(all)) = (
            part["required"].as_array(),
            merged["required"].as_array_mut(),
        ) {
            all.extend(req.iter().cloned());
        }
    }
    if let Some(d) = schema.get("description") {
        merged["description"] = d.clone();
    }
    merged
}

/// Lays `bound` over every property `name` of `schema` (through `oneOf`, `anyOf`, `allOf`),
/// keeping a nullable type nullable; answers how many it found.
fn overlay(schema: &mut Value, name: &str, bound: &Value) -> usize {
    let mut hits = 0;
    if let Some(prop) = schema.get_mut("properties").and_then(|p| p.get_mut(name)) {
        let nullable = prop["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null")));
        if let (Some(p), Some(b)) = (prop.as_object_mut(), bound.as_object()) {
            for (k, v) in b {
                p.insert(k.clone(), v.clone());
            }
            if nullable {
                if let Some(ty) = p.get("type").and_then(Value::as_str) {
                    p.insert("type".into(), json!([ty, "null"]));
                }
                // An enum lists every value the property takes, null too.
                if let Some(values) = p.get_mut("enum").and_then(Value::as_array_mut) {
                    if !values.contains(&Value::Null) {
                        values.push(Value::Null);
                    }
                }
            }
        }
        hits += 1;
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get_mut(key).and_then(Value::as_array_mut) {
            hits += parts
                .iter_mut()
                .map(|p| overlay(p, name, bound))
                .sum::<usize>();
        }
    }
    hits
}

/// What the handlers check of each request body field, stated on the derived schemas: a bound
/// named once, as the constant the check uses (utoipa's `#[schema(max_length = …)]` takes only
/// literals). `(component, property, schema keywords laid over the derived ones)`.
fn bounds_overlay() -> Vec<(&'static str, &'static str, Value)> {
    use antcode_core::{alerting, flow, git, hooks, model, params, retention};
    use antcode_notify as notify;
    let range = |least: u64, most: u64| json!({"minimum": least, "maximum": most});
    let str_range = |least: usize, most: usize| json!({"type": "string", "minLength": least, "maxLength": most});
    let time = json!({"type": "string", "format": "date-time", "maxLength": bounds::TIME_CHARS});
    let mut cron = bounds::string(bounds::CRON_CHARS);
    cron["description"] = CRON_GRAMMAR.into();
    let links = json!({"maxItems": flow::MAX_LINKS});
    let labels = bounds::string_map(
        bounds::LABELS,
        bounds::LABEL_KEY_CHARS,
        bounds::LABEL_VALUE_CHARS,
    );
    let env = bounds::string_map(
        bounds::ENV_VARS,
        bounds::ENV_NAME_CHARS,
        bounds::ENV_VALUE_CHARS,
    );
    let args = bounds::strings(bounds::ARGS, bounds::ARG_CHARS);
    let days = range(1, retention::MAX_DAYS.into());
    let keep_last = range(1, retention::MAX_KEEP_LAST.into());
    let limit = range(1, ConcurrencyKey::MAX_LIMIT.into());
    let git_path = bounds::string(git::MAX_PATH_CHARS);
    let seconds = crate::routes::notifications::MAX_RULE_SECONDS;
    let template = bounds::string(antcode_notify::template::MAX_TEMPLATE_LEN);
    let secret = bounds::string(crate::service::git::MAX_SECRET_CHARS);
    let enumerated = |values: &[&str]| json!({"type": "string", "enum": values});
    let param_name = json!({"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{}}}$", params::MAX_NAME_LEN)});
    // The notifier counts bytes; a string of at most that many bytes has at most as many
    // characters, so `maxLength` is a true bound (and the text says the rest).
    let bytes = |most: usize| {
        json!({"type": "string", "maxLength": most,
        "description": format!("at most {most} bytes (UTF-8)")})
    };
    let url = json!({"type": "string", "maxLength": notify::MAX_URL_LEN, "format": "uri",
        "description": format!("an http or https URL, at most {} bytes", notify::MAX_URL_LEN)});
    let field = bytes(notify::MAX_FIELD_LEN);
    let defaults = model::RunLimits::default();
    let mut out = vec![
        ("NewUser", "username", str_range(1, bounds::USERNAME_CHARS)),
        (
            "NewUser",
            "password",
            json!({"minLength": bounds::PASSWORD_MIN_CHARS,
            "description": format!("at most {} bytes (UTF-8)", bounds::PASSWORD_BYTES)}),
        ),
        (
            "UserPatch",
            "password",
            json!({"minLength": bounds::PASSWORD_MIN_CHARS,
            "description": format!("at most {} bytes (UTF-8)", bounds::PASSWORD_BYTES)}),
        ),
        (
            "NewToken",
            "scopes",
            json!({"minItems": 1,
            "items": enumerated(&["read", "write", "admin"])}),
        ),
        (
            "NewToken",
            "name",
            json!({"minLength": 1, "maxLength": crate::service::tokens::MAX_NAME_BYTES,
            "description": "at most this many bytes (UTF-8), not only spaces"}),
        ),
        (
            "NewKey",
            "note",
            json!({"maxLength": crate::service::workers::MAX_KEY_NOTE_BYTES,
            "description": "at most this many bytes (UTF-8)"}),
        ),
        (
            "NewKey",
            "queues",
            json!({"minItems": 1, "maxItems": crate::service::workers::MAX_KEY_QUEUES,
            "items": {"type": "string", "minLength": 1,
                "maxLength": crate::service::workers::MAX_QUEUE_NAME_BYTES,
                "pattern": "^[A-Za-z0-9._-]+$"}}),
        ),
        ("NewKey", "labels", {
            let (most, key, value) = crate::service::workers::WORKER_LABELS;
            json!({"maxProperties": most,
                "propertyNames": {"minLength": 1, "maxLength": key},
                "additionalProperties": {"type": "string", "maxLength": value}})
        }),
        (
            "NewKey",
            "ttl_s",
            range(1, crate::service::workers::MAX_KEY_TTL_S),
        ),
        (
            "NewToken",
            "expires_in_s",
            range(0, crate::service::tokens::MAX_TTL_S),
        ),
        (
            "SecretBody",
            "value",
            json!({"maxLength": antcode_core::secrets::MAX_VALUE_LEN,
            "description": "at most this many bytes (UTF-8)"}),
        ),
        (
            "GrantsBody",
            "projects",
            bounds::strings(bounds::GRANTS, 64),
        ),
        ("HookBody", "name", bounds::string(hooks::MAX_NAME_LEN)),
        (
            "HookBody",
            "auth",
            json!({"enum": ["token", "hmac"], "default": "token"}),
        ),
        (
            "HookBody",
            "rate_per_min",
            json!({"minimum": hooks::RATE_PER_MIN.0,
            "maximum": hooks::RATE_PER_MIN.1, "default": 60}),
        ),
        (
            "RunInput",
            "params",
            json!({"description":
            "checked against the task's params schema (422 naming every bad field); at most 64 KiB as JSON"}),
        ),
        ("RunInput", "args", args.clone()),
        ("RunInput", "env", env.clone()),
        ("TaskBody", "name", bounds::string(bounds::NAME_CHARS)),
        (
            "TaskBody",
            "entrypoint",
            bounds::string(bounds::ENTRYPOINT_CHARS),
        ),
        ("TaskBody", "args", args),
        ("TaskBody", "env", env),
        (
            "TaskBody",
            "public_env",
            bounds::strings(bounds::ENV_VARS, bounds::ENV_NAME_CHARS),
        ),
        (
            "TaskBody",
            "secrets",
            bounds::strings(bounds::SECRETS, MAX_SECRET_NAME),
        ),
        ("TaskBody", "queue", bounds::string(bounds::QUEUE_CHARS)),
        ("TaskBody", "labels", labels.clone()),
        (
            "TaskBody",
            "timeout_s",
            range(1, crate::service::tasks::MAX_TIMEOUT_S),
        ),
        (
            "TaskBody",
            "overlap",
            enumerated(crate::service::tasks::OVERLAP),
        ),
        (
            "TaskBody",
            "misfire",
            enumerated(crate::service::tasks::MISFIRE),
        ),
        ("ParamSchema", "type", enumerated(&["object"])),
        (
            "ParamSchema",
            "properties",
            json!({"maxProperties": params::MAX_PROPERTIES, "propertyNames": param_name.clone()}),
        ),
        (
            "ParamSchema",
            "required",
            json!({"items": param_name, "description": "names declared in properties"}),
        ),
        (
            "TaskBody",
            "schedule_params",
            json!({"description": format!(
                "the params of its scheduled runs, checked against params; at most {} bytes as JSON",
                params::MAX_PARAMS_BYTES)}),
        ),
        (
            "TaskBody",
            "triggers_per_min",
            range(1, crate::service::tasks::MAX_TRIGGERS_PER_MIN.into()),
        ),
        ("TaskBody", "needs", links.clone()),
        ("TaskBody", "max_concurrency", limit.clone()),
        ("RetryPolicy", "max_attempts", range(1, 100)),
        ("RetryPolicy", "backoff_s", range(0, 86_400)),
        (
            "RetryPolicy",
            "max_backoff_s",
            range(0, crate::service::tasks::MAX_TIMEOUT_S),
        ),
        ("Schedule", "at", time.clone()),
        ("Schedule", "start", time.clone()),
        ("Schedule", "end", time),
        ("Schedule", "every_s", json!({"minimum": 1})),
        ("Schedule", "cron", cron),
        (
            "Schedule",
            "timezone",
            bounds::string(bounds::TIMEZONE_CHARS),
        ),
        (
            "NetworkPolicy",
            "allow",
            json!({"maxItems": model::NetworkPolicy::MAX_ALLOW,
            "items": {"type": "string", "maxLength": model::NetworkPolicy::MAX_ENTRY_CHARS,
                "pattern": "^(\\*|\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$"}}),
        ),
        ("TaskRetention", "days", days.clone()),
        ("TaskRetention", "keep_last", keep_last.clone()),
        ("RetentionPolicy", "runs_days", days.clone()),
        ("RetentionPolicy", "audit_days", days),
        ("RetentionPolicy", "runs_keep_last", keep_last),
        ("Next", "for_each", bounds::string(flow::MAX_FIELD_LEN)),
        ("Preference", "labels", labels),
        (
            "Preference",
            "fallback_s",
            range(1, model::Preference::MAX_FALLBACK_S),
        ),
        (
            "ConcurrencyKey",
            "key",
            json!({"type": "string", "minLength": 1,
            "maxLength": ConcurrencyKey::MAX_KEY_BYTES,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$",
            "description": "at most this many bytes of printable characters, not only spaces"}),
        ),
        ("ConcurrencyKey", "limit", limit),
        ("ProjectPatch", "name", bounds::string(bounds::NAME_CHARS)),
        (
            "ProjectPatch",
            "description",
            bounds::string(bounds::DESCRIPTION_CHARS),
        ),
        ("GitCreate", "name", bounds::string(bounds::NAME_CHARS)),
        (
            "GitCreate",
            "description",
            bounds::string(bounds::DESCRIPTION_CHARS),
        ),
        ("GitSource", "url", bounds::string(git::MAX_URL_CHARS)),
        ("GitSource", "ref", git_path.clone()),
        ("GitSource", "subdir", git_path.clone()),
        (
            "GitSource",
            "entrypoint",
            bounds::string(git::MAX_ENTRYPOINT_CHARS),
        ),
        ("GitSource", "requirements", git_path),
        (
            "GitSource",
            "interval_s",
            range(git::INTERVAL_S.0, git::INTERVAL_S.1),
        ),
        ("CredentialBody", "kind", enumerated(&["token", "ssh_key"])),
        (
            "CredentialBody",
            "username",
            bounds::string(bounds::NAME_CHARS),
        ),
        ("CredentialBody", "token", secret.clone()),
        ("CredentialBody", "private_key", secret),
        (
            "CredentialBody",
            "known_hosts",
            bounds::string(crate::service::git::MAX_KNOWN_HOSTS_CHARS),
        ),
        (
            "ChannelBody",
            "name",
            bounds::string(alerting::MAX_NAME_LEN),
        ),
        ("WebhookConfig", "url", url.clone()),
        (
            "WebhookConfig",
            "secret",
            json!({"type": "string", "minLength": notify::webhook::MIN_SECRET_LEN,
                "maxLength": notify::MAX_FIELD_LEN}),
        ),
        ("SmtpConfig", "host", str_range(1, notify::MAX_FIELD_LEN)),
        ("SmtpConfig", "port", range(1, u16::MAX.into())),
        ("SmtpConfig", "username", field.clone()),
        ("SmtpConfig", "password", field.clone()),
        ("SmtpConfig", "from", field.clone()),
        (
            "SmtpConfig",
            "to",
            json!({"minItems": 1, "maxItems": notify::MAX_RECIPIENTS, "items": field.clone()}),
        ),
        (
            "SmtpConfig",
            "ca_pem",
            bounds::string(notify::smtp::MAX_CA_PEM_LEN),
        ),
        ("DingTalkConfig", "url", url.clone()),
        ("DingTalkConfig", "secret", field.clone()),
        ("FeishuConfig", "url", url.clone()),
        ("FeishuConfig", "secret", field),
        ("UrlConfig", "url", url),
        ("RuleBody", "name", bounds::string(alerting::MAX_NAME_LEN)),
        (
            "RuleBody",
            "channels",
            json!({"minItems": 1, "maxItems": alerting::MAX_RULE_CHANNELS}),
        ),
        ("RuleBody", "on", json!({"minItems": 1})),
        ("RuleBody", "consecutive", range(1, 100)),
        ("RuleBody", "long_running_s", range(1, seconds)),
        ("RuleBody", "throttle_s", range(0, seconds)),
        ("RuleBody", "title", template.clone()),
        ("RuleBody", "body", template),
    ];
    for link in ["on_success", "on_failure", "on_complete"] {
        out.push(("TaskBody", link, links.clone()));
    }
    let limit_docs = [
        "memory of all the run's processes (page cache included), MiB; past it the run fails \
         with \"memory limit N MiB exceeded\"",
        "CPU, thousandths of a CPU (1000 = one CPU)",
        "processes and threads alive at once",
        "largest file the run may write, MiB (and the size of its private /tmp)",
    ];
    for (((field, least, most), (_, default)), what) in model::RunLimits::BOUNDS
        .into_iter()
        .zip(defaults.fields())
        .zip(limit_docs)
    {
        out.push((
            "RunLimits",
            field,
            json!({"minimum": least, "maximum": most,
            "default": default, "description": what}),
        ));
    }
    out
}

fn request_body(method: &str, path: &str, kind: &str) -> Option<Value> {
    match kind {
        "json" | "json?" => Some(
            json!({"required": kind == "json", "content": {"application/json": {"schema": json_schema(method, path)}}}),
        ),
        "upload" => {
            let fields = json!({
                "name": bounds::string(bounds::NAME_CHARS),
                "description": bounds::string(bounds::DESCRIPTION_CHARS),
                "entrypoint": bounds::string(bounds::ENTRYPOINT_CHARS),
                "requirements": bounds::string(bounds::REQUIREMENTS_CHARS)});
            let mut form = fields;
            form["file"] = json!({"type": "string", "format": "binary"});
            // One media type: client generators mishandle a body of two (openapi-python-client
            // 0.25-0.29 sends no multipart boundary, or does not import what the union needs).
            Some(json!({"required": true,
                "description": "multipart/form-data as described, or (Content-Type: \
                    application/json) the same fields with `code`, the script's text, in place \
                    of `file`; or, to create a project from Git, JSON `{name, description, git}` \
                    where `git` is a `GitSource`",
                "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": form}}
            }}))
        }
        _ => None,
    }
}

/// The least API-token scope an operation needs (a login session has them all): `admin` for
/// admin operations, `write` for operator ones and for the changes any role may make to its own
/// account (API tokens; one's own password, which `PATCH /users/{id}` allows with `write`),
/// `read` for the rest, `none` for public ones.
fn least_scope(method: &str, path: &str, role: &str) -> &'static str {
    match (role, method, path) {
        ("none" | "hook", _, _) => "none",
        ("admin", _, _) => "admin",
        ("operator", _, _) => "write",
        (_, "get", _) | (_, "post", "/api/v1/auth/logout" | "/api/v1/schedules/validate") => "read",
        _ => "write",
    }
}

pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, summary, role, body) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '{', '}', '-'], "_")),
            "parameters": query_params(method, path),
            "x-antcode-role": role,
            "x-antcode-scope": least_scope(method, path, role),
            "responses": {
                "2XX": {"description": "success"},
                "default": {"description": "error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        if *role == "none" {
            op["security"] = json!([]);
        }
        if *role == "hook" {
            op["security"] = json!([{"hookToken": []}, {"hookSignature": []}]);
        }
        if *path == "/api/v1/runs/{id}/logs" {
            let problem = json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
            op["responses"]["400"] = json!({"description": "attempt is not a positive whole number, or is combined with follow", "content": problem});
            op["responses"]["404"] = json!({"description": "no such run, or the run has no such attempt", "content": problem});
            op["responses"]["206"] = json!({"description": "the part of the log the Range header asked for; Content-Range says which, and the log's size",
                "content": {"text/plain": {"schema": {"type": "string"}}}});
            op["responses"]["416"] = json!({"description": "the range starts past the log's end; Content-Range: bytes */SIZE"});
        }
        if let Some(b) = request_body(method, path, body) {
            op["requestBody"] = b;
        }
        let media = match *path {
            "/api/v1/runs/{id}/logs" | "/metrics" => "text/plain",
            "/api/v1/edge/ca.pem" => "application/x-pem-file",
            "/api/v1/runs/{id}/events" => "text/event-stream",
            "/api/v1/projects/{id}/versions/{n}/download" => "application/octet-stream",
            _ => "application/json",
        };
        for (status, schema) in success(method, path) {
            op["responses"][status] = match schema {
                Value::Null => json!({"description": "done; no body"}),
                schema => json!({"description": "success",
                    "content": {media: {"schema": schema}}}),
            };
            op["responses"].as_object_mut().map(|r| r.remove("2XX"));
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "AntCode control API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                "hookToken": {"type": "http", "scheme": "bearer",
                    "description": "a token webhook's secret"},
                "hookSignature": {"type": "apiKey", "in": "header", "name": "X-AntCode-Signature",
                    "description": "an hmac webhook's signature of the body"}},
            "schemas": components()
        }
    })
}

/// `/docs`: a self-contained page (no CDN) that renders the document's operations.
pub const DOCS_HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>AntCode API</title>
<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}
.op{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.4em .8em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}
.get{color:#2a7}.post{color:#27c}.patch{color:#c80}.delete{color:#c33}.put{color:#84c}
code{background:#f4f4f4;padding:0 .2em}.role{float:right;color:#888}</style></head>
<body><h1>AntCode API</h1>
<p>The machine-readable spec is <a href="/api/openapi.json">/api/openapi.json</a>.
Authenticate with <code>POST /api/v1/auth/login</code> and send <code>Authorization: Bearer TOKEN</code>.
Errors are <code>application/problem+json</code>.</p><div id="ops">Loading…</div>
<script>
fetch('/api/openapi.json').then(r=>r.json()).then(doc=>{
  const box=document.getElementById('ops');box.textContent='';
  for(const [path,ops] of Object.entries(doc.paths)){
    for(const [m,op] of Object.entries(ops)){
      const d=document.createElement('div');d.className='op';
      const s=document.createElement('span');s.className='m '+m;s.textContent=m;
      const c=document.createElement('code');c.textContent=path;
      const r=document.createElement('span');r.className='role';r.textContent=op['x-antcode-role'];
      const p=document.createElement('div');p.textContent=op.summary;
      d.append(s,c,r,p);box.append(d);
    }
  }
}).catch(e=>{document.getElementById('ops').textContent='could not load the spec: '+e});
</script></body></html>"#;

/// `GET /stats/runs`: the window's figures and one per bucket.
fn run_stats_schema() -> Value {
    let figures = |extra: &[(&str, Value)]| {
        let mut props = json!({
            "runs": {"type": "integer", "minimum": 0},
            "counts": {"type": "object", "description": "runs by state, every state listed",
                "additionalProperties": {"type": "integer", "minimum": 0}},
            "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                "description": "succeeded over ended; null when none ended"},
            "duration_ms": {"type": ["object", "null"], "required": ["p50", "p90", "p99"],
                "description": "estimated from duration bins ten per decade (within one bin's width, 26 %); null when no run has a duration",
                "properties": {"p50": {"type": "integer"}, "p90": {"type": "integer"},
                    "p99": {"type": "integer"}}}});
        for (k, v) in extra {
            props[*k] = v.clone();
        }
        let mut required = vec!["runs", "counts", "success_rate", "duration_ms"];
        required.extend(extra.iter().map(|(k, _)| *k));
        json!({"type": "object", "required": required, "properties": props})
    };
    let start = json!({"type": "string", "format": "date-time"});
    json!({"type": "object", "required": ["since", "until", "bucket_seconds", "total", "buckets"],
        "description": "runs counted by queued_at; the last bucket may reach past until",
        "properties": {
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "bucket_seconds": {"type": "integer", "minimum": 60},
            "total": figures(&[]),
            "buckets": {"type": "array", "maxItems": crate::service::stats::MAX_BUCKETS,
                "items": figures(&[("start", start)])}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bound finds the property it states, and every body an operation names exists.
    #[test]
    fn every_bound_and_body_is_in_the_document() {
        let mut out = Map::new();
        let missed = request_components(&mut out);
        assert!(missed.is_empty(), "bounds on no property: {missed:?}");
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (method, path, name) in BODIES {
            assert!(
                schemas[name].is_object(),
                "{method} {path}: no component {name}"
            );
            assert!(
                ROUTES.iter().any(|r| r.0 == *method && r.1 == *path),
                "{path}"
            );
        }
    }

    /// Each kind of alert channel is one closed object that takes its `kind` (a derived `allOf`
    /// of a closed configuration and `kind` would refuse every body), with the notifier's bounds.
    #[test]
    fn each_channel_kind_is_one_closed_object_with_its_bounds() {
        let doc = document();
        let kinds = doc["components"]["schemas"]["ChannelConfig"]["oneOf"]
            .as_array()
            .unwrap();
        assert_eq!(kinds.len(), 6);
        for kind in kinds {
            assert_eq!(kind["additionalProperties"], json!(false), "{kind}");
            assert!(kind["properties"]["kind"]["enum"].is_array(), "{kind}");
            assert!(kind["required"]
                .as_array()
                .unwrap()
                .contains(&json!("kind")));
            if let Some(url) = kind["properties"].get("url") {
                let most = antcode_notify::MAX_URL_LEN as u64;
                assert_eq!(url["maxLength"].as_u64(), Some(most), "{kind}");
            }
        }
        let params = &doc["components"]["schemas"]["ParamSchema"]["properties"];
        assert_eq!(params["properties"]["maxProperties"], 100);
    }

    /// A property that may be null says so in its type and, when it has one, in its enum.
    #[test]
    fn a_nullable_enum_lists_null() {
        let doc = document();
        let overlap = &doc["components"]["schemas"]["TaskBody"]["properties"]["overlap"];
        assert_eq!(overlap["type"], json!(["string", "null"]), "{overlap}");
        let values = overlap["enum"].as_array().unwrap();
        assert!(
            values.contains(&Value::Null) && values.len() > 1,
            "{overlap}"
        );
    }
}
