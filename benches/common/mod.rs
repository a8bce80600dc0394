//! What both ingest benchmarks share: their settings, the service started as a child process
//! with a key that has room for everything, request bodies made once, percentiles, and the
//! topics read back to count what was stored.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A setting the bench script must pass.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (the bench script sets it)"))
}

/// A numeric setting, or its default.
pub fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// One audit event as a client sends it, numbered `n`. Made by formatting a fixed text, not by
/// building a `serde_json::Value`: the load generator shares the two cores with the service,
/// and what it spends making bodies is taken from what is measured.
pub fn event(n: u64) -> String {
    format!(
        r#"{{"actor":{{"id":"user-{}","type":"user"}},"action":{{"name":"Document.Viewed"}},"resource":{{"type":"document","id":"doc-{n}"}},"timestamp":"2026-11-21T12:00:00Z","metadata":{{"ip":"10.0.0.1","user_agent":"bench/1.0"}}}}"#,
        n % 1000
    )
}

/// A batch of `size` events numbered from `first`.
pub fn batch(first: u64, size: u64) -> String {
    let events: Vec<String> = (first..first + size).map(event).collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

/// Creates `topics` (name, partitions) on `brokers`.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let topics: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `trails ingest serve` on loopback, stopped with SIGTERM (a graceful flush) when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`, the API.
    pub base: String,
    /// An API key with `events:write` and the highest rate limit.
    pub key: String,
}

impl Service {
    /// Migrates `DATABASE_URL`, makes a key and starts `trails ingest serve` against the
    /// environment's PostgreSQL, Redis and brokers; returns once its `/health` answers.
    pub async fn start(http: &reqwest::Client, settings: &[(&str, &str)]) -> Self {
        let database = trails::ingest::pool(&env("DATABASE_URL")).expect("pool");
        trails::ingest::migrate(&database).await.expect("migrate");
        let key = trails::ingest::create_key(
            &database,
            uuid::Uuid::new_v4(),
            "bench",
            &["events:write".to_string()],
            Some(i32::MAX),
        )
        .await
        .expect("key");
        let (port, admin) = (free_port(), free_port());
        // The binary cargo built with this benchmark, in the same optimised profile: no second
        // release build of everything.
        let child = Command::new(env!("CARGO_BIN_EXE_trails"))
            .args(["ingest", "serve"])
            .env("INGEST_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("INGEST_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            // The service logs to stdout: kept where `BENCH_SERVICE_LOG` says, for a run that
            // went wrong, and dropped otherwise.
            .stdout(match std::env::var_os("BENCH_SERVICE_LOG") {
                Some(path) => {
                    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
                }
                None => Stdio::null(),
            })
            .spawn()
            .expect("trails ingest serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http
            .get(format!("http://127.0.0.1:{admin}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            assert!(Instant::now() < deadline, "the service did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            key,
        }
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it gracefully and waits for it to end.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// The latency at quantile `q` of sorted `latencies`, in ms.
pub fn percentile(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let index = ((latencies.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(latencies.len() - 1);
    latencies[index].as_secs_f64() * 1000.0
}

/// A consumer assigned every partition of `topics` (name, partitions) from the beginning.
fn from_the_beginning(brokers: &str, topics: &[(&str, i32)]) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-read-back")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for partition in 0..*partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// How many messages `topics` hold, read from the beginning until `at_least` were counted or
/// nothing arrived for `patience` (watermarks are not trusted: a broker may report them per
/// record batch).
pub fn count_messages(
    brokers: &str,
    topics: &[(&str, i32)],
    at_least: u64,
    patience: Duration,
) -> u64 {
    let consumer = from_the_beginning(brokers, topics);
    let mut total = 0;
    let mut last_news = Instant::now();
    while total < at_least && last_news.elapsed() < patience {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(250)) {
            total += 1;
            last_news = Instant::now();
        }
    }
    total
}

/// How often each event id is in `topics` (name, partitions), read from the beginning.
/// Reading ends once every id of `expected` was seen, or when nothing new arrived for
/// `patience`: a broker that keeps its log in object storage may take many seconds to serve
/// the first fetch after a restart, so a short quiet spell is no proof that the log has ended.
pub fn read_back(
    brokers: &str,
    topics: &[(&str, i32)],
    expected: &HashSet<String>,
    patience: Duration,
) -> HashMap<String, u64> {
    let consumer = from_the_beginning(brokers, topics);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut found = 0usize;
    let mut last_news = Instant::now();
    let mut reported = Instant::now();
    while found < expected.len() && last_news.elapsed() < patience {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(250)) else {
            continue;
        };
        last_news = Instant::now();
        if let Some(id) = event_id(message.payload()) {
            let count = seen.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count == 1 && expected.contains(&id) {
                found += 1;
            }
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("read back: {found} of {} so far", expected.len());
            reported = Instant::now();
        }
    }
    // Duplicates of what was already found may still follow; a short drain counts them.
    let drained = Instant::now();
    while drained.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100))
            && let Some(id) = event_id(message.payload())
        {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

/// The `event_id` of a stored event.
fn event_id(payload: Option<&[u8]>) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(payload?).ok()?;
    event["event_id"].as_str().map(str::to_string)
}
