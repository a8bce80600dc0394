//! Where an environment's state lives (a local file or an S3 object) and the locked store a
//! run writes it through; the engine knows only [`Store`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::local::{LocalState, LockError, LockInfo, StateOpenError};
use super::s3::{S3Location, S3State};
use super::{State, StateError};

/// Where an environment's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file, `.trails/ENV.state.json` beside the blueprint unless `--state` names another.
    Local(PathBuf),
    /// An object in a versioned S3 bucket.
    S3 {
        /// Bucket, key, encryption.
        object: S3Location,
        /// The bucket's region.
        region: String,
        /// Where the state goes when S3 cannot be written mid-run.
        fallback: PathBuf,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { object, .. } => write!(f, "{object}"),
        }
    }
}

/// The key of an environment's state under a prefix: `PREFIX/BLUEPRINT/ENV.state.json`.
pub fn s3_key(prefix: Option<&str>, blueprint: &str, environment: &str) -> String {
    let name = format!("{blueprint}/{environment}.state.json");
    match prefix.map(|prefix| prefix.trim_matches('/')) {
        Some(prefix) if !prefix.is_empty() => format!("{prefix}/{name}"),
        _ => name,
    }
}

/// The local file a run writes when S3 cannot be written: beside the blueprint, named so that
/// nothing reads it as the environment's state by mistake.
pub fn fallback_path(blueprint_file: &Path, environment: &str) -> PathBuf {
    blueprint_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(".trails")
        .join(format!("{environment}.unpushed.state.json"))
}

impl Location {
    /// The state of `environment`: `explicit` (`--state`: a file, or `s3://BUCKET/KEY`) if
    /// given, else the blueprint's `state:` section, else the file beside the blueprint.
    pub fn of(
        explicit: Option<&str>,
        blueprint_file: &Path,
        document: &crate::blueprint::schema::Document,
        environment: &str,
    ) -> Result<Self, String> {
        let configured = document.state.as_ref().and_then(|state| state.s3.as_ref());
        let region = configured
            .and_then(|s3| s3.region.clone())
            .unwrap_or_else(|| document.region.clone());
        let kms_key = configured.and_then(|s3| s3.kms_key.clone());
        let fallback = fallback_path(blueprint_file, environment);
        let object = match explicit {
            Some(url) if url.starts_with("s3://") => {
                let mut object = S3Location::parse(url).ok_or_else(|| {
                    format!("--state {url}: expected s3://BUCKET/KEY (a key, not a prefix)")
                })?;
                object.kms_key = kms_key;
                object
            }
            Some(path) => return Ok(Location::Local(PathBuf::from(path))),
            None => match configured {
                Some(s3) => S3Location {
                    bucket: s3.bucket.clone(),
                    key: s3_key(s3.prefix.as_deref(), &document.blueprint, environment),
                    region: s3.region.clone(),
                    kms_key,
                },
                None => {
                    return Ok(Location::Local(super::default_path(
                        blueprint_file,
                        environment,
                    )));
                }
            },
        };
        Ok(Location::S3 {
            object,
            region,
            fallback,
        })
    }

    /// True for a shared (S3) state.
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::S3 { .. })
    }

    /// Reads the state without locking it: for commands that only read.
    pub async fn read(&self, blueprint: &str, environment: &str) -> Result<State, StateError> {
        match self {
            Location::Local(path) => super::read_local(path, blueprint, environment),
            Location::S3 { object, region, .. } => {
                let client = super::s3::client(region).await;
                super::s3::read(&client, object, blueprint, environment)
                    .await
                    .map(|(state, _)| state)
            }
        }
    }

    /// Releases a lock left by a run that is gone; returns who held it.
    pub async fn force_unlock(&self) -> Result<Option<LockInfo>, LockError> {
        match self {
            Location::Local(path) => super::local::force_unlock(path),
            Location::S3 { object, region, .. } => {
                let client = super::s3::client(region).await;
                super::s3::force_unlock(&client, object).await
            }
        }
    }
}

/// An environment's state, locked by this run, written through at every change.
#[derive(Debug)]
pub enum Store {
    /// A local file.
    Local(LocalState),
    /// An S3 object.
    S3(S3State),
}

impl Store {
    /// Takes the lock for `operation` and reads the state; a lock a live run holds is waited
    /// for up to `wait` (zero: refused at once, naming the holder).
    pub async fn open(
        location: &Location,
        blueprint: &str,
        environment: &str,
        operation: &str,
        wait: Duration,
    ) -> Result<Self, StateOpenError> {
        match location {
            Location::Local(path) => {
                let deadline = Instant::now() + wait;
                loop {
                    match LocalState::open(path, blueprint, environment, operation) {
                        Err(StateOpenError::Lock(error))
                            if matches!(*error, LockError::Held { .. })
                                && Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        other => return other.map(Store::Local),
                    }
                }
            }
            Location::S3 {
                object,
                region,
                fallback,
            } => {
                let client = super::s3::client(region).await;
                S3State::open(
                    client,
                    object.clone(),
                    blueprint,
                    environment,
                    operation,
                    wait,
                    fallback.clone(),
                )
                .await
                .map(Store::S3)
            }
        }
    }

    /// The state as last written.
    pub fn state(&self) -> &State {
        match self {
            Store::Local(local) => local.state(),
            Store::S3(remote) => remote.state(),
        }
    }

    /// Changes the state and writes it at once.
    pub async fn update(&mut self, change: impl FnOnce(&mut State)) -> Result<(), StateError> {
        match self {
            Store::Local(local) => local.update(change),
            Store::S3(remote) => remote.update(change).await,
        }
    }

    /// Why the run should start no new change, when it should (the state could not be
    /// written where it lives and went to a local file, or the lock was lost).
    pub fn stopping(&self) -> Option<String> {
        match self {
            Store::Local(_) => None,
            Store::S3(remote) => remote.stopping(),
        }
    }

    /// Releases the lock.
    pub async fn release(self) {
        match self {
            Store::Local(local) => drop(local),
            Store::S3(remote) => remote.release().await,
        }
    }
}

/// One environment whose state was found where the blueprint keeps its states.
#[derive(Debug)]
pub struct Found {
    /// The environment, from the state's name.
    pub environment: String,
    /// Its state, or why it cannot be read.
    pub state: Result<State, StateError>,
    /// Who holds its lock, if anyone.
    pub lock: Option<LockInfo>,
}

/// Every environment state of the blueprint: under its S3 prefix when the blueprint has a
/// `state:` section, else in `.trails` beside it. Returns where it looked, too.
pub async fn environments(
    blueprint_file: &Path,
    document: &crate::blueprint::schema::Document,
) -> Result<(String, Vec<Found>), StateError> {
    let Some(s3) = document.state.as_ref().and_then(|state| state.s3.as_ref()) else {
        return local_environments(blueprint_file, document);
    };
    let region = s3.region.clone().unwrap_or_else(|| document.region.clone());
    let client = super::s3::client(&region).await;
    let marker = s3_key(s3.prefix.as_deref(), &document.blueprint, "MARK");
    let prefix = marker.trim_end_matches("MARK.state.json").to_string();
    let place = format!("s3://{}/{prefix}", s3.bucket);
    let mut pages = client
        .list_objects_v2()
        .bucket(&s3.bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| StateError::backend(&place, error))?;
        for object in page.contents() {
            let Some(rest) = object.key().and_then(|key| key.strip_prefix(&prefix)) else {
                continue;
            };
            if let Some(environment) = rest.strip_suffix(".state.json")
                && !environment.contains('/')
            {
                names.push(environment.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for environment in names {
        let object = S3Location {
            bucket: s3.bucket.clone(),
            key: s3_key(s3.prefix.as_deref(), &document.blueprint, &environment),
            region: s3.region.clone(),
            kms_key: None,
        };
        let state = super::s3::read(&client, &object, &document.blueprint, &environment)
            .await
            .map(|(state, _)| state);
        let lock = super::s3::lock_holder(&client, &object)
            .await
            .ok()
            .flatten()
            .map(|(info, _)| info);
        found.push(Found {
            environment,
            state,
            lock,
        });
    }
    Ok((place, found))
}

fn local_environments(
    blueprint_file: &Path,
    document: &crate::blueprint::schema::Document,
) -> Result<(String, Vec<Found>), StateError> {
    let directory = super::default_path(blueprint_file, "MARK")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let place = directory.display().to_string();
    let entries = match std::fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((place, Vec::new()));
        }
        Err(source) => {
            return Err(StateError::Read {
                path: directory,
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".state.json").map(str::to_string))
        .filter(|environment| !environment.ends_with(".unpushed"))
        .collect();
    names.sort();
    let found = names
        .into_iter()
        .map(|environment| {
            let path = super::default_path(blueprint_file, &environment);
            Found {
                state: super::read_local(&path, &document.blueprint, &environment),
                lock: super::local::lock_holder(&path).ok().flatten(),
                environment,
            }
        })
        .collect();
    Ok((place, found))
}
