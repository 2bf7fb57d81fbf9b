//! Answers the front gives itself, without reaching the worker service or control.
//!
//! gRPC refusals are trailers-only responses (HTTP 200, `content-type: application/grpc`,
//! `grpc-status` in the one HEADERS frame that ends the stream): a plain HTTP 429 or 401 reaches
//! tonic clients as `UNAVAILABLE`/`UNKNOWN`, which they would retry at once. Everything else gets
//! an RFC 7807 problem like control's own errors.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v2::server::HttpSession as H2Session;
use pingora::protocols::http::ServerSession;
use pingora::Result;
use tonic::Code;

/// A refusal: its gRPC code, HTTP status and message, and whether to add `retry-after: 1`.
pub struct Refusal {
    pub code: Code,
    pub http: u16,
    pub message: String,
    pub retry_after: bool,
}

impl Refusal {
    pub fn new(code: Code, http: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            http,
            message: message.into(),
            retry_after: false,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Refusal {
        Refusal::new(Code::Unauthenticated, 401, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Refusal {
        let mut r = Refusal::new(Code::Unavailable, 503, message);
        r.retry_after = true;
        r
    }

    pub fn rate_limited(scope: &'static str) -> Refusal {
        metrics::counter!("antcode_edge_rate_limited_total", "scope" => scope).increment(1);
        let mut r = Refusal::new(
            Code::ResourceExhausted,
            429,
            format!("rate limit per {scope} exceeded; retry after 1 s"),
        );
        r.retry_after = true;
        r
    }

    pub fn too_large(limit: usize) -> Refusal {
        Refusal::new(
            Code::ResourceExhausted,
            413,
            format!("request larger than {limit} bytes"),
        )
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The trailers-only gRPC response carrying `refusal`.
fn grpc_head(refusal: &Refusal) -> Result<Box<ResponseHeader>> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header("content-type", "application/grpc")?;
    resp.insert_header("grpc-status", (refusal.code as i32).to_string())?;
    resp.insert_header("grpc-message", percent_encode(&refusal.message))?;
    if refusal.retry_after {
        resp.insert_header("retry-after", "1")?;
    }
    Ok(Box::new(resp))
}

/// Writes `refusal` as a trailers-only gRPC response on an HTTP/2 stream: END_STREAM on the
/// HEADERS frame itself. Synchronous (h2 queues the frame), so a future that may refuse does not
/// carry room for a write.
pub fn send_grpc_h2(session: &mut H2Session, refusal: &Refusal) -> Result<()> {
    session.write_response_header(grpc_head(refusal)?, true)
}

/// Writes `refusal` as the whole response; `grpc` picks the trailers-only gRPC form.
pub async fn send(session: &mut ServerSession, grpc: bool, refusal: &Refusal) -> Result<()> {
    if grpc {
        return match session {
            ServerSession::H2(h2) => send_grpc_h2(h2, refusal),
            _ => {
                session.write_response_header(grpc_head(refusal)?).await?;
                session.write_response_body(Bytes::new(), true).await
            }
        };
    }
    let body = Bytes::from(
        serde_json::json!({
            "type": "about:blank",
            "title": pingora::http::StatusCode::from_u16(refusal.http)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error"),
            "status": refusal.http,
            "detail": refusal.message,
        })
        .to_string(),
    );
    let mut resp = ResponseHeader::build(refusal.http, Some(4))?;
    resp.insert_header("content-type", "application/problem+json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    if refusal.retry_after {
        resp.insert_header("retry-after", "1")?;
    }
    session.write_response_header(Box::new(resp)).await?;
    session.write_response_body(body, true).await
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("plain words"), "plain words");
        assert_eq!(percent_encode("100% ü\n"), "100%25 %C3%BC%0A");
    }
}
