//! Soak and chaos benchmark of the ingest service (run by `bench/soak`, which starts PostgreSQL,
//! Redis and a tansu broker that keeps its data across restarts, and stops and restarts them
//! on a schedule while this runs). It first measures the most single events per second this
//! stack takes (64 connections, 10 s), then sends 70 % of that, open loop, for SOAK_SECONDS,
//! and reports p50/p99/p99.9, the answers by status, the service's peak RSS and the zero-loss
//! count: every event answered 202 must be read back from the topic or the dead-letter topic,
//! once, or more than once (a producer retry after a lost acknowledgement, which the API
//! documents as possible).
//!
//! Environment: DATABASE_URL, REDIS_URL, KAFKA_BROKERS, SOAK_SECONDS (default 600),
//! SOAK_STARTED (a file written when the soak itself begins, for the chaos schedule).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Service, env};

const TOPICS: [(&str, i32); 2] = [("audit.events.v1", 3), ("audit.events.dlq", 1)];

/// What the soak saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    statuses: BTreeMap<String, u64>,
    /// The answers by status in each minute of the soak, to see when the chaos hit.
    per_minute: BTreeMap<u64, BTreeMap<String, u64>>,
    acknowledged: Vec<String>,
}

/// One POST; its status (or why there was none) and, on 202, the event id.
async fn post(http: &reqwest::Client, url: &str, key: &str, n: u64) -> (String, Option<String>) {
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(common::event(n))
        .send()
        .await;
    match sent {
        Err(error) if error.is_timeout() => ("timeout".to_string(), None),
        Err(_) => ("no answer".to_string(), None),
        Ok(response) => {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let id = (status == reqwest::StatusCode::ACCEPTED)
                .then(|| body["event_id"].as_str().map(str::to_string))
                .flatten();
            (status.as_u16().to_string(), id)
        }
    }
}

/// The peak resident memory of `pid` so far, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib / 1024)
}

#[tokio::main]
async fn main() {
    let brokers = env("KAFKA_BROKERS");
    let seconds: u64 = env("SOAK_SECONDS")
        .parse()
        .expect("SOAK_SECONDS is a number");
    common::create_topics(&brokers, &TOPICS).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let service = Service::start(&http, &[]).await;
    let pid = service.pid();
    let url = format!("{}/v1/events", service.base);
    let key = service.key.clone();

    // The maximum: 64 connections back to back for 10 s.
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..64u64 {
        let (http, url, key, counted, stop) = (
            http.clone(),
            url.clone(),
            key.clone(),
            counted.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = worker * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                if post(&http, &url, &key, n).await.0 == "202" {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let maximum = counted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let rate = (maximum * 0.7).max(1.0);

    // The soak: `rate` requests per second, open loop, in 10 ms ticks.
    if let Ok(file) = std::env::var("SOAK_STARTED") {
        std::fs::write(file, "started").expect("the start file");
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(4096));
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let soak_started = Instant::now();
    let mut sent = 0u64;
    let mut shed_by_client = 0u64;
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(peak_rss_mib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    while soak_started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let due = (soak_started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            sent += 1;
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                shed_by_client += 1;
                continue;
            };
            let (http, url, key, seen) = (http.clone(), url.clone(), key.clone(), seen.clone());
            let n = 10_000_000_000_000 + sent;
            tokio::spawn(async move {
                let asked = Instant::now();
                let (status, id) = post(&http, &url, &key, n).await;
                let latency = asked.elapsed();
                let minute = asked.duration_since(soak_started).as_secs() / 60;
                let mut seen = seen.lock().expect("lock");
                seen.latencies.push(latency);
                *seen
                    .per_minute
                    .entry(minute)
                    .or_default()
                    .entry(status.clone())
                    .or_insert(0) += 1;
                *seen.statuses.entry(status).or_insert(0) += 1;
                if let Some(id) = id {
                    seen.acknowledged.push(id);
                }
                drop(permit);
            });
        }
    }
    let _ = outstanding.acquire_many(4096).await;
    let elapsed = soak_started.elapsed();
    sampler.abort();
    peak.fetch_max(peak_rss_mib(pid), Ordering::Relaxed);
    service.stop();

    let mut seen = std::mem::take(&mut *seen.lock().expect("lock"));
    seen.latencies.sort();
    let at = |q: f64| common::percentile(&seen.latencies, q);
    println!(
        "soak: {:.0} s at {rate:.0} req/s (70 % of the {maximum:.0} req/s measured first), {} sent, \
         {shed_by_client} not sent (4096 already waiting)",
        elapsed.as_secs_f64(),
        sent
    );
    println!(
        "latency: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
        at(0.5),
        at(0.99),
        at(0.999)
    );
    let statuses: Vec<String> = seen
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    println!("answers: {}", statuses.join(", "));
    for (minute, statuses) in &seen.per_minute {
        let statuses: Vec<String> = statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        println!("  minute {minute}: {}", statuses.join(", "));
    }
    println!("service peak RSS: {} MiB", peak.load(Ordering::Relaxed));
    let expected: HashSet<String> = seen.acknowledged.iter().cloned().collect();
    let found = common::read_back(&brokers, &TOPICS, &expected, Duration::from_secs(120));
    let mut once = 0;
    let mut more = 0;
    let mut missing = 0;
    for id in &seen.acknowledged {
        match found.get(id).copied().unwrap_or(0) {
            0 => missing += 1,
            1 => once += 1,
            _ => more += 1,
        }
    }
    println!(
        "zero loss: {} answered 202; {once} read back once, {more} more than once (a retried \
         produce), {missing} missing ({})",
        seen.acknowledged.len(),
        if missing == 0 {
            "none lost"
        } else {
            "LOST EVENTS"
        }
    );
    if missing > 0 {
        std::process::exit(1);
    }
}
