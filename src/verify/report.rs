//! Verify reports: a readable summary, JSON, and JUnit XML that CI systems render.

use std::time::Duration;

use quick_xml::escape::escape;
use serde_json::json;

use super::{Outcome, Status, Summary};

/// Which environment was verified, for report headers.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Blueprint name.
    pub blueprint: String,
    /// Environment name.
    pub environment: String,
}

/// One line per check, then the summary line.
pub fn text(subject: &Subject, outcomes: &[Outcome], elapsed: Duration) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "Verifying {} / {}: {} checks\n\n",
        subject.blueprint,
        subject.environment,
        outcomes.len()
    );
    for outcome in outcomes {
        let (mark, word) = match outcome.status {
            Status::Passed => (console::style("✓").green(), "passed "),
            Status::Failed => (console::style("✗").red().bold(), "FAILED "),
            Status::Skipped => (console::style("-").yellow(), "skipped"),
        };
        out.push_str(&format!(
            "  {mark} {word} {:width$}  {}\n",
            outcome.name, outcome.evidence
        ));
    }
    out.push('\n');
    out.push_str(&summary_line(outcomes, elapsed));
    out.push('\n');
    out
}

/// `N checks: P passed, F failed, S skipped in T`.
pub fn summary_line(outcomes: &[Outcome], elapsed: Duration) -> String {
    let summary = Summary::of(outcomes);
    let verdict = if summary.failed == 0 {
        "verify passed"
    } else {
        "verify FAILED"
    };
    format!(
        "{verdict}: {} checks, {} passed, {} failed, {} skipped in {:.1}s",
        outcomes.len(),
        summary.passed,
        summary.failed,
        summary.skipped,
        elapsed.as_secs_f64()
    )
}

/// A stable JSON document: the subject, the verdict, the counts and every check.
pub fn json(subject: &Subject, outcomes: &[Outcome], elapsed: Duration) -> String {
    let summary = Summary::of(outcomes);
    let document = json!({
        "blueprint": subject.blueprint,
        "environment": subject.environment,
        "passed": summary.failed == 0,
        "summary": summary,
        "duration_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "checks": outcomes,
    });
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())
}

/// JUnit XML: one test suite for the environment, one test case per check. A failed check is a
/// `<failure>` whose message is the evidence; a skipped one is `<skipped>` with the reason.
pub fn junit(subject: &Subject, outcomes: &[Outcome], elapsed: Duration) -> String {
    let summary = Summary::of(outcomes);
    let suite = format!("{}/{}", subject.blueprint, subject.environment);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!(
        "tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\"",
        outcomes.len(),
        summary.failed,
        summary.skipped,
        elapsed.as_secs_f64()
    );
    xml.push_str(&format!(
        "<testsuites name=\"trails verify\" {counts}>\n  <testsuite name=\"{}\" {counts}>\n",
        attribute(&suite)
    ));
    for outcome in outcomes {
        let class = outcome.name.split('.').next().unwrap_or("trails");
        xml.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            attribute(class),
            attribute(&outcome.name),
            outcome.duration.as_secs_f64()
        ));
        let evidence = attribute(&outcome.evidence);
        match outcome.status {
            Status::Passed => xml.push_str(&format!(
                ">\n      <system-out>{evidence}</system-out>\n    </testcase>\n"
            )),
            Status::Failed => xml.push_str(&format!(
                ">\n      <failure message=\"{evidence}\" type=\"verify\">{evidence}</failure>\n    </testcase>\n"
            )),
            Status::Skipped => {
                xml.push_str(&format!(">\n      <skipped message=\"{evidence}\"/>\n    </testcase>\n"))
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// Escapes text for XML and drops the control characters XML 1.0 cannot carry at all.
fn attribute(text: &str) -> String {
    let printable: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    escape(printable.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome {
                name: "s3.backups.versioning".into(),
                status: Status::Failed,
                evidence: "versioning is Suspended, the blueprint declares Enabled <&\u{1}>".into(),
                duration: Duration::from_millis(12),
            },
            Outcome {
                name: "network.vpc".into(),
                status: Status::Passed,
                evidence: "vpc-1 available".into(),
                duration: Duration::from_millis(3),
            },
            Outcome {
                name: "kubernetes.nodes.general".into(),
                status: Status::Skipped,
                evidence: "no client".into(),
                duration: Duration::ZERO,
            },
        ]
    }

    fn subject() -> Subject {
        Subject {
            blueprint: "demo".into(),
            environment: "local".into(),
        }
    }

    #[test]
    fn junit_has_one_case_per_check_with_escaped_evidence() {
        let xml = junit(&subject(), &outcomes(), Duration::from_secs(1));
        assert!(xml.contains(
            "<testsuites name=\"trails verify\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""
        ));
        assert!(xml.contains(
            "<failure message=\"versioning is Suspended, the blueprint declares Enabled &lt;&amp;&gt;\""
        ));
        assert!(
            xml.contains("<testcase classname=\"network\" name=\"network.vpc\" time=\"0.003\">")
        );
        assert!(xml.contains("<skipped message=\"no client\"/>"));
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut cases = 0;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(e)) if e.name().as_ref() == b"testcase" => {
                    cases += 1
                }
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(error) => panic!("JUnit is not well-formed XML: {error}"),
            }
        }
        assert_eq!(cases, 3);
    }

    #[test]
    fn text_and_json_say_the_verdict() {
        console::set_colors_enabled(false);
        let text = text(&subject(), &outcomes(), Duration::from_millis(1500));
        assert!(text.contains("✗ FAILED  s3.backups.versioning"));
        assert!(text.ends_with("verify FAILED: 3 checks, 1 passed, 1 failed, 1 skipped in 1.5s\n"));
        let json: serde_json::Value =
            serde_json::from_str(&json(&subject(), &outcomes(), Duration::ZERO)).expect("JSON");
        assert_eq!(json["passed"], false);
        assert_eq!(json["summary"]["failed"], 1);
        assert_eq!(json["checks"][0]["status"], "failed");
        assert_eq!(json["checks"][0]["duration_ms"], 12);
    }
}
