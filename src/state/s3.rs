//! The S3 state backend: one object per environment in a versioned bucket, every write a
//! compare-and-swap on the ETag read before, guarded by a lock object beside it that its holder
//! renews.
//!
//! S3's conditional writes do all the work: the lock is created with `If-None-Match: *` (one
//! creator wins), renewed and released with `If-Match` its own ETag (a run never touches
//! another's lock), and the state is written with `If-Match` the ETag this run read (two
//! writers can never both succeed, lock or not).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};

use super::local::StateOpenError;
use super::local::{LockError, LockInfo, held};
use super::{State, StateError, parse};

/// How long a lock stays valid without a renewal; its holder renews it four times as often.
pub const LEASE: Duration = Duration::from_secs(120);

/// Where an environment's state lives in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The state object's key, e.g. `platform/acme/dev.state.json`.
    pub key: String,
    /// The bucket's region (the blueprint's when not given).
    pub region: Option<String>,
    /// A KMS key for SSE-KMS; SSE-S3 without one.
    pub kms_key: Option<String>,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl S3Location {
    /// Parses `s3://BUCKET/KEY`.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty() && !key.ends_with('/')).then(|| Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
            region: None,
            kms_key: None,
        })
    }

    /// The lock object beside the state.
    pub fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn label(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }

    fn lock_label(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key())
    }
}

/// An S3 client for the state bucket: the region given, else the blueprint's; the endpoint
/// and credentials from the usual AWS settings.
pub async fn client(region: &str) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
        .load()
        .await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.endpoint_url().is_some() {
        // Emulators and gateways serve buckets by path, not by host name.
        config = config.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// True for S3's answers to a failed condition: 412 `PreconditionFailed`, and 409
/// `ConditionalRequestConflict` (two conditional writes of one key at once).
fn lost_condition(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("PreconditionFailed") | Some("ConditionalRequestConflict")
    )
}

/// An object's text and ETag; `None` when there is no such object.
async fn get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<(String, String)>, String> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => {
            let etag = object.e_tag().unwrap_or_default().to_string();
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|error| crate::error_chain(&error))?
                .into_bytes();
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| "the object is not UTF-8 text".to_string())?;
            Ok(Some((text, etag)))
        }
        Err(error) if error.code() == Some("NoSuchKey") => Ok(None),
        Err(error) => Err(crate::error_chain(&error)),
    }
}

/// Reads the state without locking (plan, diff, verify, `state list`); no object is the empty
/// state.
pub async fn read(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    blueprint: &str,
    environment: &str,
) -> Result<(State, Option<String>), StateError> {
    let found = get(client, &location.bucket, &location.key)
        .await
        .map_err(|message| StateError::Backend {
            location: location.to_string(),
            message,
        })?;
    match found {
        None => Ok((State::empty(blueprint, environment), None)),
        Some((text, etag)) => Ok((
            parse(&text, &location.label(), blueprint, environment)?,
            Some(etag),
        )),
    }
}

/// Who holds the lock of `location`, with the lock's ETag; `None` when nobody does.
pub async fn lock_holder(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<Option<(LockInfo, String)>, LockError> {
    let found = get(client, &location.bucket, &location.lock_key())
        .await
        .map_err(|message| LockError::Backend {
            location: location.lock_label(),
            message,
        })?;
    Ok(found.map(|(text, etag)| {
        (
            serde_json::from_str(&text).unwrap_or_else(|_| LockInfo::unreadable()),
            etag,
        )
    }))
}

/// Deletes the lock if it is still the one with `etag` (nobody else's since).
async fn delete_lock(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    etag: &str,
) -> Result<bool, LockError> {
    match client
        .delete_object()
        .bucket(&location.bucket)
        .key(location.lock_key())
        .if_match(etag)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if lost_condition(error.code()) || error.code() == Some("NoSuchKey") => {
            Ok(false)
        }
        Err(error) => Err(LockError::Backend {
            location: location.lock_label(),
            message: crate::error_chain(&error),
        }),
    }
}

/// Releases a lock deliberately (`trails state unlock`); returns who held it. A holder that
/// is provably alive on this host is not released.
pub async fn force_unlock(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
) -> Result<Option<LockInfo>, LockError> {
    let Some((holder, etag)) = lock_holder(client, location).await? else {
        return Ok(None);
    };
    let here = LockInfo::current("unlock");
    if holder.host == here.host
        && holder.pid != 0
        && Path::new(&format!("/proc/{}", holder.pid)).exists()
        && holder.silence().is_some_and(|silence| silence < LEASE)
    {
        return Err(LockError::Running {
            state: location.label(),
            holder: holder.holder,
        });
    }
    delete_lock(client, location, &etag).await?;
    Ok(Some(holder))
}

fn lock_body(info: &LockInfo) -> ByteStream {
    let mut info = info.clone();
    info.heartbeat_at = Some(super::now_rfc3339());
    ByteStream::from(serde_json::to_vec_pretty(&info).unwrap_or_default())
}

/// Why one attempt at the lock did not get it.
enum Attempt {
    Taken(String),
    /// Try again at once: the lock was released, or a dead holder's was removed.
    Again,
    Busy(LockError),
}

/// The state of one environment in S3, locked by this run; release it with
/// [`S3State::release`] (a run that dies leaves its lock to go stale).
#[derive(Debug)]
pub struct S3State {
    client: aws_sdk_s3::Client,
    location: S3Location,
    /// ETag of the state object as this run last read or wrote it; `None`: no object yet.
    etag: Option<String>,
    /// ETag of this run's lock object, renewed by the heartbeat.
    lock_etag: Arc<Mutex<String>>,
    /// Set by the heartbeat when the lock was taken away (`state unlock` elsewhere).
    lost: Arc<std::sync::atomic::AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    state: State,
    /// Where writes go once S3 could not be written: `trails state push` uploads it.
    fallback: Option<PathBuf>,
    /// The local file for [`S3State::fallback`].
    fallback_path: PathBuf,
}

impl S3State {
    /// Takes the lock of `location` for `operation` (waiting up to `wait` for a live holder)
    /// and reads the state. Refuses a bucket without versioning.
    pub async fn open(
        client: aws_sdk_s3::Client,
        location: S3Location,
        blueprint: &str,
        environment: &str,
        operation: &str,
        wait: Duration,
        fallback_path: PathBuf,
    ) -> Result<Self, StateOpenError> {
        let versioning = client
            .get_bucket_versioning()
            .bucket(&location.bucket)
            .send()
            .await
            .map_err(|error| StateError::backend(&location.to_string(), error))?;
        if versioning.status() != Some(&BucketVersioningStatus::Enabled) {
            return Err(StateError::Unversioned {
                bucket: location.bucket.clone(),
            }
            .into());
        }
        let mut info = LockInfo::current(operation);
        info.id = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + wait;
        let mut again = 0;
        let lock_etag = loop {
            match Self::attempt(&client, &location, &info).await? {
                Attempt::Taken(etag) => break etag,
                // Bounded: a lock that keeps changing under us is someone's.
                Attempt::Again if again < 5 => again += 1,
                Attempt::Again => {
                    return Err(held(&location.label(), None, operation).into());
                }
                Attempt::Busy(error) => {
                    if Instant::now() >= deadline {
                        return Err(error.into());
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        let lock_etag = Arc::new(Mutex::new(lock_etag));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let heartbeat = tokio::spawn(renew(
            client.clone(),
            location.clone(),
            info,
            Arc::clone(&lock_etag),
            Arc::clone(&lost),
        ));
        let mut opened = Self {
            client,
            location,
            etag: None,
            lock_etag,
            lost,
            heartbeat,
            state: State::empty(blueprint, environment),
            fallback: None,
            fallback_path,
        };
        match read(&opened.client, &opened.location, blueprint, environment).await {
            Ok((state, etag)) => {
                opened.state = state;
                opened.etag = etag;
                Ok(opened)
            }
            Err(error) => {
                opened.release().await;
                Err(error.into())
            }
        }
    }

    /// One try at creating the lock object.
    async fn attempt(
        client: &aws_sdk_s3::Client,
        location: &S3Location,
        info: &LockInfo,
    ) -> Result<Attempt, LockError> {
        let created = encrypted_put(client, location, &location.lock_key())
            .body(lock_body(info))
            .if_none_match("*")
            .send()
            .await;
        match created {
            Ok(output) => return Ok(Attempt::Taken(output.e_tag().unwrap_or_default().into())),
            Err(error) if lost_condition(error.code()) => {}
            Err(error) => {
                return Err(LockError::Backend {
                    location: location.lock_label(),
                    message: crate::error_chain(&error),
                });
            }
        }
        let Some((holder, etag)) = lock_holder(client, location).await? else {
            // Released between the two calls.
            return Ok(Attempt::Again);
        };
        // A retried create whose first attempt succeeded finds its own lock.
        if holder.id == info.id {
            return Ok(Attempt::Taken(etag));
        }
        if holder.is_orphaned() {
            // A run killed on this host: its lock is nobody's. Deleted only if unchanged.
            delete_lock(client, location, &etag).await?;
            return Ok(Attempt::Again);
        }
        if let Some(silence) = holder.silence().filter(|silence| *silence > LEASE) {
            return Err(LockError::Stale {
                state: location.label(),
                holder: holder.holder,
                operation: holder.operation,
                created_at: holder.created_at,
                silence: humantime::format_duration(Duration::from_secs(silence.as_secs()))
                    .to_string(),
            });
        }
        Ok(Attempt::Busy(held(
            &location.label(),
            Some(holder),
            &info.operation,
        )))
    }

    /// The state as last written.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Why the run should start nothing new: S3 could not be written and the state went to a
    /// local file, or the lock was taken away.
    pub fn stopping(&self) -> Option<String> {
        if let Some(path) = &self.fallback {
            return Some(format!(
                "the state could not be written to {}; it is saved in {}: upload it with \
                 `trails state push --from {}` once S3 is reachable",
                self.location,
                path.display(),
                path.display()
            ));
        }
        self.lost
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| format!("the lock of {} was taken away from this run", self.location))
    }

    /// Changes the state and writes it at once, on condition that nobody wrote it since this
    /// run read it. When S3 cannot be written, the state goes to a local file instead (see
    /// [`S3State::stopping`]).
    pub async fn update(&mut self, change: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let next = self.state.next(change);
        let text = serde_json::to_string_pretty(&next).map_err(|source| StateError::Parse {
            path: self.location.label(),
            source,
        })?;
        if let Some(path) = &self.fallback {
            super::local::write_private(path, text.as_bytes()).map_err(|source| {
                StateError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            self.state = next;
            return Ok(());
        }
        let request = encrypted_put(&self.client, &self.location, &self.location.key)
            .body(ByteStream::from(text.clone().into_bytes()));
        let request = match &self.etag {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(output) => {
                self.etag = output.e_tag().map(str::to_string);
                self.state = next;
                Ok(())
            }
            Err(error) if lost_condition(error.code()) || error.code() == Some("NoSuchKey") => {
                Err(StateError::Conflict {
                    location: self.location.to_string(),
                    serial: self.state.serial,
                })
            }
            Err(error) => {
                eprintln!(
                    "warning: cannot write the state to {}: {}; writing it to {}",
                    self.location,
                    crate::error_chain(&error),
                    self.fallback_path.display()
                );
                let path = self.fallback_path.clone();
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                super::local::write_private(&path, text.as_bytes()).map_err(|source| {
                    StateError::Read {
                        path: path.clone(),
                        source,
                    }
                })?;
                self.fallback = Some(path);
                self.state = next;
                Ok(())
            }
        }
    }

    /// Stops renewing the lock and deletes it, if it is still this run's.
    pub async fn release(self) {
        self.heartbeat.abort();
        let etag = self
            .lock_etag
            .lock()
            .map(|etag| etag.clone())
            .unwrap_or_default();
        if let Err(error) = delete_lock(&self.client, &self.location, &etag).await {
            eprintln!("warning: {error}");
        }
    }
}

/// A PutObject of `key` with server-side encryption: SSE-KMS with the location's key, else
/// SSE-S3.
fn encrypted_put(
    client: &aws_sdk_s3::Client,
    location: &S3Location,
    key: &str,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    let request = client
        .put_object()
        .bucket(&location.bucket)
        .key(key)
        .content_type("application/json");
    match &location.kms_key {
        Some(kms_key) => request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms_key),
        None => request.server_side_encryption(ServerSideEncryption::Aes256),
    }
}

/// Renews this run's lock every quarter lease, on condition that it is still the one this run
/// wrote; stops and says so when it is not.
async fn renew(
    client: aws_sdk_s3::Client,
    location: S3Location,
    info: LockInfo,
    etag: Arc<Mutex<String>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(LEASE / 4).await;
        let current = etag.lock().map(|e| e.clone()).unwrap_or_default();
        let renewed = encrypted_put(&client, &location, &location.lock_key())
            .body(lock_body(&info))
            .if_match(current)
            .send()
            .await;
        match renewed {
            Ok(output) => {
                if let (Ok(mut held), Some(new)) = (etag.lock(), output.e_tag()) {
                    *held = new.to_string();
                }
            }
            Err(error) if lost_condition(error.code()) || error.code() == Some("NoSuchKey") => {
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("warning: the lock of {location} was taken away from this run");
                return;
            }
            // A missed renewal is retried at the next beat; the lease allows three.
            Err(error) => eprintln!(
                "warning: cannot renew the lock of {location}: {}",
                crate::error_chain(&error)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_only_with_a_bucket_and_an_object_key() {
        let parsed =
            S3Location::parse("s3://acme-state/platform/demo/dev.state.json").expect("a location");
        assert_eq!(parsed.bucket, "acme-state");
        assert_eq!(parsed.key, "platform/demo/dev.state.json");
        assert_eq!(parsed.lock_key(), "platform/demo/dev.state.json.lock");
        for bad in [
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3:///key",
            "file.json",
        ] {
            assert!(S3Location::parse(bad).is_none(), "{bad}");
        }
    }
}
