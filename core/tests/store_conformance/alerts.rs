//! Alert channels, rules, the delivery outbox and the reads of ended runs.

use super::*;
use antcode_core::alerting::*;

fn channel(name: &str) -> AlertChannel {
    AlertChannel {
        id: new_id(),
        name: name.into(),
        kind: "webhook".into(),
        summary: serde_json::json!({"kind": "webhook", "url": "https://example.com/…"}),
        enabled: true,
        sealed: "sealed-text".into(),
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

fn rule(name: &str, task_id: Option<&str>, channels: &[&str]) -> AlertRule {
    AlertRule {
        id: new_id(),
        name: name.into(),
        task_id: task_id.map(str::to_string),
        spec: RuleSpec {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            on: vec![AlertOn::Failed, AlertOn::ConsecutiveFailures],
            consecutive: 3,
            long_running_s: None,
            backlog: None,
            queue: None,
            throttle_s: 60,
            title: Some("{{task}} {{state}}".into()),
            body: None,
        },
        enabled: true,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

fn delivery(channel: &str, key: &str, next_at: i64) -> Delivery {
    Delivery {
        id: new_id(),
        rule_id: Some("r1".into()),
        channel_id: channel.into(),
        event_key: key.into(),
        group_key: "task:t1".into(),
        event: serde_json::json!({"kind": "run.failed", "summary": "failed — ünïcode"}),
        state: DeliveryState::Pending,
        attempts: 0,
        next_at,
        last_error: None,
        detail: None,
        carried_by: None,
        created_at: next_at,
        sent_at: None,
    }
}

async fn channels_and_rules_round_trip(db: &TestDb) {
    let s = db.open().await;
    let mut c = channel("ops-hook");
    s.create_channel(&c).await.unwrap();
    assert_eq!(s.channel(&c.id).await.unwrap(), c);
    assert_conflict(
        s.create_channel(&channel("ops-hook")).await,
        "a channel name taken",
    );
    c.name = "ops-webhook".into();
    c.enabled = false;
    c.sealed = "resealed".into();
    s.update_channel(&c).await.unwrap();
    assert_eq!(s.list_channels().await.unwrap(), vec![c.clone()]);

    let f = fixture(s.as_ref(), retries(1)).await;
    let global = rule("global", None, &[&c.id]);
    let mut own = rule("own", Some(&f.task.id), &[&c.id]);
    s.create_rule(&global).await.unwrap();
    s.create_rule(&own).await.unwrap();
    assert_conflict(
        s.create_rule(&rule("own", None, &[])).await,
        "a rule name taken",
    );
    own.spec.on = vec![AlertOn::Recovered];
    own.enabled = false;
    s.update_rule(&own).await.unwrap();
    assert_eq!(s.rule(&own.id).await.unwrap(), own);
    assert_eq!(
        s.list_rules().await.unwrap(),
        vec![global.clone(), own.clone()]
    );
    s.delete_rule(&global.id).await.unwrap();
    assert_not_found(s.rule(&global.id).await, "a deleted rule");
    assert_not_found(s.delete_rule(&global.id).await, "deleting it again");
    s.delete_channel(&c.id).await.unwrap();
    assert_not_found(s.channel(&c.id).await, "a deleted channel");
    assert_not_found(s.update_channel(&c).await, "updating a deleted channel");
}

async fn a_channel_gets_one_delivery_per_event(db: &TestDb) {
    let s = db.open().await;
    let now = 1_700_000_000_000;
    let first = delivery("c1", "run.failed:r1", now);
    assert_eq!(
        s.enqueue_deliveries(std::slice::from_ref(&first))
            .await
            .unwrap(),
        1
    );
    // Found again (another pass, another leader, another rule): nothing added.
    let again = delivery("c1", "run.failed:r1", now);
    let other_channel = delivery("c2", "run.failed:r1", now);
    let later = delivery("c1", "run.failed:r2", now + 5_000);
    assert_eq!(
        s.enqueue_deliveries(&[again, other_channel.clone(), later.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.delivery(&first.id).await.unwrap(), first);

    let due = s.due_deliveries(now, 10).await.unwrap();
    let due_ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(due_ids.len(), 2, "the later one is not due yet");
    assert!(!due_ids.contains(&later.id.as_str()));

    // Claiming takes each row once.
    let ids = vec![first.id.clone(), other_channel.id.clone()];
    let taken = s.claim_deliveries(&ids, now, now + 60_000).await.unwrap();
    assert_eq!(taken.len(), 2);
    assert!(s
        .claim_deliveries(&ids, now, now + 60_000)
        .await
        .unwrap()
        .is_empty());
    assert!(s.due_deliveries(now + 1_000, 10).await.unwrap().is_empty());
    assert_eq!(s.delivery(&first.id).await.unwrap().attempts, 1);

    s.deliveries_sent(
        std::slice::from_ref(&first.id),
        &first.id,
        "HTTP 200",
        now + 10,
    )
    .await
    .unwrap();
    let sent = s.delivery(&first.id).await.unwrap();
    assert_eq!(
        (
            sent.state,
            sent.sent_at,
            sent.carried_by.as_deref(),
            sent.detail.as_deref()
        ),
        (
            DeliveryState::Sent,
            Some(now + 10),
            Some(first.id.as_str()),
            Some("HTTP 200")
        )
    );
    assert_eq!(
        s.last_sent("r1", "c1", "task:t1").await.unwrap(),
        Some(now + 10)
    );
    assert_eq!(s.last_sent("r1", "c2", "task:t1").await.unwrap(), None);
    // A sent delivery is never claimed again.
    assert!(s
        .claim_deliveries(
            std::slice::from_ref(&first.id),
            now + 100_000,
            now + 200_000
        )
        .await
        .unwrap()
        .is_empty());

    s.deliveries_failed(
        std::slice::from_ref(&other_channel.id),
        "HTTP 503",
        Some(now + 5_000),
    )
    .await
    .unwrap();
    let retried = s.delivery(&other_channel.id).await.unwrap();
    assert_eq!(
        (
            retried.state,
            retried.next_at,
            retried.last_error.as_deref()
        ),
        (DeliveryState::Pending, now + 5_000, Some("HTTP 503"))
    );
    s.defer_deliveries(std::slice::from_ref(&later.id), now + 30_000)
        .await
        .unwrap();
    assert_eq!(s.delivery(&later.id).await.unwrap().next_at, now + 30_000);
    s.deliveries_failed(std::slice::from_ref(&later.id), "HTTP 401", None)
        .await
        .unwrap();
    assert_eq!(
        s.delivery(&later.id).await.unwrap().state,
        DeliveryState::Failed
    );

    let failed = s
        .list_deliveries(
            &DeliveryFilter {
                state: Some(DeliveryState::Failed),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(failed.items.len(), 1);
    let c1 = s
        .list_deliveries(
            &DeliveryFilter {
                channel_id: Some("c1".into()),
                ..Default::default()
            },
            1,
            None,
        )
        .await
        .unwrap();
    assert_eq!(c1.items.len(), 1);
    let rest = s
        .list_deliveries(
            &DeliveryFilter {
                channel_id: Some("c1".into()),
                ..Default::default()
            },
            10,
            c1.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1, "two deliveries to c1, one per page");
    assert_not_found(s.delivery(&new_id()).await, "an unknown delivery");
}

async fn ended_runs_are_read_in_the_order_they_closed(db: &TestDb) {
    let s = db.open().await;
    let f = fixture(s.as_ref(), retries(1)).await;
    let start = ClosedKey {
        closed_at: now_ms() - 1,
        id: String::new(),
    };
    let mut ended = vec![];
    for state in [
        RunState::Failed,
        RunState::Failed,
        RunState::Succeeded,
        RunState::Cancelled,
    ] {
        let run = manual_run(s.as_ref(), &f).await;
        if state == RunState::Cancelled {
            s.request_cancel(&run.id, now_ms()).await.unwrap();
        } else {
            s.finish_attempt(&run.id, 1, None, &outcome(state), now_ms())
                .await
                .unwrap();
        }
        ended.push(s.run(&run.id).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // A run still queued is not among them.
    manual_run(s.as_ref(), &f).await;
    let read = s.closed_runs(&start, 10).await.unwrap();
    let ids: Vec<&str> = read.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = ended.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, want);
    assert!(read.iter().all(|r| r.closed_at.is_some()));
    let after_two = ClosedKey {
        closed_at: read[1].closed_at.unwrap(),
        id: read[1].id.clone(),
    };
    assert_eq!(s.closed_runs(&after_two, 1).await.unwrap()[0].id, want[2]);

    // The task's outcomes up to the success, newest first; cancelled runs are neither.
    let at_success = ClosedKey {
        closed_at: read[2].closed_at.unwrap(),
        id: read[2].id.clone(),
    };
    assert_eq!(
        s.last_outcomes(&f.task.id, &at_success, 5).await.unwrap(),
        vec![RunState::Succeeded, RunState::Failed, RunState::Failed]
    );
    let at_end = ClosedKey {
        closed_at: read[3].closed_at.unwrap(),
        id: read[3].id.clone(),
    };
    assert_eq!(
        s.last_outcomes(&f.task.id, &at_end, 1).await.unwrap(),
        vec![RunState::Succeeded]
    );

    assert_eq!(s.cursor("alerts.test").await.unwrap(), None);
    s.set_cursor("alerts.test", &at_success).await.unwrap();
    s.set_cursor("alerts.test", &at_end).await.unwrap();
    assert_eq!(s.cursor("alerts.test").await.unwrap(), Some(at_end));
}

async fn old_deliveries_are_pruned_but_never_pending_ones(db: &TestDb) {
    let s = db.open().await;
    let sent = delivery("c1", "run.failed:a", 1_000);
    let failed = delivery("c1", "run.failed:b", 2_000);
    let pending = delivery("c1", "run.failed:c", 3_000);
    let recent = delivery("c1", "run.failed:d", 9_000);
    s.enqueue_deliveries(&[
        sent.clone(),
        failed.clone(),
        pending.clone(),
        recent.clone(),
    ])
    .await
    .unwrap();
    s.deliveries_sent(&[sent.id.clone(), recent.id.clone()], &sent.id, "ok", 9_500)
        .await
        .unwrap();
    s.deliveries_failed(std::slice::from_ref(&failed.id), "HTTP 404", None)
        .await
        .unwrap();
    let old = s.old_deliveries(5_000, 10).await.unwrap();
    assert_eq!(old, vec![sent.id.clone(), failed.id.clone()]);
    assert_eq!(
        s.old_deliveries(5_000, 1).await.unwrap(),
        vec![sent.id.clone()]
    );
    let all = vec![sent.id.clone(), failed.id.clone(), pending.id.clone()];
    assert_eq!(
        s.delete_deliveries(&all).await.unwrap(),
        2,
        "never a pending one"
    );
    assert_not_found(s.delivery(&sent.id).await, "a pruned delivery");
    assert_eq!(
        s.delivery(&pending.id).await.unwrap().state,
        DeliveryState::Pending
    );
    assert_eq!(
        s.delivery(&recent.id).await.unwrap().state,
        DeliveryState::Sent
    );
}

conformance!(
    channels_and_rules_round_trip,
    a_channel_gets_one_delivery_per_event,
    ended_runs_are_read_in_the_order_they_closed,
    old_deliveries_are_pruned_but_never_pending_ones,
);
