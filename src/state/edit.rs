//! Edits of the recorded state that change nothing where the resources live: `state rm`
//! (forget) and `state mv` (rename).

use super::State;

/// Forgets `addresses`; refuses an address that is not recorded. Says what it did, and which
/// recorded resources still refer to what was forgotten.
pub fn remove(state: &mut State, addresses: &[String]) -> Result<String, String> {
    for address in addresses {
        if !state.resources.contains_key(address)
            && !state.intents.contains_key(address)
            && !state.imports.contains_key(address)
        {
            return Err(format!(
                "no resource `{address}` is recorded; `trails state list` shows what is"
            ));
        }
    }
    for address in addresses {
        state.resources.shift_remove(address);
        state.intents.shift_remove(address);
        state.imports.shift_remove(address);
    }
    let users: Vec<String> = state
        .resources
        .iter()
        .filter(|(_, recorded)| addresses.iter().any(|a| recorded.depends_on.contains(a)))
        .map(|(address, _)| address.clone())
        .collect();
    let mut said = format!(
        "forgot {}; {} left where {} (trails no longer manages {})",
        addresses.join(", "),
        if addresses.len() == 1 {
            "it is"
        } else {
            "they are"
        },
        if addresses.len() == 1 {
            "it is"
        } else {
            "they are"
        },
        if addresses.len() == 1 { "it" } else { "them" },
    );
    if !users.is_empty() {
        said.push_str(&format!(
            "; still recorded as depending on it: {}",
            users.join(", ")
        ));
    }
    Ok(said)
}

/// Renames the resource recorded at `from` to `to`, a free address of the same type, and
/// every recorded reference to it.
pub fn rename(state: &mut State, from: &str, to: &str) -> Result<String, String> {
    let Some(recorded) = state.resources.get(from) else {
        return Err(format!(
            "no resource `{from}` is recorded; `trails state list` shows what is"
        ));
    };
    let kind = recorded.kind.clone();
    let name = to.strip_prefix(&format!("{kind}.")).unwrap_or_default();
    if name.is_empty() || name.contains('.') {
        return Err(format!(
            "`{to}` is not an address of the same type as `{from}`: expected `{kind}.NAME`"
        ));
    }
    if state.resources.contains_key(to) {
        return Err(format!(
            "`{to}` is already recorded; `trails state rm` it first"
        ));
    }
    let position = state.resources.get_index_of(from).unwrap_or_default();
    if let Some(recorded) = state.resources.shift_remove(from) {
        state
            .resources
            .shift_insert(position, to.to_string(), recorded);
    }
    for recorded in state.resources.values_mut() {
        if recorded.depends_on.remove(from) {
            recorded.depends_on.insert(to.to_string());
        }
    }
    Ok(format!("moved {from} to {to}"))
}

/// Names `id` for adoption at `address` (`trails import`): the next apply adopts and marks it
/// instead of creating. Refuses an address already recorded.
pub fn import(state: &mut State, address: &str, id: &str) -> Result<String, String> {
    if let Some(recorded) = state.resources.get(address) {
        return Err(format!(
            "`{address}` is recorded already (as {}); there is nothing to import",
            recorded.id.as_deref().unwrap_or("-")
        ));
    }
    if id.trim().is_empty() {
        return Err("the id to import is empty".to_string());
    }
    state.imports.insert(address.to_string(), id.to_string());
    Ok(format!(
        "{address} will adopt {id} on the next apply, which marks it as this environment's \
         (`trails plan` shows it as an import; `trails state rm {address}` takes it back)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Recorded;

    fn recorded(kind: &str, depends_on: &[&str]) -> Recorded {
        Recorded {
            kind: kind.to_string(),
            id: Some("id".to_string()),
            attributes: serde_json::Map::new(),
            outputs: serde_json::Map::new(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            secret_versions: Default::default(),
        }
    }

    /// A VPC and a subnet in it.
    fn vpc_and_subnet() -> State {
        let mut state = State::empty("demo", "dev");
        state
            .resources
            .insert("aws.vpc.main".into(), recorded("aws.vpc", &[]));
        state.resources.insert(
            "aws.subnet.a".into(),
            recorded("aws.subnet", &["aws.vpc.main"]),
        );
        state
    }

    #[test]
    fn a_rename_keeps_the_resource_and_its_users_follow() {
        let mut state = vpc_and_subnet();
        rename(&mut state, "aws.vpc.main", "aws.vpc.core").expect("renamed");
        assert_eq!(
            state.resources.keys().collect::<Vec<_>>(),
            ["aws.vpc.core", "aws.subnet.a"]
        );
        assert!(
            state.resources["aws.subnet.a"]
                .depends_on
                .contains("aws.vpc.core")
        );
        for (to, why) in [
            ("aws.subnet.core", "same type"),
            ("aws.vpc.", "same type"),
            ("aws.subnet.a", "same type"),
        ] {
            let error = rename(&mut state, "aws.vpc.core", to).expect_err(to);
            assert!(error.contains(why), "{error}");
        }
        let error = rename(&mut state, "aws.vpc.gone", "aws.vpc.x").expect_err("unknown");
        assert!(error.contains("no resource"), "{error}");
    }

    #[test]
    fn forgetting_names_what_still_depends_on_it_and_refuses_unknown_addresses() {
        let mut state = vpc_and_subnet();
        let refused = remove(&mut state, &["aws.vpc.main".into(), "aws.vpc.nope".into()])
            .expect_err("one unknown");
        assert!(refused.contains("aws.vpc.nope"), "{refused}");
        assert_eq!(state.resources.len(), 2, "nothing removed on refusal");
        let said = remove(&mut state, &["aws.vpc.main".into()]).expect("removed");
        assert!(said.contains("aws.subnet.a"), "{said}");
        assert_eq!(state.resources.len(), 1);
    }
}
