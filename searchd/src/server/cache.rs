//! A bounded cache of search answers.
//!
//! Safe because the snapshot is immutable: for the lifetime of the process
//! the engine gives the same answer to the same `(query, ids, offset)`, so
//! an entry never goes stale. The only part of a body that varies is its
//! `"duration":` value; an entry keeps the body written on the miss and
//! where that value sits, and a hit writes prefix + its own (tiny)
//! duration + suffix.
//!
//! The key is the decoded parameters (after [`crate::params`]), so two
//! targets that Rack parses to the same parameters share an entry and
//! different parameters never do. Only 200 answers are stored.
//!
//! Bounded by bytes (key + body), split over [`SHARDS`] mutex-guarded maps
//! picked by the key's hash; a full shard is simply cleared (answers are
//! cheap to recompute, and a clear costs nothing per hit). Answers bigger
//! than 1/64 of a shard are not stored.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use crate::ruby;

/// Shards per cache (a power of two).
const SHARDS: usize = 16;

/// A stored answer: the whole body of the miss, and the byte range of its
/// duration value.
#[derive(Clone)]
struct Entry {
    body: Bytes,
    /// End of `…"duration":`.
    prefix: usize,
    /// Start of `,"total":…`.
    suffix: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Entry>,
    bytes: usize,
}

/// The answer cache of one server.
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    shard_bytes: usize,
    max_entry: usize,
    bytes: AtomicU64,
}

/// A lookup key: the decoded search parameters, fixed-width numbers first
/// so that distinct parameters always differ.
pub fn key(query: &str, ids: i64, offset: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + query.len());
    k.extend_from_slice(&ids.to_le_bytes());
    k.extend_from_slice(&offset.to_le_bytes());
    k.extend_from_slice(query.as_bytes());
    k
}

/// Writes a duration exactly as the engine's `write_json` does (Picky's
/// `Float#round(6)`, `0` for zero).
pub fn write_duration(duration: f64, out: &mut Vec<u8>) {
    if duration == 0.0 {
        out.push(b'0');
    } else {
        ruby::write_float(ruby::round(duration, 6), out);
    }
}

impl Cache {
    /// A cache of at most `bytes` (key + body bytes); `None` if 0.
    pub fn new(bytes: usize) -> Option<Cache> {
        if bytes == 0 {
            return None;
        }
        let shard_bytes = (bytes / SHARDS).max(1);
        Some(Cache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shard_bytes,
            max_entry: shard_bytes / 64,
            bytes: AtomicU64::new(0),
        })
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> (64 - SHARDS.trailing_zeros())) as usize]
    }

    /// The stored answer for `key` with `duration` written in, if any.
    pub fn get(&self, key: &[u8], duration: impl FnOnce() -> f64) -> Option<Bytes> {
        let entry = {
            let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
            shard.map.get(key)?.clone()
        };
        let b = &entry.body;
        let mut out = Vec::with_capacity(b.len() + 8);
        out.extend_from_slice(&b[..entry.prefix]);
        write_duration(duration(), &mut out);
        out.extend_from_slice(&b[entry.suffix..]);
        Some(Bytes::from(out))
    }

    /// Stores a 200 answer's body (as the engine wrote it) under `key`.
    /// Bodies without the `"duration":…,"total":` tail or too big for a
    /// shard are skipped.
    pub fn insert(&self, key: Vec<u8>, body: Bytes) {
        let size = key.len() + body.len();
        if size > self.max_entry {
            return;
        }
        // The tail is `,"duration":<number>,"total":<integer>}`: neither
        // number contains a quote, so searching from the end cannot land
        // inside a string of the allocations.
        const DURATION: &[u8] = b",\"duration\":";
        const TOTAL: &[u8] = b",\"total\":";
        let Some(suffix) = rfind(&body, TOTAL) else {
            return;
        };
        let Some(d) = rfind(&body[..suffix], DURATION) else {
            return;
        };
        let entry = Entry {
            prefix: d + DURATION.len(),
            suffix,
            body,
        };
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.map.contains_key(&key[..]) {
            return;
        }
        if shard.bytes + size > self.shard_bytes {
            self.bytes.fetch_sub(shard.bytes as u64, Relaxed);
            shard.map.clear();
            shard.bytes = 0;
        }
        shard.bytes += size;
        self.bytes.fetch_add(size as u64, Relaxed);
        shard.map.insert(key.into_boxed_slice(), entry);
    }

    /// Bytes (keys + bodies) held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"{\"allocations\":[[\"books\",1.0,1,[[\"t\",\"a\",\"a\"]],[\"x,\\\"total\\\":1\"]]],\"offset\":0,\"duration\":0.000123,\"total\":1}";

    #[test]
    fn hit_rewrites_only_the_duration() {
        let c = Cache::new(1 << 20).unwrap();
        let k = key("a", 20, 0);
        assert!(c.get(&k, || 0.0).is_none());
        c.insert(k.clone(), Bytes::from_static(BODY));
        assert_eq!(c.bytes(), (k.len() + BODY.len()) as u64);
        let hit = c.get(&k, || 3.1e-6).unwrap();
        let want = String::from_utf8_lossy(BODY).replace("0.000123", "3.0e-06");
        assert_eq!(String::from_utf8_lossy(&hit), want);
        let hit = c.get(&k, || 0.0).unwrap();
        let want = String::from_utf8_lossy(BODY).replace("0.000123", "0");
        assert_eq!(String::from_utf8_lossy(&hit), want);
        assert!(c.get(&key("a", 20, 1), || 0.0).is_none());
        assert!(c.get(&key("a", 21, 0), || 0.0).is_none());
    }

    #[test]
    fn bounded() {
        assert!(Cache::new(0).is_none());
        // 16 shards of 16 KiB: entries up to 256 bytes.
        let c = Cache::new(256 << 10).unwrap();
        for i in 0..10_000 {
            c.insert(key(&i.to_string(), 20, 0), Bytes::from_static(BODY));
        }
        assert!(c.bytes() <= 256 << 10);
        assert!(c.bytes() > 0);
        let big = [BODY, &[b' '; 300][..]].concat();
        c.insert(key("big", 20, 0), Bytes::from(big));
        assert!(c.get(&key("big", 20, 0), || 0.0).is_none());
    }
}
