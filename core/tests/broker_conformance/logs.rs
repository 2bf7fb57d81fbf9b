//! Live logs: chunks stored once, read after a cursor, and tailed.

use super::*;

async fn live_logs_are_idempotent_and_tail(s: &Subject) {
    let b = &*s.broker;
    let run = run_id();
    assert!(b
        .read_log(&run, 0, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    b.append_log(&run, &[chunk(1, 1), chunk(1, 2), chunk(1, 3)])
        .await
        .unwrap();
    b.append_log(&run, &[chunk(1, 2), chunk(1, 3), chunk(1, 4)])
        .await
        .unwrap();
    s.twin.append_log(&run, &[chunk(1, 1)]).await.unwrap();
    let all = b.read_log(&run, 0, Duration::ZERO).await.unwrap();
    assert_eq!(
        all,
        (1..=4).map(|n| chunk(1, n)).collect::<Vec<_>>(),
        "a chunk sent twice is stored once"
    );

    let tail = b
        .read_log(&run, chunk(1, 2).cursor(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(tail, vec![chunk(1, 3), chunk(1, 4)]);

    // The next attempt's chunks come after every chunk of the previous one.
    b.append_log(&run, &[chunk(2, 1)]).await.unwrap();
    let next = b
        .read_log(&run, chunk(1, 4).cursor(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(next, vec![chunk(2, 1)]);

    // A tail waiting past the end is woken by the next append.
    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let after = chunk(2, 1).cursor();
    let reader = tokio::spawn({
        let b = s.broker.clone();
        let run = run.clone();
        async move { b.read_log(&run, after, wait).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.twin.append_log(&run, &[chunk(2, 2)]).await.unwrap();
    let woke = tokio::time::timeout(wait + Duration::from_secs(5), reader)
        .await
        .expect("read_log hung")
        .unwrap()
        .unwrap();
    assert_eq!(woke, vec![chunk(2, 2)]);
    assert!(
        started.elapsed() < wait - Duration::from_secs(3),
        "tail was not woken by the append"
    );

    // Logs of other runs are separate.
    assert!(b
        .read_log(&run_id(), 0, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
}

conformance!(live_logs_are_idempotent_and_tail,);
