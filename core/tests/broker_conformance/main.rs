//! One conformance suite for the `Broker` seam, run against the in-process `MemoryBroker` and the
//! `RedisBroker` on a real Redis (`ANTCODE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! Every behaviour is a plain `async fn(&Subject)` in the module of its sub-trait (`queues`,
//! `leases`, `gates`, `cancels`, `events`, `changes`, `logs`, `workers`, `leader`); the `conformance!`
//! macro below stamps each one out as a `#[tokio::test]` per implementation
//! (`queues::on_memory::…`, `queues::on_redis::…`), so the same assertions hold both to the same
//! contract. `health` opens brokers from URLs; `redis_only` covers recovery paths the in-process
//! broker does not have. The subject and the fixtures the modules share are in `support`.
//!
//! Each Redis test gets its own random key prefix, so tests run in parallel on one server, and
//! deletes its keys when it ends (pass or fail). An unreachable Redis fails the Redis tests with
//! a message naming the variable: CI starts the server, so a missing one is a broken environment.
//!
//! Timing: waits are short (hundreds of ms) and the only time bounds asserted are "returned well
//! before the long wait it was given", i.e. a blocked call was woken rather than timing out.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use antcode_core::broker::memory::MemoryBroker;
use antcode_core::broker::redis::RedisBroker;
use antcode_core::broker::{prelude::*, Broker, HeldLease, LeaseRequest, LogChunk};
use antcode_core::model::{
    BundleFormat, BundleRef, Job, Outcome, RunEvent, RunEventKind, RunState, WorkerStatus,
};
use antcode_core::time::now_ms;

use support::*;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = crate::support::Subject::memory();
                    super::$name(&s).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = crate::support::Subject::redis().await;
                    super::$name(&s).await;
                }
            )*
        }
    };
}

mod cancels;
mod changes;
mod events;
mod gates;
mod health;
mod leader;
mod leases;
mod logs;
mod queues;
mod redis_only;
mod support;
mod workers;
