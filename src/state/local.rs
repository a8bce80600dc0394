//! The local state backend: one JSON file per environment, written atomically, guarded by a
//! lock file that names its holder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{State, StateError, read_local};

/// Who holds a lock and since when; written into the lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    /// `user@host (pid N)`.
    pub holder: String,
    /// Host of the holder.
    #[serde(default)]
    pub host: String,
    /// Process id of the holder.
    #[serde(default)]
    pub pid: u32,
    /// What the holder is doing, e.g. `apply`.
    pub operation: String,
    /// When the lock was taken, RFC 3339.
    pub created_at: String,
    /// This hold's own identity: a retried write that finds a lock with it finds its own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// When the holder last said it is alive (shared backends, which cannot ask the OS),
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<String>,
}

impl LockInfo {
    /// This process's hold for `operation`.
    pub fn current(operation: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown-host".to_string());
        Self {
            holder: format!("{user}@{host} (pid {})", std::process::id()),
            host,
            pid: std::process::id(),
            operation: operation.to_string(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            id: String::new(),
            heartbeat_at: None,
        }
    }

    /// How long ago the holder last said it is alive (or took the lock).
    pub fn silence(&self) -> Option<Duration> {
        let last = humantime::parse_rfc3339(self.heartbeat_at.as_deref()?).ok()?;
        Some(SystemTime::now().duration_since(last).unwrap_or_default())
    }

    /// An unreadable lock: someone holds it, nobody knows who.
    pub fn unreadable() -> Self {
        Self {
            holder: "an unreadable lock file".to_string(),
            host: String::new(),
            pid: 0,
            operation: "unknown".to_string(),
            created_at: "unknown".to_string(),
            id: String::new(),
            heartbeat_at: None,
        }
    }

    /// True when the holder ran on this host and its process no longer exists: a run killed
    /// before it could release the lock. Holders on other hosts are never presumed dead.
    pub fn is_orphaned(&self) -> bool {
        let here = Self::current("check");
        self.pid != 0
            && !self.host.is_empty()
            && self.host == here.host
            && self.pid != here.pid
            && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// How long ago the lock was taken, when its time can be read.
    pub fn age(&self) -> Option<Duration> {
        let created = humantime::parse_rfc3339(&self.created_at).ok()?;
        SystemTime::now().duration_since(created).ok()
    }
}

/// The error for a lock someone else holds.
pub fn held(state: &Path, holder: Option<LockInfo>, operation: &str) -> LockError {
    let held = holder.unwrap_or(LockInfo {
        holder: "a run that just started".to_string(),
        operation: operation.to_string(),
        ..LockInfo::unreadable()
    });
    let age = held
        .age()
        .map(|age| {
            format!(
                " ({} ago)",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )
        })
        .unwrap_or_default();
    LockError::Held {
        state: state.to_path_buf(),
        holder: held.holder,
        operation: held.operation,
        created_at: held.created_at,
        age,
    }
}

/// Problems with the state's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock.
    #[error(
        "the state {state} is locked by {holder} for `{operation}` since {created_at}{age}; if that run is gone, release the lock with `trails state unlock`"
    )]
    Held {
        /// The state file.
        state: PathBuf,
        /// Holder of the lock.
        holder: String,
        /// What the holder does.
        operation: String,
        /// When it was taken.
        created_at: String,
        /// `" (12m ago)"`, or empty when unknown.
        age: String,
    },
    /// `trails state unlock` of a lock a running process holds.
    #[error(
        "the state {state} is locked by {holder}, which is still running on this host; stop that run instead of unlocking (it would go on beside the next one)"
    )]
    Running {
        /// The state file.
        state: PathBuf,
        /// Holder of the lock.
        holder: String,
    },
    /// The holder of a shared lock stopped renewing it: probably killed.
    #[error(
        "the state {state} is locked by {holder} for `{operation}` since {created_at}, but that run has not renewed the lock for {silence}: it probably died; `trails state unlock` releases it (naming the holder), then run again"
    )]
    Stale {
        /// The state.
        state: PathBuf,
        /// Holder of the lock.
        holder: String,
        /// What the holder did.
        operation: String,
        /// When it was taken.
        created_at: String,
        /// How long since the last renewal, e.g. `12m 3s`.
        silence: String,
    },
    /// The shared backend failed.
    #[error("cannot use the lock {location}: {message}")]
    Backend {
        /// The lock object.
        location: String,
        /// What the service said.
        message: String,
    },
    /// The lock file cannot be created or read.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An exclusive hold on a local state file; released when dropped.
#[derive(Debug)]
pub struct LocalState {
    path: PathBuf,
    lock_path: PathBuf,
    /// The lock file, held with an exclusive OS lock (`flock`) for as long as this lives: the
    /// kernel releases it when the process ends, however it ends, so a lock is stale exactly
    /// when nobody holds it.
    _lock: std::fs::File,
    state: State,
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Reads who holds the lock of a state file, if anyone.
pub fn lock_holder(path: &Path) -> Result<Option<LockInfo>, LockError> {
    let lock = lock_path(path);
    match std::fs::read_to_string(&lock) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).unwrap_or_else(|_| LockInfo::unreadable()),
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Io { path: lock, source }),
    }
}

/// Releases a lock deliberately (`trails state unlock`); returns who held it. A lock a running
/// process on this host holds is not released: that run would go on beside the next one.
pub fn force_unlock(path: &Path) -> Result<Option<LockInfo>, LockError> {
    let lock = lock_path(path);
    let io = |source| LockError::Io {
        path: lock.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(source)),
    };
    let holder = lock_holder(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = holder.map_or_else(|| "a running process".to_string(), |h| h.holder);
            return Err(LockError::Running {
                state: path.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    match std::fs::remove_file(&lock) {
        Ok(()) => Ok(holder),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(source)),
    }
}

/// True when `file` is still the one at `path` (not removed or replaced since it was opened).
fn still_at(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

impl LocalState {
    /// Takes the lock of `path` for `operation` and reads the state (empty if none yet). A
    /// lock nobody holds any more (a run killed on this host) is taken over; one whose holder
    /// ran on another host, or on this one with a process still alive, is refused with its
    /// holder named.
    pub fn open(
        path: &Path,
        blueprint: &str,
        environment: &str,
        operation: &str,
    ) -> Result<Self, StateOpenError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| LockError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
            keep_out_of_git(parent).map_err(|source| LockError::Io {
                path: parent.join(".gitignore"),
                source,
            })?;
        }
        let lock = lock_path(path);
        let info = LockInfo::current(operation);
        let io = |source| LockError::Io {
            path: lock.clone(),
            source,
        };
        let file = loop {
            let mut options = std::fs::OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(&lock).map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(held(path, lock_holder(path)?, operation).into());
                }
                Err(std::fs::TryLockError::Error(source)) => return Err(io(source).into()),
            }
            // The holder before us removed the file as it let go: lock the one at the path.
            if still_at(&file, &lock) {
                break file;
            }
        };
        // What a holder left in a lock nobody holds: a run killed on this host (taken over),
        // or a run elsewhere or of an older trails that does not hold the OS lock (refused).
        // An empty file is one a run just made (or died making): nobody's.
        let left = std::fs::read_to_string(&lock).map_err(io)?;
        if !left.trim().is_empty()
            && let Some(previous) = lock_holder(path)?
            && !previous.is_orphaned()
            && (previous.host.as_str(), previous.pid) != (info.host.as_str(), info.pid)
        {
            return Err(held(path, Some(previous), operation).into());
        }
        let text = serde_json::to_string_pretty(&info).unwrap_or_default();
        let mut writer = &file;
        file.set_len(0)
            .and_then(|()| writer.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        let mut opened = Self {
            path: path.to_path_buf(),
            lock_path: lock,
            _lock: file,
            state: State::empty(blueprint, environment),
        };
        // From here on the lock file is removed on drop, also when reading fails.
        opened.state = read_local(path, blueprint, environment)?;
        Ok(opened)
    }

    /// The state as last written.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Changes the state and writes it at once: a new serial, a temporary file synced to
    /// disk, then an atomic rename over the old one.
    pub fn update(&mut self, change: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let next = self.state.next(change);
        let text = serde_json::to_string_pretty(&next).map_err(|source| StateError::Parse {
            path: self.path.clone(),
            source,
        })?;
        let failed = |source| StateError::Read {
            path: self.path.clone(),
            source,
        };
        // The state it replaces stays beside it as `.backup`, written first: a crash between
        // the two writes leaves the old state in both places, never neither.
        if self.state.serial > 0 {
            let previous =
                serde_json::to_string_pretty(&self.state).map_err(|source| StateError::Parse {
                    path: self.path.clone(),
                    source,
                })?;
            write_private(&backup_path(&self.path), previous.as_bytes()).map_err(failed)?;
        }
        write_private(&self.path, text.as_bytes()).map_err(failed)?;
        self.state = next;
        Ok(())
    }
}

/// A `.trails` directory ignores itself (`.gitignore` with `*`), wherever it is: states hold
/// resource ids and digests that do not belong in a repository.
fn keep_out_of_git(directory: &Path) -> std::io::Result<()> {
    let ignore = directory.join(".gitignore");
    if directory.file_name() == Some(std::ffi::OsStr::new(".trails")) && !ignore.exists() {
        std::fs::write(
            ignore,
            "# written by trails: the state stays out of git\n*\n",
        )?;
    }
    Ok(())
}

/// Where the state before the last write is kept: `ENV.state.json.backup`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".backup");
    PathBuf::from(name)
}

/// Writes `text` to `path` atomically, readable by its owner only: a temporary file (mode
/// 0600) synced to disk, renamed over `path`, and the directory synced so the rename survives
/// a power cut.
pub(crate) fn write_private(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    // A file made by an older trails keeps its mode through the rename's source: set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    #[cfg(unix)]
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl Drop for LocalState {
    fn drop(&mut self) {
        // Removed while still held (the OS lock goes with the handle, right after): a run
        // waiting on this file finds it gone and locks a new one. Best effort: a file left
        // behind is taken over by the next run, since nobody holds it.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Why a state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateOpenError {
    /// The lock.
    #[error(transparent)]
    Lock(Box<LockError>),
    /// The document.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<LockError> for StateOpenError {
    fn from(error: LockError) -> Self {
        StateOpenError::Lock(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_named_until_the_first_is_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".trails/dev.state.json");
        let mut first = LocalState::open(&path, "demo", "dev", "apply").expect("first lock");
        let error = LocalState::open(&path, "demo", "dev", "destroy").expect_err("held");
        let message = error.to_string();
        assert!(message.contains("locked by"), "{message}");
        assert!(message.contains("for `apply`"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );

        first
            .update(|state| state.blueprint = "demo".to_string())
            .expect("write");
        assert_eq!(first.state().serial, 1);
        assert!(!first.state().lineage.is_empty());
        drop(first);
        let second = LocalState::open(&path, "demo", "dev", "apply").expect("lock released");
        assert_eq!(second.state().serial, 1, "the write survived");
    }

    #[test]
    fn each_write_is_private_and_keeps_the_state_it_replaces_as_a_backup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".trails/dev.state.json");
        let mut store = LocalState::open(&path, "demo", "dev", "apply").expect("lock");
        store.update(|_| {}).expect("first write");
        assert!(
            !backup_path(&path).exists(),
            "nothing to back up before the first write"
        );
        store.update(|_| {}).expect("second write");
        let backup: State = serde_json::from_str(
            &std::fs::read_to_string(backup_path(&path)).expect("backup written"),
        )
        .expect("backup is a state");
        assert_eq!((backup.serial, store.state().serial), (1, 2));
        for file in [path.clone(), backup_path(&path), lock_path(&path)] {
            let mode = std::fs::metadata(&file)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{} is {:o}",
                file.display(),
                mode & 0o777
            );
        }
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dev.state.json");
        let mut dead = LockInfo::current("apply");
        // Process ids are below 2^22 on Linux; this one cannot be alive.
        dead.pid = 4_194_304 + 17;
        std::fs::write(
            lock_path(&path),
            serde_json::to_string(&dead).expect("serializes"),
        )
        .expect("write lock");
        assert!(dead.is_orphaned());
        LocalState::open(&path, "demo", "dev", "apply").expect("orphaned lock taken over");

        let mut remote = LockInfo::current("apply");
        remote.host = "another-host".to_string();
        remote.pid = 4_194_304 + 17;
        std::fs::write(
            lock_path(&path),
            serde_json::to_string(&remote).expect("serializes"),
        )
        .expect("write lock");
        assert!(
            !remote.is_orphaned(),
            "a holder elsewhere is never presumed dead"
        );
        LocalState::open(&path, "demo", "dev", "apply").expect_err("held by another host");
    }

    #[test]
    fn a_lock_is_released_deliberately_only_when_its_holder_is_not_running_here() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dev.state.json");
        let live = LocalState::open(&path, "demo", "dev", "apply").expect("lock");
        let refused = force_unlock(&path).expect_err("a running holder is not unlocked");
        assert!(
            refused.to_string().contains("still running on this host"),
            "{refused}"
        );
        drop(live);

        let mut remote = LockInfo::current("destroy");
        remote.host = "ci-runner-7".to_string();
        remote.holder = "ci@ci-runner-7 (pid 42)".to_string();
        std::fs::write(
            lock_path(&path),
            serde_json::to_string(&remote).expect("serializes"),
        )
        .expect("write lock");
        LocalState::open(&path, "demo", "dev", "apply").expect_err("held elsewhere");
        let holder = force_unlock(&path)
            .expect("unlock")
            .expect("someone held it");
        assert_eq!(holder.holder, "ci@ci-runner-7 (pid 42)");
        LocalState::open(&path, "demo", "dev", "apply").expect("free again");
    }

    #[test]
    fn runs_racing_for_a_dead_holders_lock_take_it_exactly_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dev.state.json");
        for round in 0..20 {
            let mut dead = LockInfo::current("apply");
            dead.pid = 4_194_304 + 17;
            std::fs::write(
                lock_path(&path),
                serde_json::to_string(&dead).expect("serializes"),
            )
            .expect("write lock");
            let start = std::sync::Arc::new(std::sync::Barrier::new(6));
            let racers: Vec<_> = (0..6)
                .map(|_| {
                    let start = std::sync::Arc::clone(&start);
                    let path = path.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        LocalState::open(&path, "demo", "dev", "apply").ok()
                    })
                })
                .collect();
            let winners: Vec<LocalState> = racers
                .into_iter()
                .filter_map(|racer| racer.join().expect("racer ran"))
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "round {round}: {} runs took the lock",
                winners.len()
            );
        }
    }
}
