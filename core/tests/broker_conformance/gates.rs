//! Gates (concurrency limits, `routing`'s module doc): a gate never has more live leases than
//! its limit, whichever workers lease and however they end their leases; a full gate holds up
//! neither ungated jobs nor other gates' jobs; a gated route keeps its order; a slot freed while
//! a lessee is parked reaches it.

use std::sync::atomic::{AtomicUsize, Ordering};

use antcode_core::model::Lease;

use super::*;

/// A job of `queue` under `gates` (name, limit).
fn gated(queue: &str, gates: &[(&str, u32)]) -> Job {
    let mut j = job(&run_id(), queue);
    j.gates = gates.iter().map(|(g, n)| (g.to_string(), *n)).collect();
    j
}

async fn lease_now(b: &dyn Broker, worker: &str, queue: &str, max: usize) -> Vec<Lease> {
    b.lease(&req(worker, &[queue], max, TTL), Duration::ZERO)
        .await
        .unwrap()
}

fn ids(leases: &[Lease]) -> Vec<String> {
    leases.iter().map(|l| l.job.run_id.clone()).collect()
}

async fn a_gate_holds_its_limit_and_every_ended_lease_frees_a_slot(s: &Subject) {
    let b = &*s.broker;
    let jobs: Vec<Job> = (0..9).map(|_| gated("g", &[("key:site", 3)])).collect();
    assert!(b.publish_many(&jobs).await.unwrap().iter().all(|a| *a));

    // Four workers at once, each asking for two: three leases in all, the first three jobs.
    let asks = (0..4).map(|w| {
        let b = if w % 2 == 0 { &s.broker } else { &s.twin };
        let b = b.clone();
        async move { lease_now(&*b, &format!("w{w}"), "g", 2).await }
    });
    let mut first: Vec<Lease> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        first.len(),
        3,
        "a gate of 3 gives 3 leases: {:?}",
        ids(&first)
    );
    first.sort_by_key(|l| jobs.iter().position(|j| j.run_id == l.job.run_id));
    assert_eq!(
        ids(&first),
        ids_of(&jobs[..3]),
        "the first three, as queued"
    );
    assert_eq!(first[0].job, jobs[0], "the job comes back as published");
    assert!(
        lease_now(b, "w9", "g", 5).await.is_empty(),
        "the gate is full"
    );
    assert_eq!(
        depth(b, &jobs[0].route()).await,
        6,
        "jobs past a full gate stay queued, in their route"
    );

    // Released: one slot, for the next job in order.
    b.release(&first[0].job.run_id, &first[0].lease_token)
        .await
        .unwrap();
    let next = lease_now(&*s.twin, "w1", "g", 5).await;
    assert_eq!(ids(&next), ids_of(&jobs[3..4]));
    assert!(lease_now(b, "w1", "g", 5).await.is_empty());

    // Released with the next lease: the slot is free for that very call.
    let got = b
        .release_and_lease(
            &[held(&first[1])],
            &req("w1", &["g"], 5, TTL),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(ids(&got), ids_of(&jobs[4..5]));

    // Handed back: the slot frees and the job is queued again (where in its route is the
    // broker's: `hand_back` promises the queue, not the place).
    b.hand_back(&got[0].job.run_id, &got[0].lease_token)
        .await
        .unwrap();
    let again = lease_now(b, "w2", "g", 5).await;
    assert_eq!(again.len(), 1, "one slot, freed by the hand back");

    // Expired and reaped: the slots free; the old holders' stale ends free nothing more.
    let dead = [first[2].clone(), next[0].clone(), again[0].clone()];
    let reaped = b
        .reap_expired(now_ms() + TTL.as_millis() as i64 + 1)
        .await
        .unwrap();
    assert_eq!(reaped.len(), 3, "every live lease reaped");
    let after = lease_now(b, "w3", "g", 5).await;
    assert_eq!(after.len(), 3, "three slots again");
    for l in &dead {
        b.release(&l.job.run_id, &l.lease_token).await.unwrap();
        b.hand_back(&l.job.run_id, &l.lease_token).await.unwrap();
    }
    assert!(
        lease_now(b, "w3", "g", 5).await.is_empty(),
        "ending dead leases frees no slot"
    );
    // Releasing the live ones lets the last job through: every job was leased.
    for l in &after {
        b.release(&l.job.run_id, &l.lease_token).await.unwrap();
    }
    let last = lease_now(b, "w3", "g", 5).await;
    let seen: HashSet<String> = [&first, &next, &got, &again, &after, &last]
        .into_iter()
        .flat_map(|ls| ids(ls))
        .collect();
    assert_eq!(seen, ids_of(&jobs).into_iter().collect::<HashSet<_>>());
}

fn ids_of(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.run_id.clone()).collect()
}

async fn a_full_gate_holds_up_neither_ungated_jobs_nor_other_gates(s: &Subject) {
    let b = &*s.broker;
    let a1 = gated("mix", &[("task:a", 1)]);
    let a2 = gated("mix", &[("task:a", 1)]);
    let both = gated("mix", &[("task:b", 2), ("key:k", 1)]);
    let plain = job(&run_id(), "mix");
    let k = gated("mix", &[("key:k", 5)]);
    // A gated job requiring labels goes only to runners that have them, and its gate counts.
    let gpu = {
        let mut j = gated("mix", &[("task:a", 1)]);
        j.labels = BTreeMap::from([("gpu".to_string(), "true".to_string())]);
        j
    };
    // All published before the first lease: a broker may reuse the routes it knows for a moment.
    for j in [&a1, &a2, &both, &plain, &k, &gpu] {
        assert!(b.publish(j).await.unwrap());
    }
    // Gates `task:a` (1) and `key:k` (1 for `both`) each let one through; `key:k` at 5 for `k`
    // lets it through too, as the second holder of `key:k`; the plain job is never held up.
    let got = lease_now(b, "w1", "mix", 10).await;
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut want = ids_of(&[a1.clone(), both.clone(), plain.clone(), k.clone()]);
    want.sort();
    assert_eq!(got_ids, want);
    assert!(lease_now(b, "w1", "mix", 10).await.is_empty(), "a2 waits");

    let labelled_req = labelled("w2", &["mix"], &[("gpu", "true")]);
    assert!(b
        .lease(&labelled_req, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    let held_a = got.iter().find(|l| l.job.run_id == a1.run_id).unwrap();
    b.release(&a1.run_id, &held_a.lease_token).await.unwrap();
    let taken = b.lease(&labelled_req, Duration::ZERO).await.unwrap();
    assert_eq!(
        ids(&taken),
        [gpu.run_id.as_str()],
        "the labelled route comes first for a runner that matches it"
    );
    assert_eq!(taken[0].job, gpu);
    assert!(lease_now(b, "w1", "mix", 10).await.is_empty(), "a2 waits");
}

async fn a_parked_lessee_gets_a_slot_freed_while_it_waits(s: &Subject) {
    let b = s.broker.clone();
    let first = gated("park", &[("task:p", 1)]);
    let second = gated("park", &[("task:p", 1)]);
    b.publish_many(&[first.clone(), second.clone()])
        .await
        .unwrap();
    let l1 = lease_now(&*b, "w1", "park", 5).await;
    assert_eq!(ids(&l1), [first.run_id.as_str()]);

    let wait = Duration::from_secs(20);
    let waiter = tokio::spawn({
        let twin = s.twin.clone();
        async move { twin.lease(&req("w2", &["park"], 5, TTL), wait).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.release(&first.run_id, &l1[0].lease_token).await.unwrap();
    let got = tokio::time::timeout(wait + Duration::from_secs(5), waiter)
        .await
        .expect("lease did not return")
        .unwrap()
        .unwrap();
    assert_eq!(ids(&got), [second.run_id.as_str()], "the freed slot's job");
}

/// Sixty jobs of one gate of 3, six workers leasing and releasing as fast as they can, some
/// releasing with their next lease: never more than three held at once, every job leased once.
async fn many_workers_never_hold_more_than_the_limit(s: &Subject) {
    const JOBS: usize = 60;
    const LIMIT: usize = 3;
    let jobs: Vec<Job> = (0..JOBS)
        .map(|_| gated("busy", &[("key:busy", LIMIT as u32)]))
        .collect();
    s.broker.publish_many(&jobs).await.unwrap();
    let holding = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = vec![];
    for w in 0..6 {
        let b = if w % 2 == 0 { &s.broker } else { &s.twin }.clone();
        let (holding, peak, done) = (holding.clone(), peak.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut leased = vec![];
            let mut finished: Vec<HeldLease> = vec![];
            while done.load(Ordering::SeqCst) < JOBS {
                let r = req(&format!("w{w}"), &["busy"], 2, TTL);
                let wait = Duration::from_millis(200);
                let got = if w % 3 == 0 {
                    b.release_and_lease(&std::mem::take(&mut finished), &r, wait)
                        .await
                        .unwrap()
                } else {
                    b.lease(&r, wait).await.unwrap()
                };
                for l in &got {
                    // Counted while the lease is surely live: after the lease, before its end.
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    leased.push(l.job.run_id.clone());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                for l in got {
                    holding.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    if w % 3 == 0 {
                        finished.push(held(&l));
                    } else {
                        b.release(&l.job.run_id, &l.lease_token).await.unwrap();
                    }
                }
            }
            for h in finished {
                b.release(&h.run_id, &h.lease_token).await.unwrap();
            }
            leased
        }));
    }
    let mut all = vec![];
    for w in workers {
        let leased = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("the workers finish")
            .unwrap();
        all.extend(leased);
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} leases held at once under a gate of {LIMIT}"
    );
    assert_eq!(all.len(), JOBS, "every job leased, none twice");
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), JOBS);
    assert_eq!(depth(&*s.broker, "busy").await, 0);
}

/// Publishes `n` jobs, one at a time, each like the next of `templates` in turn. A few
/// milliseconds apart: Redis orders the jobs of different routes by their stream ids, which
/// tell jobs apart by the millisecond only.
async fn publish_like(b: &dyn Broker, templates: &[&Job], n: usize) -> Vec<Job> {
    let mut published = vec![];
    for i in 0..n {
        let j = Job {
            run_id: run_id(),
            ..templates[i % templates.len()].clone()
        };
        assert!(b.publish(&j).await.unwrap());
        published.push(j);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    published
}

/// Jobs of one queue under different gates (tasks sharing a key, one of them also capped, and
/// ungated jobs) start in the order they were published, a full gate only holding its own back.
async fn a_queue_keeps_its_order_across_gates(s: &Subject) {
    let b = &*s.broker;
    let shared = gated("order", &[("key:site", 1)]);
    let capped = gated("order", &[("key:site", 1), ("task:c", 1)]);
    let plain = job(&run_id(), "order");
    let published = publish_like(b, &[&shared, &capped, &plain], 9).await;
    // One at a time, each released before the next lease: exactly the publish order.
    let mut order = vec![];
    for _ in 0..published.len() {
        let got = lease_now(b, "w1", "order", 1).await;
        assert_eq!(got.len(), 1, "after {order:?}");
        b.release(&got[0].job.run_id, &got[0].lease_token)
            .await
            .unwrap();
        order.extend(ids(&got));
    }
    assert_eq!(order, ids_of(&published));

    // The key held: only the ungated jobs pass, and the gated ones keep their places.
    let published = publish_like(b, &[&shared, &plain, &capped], 6).await;
    let first = lease_now(b, "w1", "order", 10).await;
    assert_eq!(
        ids(&first),
        ids_of(&[
            published[0].clone(),
            published[1].clone(),
            published[4].clone()
        ]),
        "the first keyed job, then the ungated ones past the held key"
    );
    b.release(&first[0].job.run_id, &first[0].lease_token)
        .await
        .unwrap();
    let next = lease_now(b, "w1", "order", 10).await;
    assert_eq!(ids(&next), ids_of(&published[2..3]), "the oldest keyed job");
}

/// `n` jobs of `queue` under "key:a" or "key:b" (limit 3 each) and "key:all" (limit 6).
fn two_keys(queue: &str, n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let key = if i % 2 == 0 { "key:a" } else { "key:b" };
            gated(queue, &[(key, 3), ("key:all", 6)])
        })
        .collect()
}

/// Many leases of two gates released in one call, whose next lease reads another queue (no
/// gated route) or the gated one: every slot they held is free after that call.
async fn leases_released_together_free_every_slot(s: &Subject) {
    let b = &*s.broker;
    let jobs: Vec<Job> = two_keys("together", 6);
    assert!(b.publish_many(&jobs).await.unwrap().iter().all(|a| *a));
    let first = lease_now(b, "w1", "together", 10).await;
    assert_eq!(first.len(), 6, "room for all six");
    let more: Vec<Job> = two_keys("together", 6);
    assert!(b.publish_many(&more).await.unwrap().iter().all(|a| *a));
    assert!(
        lease_now(b, "w2", "together", 10).await.is_empty(),
        "both gates full"
    );

    // Three released with a lease of another queue: their slots free all the same.
    let released: Vec<HeldLease> = first[..3].iter().map(held).collect();
    let other = b
        .release_and_lease(
            &released,
            &req("w1", &["elsewhere"], 5, TTL),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(other.is_empty());
    let next = lease_now(b, "w2", "together", 10).await;
    assert_eq!(next.len(), 3, "three slots freed: {:?}", ids(&next));

    // The other three released with a lease of the gated queue: it gets their slots at once.
    let released: Vec<HeldLease> = first[3..].iter().map(held).collect();
    let got = b
        .release_and_lease(
            &released,
            &req("w1", &["together"], 10, TTL),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "the freed slots, in the same call");
    assert!(lease_now(b, "w3", "together", 10).await.is_empty());
    for l in next.iter().chain(&got) {
        b.release(&l.job.run_id, &l.lease_token).await.unwrap();
    }
    let again: Vec<Job> = two_keys("together", 6);
    assert!(b.publish_many(&again).await.unwrap().iter().all(|a| *a));
    assert_eq!(
        lease_now(b, "w3", "together", 10).await.len(),
        6,
        "every slot free once every lease ended"
    );
}

conformance!(
    a_queue_keeps_its_order_across_gates,
    a_gate_holds_its_limit_and_every_ended_lease_frees_a_slot,
    a_full_gate_holds_up_neither_ungated_jobs_nor_other_gates,
    a_parked_lessee_gets_a_slot_freed_while_it_waits,
    many_workers_never_hold_more_than_the_limit,
    leases_released_together_free_every_slot,
);
