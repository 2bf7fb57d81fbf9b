//! Publishing jobs: idempotence per `(run_id, attempt)`, batches, `holds` and queue depths.

use super::*;

async fn publish_lease_round_trip(s: &Subject) {
    let b = &*s.broker;
    b.ping().await.expect("ping");
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap(), "first publish adds the job");
    assert_eq!(depth(b, "default").await, 1);

    let before = now_ms();
    let leases = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    assert_eq!(l.job, j, "the job comes back exactly as published");
    assert_eq!(l.worker_id, "w1");
    assert!(!l.lease_token.is_empty());
    assert!(
        l.deadline_ms >= before + TTL.as_millis() as i64 - 1000
            && l.deadline_ms <= now_ms() + TTL.as_millis() as i64 + 1000
    );
    assert_eq!(
        depth(b, "default").await,
        0,
        "a leased job is no longer waiting"
    );
    assert!(b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());
    assert!(!b.lease_alive(&j.run_id, "lt_wrong").await.unwrap());

    b.release(&j.run_id, &l.lease_token).await.unwrap();
    assert!(!b.lease_alive(&j.run_id, &l.lease_token).await.unwrap());
    let none = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::ZERO)
        .await
        .unwrap();
    assert!(none.is_empty(), "a released job is gone");
}

async fn publish_is_idempotent(s: &Subject) {
    let b = &*s.broker;
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap());
    assert!(
        !b.publish(&j).await.unwrap(),
        "same (run, attempt) while queued"
    );
    assert!(
        !s.twin.publish(&j).await.unwrap(),
        "same (run, attempt) from another connection"
    );
    assert_eq!(depth(b, "default").await, 1);

    let leases = b
        .lease(&req("w1", &["default"], 10, TTL), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        leases.len(),
        1,
        "a job published three times is leased once"
    );
    assert!(
        !b.publish(&j).await.unwrap(),
        "same (run, attempt) while leased"
    );
    assert_eq!(depth(b, "default").await, 0);

    let next = Job {
        prefer: None,
        attempt: 2,
        ..j.clone()
    };
    assert!(
        b.publish(&next).await.unwrap(),
        "a new attempt is a new job"
    );
}

async fn publish_many_is_publish_per_job(s: &Subject) {
    let b = &*s.broker;
    let queued = job(&run_id(), "batch-a");
    assert!(b.publish(&queued).await.unwrap());
    // More jobs than one Redis script call takes, over two queues, one already queued and one
    // repeated within the batch.
    let mut jobs = vec![queued.clone()];
    for i in 0..300 {
        jobs.push(job(
            &run_id(),
            if i % 2 == 0 { "batch-a" } else { "batch-b" },
        ));
    }
    jobs.push(jobs[1].clone());
    let added = b.publish_many(&jobs).await.unwrap();
    assert_eq!(added.len(), jobs.len(), "one answer per job, in order");
    assert!(!added[0], "already queued");
    assert!(added[1..301].iter().all(|a| *a), "new jobs are added");
    assert!(!added[301], "a job repeated in the batch is added once");
    assert_eq!(depth(b, "batch-a").await, 151);
    assert_eq!(depth(b, "batch-b").await, 150);
    assert!(b.publish_many(&[]).await.unwrap().is_empty());
    let leased = b
        .lease(&req("w1", &["batch-b"], 500, TTL), Duration::ZERO)
        .await
        .unwrap();
    let want: HashSet<String> = jobs[1..301]
        .iter()
        .filter(|j| j.queue == "batch-b")
        .map(|j| j.run_id.clone())
        .collect();
    let got: HashSet<String> = leased.iter().map(|l| l.job.run_id.clone()).collect();
    assert_eq!(got, want, "each batch job is leased as published");
    assert!(leased.iter().all(|l| jobs.contains(&l.job)));
    assert_eq!(
        b.publish_many(&[leased[0].job.clone()]).await.unwrap(),
        [false],
        "a leased job is not published again"
    );
}

async fn holds_is_what_publish_would_skip(s: &Subject) {
    let b = &*s.broker;
    let (queued, leased, never) = (
        job(&run_id(), "holds"),
        job(&run_id(), "holds"),
        job(&run_id(), "holds"),
    );
    b.publish(&leased).await.unwrap();
    let lease = b
        .lease(&req("w1", &["holds"], 1, TTL), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    b.publish(&queued).await.unwrap();
    let next_attempt = Job {
        prefer: None,
        attempt: 2,
        ..queued.clone()
    };
    let asked = [queued.clone(), leased.clone(), never.clone(), next_attempt];
    assert_eq!(
        b.holds(&asked).await.unwrap(),
        [true, true, false, false],
        "queued and leased are held; another run or attempt is not"
    );
    assert_eq!(s.twin.holds(&asked[..1]).await.unwrap(), [true]);
    b.release(&leased.run_id, &lease.lease_token).await.unwrap();
    assert_eq!(b.holds(&[leased]).await.unwrap(), [false], "released");
    assert!(b.holds(&[]).await.unwrap().is_empty());
}

/// A run's attempts are tracked apart: the next attempt may be queued while the previous one is
/// still leased (compensation after a lost worker), and several attempts may be queued at once.
async fn attempts_of_one_run_are_tracked_apart(s: &Subject) {
    let b = &*s.broker;
    let run = run_id();
    let attempt = |n: u32| Job {
        prefer: None,
        attempt: n,
        ..job(&run, "attempts")
    };
    let wait = Duration::from_secs(1);
    assert!(b.publish(&attempt(1)).await.unwrap());
    let first = b
        .lease(&req("w1", &["attempts"], 1, TTL), wait)
        .await
        .unwrap()
        .remove(0);
    assert!(
        s.twin.publish(&attempt(2)).await.unwrap(),
        "the next attempt is a new job"
    );
    assert!(
        !b.publish(&attempt(1)).await.unwrap(),
        "attempt 1 is leased"
    );
    assert!(
        !b.publish(&attempt(2)).await.unwrap(),
        "attempt 2 is queued"
    );
    assert_eq!(
        b.holds(&[attempt(1), attempt(2), attempt(3)])
            .await
            .unwrap(),
        vec![true, true, false]
    );

    let second = s
        .twin
        .lease(&req("w2", &["attempts"], 1, TTL), wait)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.job.attempt, 2);
    let hb = b.heartbeat("w1", &[held(&first)], TTL).await.unwrap();
    assert_eq!(
        hb.lost,
        vec![run.clone()],
        "the newer attempt's lease replaced the older"
    );
    b.release(&run, &first.lease_token).await.unwrap();
    assert!(
        b.lease_alive(&run, &second.lease_token).await.unwrap(),
        "a stale token's release leaves the live lease alone"
    );
    b.release(&run, &second.lease_token).await.unwrap();
    assert!(!b.lease_alive(&run, &second.lease_token).await.unwrap());

    assert!(b.publish(&attempt(3)).await.unwrap());
    assert!(b.publish(&attempt(4)).await.unwrap());
    assert_eq!(depth(b, "attempts").await, 2, "two attempts queued at once");
    assert_eq!(
        b.holds(&[attempt(3), attempt(4)]).await.unwrap(),
        vec![true, true]
    );
    s.twin.cancel(&run).await.unwrap();
    assert_eq!(
        depth(b, "attempts").await,
        0,
        "cancel drops every queued attempt"
    );
    assert!(b
        .lease(
            &req("w1", &["attempts"], 10, TTL),
            Duration::from_millis(100)
        )
        .await
        .unwrap()
        .is_empty());
}

/// Labels route: a job goes only to a runner whose labels include all it requires, in its
/// route's order, back to its route when handed back; a parked runner finds a route first
/// published while it waits.
async fn labelled_jobs_go_only_to_runners_that_match(s: &Subject) {
    let b = &*s.broker;
    let plain = job(&run_id(), "default");
    let gpu = routed_job(&run_id(), "default", &[("gpu", "true")]);
    let gpu_sh = routed_job(&run_id(), "default", &[("gpu", "true"), ("zone", "s,h")]);
    let other = routed_job(&run_id(), "other", &[("gpu", "true")]);
    for j in [&plain, &gpu, &gpu_sh, &other] {
        assert!(b.publish(j).await.unwrap());
    }
    let ids = |ls: &[antcode_core::model::Lease]| {
        ls.iter().map(|l| l.job.run_id.clone()).collect::<Vec<_>>()
    };

    let cpu = labelled("cpu", &["default"], &[("gpu", "false"), ("zone", "s,h")]);
    let got = b.lease(&cpu, Duration::ZERO).await.unwrap();
    assert_eq!(
        ids(&got),
        [plain.run_id.as_str()],
        "only the job without requirements"
    );
    let none = b.lease(&cpu, Duration::ZERO).await.unwrap();
    assert!(
        none.is_empty(),
        "nothing else fits a cpu runner: {:?}",
        ids(&none)
    );

    let g = labelled("g", &["default"], &[("gpu", "true")]);
    let got = b.lease(&g, Duration::ZERO).await.unwrap();
    assert_eq!(
        ids(&got),
        [gpu.run_id.as_str()],
        "not the job that also needs zone"
    );
    assert_eq!(got[0].job, gpu, "the job comes back exactly as published");

    let gz = labelled(
        "gz",
        &["default"],
        &[("gpu", "true"), ("zone", "s,h"), ("x", "y")],
    );
    let got = b.lease(&gz, Duration::ZERO).await.unwrap();
    assert_eq!(
        ids(&got),
        [gpu_sh.run_id.as_str()],
        "extra labels do not matter"
    );
    b.hand_back(&gpu_sh.run_id, &got[0].lease_token)
        .await
        .unwrap();
    assert!(
        b.lease(&g, Duration::ZERO).await.unwrap().is_empty(),
        "handed back to its route"
    );
    let again = b.lease(&gz, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&again), [gpu_sh.run_id.as_str()]);

    // A queue the runner does not serve stays out of reach, whatever the labels.
    assert!(b.lease(&g, Duration::ZERO).await.unwrap().is_empty());
    let got = b
        .lease(
            &labelled("o", &["other"], &[("gpu", "true")]),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(ids(&got), [other.run_id.as_str()]);

    // A project's Python version is a requirement like a label.
    let mut py = job(&run_id(), "default");
    py.python_version = Some("3.12".into());
    assert!(b.publish(&py).await.unwrap());
    // A broker may reuse its list of routes for a second (a parked lease finds a new one
    // itself, below): past it, a lease that does not wait sees the route too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let g311 = labelled("g", &["default"], &[("gpu", "true"), ("python3.11", "yes")]);
    assert!(
        b.lease(&g311, Duration::ZERO).await.unwrap().is_empty(),
        "3.11 only"
    );
    let got = b
        .lease(
            &labelled("p", &["default"], &[("python3.12", "yes")]),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(ids(&got), [py.run_id.as_str()]);
    assert_eq!(got[0].job, py, "the job comes back exactly as published");

    // Parked before any job of its route exists.
    let fresh = routed_job(&run_id(), "default", &[("arch", "arm64")]);
    let arm = labelled("arm", &["default"], &[("arch", "arm64")]);
    let started = Instant::now();
    let parked = {
        let broker = s.broker.clone();
        tokio::spawn(async move { broker.lease(&arm, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.publish(&fresh).await.unwrap());
    let got = parked.await.unwrap().unwrap();
    assert_eq!(ids(&got), [fresh.run_id.as_str()]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the parked runner found the new route well before its wait ended"
    );
}

/// A job that prefers some runners waits in their route; moved, it goes to the route of its
/// labels alone, behind what is there, as it was published (its opened secrets with it).
async fn a_job_falls_back_to_the_route_of_its_labels(s: &Subject) {
    let b = &*s.broker;
    let mut preferring = routed_job(&run_id(), "fallback", &[("gpu", "true")]);
    preferring.prefer = Some(antcode_core::model::JobPreference {
        labels: [("runner".to_string(), "favourite".to_string())].into(),
        until_ms: i64::MAX,
    });
    preferring
        .secret_env
        .0
        .insert("TOKEN".into(), "opened".into());
    let plain = routed_job(&run_id(), "fallback", &[("gpu", "true")]);
    assert!(b.publish(&preferring).await.unwrap());
    assert!(b.publish(&plain).await.unwrap());
    let other = labelled(
        "other",
        &["fallback"],
        &[("gpu", "true"), ("runner", "other")],
    );
    let got = b.lease(&other, Duration::ZERO).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|l| l.job.run_id.as_str()).collect();
    assert_eq!(ids, [plain.run_id.as_str()], "not the preferring job");

    // What compensation moves is the job as SQL has it: no secrets, no preference.
    let mut fell = preferring.clone();
    fell.prefer = None;
    fell.secret_env = Default::default();
    assert_eq!(
        b.reroute(std::slice::from_ref(&fell)).await.unwrap(),
        [true]
    );
    assert_eq!(
        b.reroute(std::slice::from_ref(&fell)).await.unwrap(),
        [false],
        "it is there already"
    );
    assert_eq!(b.holds(std::slice::from_ref(&fell)).await.unwrap(), [true]);
    let got = b.lease(&other, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1, "the other runner takes it now");
    assert_eq!(got[0].job.run_id, preferring.run_id);
    assert_eq!(
        got[0].job.secret_env.0.get("TOKEN").map(String::as_str),
        Some("opened"),
        "as it was published"
    );
    assert_eq!(
        b.reroute(std::slice::from_ref(&fell)).await.unwrap(),
        [false],
        "a leased job does not move"
    );
    let unknown = routed_job(&run_id(), "fallback", &[]);
    assert_eq!(b.reroute(&[unknown]).await.unwrap(), [false]);

    // A preferred runner that hands a job back after its deadline hands it to the others.
    let mut brief = routed_job(&run_id(), "fallback", &[("gpu", "true")]);
    brief.prefer = Some(antcode_core::model::JobPreference {
        labels: [("runner".to_string(), "favourite".to_string())].into(),
        until_ms: antcode_core::time::now_ms() + 2_000,
    });
    assert!(b.publish(&brief).await.unwrap());
    let favourite = labelled(
        "favourite",
        &["fallback"],
        &[("gpu", "true"), ("runner", "favourite")],
    );
    let held = b.lease(&favourite, Duration::from_secs(3)).await.unwrap();
    assert_eq!(held.len(), 1, "the preferred runner takes it first");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    b.hand_back(&brief.run_id, &held[0].lease_token)
        .await
        .unwrap();
    let got = b.lease(&other, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1, "handed back past its deadline, to any runner");
    assert_eq!(got[0].job.run_id, brief.run_id);
}

conformance!(
    a_job_falls_back_to_the_route_of_its_labels,
    labelled_jobs_go_only_to_runners_that_match,
    publish_lease_round_trip,
    publish_is_idempotent,
    publish_many_is_publish_per_job,
    holds_is_what_publish_would_skip,
    attempts_of_one_run_are_tracked_apart,
);
