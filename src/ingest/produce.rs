//! Producing events to Kafka with rdkafka: acks=all, idempotence, lz4, key `tenant_id`. An
//! event counts as stored only once the broker acknowledged it; one that cannot be produced to
//! the main topic within the produce timeout goes to the dead-letter topic, and one that cannot
//! go there either fails the request (503). Nothing is dropped silently.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// Where an event ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// In the main topic.
    Topic,
    /// In the dead-letter topic, after the main topic refused it for `reason`.
    DeadLetter {
        /// Why the main topic did not take it.
        reason: String,
    },
    /// Nowhere, and never: both topics refuse an event this large (`MessageSizeTooLarge`, from
    /// librdkafka's `message.max.bytes` or the broker's `max.message.bytes`). Retrying cannot
    /// help.
    TooLarge {
        /// What the broker said.
        reason: String,
    },
    /// Nowhere: the request must fail.
    Failed {
        /// What the broker said.
        reason: String,
    },
}

/// The service's producer. An idempotent producer that the broker fences (or that librdkafka
/// declares failed for good) can never produce again, as librdkafka documents: it is replaced
/// by a new one, with a new producer id, the first time a send sees that.
#[derive(Clone)]
pub struct EventProducer {
    config: ClientConfig,
    current: Arc<RwLock<Current>>,
    topic: String,
    dlq_topic: String,
}

/// The producer in use and how many were made before it.
struct Current {
    producer: FutureProducer,
    generation: u64,
}

/// Whether `error`, from `producer`, means that producer is unusable from now on.
fn unusable(producer: &FutureProducer, error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::Fatal
        )
    ) || producer.client().fatal_error().is_some()
}

impl EventProducer {
    /// An idempotent lz4 producer for `brokers`, over TLS when `tls` is given, that waits
    /// `linger` for more events before it sends a batch.
    pub fn new(
        brokers: &str,
        tls: Option<&crate::kafkatls::Tls>,
        topic: &str,
        dlq_topic: &str,
        timeout: Duration,
        linger: Duration,
    ) -> Result<Self, KafkaError> {
        let mut config = crate::kafkatls::client(brokers, tls);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", linger.as_millis().to_string())
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("client.id", "trails-ingest");
        let producer: FutureProducer = config.create()?;
        Ok(Self {
            config,
            current: Arc::new(RwLock::new(Current {
                producer,
                generation: 0,
            })),
            topic: topic.to_string(),
            dlq_topic: dlq_topic.to_string(),
        })
    }

    /// The producer in use and its generation.
    fn producer(&self) -> (FutureProducer, u64) {
        let read = |current: &Current| (current.producer.clone(), current.generation);
        match self.current.read() {
            Ok(current) => read(&current),
            Err(poisoned) => read(&poisoned.into_inner()),
        }
    }

    /// Replaces the producer of `generation` with a new one, unless another send already
    /// did. Events still in the old one fail (their requests are answered 503, nothing is
    /// claimed); whether a new one is in use.
    fn renew(&self, generation: u64, error: &KafkaError) -> bool {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.generation != generation {
            return true;
        }
        match self.config.create::<FutureProducer>() {
            Ok(producer) => {
                tracing::warn!(
                    error = %error,
                    generation = generation + 1,
                    "the Kafka producer can no longer produce; made a new one"
                );
                *current = Current {
                    producer,
                    generation: generation + 1,
                };
                true
            }
            Err(made) => {
                tracing::error!(error = %error, made = %made, "the Kafka producer can no longer produce, and a new one could not be made");
                false
            }
        }
    }

    /// Sends one event to `topic` and waits for the broker's acknowledgement, with a new
    /// producer once if the one in use can no longer produce.
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let mut renewed = false;
        loop {
            let (producer, generation) = self.producer();
            let sent = producer
                .send(
                    FutureRecord::to(topic).key(key).payload(payload),
                    // Waiting for room in a full local queue counts against the same budget.
                    Timeout::After(Duration::from_secs(5)),
                )
                .await
                .map(|_| ())
                .map_err(|(error, _)| error);
            match sent {
                Err(error) if !renewed && unusable(&producer, &error) => {
                    if !self.renew(generation, &error) {
                        return Err(error);
                    }
                    renewed = true;
                }
                sent => return sent,
            }
        }
    }

    /// Produces one event, falling back to the dead-letter topic.
    pub async fn store(&self, key: &str, payload: &[u8]) -> Stored {
        let main = match self.send(&self.topic, key, payload).await {
            Ok(()) => return Stored::Topic,
            Err(error) => error,
        };
        let too_large = |error: &KafkaError| {
            error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge)
        };
        match self.send(&self.dlq_topic, key, payload).await {
            Ok(()) => Stored::DeadLetter {
                reason: main.to_string(),
            },
            Err(dlq) if too_large(&main) && too_large(&dlq) => Stored::TooLarge {
                reason: format!("{main}; dead-letter topic: {dlq}"),
            },
            Err(dlq) => Stored::Failed {
                reason: format!("{main}; dead-letter topic: {dlq}"),
            },
        }
    }

    /// Whether the broker answers a metadata request for the main topic.
    pub async fn check(&self) -> Result<(), String> {
        let (producer, _) = self.producer();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2)))
                .map_err(|error| error.to_string())
                .and_then(
                    |metadata| match metadata.topics().iter().find(|t| t.name() == topic) {
                        Some(found) if found.error().is_none() => Ok(()),
                        Some(_) | None => Err(format!("topic {topic} is not available")),
                    },
                )
        })
        .await
        .map_err(|error| error.to_string())?
    }

    /// Events handed to the producer and not yet acknowledged or given up.
    pub fn queued(&self) -> usize {
        usize::try_from(self.producer().0.in_flight_count()).unwrap_or(0)
    }

    /// Waits for every event in flight (graceful shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer().0.flush(Timeout::After(timeout))
    }
}
