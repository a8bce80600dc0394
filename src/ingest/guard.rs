//! The per-client-address limit on failed authentications: a client that keeps sending
//! unknown API keys costs a database query each, so after `limit` failures in a minute its
//! address is answered 429 until the minute ends, without a query. Kept in this replica's
//! memory (a fixed window per address, bounded in size): it holds while Redis is down, and a
//! client spread over several replicas gets `limit` per replica.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count lasts.
const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses remembered; past it, expired counts go, then all of them.
const MAX_ADDRESSES: usize = 100_000;

/// Failed authentications per client address.
pub struct FailedAuth {
    limit: u32,
    counts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedAuth {
    /// A guard that blocks an address after `limit` failures in a minute (never, for 0).
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            counts: Mutex::default(),
        }
    }

    /// Seconds until `client` may try again, when it is blocked.
    pub fn blocked(&self, client: IpAddr) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let counts = self.counts.lock().ok()?;
        let (count, started) = counts.get(&client)?;
        let elapsed = started.elapsed();
        (*count >= self.limit && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts one failed authentication of `client`.
    pub fn failed(&self, client: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        if counts.len() >= MAX_ADDRESSES && !counts.contains_key(&client) {
            counts.retain(|_, (_, started)| started.elapsed() < WINDOW);
            if counts.len() >= MAX_ADDRESSES {
                counts.clear();
            }
        }
        let entry = counts.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// The client's address: the peer's, or behind a proxy that appends the address it saw to
/// `X-Forwarded-For` (Traefik and ingress-nginx do), the last entry of that header. The entries before
/// it are the client's own word and never trusted.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trust_proxy: bool) -> IpAddr {
    if !trust_proxy {
        return peer;
    }
    forwarded_for
        .and_then(|header| header.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_limit_and_others_are_not() {
        let guard = FailedAuth::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        guard.failed(a);
        assert_eq!(guard.blocked(a), None);
        guard.failed(a);
        assert!(
            guard
                .blocked(a)
                .is_some_and(|seconds| (1..=60).contains(&seconds))
        );
        assert_eq!(guard.blocked(b), None);
        assert_eq!(FailedAuth::new(0).blocked(a), None);
    }

    #[test]
    fn only_the_proxys_own_entry_of_x_forwarded_for_is_believed() {
        let peer: IpAddr = "10.1.2.3".parse().expect("ip");
        let header = Some("1.1.1.1, 203.0.113.9");
        assert_eq!(client_address(peer, header, false), peer);
        assert_eq!(
            client_address(peer, header, true),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(client_address(peer, Some("garbage"), true), peer);
        assert_eq!(client_address(peer, None, true), peer);
    }
}
