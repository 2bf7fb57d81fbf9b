//! Alerts (leader only): events become deliveries in the SQL outbox, and the outbox is sent.
//!
//! **Finding events.** Ended runs are read in `(closed_at, id)` order from a cursor kept in SQL,
//! re-reading the last [`LOOKBACK_MS`] each pass: `closed_at` is taken inside the transaction
//! that ends a run, so a run can commit slightly after a later one, and the overlap catches it.
//! While no enabled rule watches ended runs, none is read: the cursor only follows the clock.
//! Running runs past a rule's `long_running_s`, runners that stopped heartbeating, misfires the
//! tick reports and queues above a backlog are read each pass. Every event has a key
//! (`run.failed:<run id>`, …) and the outbox holds one delivery per key and channel, so a
//! re-read, a restart or a new leader adds nothing twice. Enabling a rule does not alert on
//! history older than the lookback.
//!
//! **Sending.** Due deliveries are grouped by rule, channel and group (a task, a worker, a
//! queue). A group whose rule sent to that channel within `throttle_s` waits for the window to
//! end and then goes as one digest. A group is claimed in SQL before it is sent and marked sent
//! after, so a leader killed between the commit of a delivery and its send leaves it pending
//! for the next leader, and one killed during a send leaves it to be retried after
//! [`SEND_LEASE_MS`] (receivers get the delivery id, `X-AntCode-Delivery` on webhooks, to drop
//! that rare repeat). Failures are retried with exponential backoff up to [`MAX_ATTEMPTS`];
//! a permanent error fails the delivery at once.
//!
//! Worker-offline and backlog crossings are remembered in memory: a leader that takes over sees
//! the runners and queues as they are, and alerts on what changes from then on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;

use antcode_core::alerting::*;
use antcode_core::model::{Run, RunState};
use antcode_core::store::StoreError;
use antcode_notify::{ChannelConfig, Event, Notification, Template};

use crate::SchedulerConfig;

/// How far behind the cursor each pass re-reads ended runs.
pub const LOOKBACK_MS: i64 = 10_000;
/// How long a claimed send may take before another leader may send it again.
pub const SEND_LEASE_MS: i64 = 60_000;
/// Attempts before a delivery fails for good.
pub const MAX_ATTEMPTS: u32 = 8;
/// The cursor's name in the store's settings.
const CURSOR: &str = "alerts.runs";
/// Ended runs read per page.
const PAGE: u32 = 500;
/// Deliveries sent per pass.
const SEND_BATCH: u32 = 200;
/// Most of a log archive read for its last lines (inflated bytes).
const MAX_LOG_READ: u64 = 64 << 20;

/// A due time a misfire policy dropped, as the tick reports it.
#[derive(Debug, Clone)]
pub struct Misfire {
    pub task_id: String,
    pub task_name: String,
    pub latest: i64,
    pub count: usize,
}

/// Misfires from the tick, waiting for the next alert pass.
#[derive(Debug, Default)]
pub struct Misfires(Mutex<Vec<Misfire>>);

impl Misfires {
    pub fn add(&self, misfires: Vec<Misfire>) {
        if !misfires.is_empty() {
            self.0.lock().unwrap().extend(misfires);
        }
    }

    fn take(&self) -> Vec<Misfire> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// One event found for a rule, before it is one delivery per channel.
struct Found {
    key: String,
    group: String,
    event: Event,
}

pub struct Alerts<'a> {
    config: &'a SchedulerConfig,
    /// Ended runs of the lookback window already evaluated by this leader.
    seen: HashMap<String, i64>,
    /// Runners seen by the last pass, with when they were last seen.
    runners: Option<HashMap<String, (String, i64)>>,
    /// Queues above their backlog at the last pass (per rule).
    above: HashSet<(String, String)>,
    task_names: HashMap<String, String>,
}

impl<'a> Alerts<'a> {
    pub fn new(config: &'a SchedulerConfig) -> Alerts<'a> {
        Alerts {
            config,
            seen: HashMap::new(),
            runners: None,
            above: HashSet::new(),
            task_names: HashMap::new(),
        }
    }

    /// Finds this pass's events and adds their deliveries to the outbox.
    pub async fn evaluate(&mut self) -> Result<usize, StoreError> {
        let now = self.config.clock.now_ms();
        let rules: Vec<AlertRule> = (self.config.store.list_rules().await?)
            .into_iter()
            .filter(|r| r.enabled && !r.spec.channels.is_empty())
            .collect();
        let misfires = self.config.misfires.take();
        let mut found: Vec<(&AlertRule, Found)> = vec![];
        self.ended_runs(&rules, &mut found).await?;
        if rules.is_empty() {
            return Ok(0);
        }
        self.long_running(&rules, now, &mut found).await?;
        self.offline_workers(&rules, now, &mut found).await;
        self.backlogs(&rules, now, &mut found).await;
        for m in &misfires {
            for rule in watching(&rules, AlertOn::ScheduleMisfired, Some(&m.task_id)) {
                found.push((
                    rule,
                    Found {
                        key: format!("schedule.misfired:{}:{}", m.task_id, m.latest),
                        group: format!("task:{}", m.task_id),
                        event: Event {
                            kind: AlertOn::ScheduleMisfired.event_kind().into(),
                            summary: format!(
                                "{} due time(s) skipped by the misfire policy",
                                m.count
                            ),
                            task_id: Some(m.task_id.clone()),
                            task_name: Some(m.task_name.clone()),
                            occurred_at: m.latest,
                            count: m.count as u32,
                            ..Default::default()
                        },
                    },
                ));
            }
        }
        let deliveries: Vec<Delivery> = found
            .into_iter()
            .flat_map(|(rule, f)| {
                let mut event = f.event;
                event.rule = Some(rule.name.clone());
                rule.spec
                    .channels
                    .iter()
                    .map(|channel| {
                        let event = serde_json::to_value(&event).expect("events serialize");
                        Delivery::pending(Some(&rule.id), channel, &f.key, &f.group, event, now)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(0);
        }
        let added = self.config.store.enqueue_deliveries(&deliveries).await?;
        metrics::counter!("antcode_scheduler_alerts_enqueued_total").increment(added as u64);
        Ok(added)
    }

    /// Ended runs since the cursor (and the lookback behind it), against the run rules.
    async fn ended_runs<'r>(
        &mut self,
        rules: &'r [AlertRule],
        found: &mut Vec<(&'r AlertRule, Found)>,
    ) -> Result<(), StoreError> {
        let store = &self.config.store;
        // A position among ended runs is in the clock the store stamps `closed_at` with.
        let present = ClosedKey {
            closed_at: antcode_core::time::now_ms(),
            id: String::new(),
        };
        let cursor = store.cursor(CURSOR).await?;
        let run_rules = rules
            .iter()
            .any(|r| r.spec.on.iter().any(|o| o.on_ended_run()));
        let cursor = match cursor {
            // Nothing watches ended runs (or this is the first pass ever): none is read, and the
            // cursor follows the present, written once per lookback; history is not news.
            Some(c) if !run_rules && present.closed_at - c.closed_at <= LOOKBACK_MS => {
                return Ok(())
            }
            Some(c) if run_rules => c,
            _ => return store.set_cursor(CURSOR, &present).await,
        };
        let mut after = ClosedKey {
            closed_at: cursor.closed_at - LOOKBACK_MS,
            id: String::new(),
        };
        let mut last = cursor.clone();
        loop {
            let page = store.closed_runs(&after, PAGE).await?;
            let full = page.len() == PAGE as usize;
            for run in &page {
                let key = ClosedKey {
                    closed_at: run.closed_at.unwrap_or(run.queued_at),
                    id: run.id.clone(),
                };
                if (key.closed_at, &key.id) > (last.closed_at, &last.id) {
                    last = key.clone();
                }
                if self.seen.contains_key(&run.id) {
                    continue;
                }
                self.seen.insert(run.id.clone(), key.closed_at);
                self.run_events(rules, run, &key, found).await?;
            }
            match page.last() {
                Some(run) if full => {
                    after = ClosedKey {
                        closed_at: run.closed_at.unwrap_or(run.queued_at),
                        id: run.id.clone(),
                    }
                }
                _ => break,
            }
        }
        let horizon = last.closed_at - 2 * LOOKBACK_MS;
        self.seen.retain(|_, at| *at >= horizon);
        if last != cursor {
            store.set_cursor(CURSOR, &last).await?;
        }
        Ok(())
    }

    async fn run_events<'r>(
        &mut self,
        rules: &'r [AlertRule],
        run: &Run,
        key: &ClosedKey,
        found: &mut Vec<(&'r AlertRule, Found)>,
    ) -> Result<(), StoreError> {
        let failed = is_failure(run.state);
        let direct = match run.state {
            RunState::Failed => Some(AlertOn::Failed),
            RunState::TimedOut => Some(AlertOn::TimedOut),
            RunState::Lost => Some(AlertOn::Lost),
            _ => None,
        };
        let mut on: Vec<(&'r AlertRule, AlertOn, String)> = vec![];
        for rule in rules.iter().filter(|r| r.watches_task(&run.task_id)) {
            if let Some(kind) = direct.filter(|k| rule.spec.on.contains(k)) {
                on.push((rule, kind, run.state.as_str().replace('_', " ")));
            }
            if failed && rule.spec.on.contains(&AlertOn::ConsecutiveFailures) {
                let n = rule.spec.consecutive.max(1);
                let last = self
                    .config
                    .store
                    .last_outcomes(&run.task_id, key, n + 1)
                    .await?;
                let streak = last.iter().take_while(|s| is_failure(**s)).count();
                if streak == n as usize {
                    on.push((
                        rule,
                        AlertOn::ConsecutiveFailures,
                        format!("failed {n} times in a row"),
                    ));
                }
            }
            if run.state == RunState::Succeeded && rule.spec.on.contains(&AlertOn::Recovered) {
                let last = self
                    .config
                    .store
                    .last_outcomes(&run.task_id, key, 2)
                    .await?;
                if last.get(1).is_some_and(|s| is_failure(*s)) {
                    on.push((
                        rule,
                        AlertOn::Recovered,
                        "recovered: succeeded after failures".into(),
                    ));
                }
            }
        }
        if on.is_empty() {
            return Ok(());
        }
        let mut event = self.run_event(run).await;
        event.occurred_at = run.finished_at.unwrap_or(key.closed_at);
        for (rule, kind, summary) in on {
            let mut event = event.clone();
            event.kind = kind.event_kind().into();
            event.summary = summary;
            found.push((
                rule,
                Found {
                    key: format!("{}:{}", kind.event_kind(), run.id),
                    group: format!("task:{}", run.task_id),
                    event,
                },
            ));
        }
        Ok(())
    }

    /// What an alert says of a run: its task, outcome, link and last log lines.
    async fn run_event(&mut self, run: &Run) -> Event {
        Event {
            kind: String::new(),
            summary: String::new(),
            task_id: Some(run.task_id.clone()),
            task_name: self.task_name(&run.task_id).await,
            run_id: Some(run.id.clone()),
            run_url: self
                .config
                .public_url
                .as_ref()
                .map(|base| format!("{}/#/runs/{}", base.trim_end_matches('/'), run.id)),
            state: Some(run.state.as_str().into()),
            attempt: Some(run.attempt),
            worker_id: run.worker_id.clone(),
            exit_code: run.exit_code,
            error: run.error.clone(),
            duration_ms: run.duration_ms,
            log_tail: self.log_tail(run).await,
            occurred_at: 0,
            rule: None,
            count: 1,
        }
    }

    async fn task_name(&mut self, task_id: &str) -> Option<String> {
        if let Some(name) = self.task_names.get(task_id) {
            return Some(name.clone());
        }
        let name = self.config.store.task(task_id).await.ok()?.name;
        if self.task_names.len() > 10_000 {
            self.task_names.clear();
        }
        self.task_names.insert(task_id.into(), name.clone());
        Some(name)
    }

    /// The last lines of the run's archived log, if there is one.
    async fn log_tail(&self, run: &Run) -> Vec<String> {
        let (Some(blobs), Some(key)) = (&self.config.blobs, &run.log_key) else {
            return vec![];
        };
        let Ok(gz) = blobs.get(key).await else {
            return vec![];
        };
        let mut text = String::new();
        let inflated = flate2::read::MultiGzDecoder::new(&gz[..]).take(MAX_LOG_READ);
        let mut reader = std::io::BufReader::new(inflated);
        let mut tail = std::collections::VecDeque::new();
        loop {
            text.clear();
            match std::io::BufRead::read_line(&mut reader, &mut text) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tail.len() == antcode_notify::template::MAX_LOG_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text.trim_end_matches(['\n', '\r']).to_string());
                }
            }
        }
        tail.into()
    }

    async fn long_running<'r>(
        &mut self,
        rules: &'r [AlertRule],
        now: i64,
        found: &mut Vec<(&'r AlertRule, Found)>,
    ) -> Result<(), StoreError> {
        if !rules
            .iter()
            .any(|r| r.spec.on.contains(&AlertOn::LongRunning))
        {
            return Ok(());
        }
        for run in self.config.store.running_runs(10_000).await? {
            let Some(started) = run.started_at else {
                continue;
            };
            for rule in watching(rules, AlertOn::LongRunning, Some(&run.task_id)) {
                let Some(limit) = rule.spec.long_running_s else {
                    continue;
                };
                let limit_ms = (limit as i64).saturating_mul(1000);
                if now - started <= limit_ms {
                    continue;
                }
                let mut event = self.run_event(&run).await;
                event.kind = AlertOn::LongRunning.event_kind().into();
                event.summary = format!("running for longer than {limit} s");
                event.duration_ms = Some(now - started);
                event.occurred_at = started + limit_ms;
                found.push((
                    rule,
                    Found {
                        key: format!("run.long_running:{}:{}", run.id, run.attempt),
                        group: format!("task:{}", run.task_id),
                        event,
                    },
                ));
            }
        }
        Ok(())
    }

    async fn offline_workers<'r>(
        &mut self,
        rules: &'r [AlertRule],
        now: i64,
        found: &mut Vec<(&'r AlertRule, Found)>,
    ) {
        let Ok(workers) = self.config.broker.workers().await else {
            return;
        };
        let live: HashMap<String, (String, i64)> = workers
            .into_iter()
            .map(|w| (w.id, (w.name, w.last_seen_ms)))
            .collect();
        let before = self.runners.replace(live.clone()).unwrap_or_default();
        for (id, (name, last_seen)) in before {
            if live.contains_key(&id) {
                continue;
            }
            for rule in watching(rules, AlertOn::WorkerOffline, None) {
                found.push((
                    rule,
                    Found {
                        key: format!("worker.offline:{id}:{last_seen}"),
                        group: format!("worker:{id}"),
                        event: Event {
                            kind: AlertOn::WorkerOffline.event_kind().into(),
                            summary: format!("runner {name} stopped heartbeating"),
                            worker_id: Some(id.clone()),
                            occurred_at: now,
                            count: 1,
                            ..Default::default()
                        },
                    },
                ));
            }
        }
    }

    async fn backlogs<'r>(
        &mut self,
        rules: &'r [AlertRule],
        now: i64,
        found: &mut Vec<(&'r AlertRule, Found)>,
    ) {
        let watched = watching(rules, AlertOn::QueueBacklog, None);
        if watched.is_empty() {
            return;
        }
        let Ok(depths) = self.config.broker.queue_depths().await else {
            return;
        };
        // A rule names a queue; its labelled and gated jobs wait in routes of it.
        let depths = antcode_core::broker::routing::depths_by_queue(depths);
        for rule in watched {
            let Some(limit) = rule.spec.backlog else {
                continue;
            };
            for (queue, depth) in &depths {
                if rule.spec.queue.as_ref().is_some_and(|q| q != queue) {
                    continue;
                }
                let id = (rule.id.clone(), queue.clone());
                if *depth <= limit {
                    self.above.remove(&id);
                    continue;
                }
                if !self.above.insert(id) {
                    continue;
                }
                found.push((
                    rule,
                    Found {
                        key: format!("queue.backlog:{queue}:{now}"),
                        group: format!("queue:{queue}"),
                        event: Event {
                            kind: AlertOn::QueueBacklog.event_kind().into(),
                            summary: format!("queue {queue} holds {depth} jobs (over {limit})"),
                            occurred_at: now,
                            count: 1,
                            ..Default::default()
                        },
                    },
                ));
            }
        }
    }

    /// Sends the due deliveries; returns how many were delivered.
    pub async fn deliver(&mut self) -> Result<usize, StoreError> {
        let store = &self.config.store;
        let now = self.config.clock.now_ms();
        let due = store.due_deliveries(now, SEND_BATCH).await?;
        let mut groups: BTreeMap<(Option<String>, String, String), Vec<Delivery>> = BTreeMap::new();
        for d in due {
            // A test delivery is a group of its own.
            let group = match &d.rule_id {
                Some(_) => d.group_key.clone(),
                None => d.id.clone(),
            };
            groups
                .entry((d.rule_id.clone(), d.channel_id.clone(), group))
                .or_default()
                .push(d);
        }
        let mut sent = 0;
        let mut rules: HashMap<String, Option<AlertRule>> = HashMap::new();
        for ((rule_id, channel_id, group), deliveries) in groups {
            let rule = match &rule_id {
                Some(id) => {
                    if !rules.contains_key(id) {
                        let rule = match store.rule(id).await {
                            Ok(r) => Some(r),
                            Err(StoreError::NotFound) => None,
                            Err(e) => return Err(e),
                        };
                        rules.insert(id.clone(), rule);
                    }
                    rules[id].clone()
                }
                None => None,
            };
            let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
            if let Some(rule) = &rule {
                let window = (rule.spec.throttle_s as i64).saturating_mul(1000);
                if let Some(last) = store.last_sent(&rule.id, &channel_id, &group).await? {
                    if now < last + window {
                        store.defer_deliveries(&ids, last + window).await?;
                        continue;
                    }
                }
            }
            let taken = store
                .claim_deliveries(&ids, now, now + SEND_LEASE_MS)
                .await?;
            if taken.is_empty() {
                continue;
            }
            let taken: Vec<Delivery> = deliveries
                .into_iter()
                .filter(|d| taken.contains(&d.id))
                .collect();
            if self.send(rule.as_ref(), &channel_id, &taken, now).await? {
                sent += taken.len();
            }
        }
        Ok(sent)
    }

    /// Sends `group` (one or more deliveries of one rule and channel) as one alert.
    async fn send(
        &self,
        rule: Option<&AlertRule>,
        channel_id: &str,
        group: &[Delivery],
        now: i64,
    ) -> Result<bool, StoreError> {
        let store = &self.config.store;
        let ids: Vec<String> = group.iter().map(|d| d.id.clone()).collect();
        let config = match self.open_channel(channel_id).await? {
            Ok(c) => c,
            Err(why) => {
                store.deliveries_failed(&ids, &why, None).await?;
                metrics::counter!("antcode_scheduler_alerts_total", "outcome" => "failed")
                    .increment(ids.len() as u64);
                return Ok(false);
            }
        };
        let carrier = &group[group.len() - 1];
        let mut event: Event = serde_json::from_value(carrier.event.clone()).unwrap_or_default();
        if group.len() > 1 {
            event.count = group.len() as u32;
            event.summary = format!(
                "{} alerts since the last one; latest: {}",
                group.len(),
                event.summary
            );
        }
        let title = rule
            .and_then(|r| r.spec.title.as_deref())
            .and_then(|t| Template::parse(t).ok());
        let body = rule
            .and_then(|r| r.spec.body.as_deref())
            .and_then(|t| Template::parse(t).ok());
        let n = Notification::render(&carrier.id, event, title.as_ref(), body.as_ref());
        let attempts = group.iter().map(|d| d.attempts).max().unwrap_or(0) + 1;
        match self.config.notifier.send(&config, &n).await {
            Ok(receipt) => {
                store
                    .deliveries_sent(
                        &ids,
                        &carrier.id,
                        &receipt.detail,
                        self.config.clock.now_ms(),
                    )
                    .await?;
                metrics::counter!("antcode_scheduler_alerts_total", "outcome" => "sent")
                    .increment(ids.len() as u64);
                Ok(true)
            }
            Err(e) => {
                let retry =
                    (e.retryable && attempts < MAX_ATTEMPTS).then(|| now + backoff_ms(attempts));
                tracing::warn!(channel = %channel_id, error = %e.detail, retry = retry.is_some(), "alerts: send failed");
                store.deliveries_failed(&ids, &e.detail, retry).await?;
                let outcome = if retry.is_some() { "retried" } else { "failed" };
                metrics::counter!("antcode_scheduler_alerts_total", "outcome" => outcome)
                    .increment(ids.len() as u64);
                Ok(false)
            }
        }
    }

    /// The channel's configuration, or why it cannot be used.
    async fn open_channel(&self, id: &str) -> Result<Result<ChannelConfig, String>, StoreError> {
        let channel = match self.config.store.channel(id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Ok(Err("the channel was deleted".into())),
            Err(e) => return Err(e),
        };
        if !channel.enabled {
            return Ok(Err("the channel is disabled".into()));
        }
        let Some(secrets) = &self.config.secrets else {
            return Ok(Err(
                "no secret key (ANTCODE_SECRET_KEY) to open the channel with".into(),
            ));
        };
        let opened = secrets
            .open(&seal_name(id), &channel.sealed)
            .map_err(|e| format!("the channel's configuration cannot be opened: {e}"))
            .and_then(|text| {
                serde_json::from_str::<ChannelConfig>(&text)
                    .map_err(|e| format!("the channel's configuration is not valid: {e}"))
            });
        Ok(opened)
    }
}

/// 5 s, 10 s, 20 s, … up to 10 minutes.
fn backoff_ms(attempts: u32) -> i64 {
    (5_000i64 << attempts.saturating_sub(1).min(7)).min(600_000)
}

fn is_failure(s: RunState) -> bool {
    matches!(s, RunState::Failed | RunState::TimedOut | RunState::Lost)
}

/// The enabled rules on `kind` that watch `task` (every rule for events without a task).
fn watching<'r>(rules: &'r [AlertRule], kind: AlertOn, task: Option<&str>) -> Vec<&'r AlertRule> {
    rules
        .iter()
        .filter(|r| r.spec.on.contains(&kind) && task.is_none_or(|t| r.watches_task(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_ten_minutes() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(8), 600_000);
        assert_eq!(backoff_ms(30), 600_000);
    }
}
