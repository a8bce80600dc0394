//! `trails ingest serve` and `trails ingest create-key`.

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::{Failure, Outcome};
use crate::ingest;

/// The ingest service's commands.
#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Run the ingest service; configured by INGEST_LISTEN_ADDR, DATABASE_URL, REDIS_URL,
    /// KAFKA_BROKERS, INGEST_TOPIC, INGEST_DLQ_TOPIC (see the README).
    Serve,
    /// Create an API key in DATABASE_URL's api_keys table and print it (only this once).
    CreateKey(CreateKeyArgs),
}

/// Arguments of `trails ingest create-key`.
#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// The tenant the key's events belong to (a UUID).
    #[arg(long)]
    tenant: Uuid,
    /// A name to recognise the key by.
    #[arg(long)]
    name: String,
    /// Scopes granted (repeatable).
    #[arg(long = "scope", default_value = "events:write")]
    scopes: Vec<String>,
    /// Requests per minute (default 10,000).
    #[arg(long)]
    rate_limit: Option<i32>,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Internal(error.into()))
}

/// Runs an ingest command.
pub fn run(command: IngestCommand) -> Result<Outcome, Failure> {
    match command {
        IngestCommand::Serve => {
            let config =
                ingest::config::Config::from_env().map_err(|error| Failure::User(error.into()))?;
            ingest::init_logging();
            runtime()?
                .block_on(ingest::serve(config))
                .map_err(Failure::User)?;
        }
        IngestCommand::CreateKey(args) => {
            let url = std::env::var("DATABASE_URL").map_err(|_| {
                Failure::User(anyhow::anyhow!(
                    "DATABASE_URL: is required, e.g. postgres://ingest@db:5432/turia_trails"
                ))
            })?;
            let key = runtime()?
                .block_on(async {
                    let pool = ingest::pool(&url)?;
                    ingest::create_key(
                        &pool,
                        args.tenant,
                        &args.name,
                        &args.scopes,
                        args.rate_limit,
                    )
                    .await
                })
                .map_err(Failure::User)?;
            println!("{key}");
        }
    }
    Ok(Outcome::Success)
}
