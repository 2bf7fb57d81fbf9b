//! Worker identity: one-time enrollment keys and the workers they are traded for.

use super::*;

fn key(secret: &str, expires_at: i64) -> WorkerKey {
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), "eu-1".to_string());
    WorkerKey {
        id: new_id(),
        note: "for the lab box".into(),
        queues: vec!["default".into(), "gpu".into()],
        labels,
        created_by: "admin".into(),
        created_at: now_ms(),
        expires_at,
        used_at: None,
        used_by: None,
        key_hash: antcode_core::ids::token_hash(secret),
    }
}

fn worker(name: &str) -> WorkerRecord {
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), "claimed-by-worker".to_string());
    labels.insert("arch".to_string(), "x86_64".to_string());
    WorkerRecord {
        id: new_id(),
        name: name.into(),
        mode: "gateway".into(),
        queues: vec!["everything".into()],
        labels,
        api_key_hash: Some(antcode_core::ids::token_hash(&new_id())),
        cert_fingerprint: Some(antcode_core::ids::sha256_hex(name.as_bytes())),
        revoked: false,
        created_at: now_ms(),
        last_seen_at: None,
    }
}

async fn enrollment_keys_redeem_once(db: &TestDb) {
    let s = db.open().await;
    let k = key("ek_one", now_ms() + 60_000);
    s.create_worker_key(&k).await.unwrap();
    let listed = s.list_worker_keys().await.unwrap();
    assert_eq!(listed, vec![k.clone()]);

    let w = worker("lab-1");
    let stored = s
        .redeem_worker_key(&k.key_hash, &w, now_ms())
        .await
        .expect("first redemption");
    assert_eq!(
        stored.queues, k.queues,
        "queues come from the key, not the worker"
    );
    assert_eq!(
        stored.labels, k.labels,
        "labels come from the key: the worker is routed by them, not by its claims"
    );
    assert_eq!(s.worker_record(&w.id).await.unwrap(), stored);
    let used = s.list_worker_keys().await.unwrap().remove(0);
    assert_eq!(used.used_by.as_deref(), Some(w.id.as_str()));
    assert!(used.used_at.is_some());

    let again = s
        .redeem_worker_key(&k.key_hash, &worker("lab-2"), now_ms())
        .await;
    assert_conflict(again, "a used key");
    let unknown = s
        .redeem_worker_key(
            &antcode_core::ids::token_hash("nope"),
            &worker("x"),
            now_ms(),
        )
        .await;
    assert_not_found(unknown, "an unknown key");
    assert_eq!(
        s.list_worker_records().await.unwrap().len(),
        1,
        "refusals add no worker"
    );
}

async fn expired_keys_are_refused(db: &TestDb) {
    let s = db.open().await;
    let k = key("ek_old", now_ms() - 1);
    s.create_worker_key(&k).await.unwrap();
    let r = s
        .redeem_worker_key(&k.key_hash, &worker("late"), now_ms())
        .await;
    assert_stale(r, "an expired key");
    assert!(s.list_worker_records().await.unwrap().is_empty());
    assert_eq!(s.list_worker_keys().await.unwrap()[0].used_at, None);
}

async fn racing_redemptions_have_one_winner(db: &TestDb) {
    let s: Arc<dyn Store> = db.open().await;
    let k = key("ek_race", now_ms() + 60_000);
    s.create_worker_key(&k).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        let hash = k.key_hash.clone();
        tasks.push(tokio::spawn(async move {
            s.redeem_worker_key(&hash, &worker(&format!("racer-{i}")), now_ms())
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("a losing redemption must be a Conflict, got {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.list_worker_records().await.unwrap().len(), 1);
}

async fn workers_by_credential_and_revoke(db: &TestDb) {
    let s = db.open().await;
    let k = key("ek_creds", now_ms() + 60_000);
    s.create_worker_key(&k).await.unwrap();
    let w = worker("creds");
    s.redeem_worker_key(&k.key_hash, &w, now_ms())
        .await
        .unwrap();
    let hash = w.api_key_hash.clone().unwrap();
    let fp = w.cert_fingerprint.clone().unwrap();
    assert_eq!(s.worker_by_api_key(&hash).await.unwrap().id, w.id);
    assert_eq!(s.worker_by_fingerprint(&fp).await.unwrap().id, w.id);
    assert_not_found(s.worker_by_api_key("0000").await, "unknown api key");
    assert_not_found(s.worker_by_fingerprint("0000").await, "unknown fingerprint");
    let revoked = s.revoke_worker(&w.id).await.unwrap();
    assert!(revoked.revoked);
    assert!(s.worker_by_api_key(&hash).await.unwrap().revoked);
    assert!(s.revoke_worker(&w.id).await.unwrap().revoked, "idempotent");
    assert_not_found(
        s.revoke_worker(&new_id()).await,
        "revoking an unknown worker",
    );
}

conformance!(
    enrollment_keys_redeem_once,
    expired_keys_are_refused,
    racing_redemptions_have_one_winner,
    workers_by_credential_and_revoke,
);
