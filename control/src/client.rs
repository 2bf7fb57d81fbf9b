//! Where a request came from ([`Client`]), for the audit trail and the login throttle.
//!
//! The address is the TCP peer's, unless someone trusted says otherwise:
//!
//! * the edge (its `/api` proxy) sends the caller's address in `x-antcode-peer` together with
//!   the edge token in `x-antcode-edge`; control believes the header only with the right token
//!   (compared in constant time), so a run's process on the same host, a loopback peer like the
//!   edge, cannot pick its own address. The edge removes every `x-antcode-*` header a client
//!   sends.
//! * a reverse proxy whose address is in `--trusted-proxy` (CIDRs; none by default) is believed
//!   about `X-Forwarded-For`: the address taken is the right-most one that is not itself a
//!   trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use antcode_core::ids;

use crate::AppState;

/// Set by the edge on what it proxies to `/api`: the caller's address.
pub const PEER_HEADER: &str = "x-antcode-peer";
/// Set by the edge next to [`PEER_HEADER`]: the edge token, which vouches for it.
pub const EDGE_HEADER: &str = "x-antcode-edge";

/// Where a request came from, for audit and throttling.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: String,
    pub user_agent: String,
}

/// An address block, `10.0.0.0/8`, `::1/128` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an address or CIDR block (e.g. 10.0.0.0/8, ::1)");
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix(u32::from(n).into(), u32::from(a).into(), 32, self.bits)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(n), u128::from(a), 128, self.bits),
            _ => false,
        }
    }
}

fn prefix(net: u128, addr: u128, width: u8, bits: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = u32::from(width - bits);
    (net >> shift) == (addr >> shift)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl Client {
    pub fn from_parts(parts: &Parts, state: &AppState) -> Client {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| canonical(c.0.ip()));
        let address = match peer {
            None => "unknown".to_string(),
            Some(peer) => client_address(&parts.headers, peer, state)
                .unwrap_or(peer)
                .to_string(),
        };
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect();
        Client {
            address,
            user_agent,
        }
    }
}

/// The address a trusted party reports for the caller, if any.
fn client_address(headers: &HeaderMap, peer: IpAddr, state: &AppState) -> Option<IpAddr> {
    if let Some(token) = state.edge_token.as_deref() {
        let sent = headers.get(EDGE_HEADER).and_then(|v| v.to_str().ok());
        if let Some(sent) = sent {
            let (a, b) = (ids::token_hash(sent), ids::token_hash(token));
            if bool::from(a.as_bytes().ct_eq(b.as_bytes())) {
                return headers
                    .get(PEER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .map(canonical);
            }
        }
    }
    let trusted = |ip: IpAddr| state.trusted_proxies.iter().any(|c| c.contains(ip));
    if !trusted(peer) {
        return None;
    }
    // Right to left: each trusted proxy appended the address it saw; the first untrusted one
    // is the client. Anything left of it was written by the client and proves nothing.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev().take(32) {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return None;
        };
        let ip = canonical(ip);
        if !trusted(ip) {
            return Some(ip);
        }
    }
    None
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Client, Self::Rejection> {
        Ok(Client::from_parts(parts, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
