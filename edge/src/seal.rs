//! Lease tokens as the edge hands them out: `<broker token>.<mac>`, where the MAC binds the
//! token to the worker it was leased to. A worker reporting on a lease another worker holds (or
//! inventing one) fails the MAC check; no state is kept, so this survives an edge restart as
//! long as the key (derived from the edge token) stays the same.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct Sealer {
    key: Vec<u8>,
}

impl Sealer {
    pub fn new(secret: &str) -> Sealer {
        Sealer {
            key: antcode_core::ids::sha256_hex(format!("antcode-edge-lease:{secret}").as_bytes())
                .into_bytes(),
        }
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(&[0]);
        }
        m
    }

    /// The token the worker gets for `(run_id, attempt, broker_token)`.
    pub fn seal(&self, worker_id: &str, run_id: &str, attempt: u32, token: &str) -> String {
        let tag = self
            .mac(&[worker_id, run_id, &attempt.to_string(), token])
            .finalize()
            .into_bytes();
        format!("{token}.{}", hex::encode(&tag[..16]))
    }

    /// The broker token inside `sealed` if it was issued to `worker_id` for this run and attempt.
    pub fn open(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        sealed: &str,
    ) -> Option<String> {
        let (token, tag) = sealed.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.mac(&[worker_id, run_id, &attempt.to_string(), token])
            .verify_truncated_left(&tag)
            .ok()?;
        Some(token.to_string())
    }

    /// Binds a bundle key to a run, so `FetchBundle` serves only bundles of leased runs.
    pub fn bundle_mac(&self, run_id: &str, key: &str) -> String {
        hex::encode(&self.mac(&["bundle", run_id, key]).finalize().into_bytes()[..16])
    }

    pub fn check_bundle(&self, run_id: &str, key: &str, mac: &str) -> bool {
        match hex::decode(mac) {
            Ok(tag) => self
                .mac(&["bundle", run_id, key])
                .verify_truncated_left(&tag)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_for_their_worker_run_and_attempt() {
        let s = Sealer::new("k");
        let t = s.seal("w1", "r1", 1, "tok");
        assert_eq!(s.open("w1", "r1", 1, &t).as_deref(), Some("tok"));
        assert_eq!(s.open("w2", "r1", 1, &t), None);
        assert_eq!(s.open("w1", "r2", 1, &t), None);
        assert_eq!(s.open("w1", "r1", 2, &t), None);
        assert_eq!(s.open("w1", "r1", 1, "tok"), None);
        assert_eq!(Sealer::new("other").open("w1", "r1", 1, &t), None);
        let m = s.bundle_mac("r1", "bundles/x");
        assert!(s.check_bundle("r1", "bundles/x", &m));
        assert!(!s.check_bundle("r1", "bundles/y", &m));
    }
}
