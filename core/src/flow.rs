//! Run dependencies: what a task starts when one of its runs ends.
//!
//! A task lists the tasks its runs start in `on_success`, `on_failure` (failed, timed out,
//! lost or expired) and `on_complete` (either). A cancelled run starts nothing: someone stopped
//! it. An entry is a task id, or `{"task": id, "for_each": "field"}` for one run per element of
//! the array at `field` of the ended run's result (a fan-out).
//!
//! A run started this way gets the ended run's result as its params ([`next_params`]): an
//! object as it is, anything else as `{"result": value}`; an element of a fan-out likewise,
//! anything but an object as `{"item": value}`. When the task declares a schema, only the
//! fields it declares are taken, and they are checked like a trigger's; a run whose params do
//! not fit is created `failed`, saying why.
//!
//! The runs of one chain form a *run group*, named by the run that started it. A task that
//! `needs` others is a fan-in: it runs once in a group, when every task it needs has runs in
//! that group and all of them succeeded. A retry (same task, parent and params, in the same
//! group) replaces the run it retries.
//!
//! The store creates the next runs in the transaction that records the end (`store/sql/flow.rs`):
//! a chain survives any process being killed between steps, and since an end is recorded once
//! (fenced), its next runs are created once. Control refuses links that close a cycle
//! ([`find_cycle`]); [`MAX_DEPTH`] and [`MAX_GROUP_RUNS`] bound what two racing edits could
//! still build.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{RunState, TaskSpec};
use crate::params::{self, ParamSchema};

/// Most entries in each of `on_success`, `on_failure`, `on_complete` and `needs`.
pub const MAX_LINKS: usize = 32;
/// Most runs one fan-out starts.
pub const MAX_FAN_OUT: usize = 10_000;
/// Longest chain: a run this many steps from its group's first starts nothing more.
pub const MAX_DEPTH: u32 = 64;
/// Most runs in one group.
pub const MAX_GROUP_RUNS: u64 = 100_000;
/// Longest `for_each` field name.
pub const MAX_FIELD_LEN: usize = 64;

/// One entry of `on_success`, `on_failure` or `on_complete`: written as a task id alone, or
/// as an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "NextIn")]
pub struct Next {
    /// The task to start.
    pub task: String,
    /// Start one run per element of the array at this field of the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum NextIn {
    Id(String),
    #[serde(rename_all = "snake_case")]
    Full {
        task: String,
        #[serde(default)]
        for_each: Option<String>,
    },
}

/// Its schema is what it is read from: a task id, or `{task, for_each}`.
impl utoipa::PartialSchema for Next {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <NextIn as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Next {}

impl From<NextIn> for Next {
    fn from(n: NextIn) -> Next {
        match n {
            NextIn::Id(task) => Next {
                task,
                for_each: None,
            },
            NextIn::Full { task, for_each } => Next { task, for_each },
        }
    }
}

/// When a link starts its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    Success,
    Failure,
    Complete,
    /// Fan-in: the target runs once all the tasks it needs succeeded in the group.
    Needs,
}

impl LinkKind {
    pub const ALL: [LinkKind; 4] = [
        LinkKind::Success,
        LinkKind::Failure,
        LinkKind::Complete,
        LinkKind::Needs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Success => "on_success",
            LinkKind::Failure => "on_failure",
            LinkKind::Complete => "on_complete",
            LinkKind::Needs => "needs",
        }
    }

    pub fn parse(s: &str) -> Option<LinkKind> {
        LinkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a run that ended `state` follows this link.
    pub fn fires(self, state: RunState) -> bool {
        let failed = matches!(
            state,
            RunState::Failed | RunState::TimedOut | RunState::Lost
        );
        match self {
            LinkKind::Success | LinkKind::Needs => state == RunState::Succeeded,
            LinkKind::Failure => failed,
            LinkKind::Complete => failed || state == RunState::Succeeded,
        }
    }
}

/// A link as the store keeps it: runs of `from` that end start `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub kind: LinkKind,
    pub for_each: Option<String>,
}

/// The links task `id` with `spec` declares: its `on_*` entries from it, its `needs` to it.
pub fn links_of(id: &str, spec: &TaskSpec) -> Vec<Link> {
    let mut out = vec![];
    for (kind, list) in [
        (LinkKind::Success, &spec.on_success),
        (LinkKind::Failure, &spec.on_failure),
        (LinkKind::Complete, &spec.on_complete),
    ] {
        for next in list {
            out.push(Link {
                from: id.into(),
                to: next.task.clone(),
                kind,
                for_each: next.for_each.clone(),
            });
        }
    }
    for needed in &spec.needs {
        out.push(Link {
            from: needed.clone(),
            to: id.into(),
            kind: LinkKind::Needs,
            for_each: None,
        });
    }
    out
}

/// Checks the shape of a spec's links (not whether the tasks exist): bounded lists, each
/// task named once per list, sane field names. The error names the field.
pub fn check_links(spec: &TaskSpec) -> Result<(), String> {
    let lists: [(&str, Vec<&str>); 4] = [
        (
            "on_success",
            spec.on_success.iter().map(|n| n.task.as_str()).collect(),
        ),
        (
            "on_failure",
            spec.on_failure.iter().map(|n| n.task.as_str()).collect(),
        ),
        (
            "on_complete",
            spec.on_complete.iter().map(|n| n.task.as_str()).collect(),
        ),
        ("needs", spec.needs.iter().map(String::as_str).collect()),
    ];
    for (field, tasks) in &lists {
        if tasks.len() > MAX_LINKS {
            return Err(format!("{field}: at most {MAX_LINKS} tasks"));
        }
        let mut seen = BTreeSet::new();
        for t in tasks {
            if !seen.insert(*t) {
                return Err(format!("{field}: task {t:?} is listed twice"));
            }
        }
    }
    let fields = [&spec.on_success, &spec.on_failure, &spec.on_complete];
    for (name, list) in ["on_success", "on_failure", "on_complete"]
        .iter()
        .zip(fields)
    {
        for f in list.iter().filter_map(|n| n.for_each.as_deref()) {
            let ok = !f.is_empty()
                && f.len() <= MAX_FIELD_LEN
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(format!(
                    "{name}.for_each: {f:?} must be 1-{MAX_FIELD_LEN} letters, digits, '_' or '-'"
                ));
            }
        }
    }
    Ok(())
}

/// A cycle in the graph whose edges are `edges` (task → the tasks its runs start or that
/// wait for it), as the tasks along it, first repeated last; `None` when there is none.
pub fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for start in edges.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Iterative depth-first search; `path` is the stack of open tasks.
        let mut path: Vec<(&str, Vec<&str>)> = vec![(start, next_of(edges, start))];
        marks.insert(start, Mark::Open);
        while let Some((node, todo)) = path.last_mut() {
            let node = *node;
            match todo.pop() {
                None => {
                    marks.insert(node, Mark::Done);
                    path.pop();
                }
                Some(next) => match marks.get(next) {
                    Some(Mark::Done) => {}
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(next.to_string());
                        return Some(cycle);
                    }
                    None => {
                        marks.insert(next, Mark::Open);
                        path.push((next, next_of(edges, next)));
                    }
                },
            }
        }
    }
    None
}

fn next_of<'a>(edges: &'a BTreeMap<String, BTreeSet<String>>, node: &str) -> Vec<&'a str> {
    edges
        .get(node)
        .map(|s| s.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The params of a run started from `value` (a result, or an element of a fan-out, wrapped
/// under `wrap` when it is not an object), for a task with `schema`: checked, defaults
/// filled; `Err` names every field that does not fit.
pub fn next_params(
    schema: Option<&ParamSchema>,
    value: Option<&Value>,
    wrap: &str,
) -> Result<Option<Value>, Vec<String>> {
    let given: Option<Map<String, Value>> = match value {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(other) => Some(Map::from_iter([(wrap.to_string(), other.clone())])),
    };
    let given = match (schema, given) {
        // A result is output, not input meant for this task alone: take what the task takes.
        (Some(s), Some(m)) => Some(
            m.into_iter()
                .filter(|(k, _)| s.properties.contains_key(k))
                .collect(),
        ),
        (_, given) => given,
    };
    params::resolve(schema, given.as_ref())
}

/// The elements a fan-out over `field` of `result` starts runs for, or why it starts none.
pub fn fan_out<'r>(result: Option<&'r Value>, field: &str) -> Result<&'r [Value], String> {
    match result.and_then(|r| r.get(field)) {
        Some(Value::Array(items)) if items.len() <= MAX_FAN_OUT => Ok(items),
        Some(Value::Array(items)) => Err(format!(
            "for_each {field:?}: {} elements, at most {MAX_FAN_OUT}",
            items.len()
        )),
        _ => Err(format!("for_each {field:?}: the result has no array there")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_is_an_id_or_an_object() {
        let spec: Vec<Next> =
            serde_json::from_value(json!(["a", {"task": "b", "for_each": "items"}])).unwrap();
        assert_eq!(spec[0].task, "a");
        assert_eq!(spec[0].for_each, None);
        assert_eq!(spec[1].for_each.as_deref(), Some("items"));
        assert!(serde_json::from_value::<Vec<Next>>(json!([{"tsk": "a"}])).is_err());
        assert!(serde_json::from_value::<Vec<Next>>(json!([3])).is_err());
    }

    #[test]
    fn which_ends_follow_which_links() {
        use LinkKind::*;
        use RunState::*;
        let cases = [
            (Succeeded, [true, false, true, true]),
            (Failed, [false, true, true, false]),
            (TimedOut, [false, true, true, false]),
            (Lost, [false, true, true, false]),
            (Cancelled, [false, false, false, false]),
        ];
        for (state, want) in cases {
            let got = [Success, Failure, Complete, Needs].map(|k| k.fires(state));
            assert_eq!(got, want, "{state:?}");
        }
    }

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    }

    #[test]
    fn a_cycle_is_found_and_a_diamond_is_not_one() {
        let diamond = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
        assert_eq!(find_cycle(&diamond), None);
        let cycle = find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("x", "a")])).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4, "{cycle:?}");
        assert_eq!(
            find_cycle(&graph(&[("a", "a")])),
            Some(vec!["a".into(), "a".into()])
        );
    }

    #[test]
    fn a_result_becomes_params_the_task_takes() {
        let schema: ParamSchema = serde_json::from_value(json!({
            "properties": {"n": {"type": "integer"}, "unit": {"type": "string", "default": "c"}},
            "required": ["n"]
        }))
        .unwrap();
        let r = json!({"n": 3, "extra": true});
        assert_eq!(
            next_params(Some(&schema), Some(&r), "result").unwrap(),
            Some(json!({"n": 3, "unit": "c"}))
        );
        assert_eq!(
            next_params(None, Some(&r), "result").unwrap(),
            Some(r.clone())
        );
        assert_eq!(
            next_params(None, Some(&json!(7)), "item").unwrap(),
            Some(json!({"item": 7}))
        );
        assert_eq!(next_params(None, None, "result").unwrap(), None);
        let bad = next_params(Some(&schema), Some(&json!({"n": "x"})), "result").unwrap_err();
        assert!(bad[0].contains("params.n"), "{bad:?}");
        let missing = next_params(Some(&schema), None, "result").unwrap_err();
        assert!(missing[0].contains("required"), "{missing:?}");
    }

    #[test]
    fn a_fan_out_needs_a_bounded_array() {
        let r = json!({"items": [1, 2], "one": 1});
        assert_eq!(fan_out(Some(&r), "items").unwrap().len(), 2);
        assert!(fan_out(Some(&r), "one").is_err());
        assert!(fan_out(None, "items").is_err());
        let big = json!({"items": vec![0; MAX_FAN_OUT + 1]});
        assert!(fan_out(Some(&big), "items")
            .unwrap_err()
            .contains("at most"));
    }
}
