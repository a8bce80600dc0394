//! The HTTP API (SPEC §9, seed 001): routes, authentication, rate limiting, validation,
//! enrichment and production, with metrics and one JSON log line per request.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use deadpool_postgres::Pool;
use futures_util::future::join_all;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use serde_json::{Map, Value, json};

use super::event::{self, FieldError};
use super::keys::{self, KeyCache, KeyRecord, Refusal};
use super::produce::{EventProducer, Stored};
use super::ratelimit::{RateLimiter, Window};

/// At most this many events per batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../docs/ingest-openapi.json");

/// Everything a request handler needs.
pub struct App {
    /// `api_keys`.
    pub database: Pool,
    /// Recent key lookups.
    pub keys: KeyCache,
    /// Per-key counters.
    pub limiter: RateLimiter,
    /// The Kafka producer.
    pub producer: EventProducer,
    /// Stamped on every event.
    pub node_name: String,
    /// Body limit of a single event.
    pub max_event_bytes: usize,
    /// Body limit of a batch.
    pub max_batch_bytes: usize,
    /// Requests per minute of keys without their own limit.
    pub default_rate_limit: u64,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// One permit per request being served: when none is left a request is refused at once.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Longest time a request is served before it is answered 408.
    pub request_timeout: std::time::Duration,
    /// Events waiting for the broker at which new requests are shed.
    pub shed_queue: usize,
    /// Failed authentications per client address.
    pub failed_auth: crate::ingest::guard::FailedAuth,
    /// One permit per API key being looked up in PostgreSQL: when none is left an uncached key
    /// is refused at once instead of holding an in-flight slot while it waits for the pool.
    pub key_lookups: tokio::sync::Semaphore,
    /// Take the client's address from the last `X-Forwarded-For` entry (behind a proxy).
    pub trust_proxy: bool,
}

/// The address a connection came from, put on each of its requests by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The service's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    events: IntCounterVec,
    produce_errors: IntCounterVec,
    rate_limited: IntCounterVec,
    ratelimit_unavailable: IntCounterVec,
    auth_blocked: prometheus::IntCounter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("ingest_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ingest_request_duration_seconds",
                "Time from request to response",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "ingest_events_total",
                "Events by outcome: accepted, dead_lettered, rejected, failed, shed",
            ),
            &["outcome"],
        )?;
        let produce_errors = IntCounterVec::new(
            Opts::new(
                "ingest_produce_errors_total",
                "Events the main topic did not take, by where they went instead",
            ),
            &["fallback"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "ingest_ratelimit_rejections_total",
                "Requests refused with 429",
            ),
            &["route"],
        )?;
        let ratelimit_unavailable = IntCounterVec::new(
            Opts::new(
                "ingest_ratelimit_unavailable_total",
                "Requests let through unlimited because Redis did not answer",
            ),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(produce_errors.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(ratelimit_unavailable.clone()))?;
        let auth_blocked = prometheus::IntCounter::new(
            "ingest_auth_blocked_total",
            "Requests refused with 429 because their address failed to authenticate too often",
        )?;
        registry.register(Box::new(auth_blocked.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            events,
            produce_errors,
            rate_limited,
            ratelimit_unavailable,
            auth_blocked,
        })
    }

    fn event(&self, outcome: &str, count: usize) {
        self.events
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
}

/// The router of the API (`INGEST_LISTEN_ADDR`): what clients and the Ingress reach.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/events", post(single))
        .route("/v1/events/batch", post(batch))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// The router of the admin port (`INGEST_ADMIN_ADDR`): probes and metrics, for the cluster
/// only. Not bounded by the API's in-flight limit, so a busy replica still answers its probes
/// instead of being restarted.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Serves `request` if there is room and in time: when every permit is taken the answer is 503
/// with `Retry-After` before its body is read, and a request served longer than the timeout
/// is answered 408 (an event it was storing may still reach the topic: a client that retries
/// may store it twice, as after any lost answer).
async fn bounded(app: &App, request: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&app.in_flight).try_acquire_owned() else {
        return retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "too many requests in flight on this replica; retry",
        );
    };
    match tokio::time::timeout(app.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request was not served within {} ms",
                app.request_timeout.as_millis()
            ),
        ),
    }
}

/// Counts, times and logs every request (never its headers: they carry the API key).
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = match path.as_str() {
        "/v1/events" | "/v1/events/batch" | "/openapi.json" => path.clone(),
        _ => "other".to_string(),
    };
    let response = bounded(&app, request, next).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .requests
        .with_label_values(&[route.as_str(), &status.to_string()])
        .inc();
    app.metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(elapsed.as_secs_f64());
    if route != "/metrics" && route != "/health" {
        tracing::info!(
            method = %method,
            path = %path,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    }
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn problem(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

/// A refusal the client should retry after `seconds`.
fn retry_after(status: StatusCode, seconds: u64, message: &str) -> Response {
    let mut response = problem(status, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn invalid(message: &str, errors: &[FieldError]) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({ "error": message, "errors": errors }),
    )
}

/// Adds the `X-RateLimit-*` headers (and `Retry-After` on 429).
fn with_window(mut response: Response, window: &Window) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", window.limit),
        ("x-ratelimit-remaining", window.remaining),
        ("x-ratelimit-reset", window.reset),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    if window.exceeded {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(window.reset.max(1)));
    }
    response
}

/// The key of a request, or the response that refuses it. A key that is not known valid from
/// the cache is not looked up for a client address blocked by its failed authentications.
async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    client: std::net::IpAddr,
) -> Result<KeyRecord, Response> {
    let Some(key) = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
    else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "missing X-API-Key header",
        ));
    };
    let hash = keys::hash(key);
    let cached = app.keys.get(&hash);
    if !matches!(cached, Some(Some(_)))
        && let Some(seconds) = app.failed_auth.blocked(client)
    {
        app.metrics.auth_blocked.inc();
        return Err(retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            seconds,
            "too many failed authentications from this address; retry later",
        ));
    }
    let record = match cached {
        Some(cached) => cached,
        None => {
            let Ok(_lookup) = app.key_lookups.try_acquire() else {
                return Err(retry_after(
                    StatusCode::SERVICE_UNAVAILABLE,
                    1,
                    "too many API keys are being checked at once on this replica; retry",
                ));
            };
            let looked_up = lookup(&app.database, &hash).await.map_err(|error| {
                tracing::error!(error = %error, "API key lookup failed");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check API keys right now; retry",
                )
            })?;
            app.keys.put(hash, looked_up.clone());
            looked_up
        }
    };
    let Some(record) = record else {
        app.failed_auth.failed(client);
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            Refusal::Unknown.message(),
        ));
    };
    record
        .check(Utc::now())
        .map_err(|refusal| problem(StatusCode::FORBIDDEN, refusal.message()))?;
    Ok(record)
}

async fn lookup(database: &Pool, hash: &str) -> Result<Option<KeyRecord>, String> {
    let client = database.get().await.map_err(|error| error.to_string())?;
    let row = client
        .query_opt(
            "SELECT id, tenant_id, scopes, rate_limit, is_active, expires_at \
             FROM api_keys WHERE key_hash = $1",
            &[&hash],
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok(row.map(|row| KeyRecord {
        id: row.get(0),
        tenant_id: row.get(1),
        scopes: row.get::<_, Option<Vec<String>>>(2).unwrap_or_default(),
        rate_limit: row.get::<_, Option<i32>>(3).map(i64::from),
        // NULL is no decision to let the key in.
        is_active: row.get::<_, Option<bool>>(4).unwrap_or(false),
        expires_at: row.get(5),
    }))
}

/// Content type, key, rate limit and body of a write request, in that order; or the refusal.
async fn admit(
    app: &App,
    route: &str,
    request: Request,
    limit_bytes: usize,
) -> Result<(KeyRecord, Window, Bytes), Response> {
    let headers = request.headers().clone();
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|peer| peer.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let forwarded_for = headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok());
    let client = crate::ingest::guard::client_address(peer, forwarded_for, app.trust_proxy);
    let key = authenticate(app, &headers, client).await?;
    let limit = key
        .rate_limit
        .and_then(|limit| u64::try_from(limit).ok())
        .unwrap_or(app.default_rate_limit);
    let window = app.limiter.hit(&key.id.to_string(), limit).await;
    if !window.counted {
        app.metrics
            .ratelimit_unavailable
            .with_label_values(&[route])
            .inc();
    }
    if window.exceeded {
        app.metrics.rate_limited.with_label_values(&[route]).inc();
        return Err(with_window(
            problem(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("rate limit of {limit} requests per minute exceeded"),
            ),
            &window,
        ));
    }
    let too_large = || {
        with_window(
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body exceeds {limit_bytes} bytes"),
            ),
            &window,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit_bytes) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(request.into_body(), limit_bytes)
        .await
        .map_err(|_| too_large())?;
    Ok((key, window, body))
}

/// Validates, enriches and serializes one event; the field errors when it is invalid.
fn prepare(
    app: &App,
    event: Value,
    tenant: &str,
) -> Result<(event::Receipt, Vec<u8>), Vec<FieldError>> {
    let errors = event::validate(&event);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut object: Map<String, Value> = match event {
        Value::Object(object) => object,
        _ => return Err(event::validate(&Value::Null)),
    };
    let receipt = event::enrich(&mut object, tenant, &app.node_name, Utc::now());
    let payload = serde_json::to_vec(&object).unwrap_or_default();
    Ok((receipt, payload))
}

/// The body as JSON, or the 400 that says where it is malformed.
fn parse(body: &[u8], window: &Window) -> Result<Value, Box<Response>> {
    let refuse = |status: StatusCode, message: String| {
        Box::new(with_window(problem(status, &message), window))
    };
    match event::check_shape(body) {
        Ok(()) => {}
        Err(event::ShapeError::TooDeep) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("JSON nested deeper than {} levels", event::MAX_DEPTH),
            ));
        }
        Err(event::ShapeError::TooManyElements) => {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "more than {} JSON array items and object members",
                    event::MAX_ELEMENTS
                ),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|error| {
        Box::new(with_window(
            problem(StatusCode::BAD_REQUEST, &format!("malformed JSON: {error}")),
            window,
        ))
    })
}

fn record_stored(app: &App, stored: &Stored) {
    match stored {
        Stored::Topic => app.metrics.event("accepted", 1),
        Stored::DeadLetter { reason } => {
            tracing::warn!(reason = %reason, "event went to the dead-letter topic");
            app.metrics.produce_errors.with_label_values(&["dlq"]).inc();
            app.metrics.event("dead_lettered", 1);
        }
        Stored::TooLarge { reason } => {
            tracing::warn!(reason = %reason, "event too large for the topics");
            app.metrics.event("rejected", 1);
        }
        Stored::Failed { reason } => {
            tracing::error!(reason = %reason, "event could not be stored");
            app.metrics
                .produce_errors
                .with_label_values(&["none"])
                .inc();
            app.metrics.event("failed", 1);
        }
    }
}

async fn single(State(app): State<Arc<App>>, request: Request) -> Response {
    let route = "/v1/events";
    if let Some(response) = shed(&app) {
        return response;
    }
    let (key, window, body) = match admit(&app, route, request, app.max_event_bytes).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let event = match parse(&body, &window) {
        Ok(event) => event,
        Err(response) => return *response,
    };
    let (receipt, payload) = match prepare(&app, event, &key.tenant_id.to_string()) {
        Ok(prepared) => prepared,
        Err(errors) => {
            app.metrics.event("rejected", 1);
            return with_window(invalid("the event is invalid", &errors), &window);
        }
    };
    let stored = app
        .producer
        .store(&key.tenant_id.to_string(), &payload)
        .await;
    record_stored(&app, &stored);
    let response = match stored {
        Stored::Topic | Stored::DeadLetter { .. } => json_response(
            StatusCode::ACCEPTED,
            json!({ "event_id": receipt.event_id, "received_at": receipt.received_at }),
        ),
        Stored::TooLarge { .. } => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the event is larger than the topic takes ({} bytes as stored); nothing was \
                 kept, and retrying will not help",
                payload.len()
            ),
        ),
        Stored::Failed { .. } => retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            1,
            "the event could not be stored; nothing was kept, retry",
        ),
    };
    with_window(response, &window)
}

/// 503 with `Retry-After` at once, before the body is read, while the broker is this far
/// behind: queueing more would only make every client wait out the produce timeout. Nothing is
/// claimed, so nothing 202'd is lost.
fn shed(app: &App) -> Option<Response> {
    let queued = app.producer.queued();
    if queued < app.shed_queue {
        return None;
    }
    app.metrics.event("shed", 1);
    Some(retry_after(
        StatusCode::SERVICE_UNAVAILABLE,
        1,
        &format!("{queued} events are waiting for the broker; nothing was kept, retry"),
    ))
}

async fn batch(State(app): State<Arc<App>>, request: Request) -> Response {
    let route = "/v1/events/batch";
    if let Some(response) = shed(&app) {
        return response;
    }
    let (key, window, body) = match admit(&app, route, request, app.max_batch_bytes).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let document = match parse(&body, &window) {
        Ok(document) => document,
        Err(response) => return *response,
    };
    let events = match document {
        Value::Object(mut object) => match object.remove("events") {
            Some(Value::Array(events)) => events,
            _ => {
                let errors = [FieldError {
                    field: "events".into(),
                    message: "is required and must be an array of events".into(),
                }];
                return with_window(invalid("the batch is invalid", &errors), &window);
            }
        },
        _ => {
            return with_window(
                problem(
                    StatusCode::BAD_REQUEST,
                    "the body must be an object {\"events\": [...]}",
                ),
                &window,
            );
        }
    };
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        let errors = [FieldError {
            field: "events".into(),
            message: format!(
                "holds {} events; a batch holds 1 to {MAX_BATCH_EVENTS}",
                events.len()
            ),
        }];
        return with_window(invalid("the batch is invalid", &errors), &window);
    }
    let tenant = key.tenant_id.to_string();
    let mut results: Vec<Value> = Vec::with_capacity(events.len());
    let mut pending = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match prepare(&app, event, &tenant) {
            Ok((receipt, payload)) => {
                results.push(Value::Null);
                pending.push((index, receipt, payload));
            }
            Err(errors) => results.push(json!({
                "index": index, "status": "rejected", "errors": errors
            })),
        }
    }
    let rejected = results.iter().filter(|r| !r.is_null()).count();
    app.metrics.event("rejected", rejected);
    let stored = join_all(
        pending
            .iter()
            .map(|(_, _, payload)| app.producer.store(&tenant, payload)),
    )
    .await;
    let (mut failed, mut too_large) = (0, 0);
    for ((index, receipt, payload), stored) in pending.iter().zip(stored) {
        record_stored(&app, &stored);
        let status = match stored {
            Stored::Topic | Stored::DeadLetter { .. } => "accepted",
            Stored::TooLarge { .. } => {
                too_large += 1;
                results[*index] = json!({
                    "index": index,
                    "status": "rejected",
                    "errors": [FieldError {
                        field: String::new(),
                        message: format!(
                            "larger than the topic takes ({} bytes as stored)",
                            payload.len()
                        ),
                    }]
                });
                continue;
            }
            Stored::Failed { .. } => {
                failed += 1;
                "failed"
            }
        };
        results[*index] = json!({
            "index": index,
            "status": status,
            "event_id": receipt.event_id,
            "received_at": receipt.received_at
        });
    }
    let rejected = rejected + too_large;
    let accepted = pending.len() - failed - too_large;
    let status = if failed > 0 {
        // Some valid events are not stored: the client must retry those (status "failed").
        StatusCode::SERVICE_UNAVAILABLE
    } else if accepted == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };
    with_window(
        json_response(
            status,
            json!({
                "accepted": accepted,
                "rejected": rejected,
                "failed": failed,
                "results": results
            }),
        ),
        &window,
    )
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let database = async {
        let client = app
            .database
            .get()
            .await
            .map_err(|error| error.to_string())?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    let (database, redis, kafka) = tokio::join!(
        tokio::time::timeout(std::time::Duration::from_secs(3), database),
        app.limiter.ping(),
        app.producer.check()
    );
    let database = database.unwrap_or_else(|_| Err("no answer within 3s".to_string()));
    // The degradation policy: without Redis the rate limit fails open, so the pod serves on;
    // without PostgreSQL a key not in the cache cannot be checked, and without Kafka nothing
    // can be stored: either takes the pod out of service. The drivers' errors, which may name
    // hosts and users, go to the log, not to whoever asks.
    let status = |name: &str, result: &Result<(), String>, effect: &str| match result {
        Ok(()) => json!("ok"),
        Err(error) => {
            tracing::warn!(dependency = name, error = %error, "readiness check failed");
            json!(format!("unavailable{effect}"))
        }
    };
    let ready = database.is_ok() && kafka.is_ok();
    json_response(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({
            "ready": ready,
            "postgres": status("postgres", &database, ""),
            "redis": status("redis", &redis, " (the rate limit fails open)"),
            "kafka": status("kafka", &kafka, "")
        }),
    )
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(error) = encoder.encode(&app.metrics.registry.gather(), &mut buffer) {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_string())],
        buffer,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
