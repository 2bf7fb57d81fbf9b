//! The worker protocol as the minimal edge answers it: every call is `UNIMPLEMENTED` with a
//! message that says what to do instead.

use antcode_proto::worker::v1::worker_service_server::WorkerService;
use antcode_proto::worker::v1::*;
use tonic::{Request, Response, Status, Streaming};

pub struct MinimalEdge;

fn not_yet() -> Status {
    Status::unimplemented("gateway mode is not enabled on this edge yet; run runners with --mode direct")
}

#[tonic::async_trait]
impl WorkerService for MinimalEdge {
    async fn enroll(&self, _: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        Err(not_yet())
    }

    async fn lease(&self, _: Request<LeaseRequest>) -> Result<Response<LeaseResponse>, Status> {
        Err(not_yet())
    }

    async fn heartbeat(&self, _: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        Err(not_yet())
    }

    async fn report_started(&self, _: Request<ReportStartedRequest>) -> Result<Response<ReportStartedResponse>, Status> {
        Err(not_yet())
    }

    async fn push_logs(&self, _: Request<Streaming<LogChunk>>) -> Result<Response<PushLogsResponse>, Status> {
        Err(not_yet())
    }

    async fn complete(&self, _: Request<CompleteRequest>) -> Result<Response<CompleteResponse>, Status> {
        Err(not_yet())
    }

    type FetchBundleStream = futures::stream::Empty<Result<BundleChunk, Status>>;

    async fn fetch_bundle(&self, _: Request<FetchBundleRequest>) -> Result<Response<Self::FetchBundleStream>, Status> {
        Err(not_yet())
    }
}
