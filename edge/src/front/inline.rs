//! `Lease` answered by the front itself instead of being proxied to the worker service: a parked
//! long-poll then costs one downstream h2 stream and this small future, not an upstream stream,
//! a tonic call and their buffers too, and handing out work skips a hop.
//!
//! The caller was identified, authorized and counted by the same [`Gate::admit`] as every
//! proxied call, and the answer comes from the same [`Edge::lease_for`] the tonic method uses:
//! only the framing is done here (one gRPC message each way: a 5-byte prefix and the protobuf).
//!
//! [`Gate::admit`]: super::gate::Gate::admit
//! [`Edge::lease_for`]: crate::service::Edge::lease_for

use bytes::{BufMut, Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v2::server::HttpSession as H2Session;
use pingora::Result;
use prost::Message;
use tonic::Code;

use super::reply::{self, Refusal};
use crate::identity::Identity;
use crate::service::Edge;
use antcode_proto::worker::v1 as pb;

/// The path answered inline.
pub const LEASE_PATH: &str = "/antcode.worker.v1.WorkerService/Lease";
/// A `LeaseRequest` is a few queue names; anything bigger is not one.
const MAX_LEASE_REQUEST: usize = 64 * 1024;

/// One gRPC message from a whole request body (uncompressed; tonic clients do not compress
/// unless asked to).
fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Refusal> {
    let bad = |why: &str| Refusal::new(Code::InvalidArgument, 400, why.to_string());
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err(bad("the request is not one gRPC message"));
    };
    if *flag != 0 {
        return Err(Refusal::new(
            Code::Unimplemented,
            400,
            "compressed requests are not accepted",
        ));
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if len != rest.len() {
        return Err(bad("the request is not exactly one gRPC message"));
    }
    M::decode(rest).map_err(|e| bad(&format!("cannot decode the request: {e}")))
}

/// `message` as one gRPC frame.
fn encode<M: Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Cannot fail: the buffer has the capacity.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// Maps a status of the service to the front's refusal (the same trailers-only form).
fn refusal(status: &tonic::Status) -> Refusal {
    let http = match status.code() {
        Code::ResourceExhausted => 429,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::InvalidArgument => 400,
        _ => 503,
    };
    let mut r = Refusal::new(status.code(), http, status.message().to_string());
    r.retry_after = status.metadata().contains_key("retry-after");
    r
}

/// Reads the request, leases for `id` and writes the whole response. If the client goes away
/// while the call is parked, the lease is abandoned (nothing was handed out).
///
/// On the HTTP/2 session itself, not Pingora's protocol-generic one: the generic session's
/// futures carry room for HTTP/1's reads and writes, and this future lives as long as the call
/// is parked (bench-edge's memory per idle runner).
pub async fn answer_lease(session: &mut H2Session, edge: &Edge, id: &Identity) -> Result<()> {
    let req = match read_request(session).await? {
        Ok(req) => req,
        Err(refusal) => return reply::send_grpc_h2(session, &refusal),
    };
    metrics::counter!("antcode_edge_inline_leases_total").increment(1);
    let answer = tokio::select! {
        answer = edge.lease_for(id, req) => answer,
        // Pending until the client resets the stream or closes the connection.
        _ = session.idle() => return Ok(()),
    };
    match answer {
        Ok(resp) => {
            let mut head = ResponseHeader::build(200, Some(2))?;
            head.insert_header("content-type", "application/grpc")?;
            session.write_response_header(Box::new(head), false)?;
            session.write_body(encode(&resp), false).await?;
            let mut trailers = pingora::http::HMap::new();
            trailers.insert("grpc-status", "0".parse().expect("ascii"));
            session.write_trailers(trailers)
        }
        Err(status) => reply::send_grpc_h2(session, &refusal(&status)),
    }
}

/// The whole request body as a `LeaseRequest`, or why it is not one.
async fn read_request(session: &mut H2Session) -> Result<Result<pb::LeaseRequest, Refusal>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_body_bytes().await? {
        if body.len() + chunk.len() > MAX_LEASE_REQUEST {
            return Ok(Err(Refusal::too_large(MAX_LEASE_REQUEST)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(decode(&body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random and mutated bytes through the framing and every message of the worker protocol:
    /// each is decoded or refused, never a panic. `ANTCODE_FUZZ_SEED` replays a seed.
    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let seed = std::env::var("ANTCODE_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().gen());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let valid = [
            encode(&pb::LeaseRequest {
                queues: vec!["default".into(), "gpu".into()],
                max_jobs: 3,
                wait_ms: 100,
            }),
            encode(&pb::CompleteRequest {
                state: "succeeded".into(),
                log_archive: vec![0x1f, 0x8b, 8, 0],
                result_json: "{}".into(),
                ..Default::default()
            }),
            encode(&pb::HeartbeatRequest::default()),
        ];
        let mut decoded = 0;
        for n in 0..3000 {
            let mut body = valid[n % valid.len()].to_vec();
            if rng.gen_bool(0.3) {
                body = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
            } else {
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..body.len().max(1));
                    match rng.gen_range(0..3) {
                        0 if at < body.len() => body[at] = rng.gen(),
                        1 => body.truncate(at),
                        _ => body.insert(at.min(body.len()), rng.gen()),
                    }
                }
                // Keep the length prefix right now and then, so the protobuf itself is reached.
                if body.len() >= 5 && rng.gen_bool(0.5) {
                    let len = (body.len() - 5) as u32;
                    body[0] = 0;
                    body[1..5].copy_from_slice(&len.to_be_bytes());
                }
            }
            decoded += decode::<pb::LeaseRequest>(&body).is_ok() as usize;
            let _ = decode::<pb::HeartbeatRequest>(&body);
            let _ = decode::<pb::CompleteRequest>(&body);
            let _ = decode::<pb::EnrollRequest>(&body);
            let _ = decode::<pb::ReportStartedRequest>(&body);
            let _ = decode::<pb::FetchBundleRequest>(&body);
            let raw = body.get(5..).unwrap_or_default();
            let _ = pb::LogChunk::decode(raw);
            let _ = pb::LeaseResponse::decode(raw);
            let _ = pb::HeartbeatResponse::decode(raw);
            let _ = pb::BundleChunk::decode(raw);
            let _ = pb::EnrollResponse::decode(raw);
        }
        assert!(decoded > 0, "no case reached the protobuf (seed {seed})");
    }

    #[test]
    fn a_frame_round_trips_and_malformed_bodies_are_refused() {
        let req = pb::LeaseRequest {
            queues: vec!["default".into()],
            max_jobs: 3,
            wait_ms: 100,
        };
        let framed = encode(&req);
        let back: pb::LeaseRequest = decode(&framed).map_err(|r| r.message).unwrap();
        assert_eq!(back, req);
        let short = decode::<pb::LeaseRequest>(&framed[..framed.len() - 1]);
        assert_eq!(short.err().map(|r| r.code), Some(Code::InvalidArgument));
        assert_eq!(
            decode::<pb::LeaseRequest>(&[0, 0]).err().map(|r| r.code),
            Some(Code::InvalidArgument)
        );
        let mut compressed = framed.to_vec();
        compressed[0] = 1;
        assert_eq!(
            decode::<pb::LeaseRequest>(&compressed)
                .err()
                .map(|r| r.code),
            Some(Code::Unimplemented)
        );
    }
}
