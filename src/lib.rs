//! The `antcode` binary's library half: composing planes into processes.
//!
//! [`up`] runs every plane in one process on the embedded seams (what `antcode up` and the
//! end-to-end tests use); [`backup`] copies and restores its data dir; [`cli`] parses flags and
//! `ANTCODE_*` variables for every command.

pub mod backup;
pub mod cli;
pub mod ops_http;
pub mod up;
