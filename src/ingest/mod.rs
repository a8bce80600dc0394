//! The platform's own ingest service (SPEC §9): audit events over HTTP into Kafka, started by
//! `trails ingest serve` and configured by environment variables ([`config::Config`]).

pub mod config;
pub mod event;
pub mod guard;
pub mod keys;
pub mod produce;
pub mod ratelimit;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Pool, Runtime};
use uuid::Uuid;

use config::{Config, redact};

/// A PostgreSQL pool for `url`, with TLS when the server offers it (see [`crate::pgtls`]).
pub fn pool(url: &str) -> anyhow::Result<Pool> {
    let mut parsed: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("DATABASE_URL {}: not a PostgreSQL URL", redact(url)))?;
    crate::pgtls::harden(&mut parsed);
    let tls = crate::pgtls::connector(&parsed)
        .map_err(|error| anyhow::anyhow!("DATABASE_URL {}: {error}", redact(url)))?;
    let mut settings = deadpool_postgres::Config::new();
    settings.url = Some(url.to_string());
    // A request waits at most this long for a connection (or for one to be made): a flood of
    // unknown keys or a stalled server makes requests fail, not queue without end.
    let mut limits = deadpool_postgres::PoolConfig::default();
    limits.timeouts.wait = Some(Duration::from_secs(2));
    limits.timeouts.create = Some(Duration::from_secs(5));
    limits.timeouts.recycle = Some(Duration::from_secs(2));
    settings.pool = Some(limits);
    if parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        settings.ssl_mode = Some(deadpool_postgres::SslMode::Require);
    }
    settings
        .create_pool(Some(Runtime::Tokio1), tls)
        .with_context(|| format!("DATABASE_URL {}: cannot build a pool", redact(url)))
}

/// Creates `api_keys` when missing. Several replicas starting at once take turns.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("connecting to PostgreSQL")?;
    // A least-privilege role (SELECT on api_keys and nothing else) may not create even what
    // exists, so the table trails' day-one migration made is left alone.
    let present: Option<String> = client
        .query_one("SELECT to_regclass('api_keys')::text", &[])
        .await
        .context("looking for the api_keys table")?
        .get(0);
    if present.is_some() {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); {} COMMIT;",
            keys::MIGRATION_LOCK,
            keys::MIGRATION
        ))
        .await
        .context("migrating the api_keys table")?;
    Ok(())
}

/// Waits until PostgreSQL answers, for at most `patience`.
async fn connected(pool: &Pool, url: &str, patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match pool.get().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(anyhow::anyhow!(
                    "PostgreSQL at {} did not answer within {}s: {error}",
                    redact(url),
                    patience.as_secs()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A new API key for `tenant`, stored as its hash; the key itself is returned once.
pub async fn create_key(
    pool: &Pool,
    tenant: Uuid,
    name: &str,
    scopes: &[String],
    rate_limit: Option<i32>,
) -> anyhow::Result<String> {
    migrate(pool).await?;
    let key = keys::generate();
    let client = pool.get().await.context("connecting to PostgreSQL")?;
    client
        .execute(
            "INSERT INTO api_keys (id, key_hash, tenant_id, name, scopes, rate_limit) \
             VALUES ($1, $2, $3, $4, $5, COALESCE($6, 10000))",
            &[
                &Uuid::new_v4(),
                &keys::hash(&key),
                &tenant,
                &name,
                &scopes,
                &rate_limit,
            ],
        )
        .await
        .context("inserting the key")?;
    Ok(key)
}

/// Runs the service until SIGTERM or Ctrl-C, then stops taking requests, finishes those in
/// flight and flushes the producer.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let database = pool(&config.database_url)?;
    connected(&database, &config.database_url, Duration::from_secs(30)).await?;
    migrate(&database).await?;
    let producer = produce::EventProducer::new(
        &config.kafka_brokers,
        config.kafka_tls.as_ref(),
        &config.topic,
        &config.dlq_topic,
        config.produce_timeout,
        config.produce_linger,
    )
    .with_context(|| {
        format!(
            "KAFKA_BROKERS {}: cannot create a producer",
            config.kafka_brokers
        )
    })?;
    let limiter = ratelimit::RateLimiter::new(&config.redis_url)
        .with_context(|| format!("REDIS_URL {}", redact(&config.redis_url)))?;
    let app = Arc::new(server::App {
        database,
        keys: keys::KeyCache::new(config.key_cache_ttl),
        limiter,
        producer: producer.clone(),
        node_name: config.node_name.clone(),
        max_event_bytes: config.max_event_bytes,
        max_batch_bytes: config.max_batch_bytes,
        default_rate_limit: config.default_rate_limit,
        metrics: server::Metrics::new().context("registering metrics")?,
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
        request_timeout: config.request_timeout,
        shed_queue: config.shed_queue,
        failed_auth: guard::FailedAuth::new(config.failed_auth_limit),
        key_lookups: tokio::sync::Semaphore::new(config.max_key_lookups),
        trust_proxy: config.trust_proxy,
    });
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("INGEST_LISTEN_ADDR {}: cannot listen", config.listen_addr))?;
    let admin = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("INGEST_ADMIN_ADDR {}: cannot listen", config.admin_addr))?;
    let address = |listener: &tokio::net::TcpListener| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    tracing::info!(
        address = %address(&listener),
        admin = %address(&admin),
        topic = %config.topic,
        node = %config.node_name,
        "ingest service listening"
    );
    tokio::join!(
        serve_http(
            listener,
            server::router(app.clone()),
            config.header_read_timeout
        ),
        serve_http(admin, server::admin_router(app), config.header_read_timeout),
    );
    tracing::info!("shutting down: flushing events in flight");
    let flushed = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await
        .context("flushing the producer")?;
    flushed.context("events were still in flight after 30s")?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `router` on `listener` until SIGTERM or Ctrl-C, then lets open connections finish for
/// at most 30 s. Unlike `axum::serve` it bounds how long a client may take to send its request
/// headers: one that has not sent them within `header_read_timeout` is disconnected, so slow
/// clients cannot hold connections open.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let service = TowerToHyperService::new(
                        router.clone().layer(axum::Extension(server::Peer(peer))),
                    );
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(error = %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30s are closed");
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// JSON log lines on stdout (`RUST_LOG` filters, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .try_init();
}
