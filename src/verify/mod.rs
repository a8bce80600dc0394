//! `trails verify`: checks that prove a running environment works, each reported with the
//! evidence it found.
//!
//! Checks come from the blueprint: every resource it declares that can be looked at gets one or
//! more checks. AWS checks read the live resources (found by their ownership tags or names, never
//! taken from the state file); data-plane checks talk to PostgreSQL, Redis, Kafka and the ingest
//! service. Checks run concurrently, each within a timeout. Checks that depend on another (a
//! database's schemas need the connection) form a chain: when one fails, the rest of its chain is
//! reported as skipped with the reason, so one broken thing is one failure.

pub mod aws;
pub mod data;
pub mod report;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use globset::{Glob, GlobMatcher};
use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check looked and found what the blueprint declares.
    Passed,
    /// The check looked and found something else, or could not look.
    Failed,
    /// The check did not run; the evidence says why.
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Stable dotted name, e.g. `aws.s3_bucket.backups` or `kafka.topic.audit.events.v1`.
    pub name: String,
    /// Passed, failed or skipped.
    pub status: Status,
    /// What was found (and, on failure, what was expected), or why the check did not run.
    pub evidence: String,
    /// How long the check took.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// What a check does when it runs: `Ok(evidence)` when it passed, `Err(evidence)` when not.
pub type Probe = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

enum Body {
    Run(Probe),
    Skip(String),
}

/// A named check, ready to run or already known to be skipped.
pub struct Check {
    name: String,
    body: Body,
}

impl Check {
    /// A check that runs `probe`.
    pub fn run(
        name: impl Into<String>,
        probe: impl Future<Output = Result<String, String>> + Send + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            body: Body::Run(Box::pin(probe)),
        }
    }

    /// A check whose result is already known.
    pub fn known(name: impl Into<String>, result: Result<String, String>) -> Self {
        Self::run(name, std::future::ready(result))
    }

    /// A check that cannot run, and why.
    pub fn skip(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            body: Body::Skip(reason.into()),
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Checks that run one after another; a failure skips the rest.
pub type Chain = Vec<Check>;

/// Which checks run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest time one check may take.
    pub timeout: Duration,
    /// Most chains running at once.
    pub parallelism: usize,
    /// Run only checks matching one of these (empty: all).
    pub only: Vec<Pattern>,
    /// Leave out checks matching one of these.
    pub skip: Vec<Pattern>,
}

/// A check-name pattern: a glob (`s3.*.versioning`) or a name prefix (`s3`, `network.routes`).
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    glob: GlobMatcher,
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let glob = Glob::new(text)
            .map_err(|error| format!("`{text}` is not a valid pattern: {error}"))?
            .compile_matcher();
        Ok(Self {
            text: text.to_string(),
            glob,
        })
    }

    /// Whether `name` is selected by this pattern.
    pub fn matches(&self, name: &str) -> bool {
        name == self.text
            || name
                .strip_prefix(self.text.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
            || self.glob.is_match(name)
    }
}

impl Options {
    fn selects(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p.matches(name)))
            && !self.skip.iter().any(|p| p.matches(name))
    }
}

/// Runs the selected checks and returns their outcomes in the order the checks were given.
pub async fn run(chains: Vec<Chain>, options: &Options) -> Vec<Outcome> {
    let mut order = 0usize;
    let mut selected = Vec::new();
    for chain in chains {
        let mut kept = Vec::new();
        for check in chain {
            if options.selects(&check.name) {
                kept.push((order, check));
            }
            order += 1;
        }
        if !kept.is_empty() {
            selected.push(kept);
        }
    }
    let timeout = options.timeout;
    let mut outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(selected)
        .map(|chain| run_chain(chain, timeout))
        .buffer_unordered(options.parallelism.max(1))
        .flat_map(futures_util::stream::iter)
        .collect()
        .await;
    outcomes.sort_by_key(|(order, _)| *order);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}

async fn run_chain(chain: Vec<(usize, Check)>, timeout: Duration) -> Vec<(usize, Outcome)> {
    let mut outcomes = Vec::with_capacity(chain.len());
    let mut blocked_by: Option<String> = None;
    for (order, check) in chain {
        let started = Instant::now();
        let (status, evidence) = match (check.body, &blocked_by) {
            (Body::Skip(reason), _) => (Status::Skipped, reason),
            (Body::Run(_), Some(failed)) => (Status::Skipped, format!("not run: {failed} failed")),
            (Body::Run(probe), None) => match tokio::time::timeout(timeout, probe).await {
                Ok(Ok(evidence)) => (Status::Passed, evidence),
                Ok(Err(evidence)) => (Status::Failed, evidence),
                Err(_) => (
                    Status::Failed,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                ),
            },
        };
        if status == Status::Failed {
            blocked_by = Some(check.name.clone());
        }
        outcomes.push((
            order,
            Outcome {
                name: check.name,
                status,
                evidence,
                duration: started.elapsed(),
            },
        ));
    }
    outcomes
}

/// Counts of each status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks that did not run.
    pub skipped: usize,
}

impl Summary {
    /// Counts `outcomes`.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut summary = Self::default();
        for outcome in outcomes {
            match outcome.status {
                Status::Passed => summary.passed += 1,
                Status::Failed => summary.failed += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(only: &[&str], skip: &[&str]) -> Options {
        let parse = |patterns: &[&str]| {
            patterns
                .iter()
                .map(|p| Pattern::parse(p).expect("test patterns are valid"))
                .collect()
        };
        Options {
            timeout: Duration::from_millis(200),
            parallelism: 4,
            only: parse(only),
            skip: parse(skip),
        }
    }

    #[test]
    fn patterns_match_names_prefixes_and_globs() {
        let by_prefix = Pattern::parse("s3").expect("valid");
        assert!(by_prefix.matches("s3.backups.versioning"));
        assert!(!by_prefix.matches("s3x.backups"));
        let glob = Pattern::parse("s3.*.versioning").expect("valid");
        assert!(glob.matches("s3.backups.versioning"));
        assert!(!glob.matches("s3.backups.encryption"));
        assert!(
            Pattern::parse("network.routes.private-a")
                .expect("valid")
                .matches("network.routes.private-a")
        );
        assert!(Pattern::parse("[").is_err());
    }

    #[tokio::test]
    async fn a_failure_skips_the_rest_of_its_chain_only() {
        let chains = vec![
            vec![
                Check::known("db.connect", Err("refused".into())),
                Check::known("db.schemas", Ok("all there".into())),
            ],
            vec![Check::known("s3.bucket", Ok("fine".into()))],
        ];
        let outcomes = run(chains, &options(&[], &[])).await;
        let statuses: Vec<(&str, Status)> = outcomes
            .iter()
            .map(|o| (o.name.as_str(), o.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("db.connect", Status::Failed),
                ("db.schemas", Status::Skipped),
                ("s3.bucket", Status::Passed)
            ]
        );
        assert_eq!(outcomes[1].evidence, "not run: db.connect failed");
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_at_the_timeout() {
        let chains = vec![vec![Check::run("slow", std::future::pending())]];
        let outcomes = run(chains, &options(&[], &[])).await;
        assert_eq!(outcomes[0].status, Status::Failed);
        assert_eq!(outcomes[0].evidence, "no answer within 200ms");
    }

    #[tokio::test]
    async fn only_and_skip_select_checks() {
        let chains = || {
            vec![
                vec![Check::known("s3.a.versioning", Ok(String::new()))],
                vec![Check::known("s3.b.versioning", Ok(String::new()))],
                vec![Check::known("network.vpc", Ok(String::new()))],
            ]
        };
        let names = |outcomes: Vec<Outcome>| -> Vec<String> {
            outcomes.into_iter().map(|o| o.name).collect()
        };
        assert_eq!(
            names(run(chains(), &options(&["s3"], &["s3.b.*"])).await),
            ["s3.a.versioning"]
        );
        assert_eq!(names(run(chains(), &options(&[], &[])).await).len(), 3);
    }
}
