//! The ONE conformance suite of the `Store` seam.
//!
//! Every behaviour is a plain `async fn(&TestDb)` in the module of its aggregate; the
//! `conformance!` macro below stamps each one out as a `#[tokio::test]` per engine
//! (`users::sqlite::`, `users::postgres::`, `users::mysql::`, …), on a fresh database of its own,
//! so the same assertions hold SQLite, PostgreSQL and MariaDB to the same contract. PostgreSQL
//! and MariaDB must be reachable (see `antcode_testkit::db`): an absent server fails. Fixtures shared by the
//! modules are in `support`.

use antcode_testkit::db as common;

use std::collections::BTreeMap;
use std::sync::Arc;

use antcode_core::ids::new_id;
use antcode_core::model::*;
use antcode_core::store::{
    DueKey, FinishApplied, Fire, NewRun, NextFire, QueuedKey, Recorded, RunFilter, Store,
    StoreError, HELD,
};
use antcode_core::time::now_ms;
use common::TestDb;
use support::*;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        conformance!(@engine sqlite, Sqlite, $($name),*);
        conformance!(@engine postgres, Postgres, $($name),*);
        conformance!(@engine mysql, Mysql, $($name),*);
    };
    (@engine $module:ident, $engine:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::common::TestDb::new(crate::common::Engine::$engine).await;
                    let body = super::$name(&db);
                    tokio::time::timeout(std::time::Duration::from_secs(60), body)
                        .await
                        .expect("test body took longer than 60 s");
                }
            )*
        }
    };
}

mod alerts;
mod audit;
mod flow;
mod git;
mod hooks;
mod migrations;
mod projects;
mod reports;
mod retention;
mod runs;
mod schedules;
mod secrets;
mod support;
mod tasks;
mod users;
mod workers;
