//! Per-key rate limiting in Redis: a fixed one-minute window per key, counted atomically by a
//! Lua script (increment, start the window's expiry on the first request, read what is left).
//!
//! When Redis does not answer within 250 ms the request is let through (fail open) and
//! `ingest_ratelimit_unavailable_total` counts it: audit events are evidence, and refusing
//! them because a counter store is down would lose more than an unthrottled minute costs.
//! Authentication still applies; only the limit is skipped.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// The window every limit counts over.
pub const WINDOW_SECONDS: u64 = 60;

/// At most one warning per this long while Redis does not answer.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Longest wait for Redis before failing open.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

const SCRIPT: &str = r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"#;

/// The state of one key's window after a request, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests allowed per window.
    pub limit: u64,
    /// Requests left in this window.
    pub remaining: u64,
    /// Seconds until the window starts over.
    pub reset: u64,
    /// Whether this request is over the limit.
    pub exceeded: bool,
    /// Whether Redis answered (false: failed open).
    pub counted: bool,
}

/// Counts requests per key in Redis.
pub struct RateLimiter {
    client: redis::Client,
    /// The connection once made (the manager remakes it after failures).
    connection: RwLock<Option<ConnectionManager>>,
    /// Held by the one request that is making the first connection.
    connecting: Mutex<()>,
    script: redis::Script,
    /// When the limiter was made: the clock of `warned_at`.
    started: Instant,
    /// Milliseconds after `started` of the last fail-open warning (0: none yet).
    warned_at: AtomicU64,
    /// Requests let through uncounted since that warning.
    uncounted: AtomicU64,
}

impl RateLimiter {
    /// A limiter for the Redis at `url` (`redis://` or `rediss://` for TLS).
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: RwLock::new(None),
            connecting: Mutex::new(()),
            script: redis::Script::new(SCRIPT),
            started: Instant::now(),
            warned_at: AtomicU64::new(0),
            uncounted: AtomicU64::new(0),
        })
    }

    /// The connection made so far, if any.
    fn current(&self) -> Option<ConnectionManager> {
        self.connection.read().map_or_else(
            |poisoned| poisoned.into_inner().clone(),
            |slot| slot.clone(),
        )
    }

    /// A connection, made on first use and remade by the manager after failures. While one
    /// request is making the first connection the others do not queue behind it: they fail
    /// open at once.
    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(connection) = self.current() {
            return Some(connection);
        }
        let _connecting = self.connecting.try_lock().ok()?;
        if let Some(connection) = self.current() {
            return Some(connection);
        }
        let made = tokio::time::timeout(REDIS_TIMEOUT, self.client.get_connection_manager())
            .await
            .ok()
            .and_then(Result::ok)?;
        match self.connection.write() {
            Ok(mut slot) => *slot = Some(made.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(made.clone()),
        }
        Some(made)
    }

    /// Notes one request let through uncounted, and warns at most once per [`WARN_EVERY`]
    /// with how many there were: a warning per request would flood the log (and the disk)
    /// exactly while Redis is down and traffic goes on. Whether it warned.
    fn failed_open(&self) -> bool {
        self.uncounted.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.warned_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let uncounted = self.uncounted.swap(0, Ordering::Relaxed);
            tracing::warn!(
                uncounted,
                "rate limit not counted: Redis did not answer within 250 ms (failing open)"
            );
            return true;
        }
        false
    }

    /// Counts one request of key `id` against `limit` per minute.
    pub async fn hit(&self, id: &str, limit: u64) -> Window {
        let window = self.count(id, limit).await;
        if !window.counted {
            let _ = self.failed_open();
        }
        window
    }

    async fn count(&self, id: &str, limit: u64) -> Window {
        let open = Window {
            limit,
            remaining: limit,
            reset: WINDOW_SECONDS,
            exceeded: false,
            counted: false,
        };
        let Some(mut connection) = self.connection().await else {
            return open;
        };
        let mut invocation = self.script.key(format!("trails:ratelimit:{id}"));
        invocation.arg(WINDOW_SECONDS);
        let call = invocation.invoke_async::<(u64, i64)>(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok((count, ttl))) => Window {
                limit,
                remaining: limit.saturating_sub(count),
                reset: u64::try_from(ttl).unwrap_or(WINDOW_SECONDS),
                exceeded: count > limit,
                counted: true,
            },
            _ => open,
        }
    }

    /// Whether Redis answers a PING.
    pub async fn ping(&self) -> Result<(), String> {
        let Some(mut connection) = self.connection().await else {
            return Err("cannot connect".to_string());
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 2s".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_open_warns_once_per_interval_not_once_per_request() {
        let limiter = RateLimiter::new("redis://127.0.0.1:1").expect("a limiter");
        assert!(
            limiter.failed_open(),
            "the first request uncounted is reported"
        );
        let warned = (0..10_000).filter(|_| limiter.failed_open()).count();
        assert_eq!(warned, 0, "no more warnings within {WARN_EVERY:?}");
        assert_eq!(limiter.uncounted.load(Ordering::Relaxed), 10_000);
    }
}
