//! [`MemoryBroker`]: the in-process `Broker` for `antcode up`. One mutex over plain collections
//! and a `Notify` to wake parked lessees the moment a job is published, or a lease under a gate
//! ends. Nothing survives a restart, by design: the scheduler rebuilds the queues from SQL.
//! Change announcements ([`ChangeBroker::announce_change`]) go through a broadcast channel.
//!
//! Leases are added and removed only through [`State::hold`] and [`State::unhold`], which keep
//! the count of live leases per gate ([`routing`]) with them under the same lock.

use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::*;
use crate::ids::new_token;
use crate::time::now_ms;

#[derive(Default)]
struct State {
    /// Jobs waiting per route, each with its number in publish order (see [`State::oldest`]).
    queues: BTreeMap<String, VecDeque<(u64, Job)>>,
    /// The number of the next job published.
    next_seq: u64,
    /// `(run_id, attempt)` of every job queued or leased, for idempotent publish.
    present: HashSet<(String, u32)>,
    /// Live leases by run; changed only by [`State::hold`] and [`State::unhold`].
    leases: HashMap<String, Lease>,
    /// Live leases per gate, kept by [`State::hold`] and [`State::unhold`] (absent = none).
    held: HashMap<String, u32>,
    cancels: HashSet<String>,
    events: VecDeque<(u64, RunEvent)>,
    /// Per group: events delivered but not acknowledged, redelivered after a timeout.
    pending: HashMap<String, BTreeMap<u64, (Instant, RunEvent)>>,
    next_event: u64,
    logs: HashMap<String, VecDeque<LogChunk>>,
    workers: BTreeMap<String, (Instant, Duration, WorkerStatus)>,
    drains: HashSet<String>,
    leaders: HashMap<String, (String, Instant)>,
    fence: u64,
}

impl State {
    /// The route among `group` (routes of one group, `routing::group_of`) whose first job is
    /// the oldest of those whose gates have room; cancelled jobs met on the way are dropped.
    fn oldest<'a>(&mut self, group: &'a [String]) -> Option<&'a String> {
        let mut best: Option<(u64, &String)> = None;
        for route in group {
            let Some(q) = self.queues.get_mut(route) else {
                continue;
            };
            while let Some((_, job)) = q.front() {
                if !self.cancels.contains(&job.run_id) {
                    break;
                }
                let key = (job.run_id.clone(), job.attempt);
                q.pop_front();
                self.present.remove(&key);
            }
            let Some((seq, job)) = q.front() else {
                continue;
            };
            // Every job of a route has the route's gates: a full one closes the route.
            if best.is_none_or(|(b, _)| *seq < b) && room(&self.held, &job.gates) {
                best = Some((*seq, route));
            }
        }
        best.map(|(_, route)| route)
    }

    /// Records a live lease and counts it under its gates. A newer attempt's lease replaces the
    /// older one, which is then forgotten (its slots freed).
    fn hold(&mut self, lease: Lease) {
        for g in lease.job.gates.keys() {
            *self.held.entry(g.clone()).or_default() += 1;
        }
        let run_id = lease.job.run_id.clone();
        let attempt = lease.job.attempt;
        if let Some(old) = self.leases.insert(run_id, lease) {
            self.free(&old.job.gates);
            if old.job.attempt != attempt {
                self.present.remove(&(old.job.run_id, old.job.attempt));
            }
        }
    }

    /// Ends the lease of `run_id`, if any, and frees its slots; returns it.
    fn unhold(&mut self, run_id: &str) -> Option<Lease> {
        let lease = self.leases.remove(run_id)?;
        self.free(&lease.job.gates);
        Some(lease)
    }

    fn free(&mut self, gates: &BTreeMap<String, u32>) {
        for g in gates.keys() {
            if let Some(n) = self.held.get_mut(g) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(g);
                }
            }
        }
    }
}

/// Whether every one of `gates` has fewer live leases than its limit, by the counts `held`.
fn room(held: &HashMap<String, u32>, gates: &BTreeMap<String, u32>) -> bool {
    gates
        .iter()
        .all(|(g, limit)| held.get(g).copied().unwrap_or(0) < *limit)
}

pub struct MemoryBroker {
    state: Mutex<State>,
    jobs_published: Notify,
    events_published: Notify,
    logs_appended: Notify,
    changes: tokio::sync::broadcast::Sender<String>,
    event_redelivery: Duration,
}

/// How long a delivered-but-unacknowledged event waits before it is delivered again.
pub const DEFAULT_EVENT_REDELIVERY: Duration = Duration::from_secs(30);

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::with_event_redelivery(DEFAULT_EVENT_REDELIVERY)
    }
}

impl MemoryBroker {
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// A broker whose read but unacknowledged events are handed out again after `after`.
    pub fn with_event_redelivery(after: Duration) -> MemoryBroker {
        MemoryBroker {
            state: Mutex::default(),
            jobs_published: Notify::new(),
            events_published: Notify::new(),
            logs_appended: Notify::new(),
            changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
            event_redelivery: after,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the collections half-updated in a way that
        // matters more than losing the process, so a poisoned lock is simply reused.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_lease(&self, req: &LeaseRequest) -> Vec<Lease> {
        let mut st = self.lock();
        let mut out = Vec::new();
        let deadline_ms = now_ms() + req.ttl.as_millis() as i64;
        let known: Vec<String> = st.queues.keys().cloned().collect();
        let routes = routing::routes_for(&known, &req.queues, &req.labels);
        for group in routes.chunk_by(|a, b| routing::group_of(a) == routing::group_of(b)) {
            while out.len() < req.max {
                let Some(route) = st.oldest(group) else {
                    break;
                };
                let Some((_, job)) = st.queues.get_mut(route).and_then(|q| q.pop_front()) else {
                    break;
                };
                let lease = Lease {
                    job,
                    lease_token: new_token("lt"),
                    worker_id: req.worker_id.clone(),
                    deadline_ms,
                };
                st.hold(lease.clone());
                out.push(lease);
            }
        }
        out
    }

    /// Wakes parked lessees when leases that held gates ended: their routes may be open now.
    fn freed(&self, gated: bool) {
        if gated {
            self.jobs_published.notify_waiters();
        }
    }

    fn take_events(&self, group: &str, max: usize) -> Vec<(String, RunEvent)> {
        let redelivery = self.event_redelivery;
        let mut st = self.lock();
        let now = Instant::now();
        let mut out: Vec<(u64, RunEvent)> = Vec::new();
        let pending = st.pending.entry(group.to_string()).or_default();
        for (id, (at, ev)) in pending.iter_mut() {
            if out.len() < max && now.duration_since(*at) >= redelivery {
                *at = now;
                out.push((*id, ev.clone()));
            }
        }
        // Groups share one event log: an event is dropped from it once every group that has
        // read so far took it. A single-process broker has one recorder group in practice.
        while out.len() < max {
            let Some((id, ev)) = st.events.pop_front() else {
                break;
            };
            st.pending
                .entry(group.to_string())
                .or_default()
                .insert(id, (now, ev.clone()));
            out.push((id, ev));
        }
        out.into_iter()
            .map(|(id, ev)| (id.to_string(), ev))
            .collect()
    }
}

#[async_trait]
impl HealthBroker for MemoryBroker {
    async fn ping(&self) -> BrokerResult<()> {
        Ok(())
    }
}

#[async_trait]
impl QueueBroker for MemoryBroker {
    async fn publish_many(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        let added = {
            let mut st = self.lock();
            jobs.iter()
                .map(|job| {
                    if !st.present.insert((job.run_id.clone(), job.attempt)) {
                        return false;
                    }
                    st.cancels.remove(&job.run_id);
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    st.queues
                        .entry(job.route().into_owned())
                        .or_default()
                        .push_back((seq, job.clone()));
                    true
                })
                .collect::<Vec<_>>()
        };
        if added.contains(&true) {
            self.jobs_published.notify_waiters();
        }
        Ok(added)
    }

    async fn holds(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        let st = self.lock();
        Ok(jobs
            .iter()
            .map(|j| st.present.contains(&(j.run_id.clone(), j.attempt)))
            .collect())
    }

    async fn reroute(&self, jobs: &[Job]) -> BrokerResult<Vec<bool>> {
        let moved = {
            let mut st = self.lock();
            jobs.iter()
                .map(|job| move_job(&mut st, job))
                .collect::<Vec<_>>()
        };
        if moved.contains(&true) {
            self.jobs_published.notify_waiters();
        }
        Ok(moved)
    }

    async fn queue_depths(&self) -> BrokerResult<Vec<(String, u64)>> {
        let st = self.lock();
        Ok(st
            .queues
            .iter()
            .map(|(q, jobs)| (q.clone(), jobs.len() as u64))
            .collect())
    }
}

/// Moves `job`'s queued attempt to the end of its route now (as a newly published job);
/// whether it moved.
fn move_job(st: &mut State, job: &Job) -> bool {
    let route = job.route();
    let found = st.queues.iter().find_map(|(queue, jobs)| {
        let at = jobs
            .iter()
            .position(|(_, j)| j.run_id == job.run_id && j.attempt == job.attempt)?;
        Some((queue.clone(), at))
    });
    let Some((queue, at)) = found.filter(|(queue, _)| *queue != route) else {
        return false;
    };
    let Some((_, mut queued)) = st.queues.get_mut(&queue).and_then(|jobs| jobs.remove(at)) else {
        return false;
    };
    queued.prefer = job.prefer.clone();
    let seq = st.next_seq;
    st.next_seq += 1;
    st.queues
        .entry(route.into_owned())
        .or_default()
        .push_back((seq, queued));
    true
}

#[async_trait]
impl LeaseBroker for MemoryBroker {
    async fn lease(&self, req: &LeaseRequest, wait: Duration) -> BrokerResult<Vec<Lease>> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish between the look and the wait
            // still wakes us.
            let notified = self.jobs_published.notified();
            let got = self.try_lease(req);
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return Ok(vec![]);
            }
        }
    }

    async fn heartbeat(
        &self,
        worker_id: &str,
        held: &[HeldLease],
        ttl: Duration,
    ) -> BrokerResult<HeartbeatReply> {
        let mut st = self.lock();
        let deadline = now_ms() + ttl.as_millis() as i64;
        let mut reply = HeartbeatReply {
            drain: st.drains.contains(worker_id),
            ..Default::default()
        };
        for h in held {
            match st.leases.get_mut(&h.run_id) {
                Some(l) if l.lease_token == h.lease_token => {
                    l.deadline_ms = deadline;
                    if st.cancels.contains(&h.run_id) {
                        reply.cancels.push(h.run_id.clone());
                    }
                }
                _ => reply.lost.push(h.run_id.clone()),
            }
        }
        Ok(reply)
    }

    async fn release(&self, run_id: &str, lease_token: &str) -> BrokerResult<()> {
        let gated = {
            let mut st = self.lock();
            let held = st
                .leases
                .get(run_id)
                .is_some_and(|l| l.lease_token == lease_token);
            match held.then(|| st.unhold(run_id)).flatten() {
                Some(l) => {
                    st.present.remove(&(run_id.to_string(), l.job.attempt));
                    st.cancels.remove(run_id);
                    !l.job.gates.is_empty()
                }
                None => false,
            }
        };
        self.freed(gated);
        Ok(())
    }

    async fn hand_back(&self, run_id: &str, lease_token: &str) -> BrokerResult<()> {
        {
            let mut st = self.lock();
            let matches = st
                .leases
                .get(run_id)
                .is_some_and(|l| l.lease_token == lease_token);
            if !matches {
                return Ok(());
            }
            if let Some(l) = st.unhold(run_id) {
                // Cancelled while leased: the lease just ends, as a lease of it would drop it.
                if st.cancels.contains(run_id) {
                    st.present.remove(&(l.job.run_id, l.job.attempt));
                } else {
                    // First of its route again, and as old as the oldest job there.
                    let route = st.queues.entry(l.job.route().into_owned()).or_default();
                    let seq = route.front().map_or(0, |(seq, _)| seq.saturating_sub(1));
                    route.push_front((seq, l.job));
                }
            }
        }
        self.jobs_published.notify_waiters();
        Ok(())
    }

    async fn reap_expired(&self, now: i64) -> BrokerResult<Vec<Lease>> {
        let out = {
            let mut st = self.lock();
            let expired: Vec<String> = st
                .leases
                .values()
                .filter(|l| l.deadline_ms < now)
                .map(|l| l.job.run_id.clone())
                .collect();
            let mut out = Vec::new();
            for run_id in expired {
                if let Some(l) = st.unhold(&run_id) {
                    st.present.remove(&(run_id, l.job.attempt));
                    out.push(l);
                }
            }
            out
        };
        self.freed(out.iter().any(|l| !l.job.gates.is_empty()));
        Ok(out)
    }

    async fn lease_alive(&self, run_id: &str, lease_token: &str) -> BrokerResult<bool> {
        let st = self.lock();
        Ok(st
            .leases
            .get(run_id)
            .is_some_and(|l| l.lease_token == lease_token && l.deadline_ms >= now_ms()))
    }
}

#[async_trait]
impl CancelBroker for MemoryBroker {
    async fn cancel(&self, run_id: &str) -> BrokerResult<()> {
        let mut st = self.lock();
        st.cancels.insert(run_id.to_string());
        for q in st.queues.values_mut() {
            q.retain(|(_, j)| j.run_id != run_id);
        }
        if !st.leases.contains_key(run_id) {
            st.present.retain(|(r, _)| r != run_id);
        }
        Ok(())
    }

    async fn cancels_for(&self, run_ids: &[String]) -> BrokerResult<Vec<String>> {
        let st = self.lock();
        Ok(run_ids
            .iter()
            .filter(|r| st.cancels.contains(*r))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl EventBroker for MemoryBroker {
    async fn publish_event(&self, event: &RunEvent) -> BrokerResult<()> {
        {
            let mut st = self.lock();
            st.next_event += 1;
            let id = st.next_event;
            st.events.push_back((id, event.clone()));
        }
        self.events_published.notify_waiters();
        Ok(())
    }

    async fn read_events(
        &self,
        group: &str,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> BrokerResult<Vec<(String, RunEvent)>> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.events_published.notified();
            let got = self.take_events(group, max);
            if !got.is_empty() {
                return Ok(got);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return Ok(vec![]);
            }
        }
    }

    async fn ack_events(&self, group: &str, ids: &[String]) -> BrokerResult<()> {
        let mut st = self.lock();
        if let Some(pending) = st.pending.get_mut(group) {
            for id in ids {
                if let Ok(n) = id.parse::<u64>() {
                    pending.remove(&n);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ChangeBroker for MemoryBroker {
    async fn announce_change(&self, run_id: &str) -> BrokerResult<()> {
        // No receiver is not an error: nobody is waiting.
        let _ = self.changes.send(run_id.to_string());
        Ok(())
    }

    fn watch_changes(&self) -> RunChanges {
        self.changes.subscribe()
    }
}

#[async_trait]
impl LogBroker for MemoryBroker {
    async fn append_log(&self, run_id: &str, chunks: &[LogChunk]) -> BrokerResult<()> {
        {
            let mut st = self.lock();
            let log = st.logs.entry(run_id.to_string()).or_default();
            for c in chunks {
                if log.back().is_some_and(|l| c.cursor() <= l.cursor()) {
                    continue; // already have it
                }
                log.push_back(c.clone());
                if log.len() > LIVE_LOG_CHUNKS {
                    log.pop_front();
                }
            }
        }
        self.logs_appended.notify_waiters();
        Ok(())
    }

    async fn read_log(
        &self,
        run_id: &str,
        after: u64,
        wait: Duration,
    ) -> BrokerResult<Vec<LogChunk>> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.logs_appended.notified();
            let got: Vec<LogChunk> = {
                let st = self.lock();
                st.logs
                    .get(run_id)
                    .map(|l| l.iter().filter(|c| c.cursor() > after).cloned().collect())
                    .unwrap_or_default()
            };
            if !got.is_empty() || wait.is_zero() {
                return Ok(got);
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return Ok(vec![]);
            }
        }
    }
}

#[async_trait]
impl WorkerBroker for MemoryBroker {
    async fn put_worker(&self, status: &WorkerStatus, ttl: Duration) -> BrokerResult<()> {
        let mut st = self.lock();
        st.workers
            .insert(status.id.clone(), (Instant::now(), ttl, status.clone()));
        Ok(())
    }

    async fn workers(&self) -> BrokerResult<Vec<WorkerStatus>> {
        let mut st = self.lock();
        st.workers.retain(|_, (at, ttl, _)| at.elapsed() < *ttl);
        Ok(st.workers.values().map(|(_, _, w)| w.clone()).collect())
    }

    async fn set_drain(&self, worker_id: &str, drain: bool) -> BrokerResult<()> {
        let mut st = self.lock();
        if drain {
            st.drains.insert(worker_id.to_string());
        } else {
            st.drains.remove(worker_id);
        }
        Ok(())
    }
}

#[async_trait]
impl LeaderBroker for MemoryBroker {
    async fn acquire_leader(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> BrokerResult<Option<u64>> {
        let mut st = self.lock();
        let now = Instant::now();
        let free = st
            .leaders
            .get(name)
            .is_none_or(|(h, until)| *until < now || h == holder);
        if !free {
            return Ok(None);
        }
        st.leaders
            .insert(name.to_string(), (holder.to_string(), now + ttl));
        // At least the wall clock in ms: a restarted process (whose counter starts again) still
        // hands out tokens above the last one SQL accepted.
        st.fence = (st.fence + 1).max(now_ms().max(0) as u64);
        Ok(Some(st.fence))
    }

    async fn renew_leader(&self, name: &str, holder: &str, ttl: Duration) -> BrokerResult<bool> {
        let mut st = self.lock();
        let now = Instant::now();
        match st.leaders.get_mut(name) {
            Some((h, until)) if h == holder && *until >= now => {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_leader(&self, name: &str, holder: &str) -> BrokerResult<()> {
        let mut st = self.lock();
        if st.leaders.get(name).is_some_and(|(h, _)| h == holder) {
            st.leaders.remove(name);
        }
        Ok(())
    }
}
