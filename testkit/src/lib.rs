//! What the workspace's tests share, and nothing else uses: real engines made per test
//! ([`db`]: SQLite, PostgreSQL and MariaDB databases; [`redis`]: a database number and key
//! prefix on the one Redis; [`s3`]: buckets on the S3 test server), an in-process control plane
//! ([`control`]), the admin API client ([`api`]), `antcode` processes ([`procs`]) and input
//! builders ([`fixtures`]).
//!
//! An engine that cannot be reached fails the test with the variable that names it: CI starts
//! them all, so a missing one is a broken environment, never a reason to skip.

pub mod api;
pub mod control;
pub mod db;
pub mod fixtures;
pub mod git;
pub mod hook;
pub mod procs;
pub mod redis;
pub mod s3;
