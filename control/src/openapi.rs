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
    ("get", "/api/v1/runs", "List runs (task_id, state, worker_id, since)", "viewer", ""),
    ("get", "/api/v1/runs/{id}", "Get a run with its history", "viewer", ""),
    ("post", "/api/v1/runs/{id}/cancel", "Cancel a run", "operator", ""),
    ("post", "/api/v1/runs/{id}/retry", "Start a new run of the same task", "operator", ""),
    ("get", "/api/v1/runs/{id}/logs", "The run's log as text; attempt=N for one attempt's (404 if the run has no such attempt); follow=true for SSE", "viewer", ""),
    ("get", "/api/v1/runs/{id}/events", "SSE of the run's state changes", "viewer", ""),
    ("get", "/api/v1/runs/{id}/group", "The run's run group: its runs and what started what", "viewer", ""),
    ("get", "/api/v1/workers", "List live workers", "viewer", ""),
    ("get", "/api/v1/workers/{id}", "Get a worker", "viewer", ""),
    ("post", "/api/v1/workers/{id}/drain", "Ask a worker to drain", "operator", ""),
    ("post", "/api/v1/workers/{id}/undrain", "Take back a drain request", "operator", ""),
    ("delete", "/api/v1/workers/{id}", "Revoke an enrolled worker's credential", "admin", ""),
    ("get", "/api/v1/queues", "Jobs waiting in each broker queue", "viewer", ""),
    ("get", "/api/v1/enrolled-workers", "Enrolled worker identities, revoked or not, online or not", "admin", ""),
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
        "/api/v1/runs" => {
            for name in ["task_id", "worker_id", "since"] {
                params.push(q(name, "string"));
            }
            params.push(json!({"name": "state", "in": "query", "required": false, "schema": {"type": "string",
                "enum": ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"]}}));
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
        }
        "/api/v1/schedules/validate" => params.push(q("anchor", "string")),
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

/// The component schemas the responses name: the model types' own, derived from them
/// (`utoipa::ToSchema`, so a field added to a type shows up here), and `Task`, whose settings are
/// the task body's schema.
fn components() -> Map<String, Value> {
    use antcode_core::model as m;
    let mut out = Map::new();
    fn add<T: utoipa::ToSchema>(out: &mut Map<String, Value>) {
        let mut deps = vec![];
        T::schemas(&mut deps);
        for (name, schema) in deps {
            out.insert(name, serde_json::to_value(schema).unwrap_or_default());
        }
        let schema = serde_json::to_value(T::schema()).unwrap_or_default();
        out.insert(T::name().into_owned(), schema);
    }
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
    let mut rule = json_schema("post", "/api/v1/notifications/rules");
    rule["additionalProperties"] = json!(true);
    for (name, schema) in [
        ("id", json!({"type": "string"})),
        (
            "created_at",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "updated_at",
            json!({"type": "string", "format": "date-time"}),
        ),
    ] {
        rule["properties"][name] = schema;
    }
    rule["required"] = json!(["id", "name", "enabled", "created_at", "updated_at"]);
    out.insert("AlertRule".into(), rule);
    let mut task = json_schema("post", "/api/v1/tasks");
    task["additionalProperties"] = json!(true);
    let time = json!({"type": "string", "format": "date-time"});
    for (name, schema) in [
        ("id", json!({"type": "string"})),
        (
            "next_fire_at",
            json!({"type": ["string", "null"], "format": "date-time"}),
        ),
        ("created_at", time.clone()),
        ("updated_at", time),
    ] {
        task["properties"][name] = schema;
    }
    // A task answers null for these when they are not set.
    for name in ["entrypoint", "schedule"] {
        let set = task["properties"][name].take();
        task["properties"][name] = json!({"anyOf": [{"type": "null"}, set]});
    }
    task["required"] = json!([
        "id",
        "name",
        "project_id",
        "paused",
        "created_at",
        "updated_at"
    ]);
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
        ("get", "/api/v1/workers") => ok(page_of("WorkerStatus")),
        ("get", "/api/v1/workers/{id}") => ok(schema_ref("WorkerStatus")),
        ("get", "/api/v1/worker-keys") => ok(page_of("WorkerKey")),
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

/// The JSON body schema of an operation: specific for the main bodies (so generated requests,
/// for example schemathesis', reach past field validation), a generic object otherwise.
fn json_schema(method: &str, path: &str) -> Value {
    let s = |ty: &str| json!({"type": ty});
    let role = json!({"type": "string", "enum": ["admin", "operator", "viewer"]});
    let time = json!({"type": "string", "format": "date-time", "maxLength": bounds::TIME_CHARS});
    let mut cron = bounds::string(bounds::CRON_CHARS);
    cron["description"] = CRON_GRAMMAR.into();
    let schedule = json!({"oneOf": [
        {"type": "object", "required": ["kind", "at"], "properties": {
            "kind": {"const": "once"}, "at": time}},
        {"type": "object", "required": ["kind", "every_s"], "properties": {
            "kind": {"const": "interval"}, "every_s": {"type": "integer", "minimum": 1},
            "start": time, "end": time}},
        {"type": "object", "required": ["kind", "cron"], "properties": {
            "kind": {"const": "cron"}, "cron": cron,
            "timezone": bounds::string(bounds::TIMEZONE_CHARS)}}]});
    let bounded = |(field, least, most): (&str, u64, u64), default: u64, what: &str| {
        (
            field.to_string(),
            json!({"type": "integer", "minimum": least, "maximum": most,
            "default": default, "description": what}),
        )
    };
    let defaults = antcode_core::model::RunLimits::default();
    let limit_docs = [
        "memory of all the run's processes (page cache included), MiB; past it the run fails \
         with \"memory limit N MiB exceeded\"",
        "CPU, thousandths of a CPU (1000 = one CPU)",
        "processes and threads alive at once",
        "largest file the run may write, MiB (and the size of its private /tmp)",
    ];
    let limits = json!({"type": "object", "additionalProperties": false,
        "description": "Kernel-enforced bounds of each run (cgroups, rlimits as the floor). A \
            field left out takes its default; a runner refuses a run above its own maximum \
            (runner flags --max-memory-mb, --max-cpu-millicores, --max-pids, --max-tmp-mb).",
        "properties": antcode_core::model::RunLimits::BOUNDS.into_iter()
            .zip(defaults.fields()).zip(limit_docs)
            .map(|((b, (_, d)), what)| bounded(b, d, what))
            .collect::<serde_json::Map<_, _>>()});
    let network = json!({"description": "What a run may connect to. \"full\" (default): \
        any address but the platform's own ports (control, edge, broker, blob store, and those \
        the runner is told, such as the database's), on any host. \"none\": \
        nothing (a network namespace of its own). {\"allow\": [\"host:port\", ...]}: TCP to \
        the listed ports only, at most 32 entries; enforced by PORT ONLY (the kernel sees \
        addresses, not names: db.example:5432 allows port 5432 on any host); a platform port \
        is reachable only when listed; UDP (DNS) is not restricted by a list.",
        "oneOf": [{"type": "string", "enum": ["full", "none"]},
            {"type": "object", "required": ["allow"], "additionalProperties": false,
             "properties": {"allow": {"type": "array", "maxItems": 32,
                "items": {"type": "string", "maxLength": antcode_core::model::NetworkPolicy::MAX_ENTRY_CHARS, "pattern": "^(\\*|\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$"}}}}]});
    let days = json!({"type": ["integer", "null"], "minimum": 1,
        "maximum": antcode_core::retention::MAX_DAYS});
    let keep_last = json!({"type": ["integer", "null"], "minimum": 1,
        "maximum": antcode_core::retention::MAX_KEEP_LAST});
    let next = json!({"type": "array", "maxItems": antcode_core::flow::MAX_LINKS,
        "description": "tasks its runs start: a task id, or {task, for_each: FIELD} for one run per element of the result's array FIELD",
        "items": {"oneOf": [s("string"), {"type": "object", "required": ["task"], "additionalProperties": false,
            "properties": {"task": s("string"), "for_each": bounds::string(antcode_core::flow::MAX_FIELD_LEN)}}]}});
    let prefer = json!({"type": ["object", "null"], "additionalProperties": false, "required": ["labels", "fallback_s"],
        "description": "runners to try first: a run waits up to fallback_s for a runner with these labels too",
        "properties": {"labels": bounds::string_map(bounds::LABELS, bounds::LABEL_KEY_CHARS, bounds::LABEL_VALUE_CHARS),
            "fallback_s": {"type": "integer", "minimum": 1, "maximum": antcode_core::model::Preference::MAX_FALLBACK_S}}});
    let max_concurrency = json!({"type": ["integer", "null"], "minimum": 1,
        "maximum": ConcurrencyKey::MAX_LIMIT, "description":
        "most runs of this task leased at once, on all runners together"});
    let concurrency = json!({"type": ["object", "null"], "required": ["key", "limit"],
        "additionalProperties": false, "description":
        "a key shared by tasks: at most limit runs of all of them leased at once",
        "properties": {"key": {"type": "string", "minLength": 1,
            "maxLength": ConcurrencyKey::MAX_KEY_BYTES,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$",
            "description": "at most 128 bytes of printable characters, not only spaces"},
        "limit": {"type": "integer", "minimum": 1, "maximum": ConcurrencyKey::MAX_LIMIT}}});
    let task = |required: &[&str]| {
        json!({"type": "object", "required": required, "additionalProperties": false, "properties": {
            "name": bounds::string(bounds::NAME_CHARS), "project_id": s("string"),
            "entrypoint": bounds::string(bounds::ENTRYPOINT_CHARS),
            "args": bounds::strings(bounds::ARGS, bounds::ARG_CHARS),
            "env": bounds::string_map(bounds::ENV_VARS, bounds::ENV_NAME_CHARS, bounds::ENV_VALUE_CHARS),
            "public_env": bounds::strings(bounds::ENV_VARS, bounds::ENV_NAME_CHARS),
            "secrets": bounds::strings(bounds::SECRETS, MAX_SECRET_NAME),
            "queue": bounds::string(bounds::QUEUE_CHARS),
            "labels": bounds::string_map(bounds::LABELS, bounds::LABEL_KEY_CHARS, bounds::LABEL_VALUE_CHARS),
            "schedule": schedule, "paused": s("boolean"),
            "timeout_s": {"type": "integer", "minimum": 0},
            "retry": {"type": "object", "properties": {
                "max_attempts": {"type": "integer", "minimum": 0},
                "backoff_s": {"type": "integer", "minimum": 0},
                "max_backoff_s": {"type": "integer", "minimum": 0}}},
            "overlap": s("string"), "misfire": s("string"), "priority": s("integer"),
            "queue_timeout_s": {"type": "integer", "minimum": 0}, "warm": s("boolean"),
            "limits": limits, "network": network,
            "retention": {"type": ["object", "null"], "additionalProperties": false, "properties": {
                "days": days.clone(), "keep_last": keep_last.clone()}},
            "params": {"type": ["object", "null"], "description":
                "a JSON Schema subset: {type: object, properties: {NAME: {type: string|integer|number|boolean|array|object, enum?, minimum?, maximum?, maxLength?, default?, description?}}, required: [NAME]}",
                "properties": {"properties": {"type": "object", "maxProperties": antcode_core::params::MAX_PROPERTIES},
                    "required": {"type": "array", "items": s("string")}}},
            "schedule_params": {"type": ["object", "null"], "description":
                "the params of its scheduled runs, checked against params"},
            "triggers_per_min": {"type": ["integer", "null"], "minimum": 1,
                "maximum": crate::service::tasks::MAX_TRIGGERS_PER_MIN},
            "on_success": next.clone(), "on_failure": next.clone(), "on_complete": next.clone(),
            "prefer": prefer.clone(),
            "needs": {"type": "array", "maxItems": antcode_core::flow::MAX_LINKS, "items": s("string"),
                "description": "fan-in: it runs once in a run group, after all these tasks succeeded in it"},
            "max_concurrency": max_concurrency, "concurrency": concurrency}})
    };
    let channel = |required: &[&str]| {
        json!({"type": "object", "required": required, "additionalProperties": false,
        "properties": {"name": bounds::string(antcode_core::alerting::MAX_NAME_LEN),
            "enabled": s("boolean"),
            "config": {"type": "object", "required": ["kind"], "description":
                "webhook {url, secret}; smtp {host, port, tls: starttls|tls|none, username, password, from, to[]}; dingtalk {url, secret?}; feishu {url, secret?}; wecom {url}; slack {url}",
                "properties": {"kind": {"type": "string",
                    "enum": ["webhook", "smtp", "dingtalk", "feishu", "wecom", "slack"]}}}}})
    };
    let rule = |required: &[&str]| {
        json!({"type": "object", "required": required, "properties": {
            "name": bounds::string(antcode_core::alerting::MAX_NAME_LEN),
            "task_id": {"type": ["string", "null"]}, "enabled": s("boolean"),
            "channels": {"type": "array", "minItems": 1,
                "maxItems": antcode_core::alerting::MAX_RULE_CHANNELS, "items": s("string")},
            "on": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": [
                "failed", "timed_out", "lost", "consecutive_failures", "recovered",
                "long_running", "worker_offline", "schedule_misfired", "queue_backlog"]}},
            "consecutive": {"type": "integer", "minimum": 1, "maximum": 100},
            "long_running_s": {"type": ["integer", "null"], "minimum": 1},
            "backlog": {"type": ["integer", "null"], "minimum": 0},
            "queue": {"type": ["string", "null"]},
            "throttle_s": {"type": "integer", "minimum": 0},
            "title": {"type": ["string", "null"], "maxLength": antcode_notify::template::MAX_TEMPLATE_LEN},
            "body": {"type": ["string", "null"], "maxLength": antcode_notify::template::MAX_TEMPLATE_LEN}}})
    };
    match (method, path) {
        ("post", "/api/v1/auth/login") => {
            json!({"type": "object", "required": ["username", "password"],
            "properties": {"username": s("string"), "password": s("string")}})
        }
        ("post", "/api/v1/users") => {
            json!({"type": "object", "required": ["username", "password", "role"],
            "additionalProperties": false,
            "properties": {"username": s("string"), "password": s("string"), "role": role}})
        }
        ("patch", "/api/v1/users/{id}") => json!({"type": "object", "additionalProperties": false,
            "properties": {"password": s("string"), "current_password": s("string"),
                "role": role, "disabled": s("boolean")}}),
        ("post", "/api/v1/tokens") => {
            json!({"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": s("string"),
                "scopes": {"type": "array", "items": {"type": "string", "enum": ["read", "write", "admin"]}},
                "expires_in_s": {"type": "integer", "minimum": 0}}})
        }
        ("put", "/api/v1/secrets/{name}") => json!({"type": "object", "required": ["value"],
            "properties": {"value": s("string")}}),
        ("put", "/api/v1/secrets/{name}/grants") => json!({"type": "object",
            "additionalProperties": false, "properties": {
                "projects": bounds::strings(bounds::GRANTS, 64),
                "all_projects": s("boolean")}}),
        ("post", "/api/v1/tasks/{id}/hooks") => json!({"type": "object", "required": ["name"],
            "additionalProperties": false, "properties": {
                "name": bounds::string(antcode_core::hooks::MAX_NAME_LEN),
                "auth": {"type": "string", "enum": ["token", "hmac"], "default": "token"},
                "rate_per_min": {"type": "integer", "minimum": antcode_core::hooks::RATE_PER_MIN.0,
                    "maximum": antcode_core::hooks::RATE_PER_MIN.1, "default": 60}}}),
        (
            "post",
            "/api/v1/tasks/{id}/trigger" | "/api/v1/tasks/{id}/invoke" | "/api/v1/hooks/{hook_id}",
        ) => {
            json!({"type": "object", "additionalProperties": false, "properties": {
                "params": {"type": "object", "description":
                    "checked against the task's params schema (422 naming every bad field); at most 64 KiB as JSON"},
                "args": bounds::strings(bounds::ARGS, bounds::ARG_CHARS),
                "env": bounds::string_map(bounds::ENV_VARS, bounds::ENV_NAME_CHARS, bounds::ENV_VALUE_CHARS)}})
        }
        ("post", "/api/v1/tasks") => task(&["name", "project_id"]),
        ("patch", "/api/v1/tasks/{id}") => task(&[]),
        ("patch", "/api/v1/projects/{id}") => json!({"type": "object", "properties": {
            "name": bounds::string(bounds::NAME_CHARS),
            "description": bounds::string(bounds::DESCRIPTION_CHARS),
            "current_version": s("integer"),
            "git": git_source()}}),
        ("put", "/api/v1/git-credentials/{name}") => json!({"type": "object", "required": ["kind"],
            "additionalProperties": false, "properties": {
                "kind": {"type": "string", "enum": ["token", "ssh_key"]},
                "username": bounds::string(bounds::NAME_CHARS),
                "token": bounds::string(16 * 1024),
                "private_key": bounds::string(16 * 1024),
                "known_hosts": bounds::string(64 * 1024)}}),
        ("post", "/api/v1/schedules/validate") => schedule,
        ("post", "/api/v1/notifications/channels") => channel(&["name", "config"]),
        ("patch", "/api/v1/notifications/channels/{id}") => channel(&[]),
        ("post", "/api/v1/notifications/rules") => rule(&["name", "channels", "on"]),
        ("patch", "/api/v1/notifications/rules/{id}") => rule(&[]),
        ("put", "/api/v1/retention") => json!({"type": "object", "additionalProperties": false,
            "properties": {"runs_days": days, "runs_keep_last": keep_last, "audit_days": days}}),
        ("patch", "/api/v1/runs/{id}") => json!({"type": "object", "required": ["keep"],
            "additionalProperties": false, "properties": {"keep": s("boolean")}}),
        _ => json!({"type": "object"}),
    }
}

/// A Git project's source, as `POST /projects` (`{name, description, git}`) and
/// `PATCH /projects/{id}` take it.
fn git_source() -> Value {
    let mut schema =
        serde_json::to_value(<antcode_core::git::GitSource as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
    schema["additionalProperties"] = json!(false);
    schema
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
        }
        if let Some(b) = request_body(method, path, body) {
            op["requestBody"] = b;
        }
        let media = match *path {
            "/api/v1/runs/{id}/logs" | "/metrics" => "text/plain",
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
