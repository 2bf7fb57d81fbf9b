//! Token buckets per key, in the memory of one control process: what limits the calls of a
//! webhook and the triggers of a task. A bucket holds `rate_per_min` calls and refills at that
//! many a minute; behind N control processes a key gets up to N times its rate, and a restart
//! refills every bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before the full ones are dropped (a full bucket is the same as none).
const MAX_BUCKETS: usize = 10_000;

/// Token buckets by key.
#[derive(Default)]
pub struct Buckets(Mutex<HashMap<String, Bucket>>);

struct Bucket {
    tokens: f64,
    at: Instant,
    capacity: f64,
}

impl Bucket {
    /// Refills for the time since it was last seen.
    fn refill(&mut self, now: Instant) {
        let per_s = self.capacity / 60.0;
        let grown = now.saturating_duration_since(self.at).as_secs_f64() * per_s;
        self.tokens = (self.tokens + grown).min(self.capacity);
        self.at = now;
    }
}

impl Buckets {
    /// Takes a call from `id`'s bucket of `rate_per_min`; `Err` with the seconds until one is
    /// there.
    pub fn take(&self, id: &str, rate_per_min: u32, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(rate_per_min.max(1));
        let mut buckets = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(id) {
            buckets.retain(|_, b| {
                b.refill(now);
                b.tokens < b.capacity
            });
        }
        let bucket = buckets.entry(id.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            capacity,
        });
        bucket.capacity = capacity;
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let per_s = capacity / 60.0;
        Err(((1.0 - bucket.tokens) / per_s).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_its_rate_and_refills_at_it() {
        let b = Buckets::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.take("h", 3, t0).unwrap();
        }
        // Three a minute: the next call is one in 20 s.
        assert_eq!(b.take("h", 3, t0), Err(20));
        assert_eq!(b.take("h", 3, t0 + Duration::from_secs(15)), Err(5));
        b.take("h", 3, t0 + Duration::from_secs(20)).unwrap();
        // Another key has its own bucket.
        b.take("other", 1, t0).unwrap();
        assert_eq!(b.take("other", 1, t0), Err(60));
    }
}
