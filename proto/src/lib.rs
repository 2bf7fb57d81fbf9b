//! The runner ⇄ edge protocol, `antcode.worker.v1.WorkerService`.
//!
//! Generated from `antcode/worker/v1/worker.proto` at build time; there are no hand-written
//! copies of these types anywhere else in the workspace.

pub mod worker {
    pub mod v1 {
        tonic::include_proto!("antcode.worker.v1");
    }
}

/// `CompleteRequest.state` of an attempt its runner's shutdown interrupted: the run is queued
/// again as a new attempt that costs no retry (the other fields describe the attempt).
pub const STATE_INTERRUPTED: &str = "interrupted";
