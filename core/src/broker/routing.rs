//! Label routing and concurrency gates: which runners may take a job, and when.
//!
//! A task's `labels` are requirements; a runner advertises labels of its own. A job is taken
//! only by a runner whose labels include every requirement (`gpu=true` needs a runner labelled
//! `gpu=true`; the runner may have more). Every runner also has the label `runner=<its name>`,
//! so a task pins itself to one runner by requiring it.
//!
//! A project that asks for a Python (`python_version`, `major.minor`) requires the label
//! `python<version>=yes` (`python3.12=yes`), which a runner has for each interpreter it found.
//!
//! Brokers do not filter entries at lease time. A job with requirements is published to a queue
//! of its own, its *route*: `queue@k=v,k=v` (sorted; `%`, `,`, `=`, `@` and control characters
//! percent-encoded; queue names never hold `@`). A lease resolves the queues a runner serves into
//! the routes it matches among the routes the broker knows, most specific first, then reads
//! those as plain queues. So leasing costs the same per entry with or without labels, order is
//! kept within a route, and a job no runner matches waits in its route, untouched. A broker
//! may reuse the routes it knows for a moment (Redis: a second), and a parked lease looks for
//! new ones every few seconds, so the first job of a route never seen before can wait that
//! long; the next ones do not.
//!
//! **Gates.** A job may also carry *gates* ([`crate::model::Job::gates`]): named counters with a
//! limit, `task:<task id>` for its task's `max_concurrency` and `key:<key>` for a concurrency key
//! that tasks share. A gated job has a route of its own too, with its gates after a second `@`:
//! `queue@k=v@key:site=3,task:t1=2` (`queue@@key:site=3` without labels; names sorted and encoded
//! as labels are). Gates do not choose runners; they choose *when*: a broker leases from a gated
//! route only while every gate of it has fewer live leases, across all routes and workers, than
//! its limit, and counts the lease under each gate in the same atomic step that takes it. A lease
//! ending in any way (release, hand back, reaped after its deadline, replaced by a newer attempt)
//! frees its slots in the step that ends it, so the counts are the live leases and nothing else:
//! a broker that restarts, or loses its keys, starts from no leases and nothing held. A lessee
//! skips a route whose gates are full without reading it, so the route's jobs keep their order
//! and never hold up other routes. Jobs of one gate whose limits differ (tasks sharing a key but
//! naming different limits) each obey their own: a job is leased while fewer than its limit hold
//! the gate.
//!
//! Routes that differ only in their gates form a *group* ([`group_of`]: the queue with its
//! requirements), and a lease takes from a group its oldest job first among the routes whose
//! gates have room (by publish order: the in-process broker numbers jobs; Redis compares the
//! heads' stream ids, which order jobs of different routes to the millisecond, so jobs of one
//! millisecond, such as a scheduler batch, go route by route). So the runs of one queue start
//! in the order they were queued whatever their gates, a gate only holding some of them back,
//! and no gated route starves another of its group.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Separates a queue from its label requirements in a route.
pub const SEP: char = '@';
/// The label every runner has: its own name.
pub const RUNNER_LABEL: &str = "runner";

/// The value of a runner's `python<version>` labels.
pub const HAS: &str = "yes";

/// The label of a Python `major.minor` (a longer version counts by its first two parts):
/// `python3.12`; `None` for what is not a version.
pub fn python_label(version: &str) -> Option<String> {
    fn number(p: &str) -> Option<&str> {
        (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
    }
    let mut parts = version.trim().split('.');
    let (major, minor) = (number(parts.next()?)?, number(parts.next()?)?);
    Some(format!("python{major}.{minor}"))
}

/// `needs` with the preferred labels `prefer` added, while a job has them (a task's
/// `prefer`): a label the task requires keeps its value.
pub fn with_preferred(
    needs: &mut Cow<'_, BTreeMap<String, String>>,
    prefer: &BTreeMap<String, String>,
) {
    if prefer.keys().all(|k| needs.contains_key(k)) {
        return;
    }
    let all = needs.to_mut();
    for (k, v) in prefer {
        all.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// What a job of a task requiring `labels`, of a project asking for `python_version`, requires.
pub fn requirements<'a>(
    labels: &'a BTreeMap<String, String>,
    python_version: Option<&str>,
) -> Cow<'a, BTreeMap<String, String>> {
    match python_version.and_then(python_label) {
        None => Cow::Borrowed(labels),
        Some(python) => {
            let mut all = labels.clone();
            all.insert(python, HAS.into());
            Cow::Owned(all)
        }
    }
}

/// The gate of a task's `max_concurrency`.
pub fn task_gate(task_id: &str) -> String {
    format!("task:{task_id}")
}

/// The gate of a concurrency key tasks share.
pub fn key_gate(key: &str) -> String {
    format!("key:{key}")
}

/// The route of a job of `queue` requiring `labels` and held by `gates` (name → limit): the
/// queue itself when there are neither.
pub fn route<'a>(
    queue: &'a str,
    labels: &BTreeMap<String, String>,
    gates: &BTreeMap<String, u32>,
) -> Cow<'a, str> {
    if labels.is_empty() && gates.is_empty() {
        return Cow::Borrowed(queue);
    }
    let mut out = String::with_capacity(queue.len() + 16);
    out.push_str(queue);
    out.push(SEP);
    pairs(labels.iter(), &mut out);
    if !gates.is_empty() {
        out.push(SEP);
        pairs(
            gates.iter().map(|(g, limit)| (g, limit.to_string())),
            &mut out,
        );
    }
    Cow::Owned(out)
}

/// `k=v,k=v`, each part encoded.
fn pairs<K: AsRef<str>, V: AsRef<str>>(kvs: impl Iterator<Item = (K, V)>, out: &mut String) {
    for (i, (k, v)) in kvs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode(k.as_ref(), out);
        out.push('=');
        encode(v.as_ref(), out);
    }
}

fn encode(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '%' | ',' | '=' | '@' | '{' | '}') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// The queue a route belongs to (the route itself for a plain queue).
pub fn queue_of(route: &str) -> &str {
    route.split_once(SEP).map_or(route, |(queue, _)| queue)
}

/// Per-route depths ([`QueueBroker::queue_depths`](super::QueueBroker::queue_depths)) summed
/// per queue, by name: what a person means by a queue's depth.
pub fn depths_by_queue(depths: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut by_queue: BTreeMap<String, u64> = BTreeMap::new();
    for (route, depth) in &depths {
        *by_queue.entry(queue_of(route).to_string()).or_default() += depth;
    }
    by_queue.into_iter().collect()
}

/// The queue of a route, its requirements as `(key, value)` pairs and its gates as
/// `name=limit,…`, still encoded (equal strings encode equally, so they compare as they are).
fn parse(route: &str) -> (&str, Vec<(&str, &str)>, &str) {
    match route.split_once(SEP) {
        None => (route, vec![], ""),
        Some((queue, rest)) => {
            let (labels, gates) = rest.split_once(SEP).unwrap_or((rest, ""));
            (
                queue,
                labels
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .collect(),
                gates,
            )
        }
    }
}

/// The gates of a route as `name=limit,…`, names encoded (empty when it has none): what the
/// Redis broker hands its lease script per stream.
pub fn gates_of(route: &str) -> &str {
    parse(route).2
}

/// The routes among `known` that a runner serving `queues` with `labels` may lease from, the
/// plain queues always included: most requirements first, then in `queues`' order, the routes
/// of a group ([`group_of`]) together, gated before ungated.
pub fn routes_for(
    known: &[String],
    queues: &[String],
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let encoded: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            encode(k, &mut ek);
            encode(v, &mut ev);
            (ek, ev)
        })
        .collect();
    let mut routed: Vec<(usize, usize, &str, bool, &str)> = known
        .iter()
        .filter_map(|r| {
            let (queue, needs, gates) = parse(r);
            let at = queues.iter().position(|q| q == queue)?;
            let fits = (!needs.is_empty() || !gates.is_empty())
                && needs
                    .iter()
                    .all(|(k, v)| encoded.get(*k).is_some_and(|have| have == v));
            fits.then_some((needs.len(), at, group_of(r), gates.is_empty(), r.as_str()))
        })
        .collect();
    // The plain queues, each beside the gated routes of its group.
    for (at, q) in queues.iter().enumerate() {
        if !routed.iter().any(|r| r.4 == q) {
            routed.push((0, at, q, true, q));
        }
    }
    routed.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(b.2))
            .then(a.3.cmp(&b.3))
            .then(a.4.cmp(b.4))
    });
    routed.into_iter().map(|r| r.4.to_string()).collect()
}

/// The group of a route: the route without its gates, which names the routes of one queue and
/// one set of requirements. A lease takes from a group oldest job first, whichever route of it
/// holds the job ([`routes_for`] lists a group's routes together).
pub fn group_of(route: &str) -> &str {
    let Some((queue, rest)) = route.split_once(SEP) else {
        return route;
    };
    match rest.split_once(SEP) {
        None => route,
        Some(("", _)) => queue,
        Some((labels, _)) => &route[..queue.len() + 1 + labels.len()],
    }
}

/// `labels` with [`RUNNER_LABEL`] set to `name` (a label of that key the runner set itself is
/// replaced: a runner is pinned by its own name only).
pub fn with_runner(labels: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    out.insert(RUNNER_LABEL.into(), name.into());
    out
}

/// The requirements of `needs` that no one of `runners` (each a runner's labels) meets all of,
/// as `k=v` text, for "no live runner matches …"; `None` when some runner meets them all.
pub fn unmet<'a>(
    needs: &BTreeMap<String, String>,
    runners: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> Option<String> {
    let fits = |have: &BTreeMap<String, String>| needs.iter().all(|(k, v)| have.get(k) == Some(v));
    if runners.into_iter().any(fits) {
        return None;
    }
    Some(
        needs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(all: &[&str]) -> Vec<String> {
        all.iter().map(|s| s.to_string()).collect()
    }

    fn gates(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    }

    #[test]
    fn a_queues_depth_counts_every_route_of_it() {
        let none = BTreeMap::new();
        let gpu = labels(&[("gpu", "true")]);
        let routes = [
            route("default", &none, &BTreeMap::new()).into_owned(),
            route("default", &gpu, &BTreeMap::new()).into_owned(),
            route("default", &gpu, &gates(&[("key:site", 3)])).into_owned(),
            route("other", &none, &gates(&[("task:t1", 1)])).into_owned(),
        ];
        assert!(routes
            .iter()
            .all(|r| r.starts_with("default") || r.starts_with("other")));
        let depths = routes.into_iter().zip([1, 2, 4, 8]).collect();
        assert_eq!(
            depths_by_queue(depths),
            [("default".to_string(), 7), ("other".to_string(), 8)]
        );
        assert_eq!(queue_of("q@a=b"), "q");
        assert_eq!(queue_of("q"), "q");
    }

    #[test]
    fn a_route_is_the_queue_and_its_sorted_encoded_requirements() {
        let none = gates(&[]);
        assert_eq!(route("default", &labels(&[]), &none), "default");
        assert_eq!(
            route(
                "default",
                &labels(&[("zone", "a,b=c"), ("gpu", "true")]),
                &none
            ),
            "default@gpu=true,zone=a%2Cb%3Dc"
        );
    }

    #[test]
    fn gates_follow_the_requirements_after_a_second_separator() {
        let g = gates(&[("task:t1", 2), ("key:site=a@b", 3)]);
        assert_eq!(
            route("default", &labels(&[]), &g),
            "default@@key:site%3Da%40b=3,task:t1=2"
        );
        let gpu = route("default", &labels(&[("gpu", "true")]), &g);
        assert_eq!(gpu, "default@gpu=true@key:site%3Da%40b=3,task:t1=2");
        assert_eq!(gates_of(&gpu), "key:site%3Da%40b=3,task:t1=2");
        assert_eq!(gates_of("default@gpu=true"), "");
        assert_eq!(gates_of("default"), "");
        assert_eq!(task_gate("t1"), "task:t1");
        assert_eq!(key_gate("site"), "key:site");
    }

    #[test]
    fn gated_routes_are_matched_by_their_labels_and_come_first() {
        let known = strings(&[
            "default",
            "default@@task:t1=2",
            "default@gpu=true",
            "default@gpu=true@key:k=1",
            "default@gpu=false@key:k=1",
            "other@@task:t2=1",
        ]);
        let queues = strings(&["default"]);
        assert_eq!(
            routes_for(&known, &queues, &labels(&[("gpu", "true")])),
            [
                "default@gpu=true@key:k=1",
                "default@gpu=true",
                "default@@task:t1=2",
                "default"
            ]
        );
        assert_eq!(
            routes_for(&known, &queues, &labels(&[])),
            ["default@@task:t1=2", "default"]
        );
        // A plain queue stays beside its gated routes, whatever comes after it.
        let two = strings(&["default", "other"]);
        assert_eq!(
            routes_for(&known, &two, &labels(&[])),
            ["default@@task:t1=2", "default", "other@@task:t2=1", "other"]
        );
        assert_eq!(group_of("default@gpu=true@key:k=1"), "default@gpu=true");
        assert_eq!(group_of("default@gpu=true"), "default@gpu=true");
        assert_eq!(group_of("default@@task:t1=2"), "default");
        assert_eq!(group_of("default"), "default");
    }

    #[test]
    fn a_runner_gets_the_routes_it_meets_most_specific_first() {
        let known: Vec<String> = [
            "default",
            "default@gpu=true",
            "default@gpu=true,zone=sh",
            "default@gpu=false",
            "other@gpu=true",
            "default@zone=a%2Cb",
        ]
        .map(String::from)
        .to_vec();
        let queues = vec!["default".to_string()];
        let gpu = labels(&[("gpu", "true"), ("zone", "sh")]);
        assert_eq!(
            routes_for(&known, &queues, &gpu),
            ["default@gpu=true,zone=sh", "default@gpu=true", "default"]
        );
        assert_eq!(
            routes_for(&known, &queues, &labels(&[("zone", "a,b")])),
            ["default@zone=a%2Cb", "default"]
        );
        assert_eq!(routes_for(&known, &queues, &labels(&[])), ["default"]);
        // A queue nothing was published to yet is still read.
        assert_eq!(routes_for(&[], &["fresh".to_string()], &gpu), ["fresh"]);
    }

    #[test]
    fn a_python_version_is_a_requirement() {
        assert_eq!(python_label("3.12").as_deref(), Some("python3.12"));
        assert_eq!(python_label(" 3.11.7 ").as_deref(), Some("python3.11"));
        assert_eq!(python_label("3"), None);
        assert_eq!(python_label("three.x"), None);
        let gpu = labels(&[("gpu", "true")]);
        assert_eq!(requirements(&gpu, None).as_ref(), &gpu);
        assert_eq!(
            requirements(&gpu, Some("3.12")).as_ref(),
            &labels(&[("gpu", "true"), ("python3.12", "yes")])
        );
    }

    #[test]
    fn unmet_names_the_requirements_when_no_runner_meets_them() {
        let needs = labels(&[("gpu", "true")]);
        let cpu = labels(&[("gpu", "false")]);
        assert_eq!(unmet(&needs, [&cpu]).as_deref(), Some("gpu=true"));
        assert_eq!(unmet(&needs, [&cpu, &needs]), None);
    }
}
