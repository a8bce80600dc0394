//! `protect: true`: no plan deletes or replaces anything in a protected environment without an
//! explicit override, and the protection the state recorded outlives a blueprint that drops it.

use super::{Action, Plan};

/// Why a plan may not run in a protected environment.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The plan deletes or replaces something.
    #[error(
        "environment `{environment}` is protected (`protect: true`): this plan would {what} {}; \
         {hint}pass --override-protection to run it anyway",
        addresses.join(", ")
    )]
    Deletes {
        /// The environment.
        environment: String,
        /// `delete` or `delete or replace`.
        what: &'static str,
        /// What it would delete or replace.
        addresses: Vec<String>,
        /// What else to do, for a whole destroy.
        hint: &'static str,
    },
    /// The blueprint turns protection off together with other changes.
    #[error(
        "environment `{0}` was applied as protected and the blueprint no longer says `protect: \
         true`: turning protection off takes an apply of that change alone; undo the other \
         changes, apply, then apply them (or pass --override-protection)"
    )]
    Unprotecting(String),
}

/// Checks `plan` against the environment's protection, `declared` by the blueprint and
/// `recorded` in the state. `Ok(Some(flag))` when the run must record the protection anew.
pub fn check(
    plan: &Plan,
    declared: bool,
    recorded: bool,
    overridden: bool,
) -> Result<Option<bool>, Refused> {
    if overridden {
        return Ok((declared != recorded).then_some(declared));
    }
    if recorded && !declared {
        return if plan.has_changes() {
            Err(Refused::Unprotecting(plan.environment.clone()))
        } else {
            Ok(Some(false))
        };
    }
    if declared || recorded {
        let doomed: Vec<String> = plan
            .changes
            .iter()
            .filter(|change| matches!(change.action, Action::Delete | Action::Replace))
            .map(|change| change.address.clone())
            .collect();
        if !doomed.is_empty() {
            let (what, hint) = if plan.destroy {
                ("destroy", "")
            } else {
                ("delete or replace", "keep them in the blueprint, or ")
            };
            return Err(Refused::Deletes {
                environment: plan.environment.clone(),
                what,
                addresses: doomed,
                hint,
            });
        }
    }
    Ok((declared && !recorded).then_some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, Summary};

    fn plan(actions: &[(&str, Action)], destroy: bool) -> Plan {
        let changes: Vec<Change> = actions
            .iter()
            .map(|(address, action)| Change {
                address: address.to_string(),
                kind: "aws.s3_bucket".to_string(),
                action: *action,
                reasons: Vec::new(),
                depends_on: Vec::new(),
                attributes: indexmap::IndexMap::new(),
                drift: Vec::new(),
                live: None,
                import: None,
                moved_from: None,
            })
            .collect();
        Plan {
            format_version: 1,
            blueprint: "demo".into(),
            environment: "prod".into(),
            destroy,
            refreshed: false,
            state_lineage: String::new(),
            state_serial: 1,
            summary: Summary::default(),
            changes,
        }
    }

    #[test]
    fn a_protected_plan_may_create_and_update_but_not_delete_or_replace() {
        let growing = plan(&[("a", Action::Create), ("b", Action::Update)], false);
        assert_eq!(check(&growing, true, true, false), Ok(None));
        let shrinking = plan(&[("a", Action::Delete), ("b", Action::Replace)], false);
        let refused = check(&shrinking, true, true, false).expect_err("refused");
        assert!(
            refused.to_string().contains("would delete or replace a, b"),
            "{refused}"
        );
        assert_eq!(check(&shrinking, true, true, true), Ok(None));
        assert_eq!(check(&shrinking, false, false, false), Ok(None));
    }

    #[test]
    fn the_recorded_protection_wins_until_it_is_turned_off_alone() {
        let shrinking = plan(&[("a", Action::Delete)], false);
        assert_eq!(
            check(&shrinking, false, true, false),
            Err(Refused::Unprotecting("prod".into()))
        );
        let nothing = plan(&[("a", Action::NoOp)], false);
        assert_eq!(check(&nothing, false, true, false), Ok(Some(false)));
        assert_eq!(check(&nothing, true, false, false), Ok(Some(true)));
    }

    #[test]
    fn a_destroy_of_a_protected_environment_says_so() {
        let destroy = plan(&[("a", Action::Delete)], true);
        let refused = check(&destroy, true, false, false).expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("is protected (`protect: true`): this plan would destroy a")
                && refused.to_string().contains("--override-protection"),
            "{refused}"
        );
    }
}
