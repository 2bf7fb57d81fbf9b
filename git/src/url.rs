//! Which URLs may be fetched: network transports only, credentials never in the URL, and no
//! address inside the platform's own network (SSRF) unless the policy allows private hosts.
//!
//! [`vet`] resolves the host once and returns the addresses it approved; every connection is then
//! made to those addresses and no other (see `pin`), so a DNS server that answers a public
//! address to the check and a private one a moment later (DNS rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use gix::bstr::ByteSlice;
use gix::url::Scheme;

use crate::{Error, Policy};

/// Checks `url`'s syntax and scheme, and that its host resolves to public addresses only.
///
/// Only DNS is asked; the server is not contacted. With `allow_private`, only the syntax and scheme
/// are checked. A fetch does not rely on this answer: it resolves and checks the host once more
/// and then connects to exactly the addresses it approved, so a DNS answer that changes in between
/// can't lead it elsewhere; HTTP redirects are not followed for the same reason.
pub fn check_url(url: &str, policy: &Policy) -> Result<(), Error> {
    if policy.allow_private {
        return parse(url).map(drop);
    }
    vet(url, policy).map(drop)
}

/// A URL that passed the checks, with the addresses its host resolved to, all approved: the only
/// ones a connection to it may use.
#[derive(Debug, Clone)]
pub(crate) struct Vetted {
    /// The URL as given.
    pub url: String,
    pub parsed: gix::Url,
    /// The host as the URL names it, without brackets: TLS and SSH host keys are checked
    /// against it.
    pub host: String,
    /// The URL's port, or its scheme's default.
    pub port: u16,
    /// In the resolver's order of preference; never empty.
    pub addrs: Vec<SocketAddr>,
}

/// Checks `url` like [`check_url`] and resolves its host, once; with `allow_private` the
/// addresses are not judged but still pinned.
pub(crate) fn vet(url: &str, policy: &Policy) -> Result<Vetted, Error> {
    let parsed = parse(url)?;
    let host = parsed.host().unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_default()
        .ok_or_else(|| Error::Refused(format!("{url:?} has no port and its scheme no default")))?;
    let addrs = addresses(&host, port, url)?;
    if !policy.allow_private {
        for addr in &addrs {
            let ip = addr.ip();
            if !is_public(ip) {
                return Err(Error::Refused(format!(
                    "{url} points to {ip}, an address inside a private network; fetch from a public host"
                )));
            }
        }
    }
    Ok(Vetted {
        url: url.to_string(),
        parsed,
        host,
        port,
        addrs,
    })
}

/// Parses `url`, refusing anything but a network URL with a plain host and no password.
pub(crate) fn parse(url: &str) -> Result<gix::Url, Error> {
    let refuse = |why: &str| {
        Err(Error::Refused(format!(
            "{url:?} is not a usable Git URL: {why}"
        )))
    };
    if url.is_empty() {
        return refuse("it is empty");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("it holds spaces or control characters");
    }
    if url.starts_with('-') {
        return refuse("it starts with '-'");
    }
    // `ext::cmd` and `fd::` name remote helpers that run commands; git spots them by `::`.
    if let Some(colons) = url.find("::") {
        if url.find('/').is_none_or(|slash| colons < slash) {
            return refuse("remote helpers (`transport::address`) are not allowed");
        }
    }
    let parsed = match gix::url::parse(url.as_bytes().as_bstr()) {
        Ok(parsed) => parsed,
        Err(_) => return refuse("it can't be parsed"),
    };
    match parsed.scheme {
        Scheme::Https | Scheme::Http | Scheme::Ssh | Scheme::Git => {}
        Scheme::File => return refuse("local paths and file:// are not allowed"),
        _ => return refuse("use https://, http://, ssh://, git:// or user@host:path"),
    }
    if parsed.password().is_some() {
        return refuse("it holds a password; pass the token as a credential instead");
    }
    let host = parsed.host().unwrap_or_default();
    if host.is_empty() {
        return refuse("it has no host");
    }
    if host.starts_with('-') || parsed.user().is_some_and(|u| u.starts_with('-')) {
        return refuse("its host or user starts with '-'");
    }
    Ok(parsed)
}

/// Resolves `host` (without brackets) to the addresses the fetch will connect to.
fn addresses(host: &str, port: u16, url: &str) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::Remote(format!("cannot resolve the host of {url}: {e}")))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(Error::Remote(format!("the host of {url} has no address")));
    }
    Ok(addrs)
}

/// Whether `ip` is an address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    // IANA's special-purpose blocks that are not the Internet: protocol assignments
    // (192.0.0/24), documentation (192.0.2/24, 198.51.100/24, 203.0.113/24), benchmarking
    // (198.18/15) and reserved (240/4).
    let special = (a, b, c) == (192, 0, 0)
        || (a, b, c) == (192, 0, 2)
        || (a, b, c) == (198, 51, 100)
        || (a, b, c) == (203, 0, 113)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || cgnat
        || this_network
        || special)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    // ::a.b.c.d, the deprecated IPv4-compatible form, reaches the IPv4 address too.
    let compatible = ip.segments()[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits, 6to4 (2002::/16) the
    // one in bits 16-48: judge those addresses instead. Local-use NAT64 (64:ff9b:1::/48) is a
    // site's own translator: never public.
    let nat64 = ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let local_nat64 = ip.segments()[..3] == [0x64, 0xff9b, 1];
    if compatible || nat64 {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if first == 0x2002 {
        let [_, _, a, b, c, d, ..] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let documentation = ip.segments()[..2] == [0x2001, 0xdb8];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation
        || local_nat64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "ff02::1",
            "192.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.5",
            "240.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:101:1:100::",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "1.1.1.1",
            "140.82.112.3",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::101:101",
            "2002:101:101::1",
            "198.20.0.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn scp_like_urls_parse_as_ssh() {
        let url = parse("git@github.com:owner/repo.git").unwrap();
        assert_eq!(url.scheme, Scheme::Ssh);
        assert_eq!(url.host(), Some("github.com"));
    }
}
