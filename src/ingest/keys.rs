//! API keys: the `api_keys` table of seed 001, looked up by the SHA-256 of the key and cached
//! for a short time so that a request does not wait for the database.
//!
//! Revocation latency: a key revoked (or expired) in the database keeps working on a replica
//! for at most `INGEST_KEY_CACHE_SECONDS` (default 30 s). Unknown keys are remembered for at
//! most 5 s, so a key created a moment after a failed attempt works within 5 s.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The schema the service migrates on start (seed 001, E2.S2), shared with the blueprint's
/// day-one PostgreSQL configuration.
pub const MIGRATION: &str = include_str!("../../templates/sql/postgres/001_api_keys.sql");

/// The advisory lock every migration of this database takes, the service's and trails' day-one
/// migrations alike, so that they run one at a time.
pub const MIGRATION_LOCK: i64 = 7286517;

/// The scope `POST /v1/events*` requires.
pub const WRITE_SCOPE: &str = "events:write";

/// How long an unknown key is remembered as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Most keys the cache holds.
const MAX_ENTRIES: usize = 100_000;

/// What the service needs of one key row.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// `api_keys.id`: the rate limit is counted per key.
    pub id: Uuid,
    /// The tenant every event of this key belongs to.
    pub tenant_id: Uuid,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Requests per minute (`None`: the service's default).
    pub rate_limit: Option<i64>,
    /// False once revoked.
    pub is_active: bool,
    /// After this the key is refused.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such key (401).
    Unknown,
    /// Revoked (403).
    Revoked,
    /// Past `expires_at` (403).
    Expired,
    /// Lacks `events:write` (403).
    MissingScope,
}

impl Refusal {
    /// The message clients see.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown API key",
            Refusal::Revoked => "this API key has been revoked",
            Refusal::Expired => "this API key has expired",
            Refusal::MissingScope => "this API key lacks the events:write scope",
        }
    }
}

impl KeyRecord {
    /// Whether the key may write events now.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if !self.is_active {
            return Err(Refusal::Revoked);
        }
        if self.expires_at.is_some_and(|expires| expires <= now) {
            return Err(Refusal::Expired);
        }
        if !self.scopes.iter().any(|scope| scope == WRITE_SCOPE) {
            return Err(Refusal::MissingScope);
        }
        Ok(())
    }
}

/// The SHA-256 of a key, hex, as stored in `api_keys.key_hash`.
pub fn hash(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// A new random key: `tt_` and 64 hex characters from the operating system's random source.
pub fn generate() -> String {
    format!("tt_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Recently looked-up keys by hash.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<String, (Option<KeyRecord>, Instant)>>,
    ttl: Duration,
}

impl KeyCache {
    /// A cache trusting a lookup for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: RwLock::default(),
            ttl,
        }
    }

    /// The cached answer for `hash`, if still fresh: `Some(None)` is a known-unknown key.
    pub fn get(&self, hash: &str) -> Option<Option<KeyRecord>> {
        let entries = self.entries.read().ok()?;
        let (record, fetched) = entries.get(hash)?;
        let ttl = if record.is_some() {
            self.ttl
        } else {
            NEGATIVE_TTL.min(self.ttl)
        };
        (fetched.elapsed() < ttl).then(|| record.clone())
    }

    /// Remembers a lookup.
    pub fn put(&self, hash: String, record: Option<KeyRecord>) {
        if let Ok(mut entries) = self.entries.write() {
            // Bounded: a flood of random keys must not grow memory without end, nor push out
            // the keys of real clients, which would then all wait for the database at once.
            // Expired entries go first, then every unknown key, and only then the rest.
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, fetched)| fetched.elapsed() < self.ttl);
            }
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (record, _)| record.is_some());
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(hash, (record, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            scopes: vec!["events:write".into()],
            rate_limit: None,
            is_active: true,
            expires_at: None,
        }
    }

    #[test]
    fn revoked_expired_and_unscoped_keys_are_refused_with_their_reason() {
        let now = Utc::now();
        assert_eq!(record().check(now), Ok(()));
        let revoked = KeyRecord {
            is_active: false,
            ..record()
        };
        assert_eq!(revoked.check(now), Err(Refusal::Revoked));
        let expired = KeyRecord {
            expires_at: Some(now - chrono::Duration::seconds(1)),
            ..record()
        };
        assert_eq!(expired.check(now), Err(Refusal::Expired));
        let reader = KeyRecord {
            scopes: vec!["events:read".into()],
            ..record()
        };
        assert_eq!(reader.check(now), Err(Refusal::MissingScope));
    }

    #[test]
    fn keys_hash_like_sha256sum_and_the_cache_expires() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = generate();
        assert!(key.starts_with("tt_") && key.len() == 67, "{key}");
        let cache = KeyCache::new(Duration::from_millis(50));
        cache.put("h".into(), Some(record()));
        assert_eq!(cache.get("h"), Some(Some(record())));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("h"), None);
    }

    #[test]
    fn a_flood_of_unknown_keys_does_not_push_a_known_key_out_of_the_cache() {
        let cache = KeyCache::new(Duration::from_secs(30));
        cache.put("known".into(), Some(record()));
        for n in 0..MAX_ENTRIES + 10 {
            cache.put(format!("unknown-{n}"), None);
        }
        assert_eq!(cache.get("known"), Some(Some(record())));
        // The unknown keys since the last eviction are still remembered as unknown.
        let last = format!("unknown-{}", MAX_ENTRIES + 9);
        assert_eq!(cache.get(&last), Some(None));
    }
}
