//! Opening brokers from configuration URLs, and the liveness check; not stamped per
//! implementation, since it opens both.

use super::*;

#[tokio::test]
async fn open_broker_accepts_memory_and_redis_urls() {
    use antcode_core::seams::open_broker;
    open_broker("memory://")
        .await
        .expect("memory")
        .ping()
        .await
        .unwrap();

    let url = redis_base();
    let prefix = format!("antcode-test-{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let b = open_broker(&format!("{url}{sep}prefix={prefix}"))
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (set {REDIS_ENV}): {e}"));
    let _cleanup = Subject {
        broker: b.clone(),
        twin: b.clone(),
        redis: Some((url.clone(), prefix.clone())),
    };
    let j = job(&run_id(), "default");
    assert!(b.publish(&j).await.unwrap());
    // The prefix from the URL is the hash tag of every key.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}}}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("{{{prefix}}}:q:default")),
        "keys: {keys:?}"
    );

    let refused = open_broker("redis://127.0.0.1:1").await;
    assert!(refused.is_err(), "an unreachable Redis fails at open");
    let err = open_broker("amqp://x")
        .await
        .err()
        .expect("unknown scheme")
        .to_string();
    assert!(err.contains("redis://"), "{err}");
    assert!(
        RedisBroker::connect(&url, "bad{prefix}").await.is_err(),
        "braces would break the hash tag"
    );
}
