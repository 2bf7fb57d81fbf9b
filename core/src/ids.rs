//! Identifiers and secrets-at-rest helpers.
//!
//! Ids are UUIDv7 strings: time-ordered, so "newest first" and cursor pagination are a plain
//! comparison on the primary key in every SQL dialect.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A random opaque token (bearer tokens, lease tokens, enrollment keys) with a readable prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Tokens are stored as their SHA-256: they carry 192 random bits, so a slow KDF adds nothing,
/// and a fast hash lets every request be checked with one indexed lookup.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// True when `s` looks like an id we issued (guards SQL lookups against junk path segments).
pub fn is_valid_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}
