//! Load benchmark of the ingest service (run by `bench/ingest`, which starts PostgreSQL, Redis
//! and tansu and passes their addresses). Reports requests/s and p50/p99/p99.9 latency for
//! single events and for batches of 100, each at several client concurrencies, the broker's
//! ceiling (a plain producer with the service's settings, 64 and then 4096 messages in flight),
//! the best run of each kind under its p99 bound (20 ms single, 200 ms batches) as a share of
//! that ceiling, and checks that every accepted event is in the topic.
//!
//! Environment: DATABASE_URL, REDIS_URL, KAFKA_BROKERS, BENCH_SECONDS (default 10),
//! BENCH_CONCURRENCY (default 64, the middle of the single-event sweep), BENCH_SINGLE_SWEEP
//! (default `16,64,256`), BENCH_BATCH_SWEEP (default `4,16,64`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use common::{Service, env, number, percentile};

const TOPIC: &str = "audit.events.v1";
const PARTITIONS: i32 = 3;

/// Latencies of one run.
struct Run {
    label: String,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: u64,
    events_per_request: u64,
}

impl Run {
    /// Requests per second.
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The 99th percentile latency in ms (sorts the latencies).
    fn p99(&mut self) -> f64 {
        self.latencies.sort();
        percentile(&self.latencies, 0.99)
    }

    fn report(&mut self) {
        self.latencies.sort();
        let at = |q: f64| percentile(&self.latencies, q);
        let rate = self.latencies.len() as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<34} {:>9.0} req/s {:>9.0} events/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  errors {}",
            self.label,
            rate,
            rate * self.events_per_request as f64,
            at(0.50),
            at(0.99),
            at(0.999),
            self.errors
        );
    }
}

/// `concurrency` workers call `work` back to back for `seconds`.
async fn drive<F, Fut>(label: &str, seconds: u64, concurrency: u64, per: u64, work: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let work = work.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = worker * 1_000_000_000;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                if work(n).await {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        label: label.to_string(),
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
        events_per_request: per,
    };
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            run.latencies.extend(latencies);
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run
}

/// A client sending one event after another to `url` with `key`, until `stop` and at least
/// `minimum` times, on its own thread and runtime (in the flood's runtime it would queue behind
/// the attackers' tasks: the load generator's delay, not the service's); its latencies, of
/// 202s only (another answer ends the run with a panic: a valid client must not be refused).
fn steady_client(
    url: &str,
    key: &str,
    stop: Arc<AtomicBool>,
    minimum: usize,
) -> std::thread::JoinHandle<Vec<Duration>> {
    let (url, key) = (url.to_string(), key.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::new();
        runtime.block_on(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || latencies.len() < minimum {
                let sent = Instant::now();
                let status = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-api-key", &key)
                    .body(common::event(n))
                    .send()
                    .await
                    .map(|response| response.status());
                assert!(
                    matches!(status, Ok(reqwest::StatusCode::ACCEPTED)),
                    "the valid client was answered {status:?}"
                );
                latencies.push(sent.elapsed());
                n += 1;
            }
            latencies
        })
    })
}

#[tokio::main]
async fn main() {
    let brokers = env("KAFKA_BROKERS");
    let seconds = number("BENCH_SECONDS", 10);
    let concurrency = number("BENCH_CONCURRENCY", 64);

    common::create_topics(
        &brokers,
        &[
            (TOPIC, PARTITIONS),
            ("audit.events.dlq", 1),
            ("bench.ceiling", PARTITIONS),
        ],
    )
    .await;

    // The broker's ceiling: the service's producer settings, no HTTP, with as many messages
    // in flight as the service's 64 connections would have, and then with thousands (the
    // broker's throughput, not the producer's latency).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    let payload = Arc::new(common::event(1));
    let mut ceilings = Vec::new();
    for in_flight in [64, 4096] {
        let (producer, payload) = (producer.clone(), payload.clone());
        ceilings.push(
            drive(
                &format!("raw producer, {in_flight} in flight"),
                seconds,
                in_flight,
                1,
                move |n| {
                    let producer = producer.clone();
                    let payload = payload.clone();
                    async move {
                        let key = format!("tenant-{}", n % 8);
                        producer
                            .send(
                                FutureRecord::to("bench.ceiling")
                                    .key(&key)
                                    .payload(payload.as_str()),
                                Timeout::After(Duration::from_secs(5)),
                            )
                            .await
                            .is_ok()
                    }
                },
            )
            .await,
        );
    }

    // The service, with a key that has room for everything.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client");
    // Behind a (pretend) proxy: the flood below comes from as many addresses as requests.
    let service = Service::start(&http, &[("INGEST_TRUST_PROXY", "true")]).await;
    let (base, key) = (service.base.clone(), service.key.clone());

    // Warm-up, not reported: opens the connections and fills the key cache and the pools.
    let warm = {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        drive("warm-up", 2, concurrency, 1, move |n| {
            let request = http
                .post(format!("{base}/v1/events"))
                .header("content-type", "application/json")
                .header("x-api-key", &key)
                .body(common::event(n));
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED)
            }
        })
        .await
    };
    // Single events and batches at several client concurrencies: the best throughput whose
    // p99 stays under the bound is what counts.
    let sweep = |name: &str, default: &str| -> Vec<u64> {
        std::env::var(name)
            .unwrap_or_else(|_| default.to_string())
            .split(',')
            .filter_map(|value| value.trim().parse().ok())
            .collect()
    };
    let mut singles = Vec::new();
    for connections in sweep("BENCH_SINGLE_SWEEP", &format!("16,{concurrency},256")) {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        singles.push(
            drive(
                &format!("service: single events, {connections} conns"),
                seconds,
                connections,
                1,
                move |n| {
                    let request = http
                        .post(format!("{base}/v1/events"))
                        .header("content-type", "application/json")
                        .header("x-api-key", &key)
                        .body(common::event(n));
                    async move {
                        request
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED)
                    }
                },
            )
            .await,
        );
    }
    let mut batches = Vec::new();
    for connections in sweep("BENCH_BATCH_SWEEP", "4,16,64") {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        batches.push(
            drive(
                &format!("service: batches of 100, {connections} conns"),
                seconds,
                connections,
                100,
                move |n| {
                    let request = http
                        .post(format!("{base}/v1/events/batch"))
                        .header("content-type", "application/json")
                        .header("x-api-key", &key)
                        .body(common::batch(n * 100, 100));
                    async move {
                        request
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED)
                    }
                },
            )
            .await,
        );
    }

    // One client sending one event after another, alone and then beside 10,000 requests with
    // unknown keys from 128 connections and as many addresses: what a spread-out flood of
    // random keys costs a client whose key is known.
    let url = format!("{base}/v1/events");
    let mut alone = steady_client(&url, &key, Arc::new(AtomicBool::new(true)), 2000)
        .join()
        .expect("steady client");
    let stop = Arc::new(AtomicBool::new(false));
    let client = steady_client(&url, &key, stop.clone(), 0);
    let flood_started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut attackers = Vec::new();
    for _ in 0..128 {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        attackers.push(tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 10_000 {
                    break statuses;
                }
                let status = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-api-key", format!("tt_{}", uuid::Uuid::new_v4().simple()))
                    .header("x-forwarded-for", format!("10.0.{}.{}", n / 256, n % 256))
                    .body(common::event(u64::from(n)))
                    .send()
                    .await
                    .map_or(0, |response| response.status().as_u16());
                *statuses.entry(status).or_insert(0u32) += 1;
            }
        }));
    }
    let mut flood = std::collections::BTreeMap::new();
    for attacker in attackers {
        for (status, count) in attacker.await.expect("attacker") {
            *flood.entry(status).or_insert(0) += count;
        }
    }
    let flood_took = flood_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut beside = client.join().expect("steady client");
    service.stop();

    println!(
        "ingest benchmark: {seconds}s per run, loopback, 2 cores shared by service, broker, \
         Redis, PostgreSQL and this load generator"
    );
    for run in ceilings.iter_mut().chain(&mut singles).chain(&mut batches) {
        run.report();
    }
    let ceiling = ceilings.iter().map(Run::rate).fold(0.0, f64::max);
    // The best run whose p99 is under `bound` ms, as (events/s, label, p99).
    let best = |runs: &mut Vec<Run>, bound: f64| {
        runs.iter_mut()
            .filter_map(|run| {
                let p99 = run.p99();
                (p99 < bound).then(|| {
                    (
                        run.rate() * run.events_per_request as f64,
                        run.label.clone(),
                        p99,
                    )
                })
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    println!("broker ceiling: {ceiling:.0} messages/s (the raw producer's best)");
    for (what, runs, bound) in [
        ("single events", &mut singles, 20.0),
        ("batches of 100", &mut batches, 200.0),
    ] {
        match best(runs, bound) {
            Some((rate, label, p99)) => println!(
                "{what}: best under p99 {bound:.0} ms: {rate:.0} events/s ({label}, p99 {p99:.2} ms) \
                 = {:.0} % of the ceiling",
                rate / ceiling * 100.0
            ),
            None => println!("{what}: no run kept p99 under {bound:.0} ms"),
        }
    }
    alone.sort();
    beside.sort();
    println!(
        "a valid client, one request at a time: p99 {:.2} ms alone; p99 {:.2} ms ({} requests) \
         beside 10,000 unknown keys from as many addresses in {:.1} s ({flood:?})",
        percentile(&alone, 0.99),
        percentile(&beside, 0.99),
        beside.len(),
        flood_took.as_secs_f64()
    );
    let accepted = alone.len() as u64
        + beside.len() as u64
        + warm.latencies.len() as u64
        + singles
            .iter()
            .map(|run| run.latencies.len() as u64)
            .sum::<u64>()
        + batches
            .iter()
            .map(|run| run.latencies.len() as u64)
            .sum::<u64>()
            * 100;
    let stored = common::count_messages(
        &brokers,
        &[(TOPIC, PARTITIONS)],
        accepted,
        Duration::from_secs(30),
    );
    println!(
        "zero loss check: {accepted} events acknowledged with 202, {stored} in {TOPIC} ({})",
        if stored >= accepted {
            "none lost"
        } else {
            "LOST EVENTS"
        }
    );
    if stored < accepted {
        std::process::exit(1);
    }
}
