//! What an alert says: the [`Event`] that caused it and the [`Template`]s that turn it into text.
//!
//! A template is plain text with `{{variable}}` placeholders (spaces inside the braces are
//! allowed). The variables are the fields of [`Event`], listed in [`VARIABLES`]; a template that
//! names anything else is refused when it is parsed, so a typo is an error when a rule is saved,
//! not an empty hole in an alert at 3 a.m. Nothing is evaluated: there are no conditions, loops
//! or filters, and a value is inserted as it is (a log line cannot inject a placeholder, because
//! substitution is a single pass over the template).
//!
//! Sizes are bounded: a template is at most [`MAX_TEMPLATE_LEN`] bytes, the log tail carries at
//! most [`MAX_LOG_LINES`] lines of at most [`MAX_LOG_LINE_LEN`] bytes each, and the error at most
//! [`MAX_ERROR_LEN`] bytes, so a rendered alert has a known ceiling before a channel trims it to
//! its vendor's limit.

use serde::{Deserialize, Serialize};

/// Longest template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 4096;
/// Most log lines an event carries.
pub const MAX_LOG_LINES: usize = 20;
/// Longest log line an event carries, in bytes (longer lines are cut).
pub const MAX_LOG_LINE_LEN: usize = 512;
/// Longest error text an event carries, in bytes.
pub const MAX_ERROR_LEN: usize = 2048;

/// The default subject / title of an alert.
pub const DEFAULT_TITLE: &str = "[AntCode] {{task}}: {{summary}}";
/// The default body of an alert.
pub const DEFAULT_BODY: &str = "Task: {{task}} ({{task_id}})\n\
Run: {{run_id}} attempt {{attempt}} on {{worker}}\n\
State: {{state}}, exit code {{exit_code}}, after {{duration}}\n\
Error: {{error}}\n\
{{run_url}}\n\
\n\
Last log lines:\n\
{{log_tail}}";

/// Every variable a template may use.
pub const VARIABLES: &[&str] = &[
    "event",
    "summary",
    "task",
    "task_id",
    "run_id",
    "run_url",
    "state",
    "attempt",
    "worker",
    "exit_code",
    "error",
    "duration",
    "duration_s",
    "log_tail",
    "occurred_at",
    "rule",
    "count",
];

/// Something that happened, as an alert tells it. Absent values render as `-`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened: `run.failed`, `run.timed_out`, `run.lost`, `run.recovered`, `test`, …
    pub kind: String,
    /// One line saying it, e.g. `failed 3 times in a row`.
    pub summary: String,
    pub task_id: Option<String>,
    pub task_name: Option<String>,
    pub run_id: Option<String>,
    /// A link to the run in the web UI.
    pub run_url: Option<String>,
    pub state: Option<String>,
    pub attempt: Option<u32>,
    pub worker_id: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    /// The last lines of the run's log, oldest first.
    #[serde(default)]
    pub log_tail: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
    /// The rule that sent it.
    pub rule: Option<String>,
    /// How many events this alert stands for (a digest of a flapping task says more than 1).
    pub count: u32,
}

impl Event {
    /// Cuts the error and the log tail to the bounds in this module's doc.
    pub fn bounded(mut self) -> Event {
        if let Some(e) = self.error.as_mut() {
            truncate_utf8(e, MAX_ERROR_LEN);
        }
        let skip = self.log_tail.len().saturating_sub(MAX_LOG_LINES);
        self.log_tail.drain(..skip);
        for line in &mut self.log_tail {
            truncate_utf8(line, MAX_LOG_LINE_LEN);
        }
        self
    }

    fn value(&self, name: &str) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        match name {
            "event" => self.kind.clone(),
            "summary" => self.summary.clone(),
            "task" => self
                .task_name
                .clone()
                .or_else(|| self.task_id.clone())
                .unwrap_or_else(|| "-".into()),
            "task_id" => opt(&self.task_id),
            "run_id" => opt(&self.run_id),
            "run_url" => opt(&self.run_url),
            "state" => opt(&self.state),
            "attempt" => self.attempt.map_or("-".into(), |a| a.to_string()),
            "worker" => opt(&self.worker_id),
            "exit_code" => self.exit_code.map_or("-".into(), |c| c.to_string()),
            "error" => opt(&self.error),
            "duration" => self.duration_ms.map_or("-".into(), human_duration),
            "duration_s" => self
                .duration_ms
                .map_or("-".into(), |ms| format!("{:.3}", ms as f64 / 1000.0)),
            "log_tail" if self.log_tail.is_empty() => "(none)".into(),
            "log_tail" => self.log_tail.join("\n"),
            "occurred_at" => antcode_core::time::to_rfc3339(self.occurred_at),
            "rule" => opt(&self.rule),
            "count" => self.count.to_string(),
            _ => String::new(),
        }
    }
}

/// `1h 02m 03s`, `4m 05s`, `6.2s`.
fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is longer than {MAX_TEMPLATE_LEN} bytes")]
    TooLong,
    #[error("unknown variable {{{{{0}}}}} (known: {known})", known = VARIABLES.join(", "))]
    Unknown(String),
    #[error("unclosed {{{{ at byte {0}")]
    Unclosed(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(&'static str),
}

/// A parsed template; see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        if src.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong);
        }
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(src.len() - rest.len() + open))?;
            let name = after[..close].trim();
            let known = VARIABLES
                .iter()
                .find(|v| **v == name)
                .ok_or_else(|| TemplateError::Unknown(name.chars().take(64).collect()))?;
            parts.push(Part::Var(known));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn render(&self, event: &Event) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&event.value(v)),
            }
        }
        out
    }
}

/// An alert ready to send: the event, its rendered title and text, and the delivery's id (the
/// idempotency key receivers may use; the outbox keeps it across retries).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub delivery_id: String,
    pub title: String,
    pub text: String,
    pub event: Event,
}

impl Notification {
    /// Renders `event` with the given templates (the defaults where `None`).
    pub fn render(
        delivery_id: &str,
        event: Event,
        title: Option<&Template>,
        body: Option<&Template>,
    ) -> Notification {
        let event = event.bounded();
        let default = |src: &str| Template::parse(src).expect("the default templates parse");
        let title = title
            .cloned()
            .unwrap_or_else(|| default(DEFAULT_TITLE))
            .render(&event);
        let text = body
            .cloned()
            .unwrap_or_else(|| default(DEFAULT_BODY))
            .render(&event);
        Notification {
            delivery_id: delivery_id.to_string(),
            title: title.replace(['\r', '\n'], " "),
            text,
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_variables_and_refuses_unknown_ones() {
        let t = Template::parse("{{ task }} is {{state}} ({{exit_code}}) {{duration}}").unwrap();
        let e = Event {
            task_name: Some("nightly".into()),
            state: Some("failed".into()),
            exit_code: Some(2),
            duration_ms: Some(65_000),
            ..Event::default()
        };
        assert_eq!(t.render(&e), "nightly is failed (2) 1m 05s");
        assert_eq!(
            Template::parse("{{stat}}"),
            Err(TemplateError::Unknown("stat".into()))
        );
        assert_eq!(Template::parse("a {{task"), Err(TemplateError::Unclosed(2)));
        assert_eq!(
            Template::parse(&"x".repeat(MAX_TEMPLATE_LEN + 1)),
            Err(TemplateError::TooLong)
        );
    }

    #[test]
    fn a_value_is_never_read_as_a_placeholder() {
        let t = Template::parse("{{error}}").unwrap();
        let e = Event {
            error: Some("{{task_id}}".into()),
            task_id: Some("secret".into()),
            ..Event::default()
        };
        assert_eq!(t.render(&e), "{{task_id}}");
    }

    #[test]
    fn bounds_the_log_tail_and_the_error() {
        let e = Event {
            error: Some("é".repeat(MAX_ERROR_LEN)),
            log_tail: (0..100)
                .map(|i| format!("{i} {}", "x".repeat(1000)))
                .collect(),
            ..Event::default()
        }
        .bounded();
        assert!(e.error.as_ref().unwrap().len() <= MAX_ERROR_LEN);
        assert_eq!(e.log_tail.len(), MAX_LOG_LINES);
        assert!(e.log_tail[0].starts_with("80 "));
        assert!(e.log_tail.iter().all(|l| l.len() <= MAX_LOG_LINE_LEN));
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_duration(6_200), "6.2s");
        assert_eq!(human_duration(245_000), "4m 05s");
        assert_eq!(human_duration(3_723_000), "1h 02m 03s");
    }
}
