//! Task secrets: sealed at rest, and the types a secret travels in.
//!
//! A [`SecretBox`] seals each value with ChaCha20-Poly1305 under the cluster's secret key (the
//! SHA-256 of `ANTCODE_SECRET_KEY`, or 32 random bytes in the data dir's `secret.key` for
//! `antcode up`). Every value gets its own random 96-bit nonce, and the secret's name is the
//! associated data, so a sealed value copied onto another name's row does not open. The sealed
//! form is `v1:` + base64(nonce ‖ ciphertext ‖ tag).
//!
//! This module knows neither the store nor the broker: opening a run's secrets into its job
//! message, and failing the run when they cannot be opened, is [`crate::dispatch`]'s.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::rfc3339;

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
/// Longest secret name (names are environment variable names).
pub const MAX_NAME_LEN: usize = 128;
/// Largest secret value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error("the sealed secret is malformed")]
    Malformed,
    /// Wrong key, tampered ciphertext, or a value sealed for another name.
    #[error("the sealed secret {0:?} does not open with this secret key (wrong ANTCODE_SECRET_KEY or tampered data)")]
    Open(String),
    #[error("encryption failed")]
    Seal,
}

/// Seals and opens secret values under one 256-bit key. Its `Debug` never shows the key.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: [u8; KEY_LEN]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The key is the SHA-256 of the passphrase's bytes (`ANTCODE_SECRET_KEY`).
    pub fn from_passphrase(passphrase: &str) -> SecretBox {
        SecretBox::from_key(Sha256::digest(passphrase.as_bytes()).into())
    }

    /// Reads the 32-byte key in `path`, or creates it with random bytes (mode 0600) if the file
    /// does not exist. Used by `antcode up`, which has no operator-chosen key.
    pub fn from_key_file(path: &Path) -> Result<SecretBox, SecretError> {
        let err = |why: String| SecretError::KeyFile {
            path: path.display().to_string(),
            why,
        };
        if !path.exists() {
            let mut key = [0u8; KEY_LEN];
            rand::rngs::OsRng.fill_bytes(&mut key);
            // If another process wins the race to create it, its key is the one read below.
            crate::fsutil::write_new_private(path, &key).map_err(|e| err(e.to_string()))?;
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            err(format!(
                "holds {} bytes, expected {KEY_LEN}; restore it from a backup (secrets sealed under another key cannot be opened)",
                bytes.len()
            ))
        })?;
        Ok(SecretBox::from_key(key))
    }

    fn aad(name: &str) -> Vec<u8> {
        format!("antcode-secret:{VERSION}{name}").into_bytes()
    }

    /// Seals `value` for the secret called `name`.
    pub fn seal(&self, name: &str, value: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(name);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut raw = Vec::with_capacity(NONCE_LEN + ct.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        Ok(format!("{VERSION}{}", B64.encode(raw)))
    }

    /// Opens what [`SecretBox::seal`] made for the same `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, SecretError> {
        let b64 = sealed.strip_prefix(VERSION).ok_or(SecretError::Malformed)?;
        let raw = B64.decode(b64).map_err(|_| SecretError::Malformed)?;
        // A tag alone is 16 bytes: anything shorter than nonce + tag was never sealed here.
        if raw.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = Self::aad(name);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SecretError::Open(name.to_string()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }
}

/// Secret names are environment variable names: `[A-Z_][A-Z0-9_]*`, at most 128 characters.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// What the API may show of a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretMeta {
    pub name: String,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub updated_by: String,
}

/// Who may read a secret: the tasks of project `project_id`, or of every project when it is
/// `None`. Granted by an admin (`PUT /secrets/{name}/grants`); every run checks it again when
/// its job is published ([`crate::dispatch`]), so a revoked grant stops the next run from
/// getting the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretGrant {
    pub secret: String,
    pub project_id: Option<String>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: i64,
    pub granted_by: String,
}

/// A secret row: its metadata and sealed value.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    pub meta: SecretMeta,
    pub sealed: String,
}

/// Resolved secret values carried by a published job. Serialises as a plain map; its `Debug`
/// shows only the names, so a logged job never prints a value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(pub BTreeMap<String, String>);

impl SecretEnv {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip() {
        let b = SecretBox::from_passphrase("correct horse battery staple, long enough");
        for value in ["", "s3cr3t", "héllo wörld 🔑", &"x".repeat(MAX_VALUE_LEN)] {
            let sealed = b.seal("API_TOKEN", value).unwrap();
            assert!(sealed.starts_with("v1:"));
            assert!(value.is_empty() || !sealed.contains(value));
            assert_eq!(b.open("API_TOKEN", &sealed).unwrap(), value);
        }
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let b = SecretBox::from_passphrase("k");
        let one = b.seal("A", "same").unwrap();
        let two = b.seal("A", "same").unwrap();
        assert_ne!(one, two);
        assert_eq!(b.open("A", &one).unwrap(), b.open("A", &two).unwrap());
    }

    #[test]
    fn tampering_is_detected() {
        let b = SecretBox::from_passphrase("k");
        let sealed = b.seal("A", "value").unwrap();
        let mut raw = B64.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = format!("v1:{}", B64.encode(&raw));
            assert!(
                matches!(b.open("A", &bad), Err(SecretError::Open(_))),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        // Truncated, not base64, no version prefix, another version.
        let short = format!("v1:{}", B64.encode(&raw[..NONCE_LEN + 15]));
        for bad in [&short[..], "v1:!!!", &sealed[3..], "v2:AAAA"] {
            assert!(
                matches!(b.open("A", bad), Err(SecretError::Malformed)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_value_is_bound_to_its_name() {
        let b = SecretBox::from_passphrase("k");
        let sealed = b.seal("A", "value").unwrap();
        assert!(matches!(b.open("B", &sealed), Err(SecretError::Open(_))));
    }

    #[test]
    fn the_wrong_key_does_not_open() {
        let sealed = SecretBox::from_passphrase("one")
            .seal("A", "value")
            .unwrap();
        let other = SecretBox::from_passphrase("two");
        assert!(matches!(
            other.open("A", &sealed),
            Err(SecretError::Open(_))
        ));
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = SecretBox::from_key_file(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = first.seal("A", "value").unwrap();
        let again = SecretBox::from_key_file(&path).unwrap();
        assert_eq!(again.open("A", &sealed).unwrap(), "value");

        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::from_key_file(&path),
            Err(SecretError::KeyFile { .. })
        ));
    }

    #[test]
    fn names_are_environment_variable_names() {
        for ok in ["A", "_", "API_TOKEN", "X1", &"A".repeat(128)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1A", "a", "API-TOKEN", "A B", "É", &"A".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_values() {
        let env = SecretEnv(BTreeMap::from([("API_TOKEN".into(), "s3cr3t".into())]));
        let shown = format!("{env:?}");
        assert!(shown.contains("API_TOKEN") && !shown.contains("s3cr3t"));
        assert_eq!(
            format!("{:?}", SecretBox::from_passphrase("k")),
            "SecretBox(..)"
        );
    }
}
