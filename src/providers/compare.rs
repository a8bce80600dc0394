//! Comparing what trails applied with what is live, for drift: only the fields trails set.

use serde_json::Value;

/// The fields of what trails applied that the live copy does not have as applied, as
/// `PATH: APPLIED -> LIVE`. Fields the server or controllers add are not differences; numbers
/// and quantities compare by value (`"1"` and `1`, `1Gi` and `1024Mi`). With `hidden`, values
/// are never shown (a Secret's). `apiVersion`, `kind` and `status` at the top are not compared.
pub fn differences(applied: &Value, live: &Value, hidden: bool) -> Vec<String> {
    let mut found = Vec::new();
    compare("", applied, live, hidden, &mut found);
    found
}

fn compare(path: &str, applied: &Value, live: &Value, secret: bool, found: &mut Vec<String>) {
    match (applied, live) {
        (Value::Object(wanted), Value::Object(have)) => {
            for (key, value) in wanted {
                if path.is_empty() && (key == "apiVersion" || key == "kind" || key == "status") {
                    continue;
                }
                let child = if key.contains(['.', '/']) {
                    format!("{path}[\"{key}\"]")
                } else if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match have.get(key) {
                    Some(live) => compare(&child, value, live, secret, found),
                    None if is_empty(value) => {}
                    None => found.push(format!("{child}: {} -> (absent)", shown(value, secret))),
                }
            }
        }
        (Value::Array(wanted), Value::Array(have))
            if list_key(last_field(path), wanted).is_some() =>
        {
            // A list Kubernetes merges item by item: trails' items by their key; items other
            // field managers added (`kubectl set env`) are theirs, not drift.
            let key = list_key(last_field(path), wanted).unwrap_or_default();
            for item in wanted {
                let id = match &item[key] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let child = format!("{path}[{key}={id}]");
                match have.iter().find(|live| same(&item[key], &live[key])) {
                    Some(live) => compare(&child, item, live, secret, found),
                    None => found.push(format!("{child}: {} -> (absent)", shown(item, secret))),
                }
            }
        }
        (Value::Array(wanted), Value::Array(have)) if wanted.len() == have.len() => {
            for (index, (value, live)) in wanted.iter().zip(have).enumerate() {
                compare(&format!("{path}[{index}]"), value, live, secret, found);
            }
        }
        (applied, live) if same(applied, live) || applied.is_null() => {}
        (applied, live) => found.push(format!(
            "{path}: {} -> {}",
            shown(applied, secret),
            shown(live, secret)
        )),
    }
}

/// The key field of a list Kubernetes declares as a map (`x-kubernetes-list-type: map`,
/// merged item by item by server-side apply), by the list's field name, when every item has it.
pub fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        // A container's ports are keyed by containerPort, a Service's by port.
        "ports" if items.iter().all(|item| item.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    (!items.is_empty() && items.iter().all(|item| item.get(key).is_some())).then_some(key)
}

/// The last field name of a difference path (`spec.template.spec.containers[name=web].env`
/// → `env`).
fn last_field(path: &str) -> &str {
    let last = path.rsplit(['.', ']']).next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn same(applied: &Value, live: &Value) -> bool {
    if applied == live {
        return true;
    }
    let text = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    };
    match (text(applied), text(live)) {
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (quantity(&a), quantity(&b)) {
            (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()) * 4.0,
            _ => false,
        },
        _ => false,
    }
}

/// A Kubernetes quantity (`500m`, `2`, `1Gi`, `1.5G`) as a number.
fn quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * scale)
}

/// A value for a difference line: compact, cut at 60 characters, hidden under a Secret.
fn shown(value: &Value, secret: bool) -> String {
    if secret {
        return "(hidden)".to_string();
    }
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The attributes a read found live that differ from the recorded ones, as
/// `PATH: RECORDED -> LIVE`. Only attributes the read returned are compared (a read sees what
/// the API shows); inside them, maps compare key by key (a tag removed by hand shows) and
/// lists as sets (AWS returns rules, subnets and CIDRs in its own order): an element only in
/// the record is `PATH: removed ELEMENT`, one only live `PATH: added ELEMENT`.
pub fn attribute_differences(
    recorded: &serde_json::Map<String, Value>,
    live: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (key, live_value) in live {
        let recorded_value = recorded.get(key).unwrap_or(&Value::Null);
        compare_as_sets(key, recorded_value, live_value, &mut found);
    }
    found
}

fn compare_as_sets(path: &str, recorded: &Value, live: &Value, found: &mut Vec<String>) {
    match (recorded, live) {
        (Value::Object(before), Value::Object(after)) => {
            let keys: std::collections::BTreeSet<&String> =
                before.keys().chain(after.keys()).collect();
            for key in keys {
                let child = format!("{path}.{key}");
                match (before.get(key), after.get(key)) {
                    (Some(before), Some(after)) => compare_as_sets(&child, before, after, found),
                    (Some(before), None) if !is_empty(before) => {
                        found.push(format!("{child}: {} -> (absent)", shown(before, false)))
                    }
                    (None, Some(after)) if !is_empty(after) => {
                        found.push(format!("{child}: (absent) -> {}", shown(after, false)))
                    }
                    _ => {}
                }
            }
        }
        (Value::Array(before), Value::Array(after)) => {
            let mut unmatched: Vec<Value> = after.iter().map(canonical).collect();
            let mut removed = Vec::new();
            for element in before.iter().map(canonical) {
                match unmatched.iter().position(|other| *other == element) {
                    Some(position) => {
                        unmatched.remove(position);
                    }
                    None => removed.push(element),
                }
            }
            for element in removed {
                found.push(format!("{path}: removed {}", shown_whole(&element)));
            }
            for element in unmatched {
                found.push(format!("{path}: added {}", shown_whole(&element)));
            }
        }
        (Value::Null, after) if is_empty(after) => {}
        (before, Value::Null) if is_empty(before) => {}
        (before, after) if canonical(before) == canonical(after) || same(before, after) => {}
        (before, after) => found.push(format!(
            "{path}: {} -> {}",
            shown(before, false),
            shown(after, false)
        )),
    }
}

/// A value with every list sorted, so that two sets in different orders are equal.
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(canonical).collect();
            items.sort_by_key(|item| item.to_string());
            Value::Array(items)
        }
        Value::Object(map) => {
            let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(key, value)| (key.clone(), canonical(value)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// An element of a set difference in full: cutting it would hide which rule it is.
fn shown_whole(value: &Value) -> String {
    value.to_string()
}

/// `recorded` with what a read found live laid over it, maps merged key by key: the
/// attributes an update starts from when it repairs drift.
pub fn merge_live(
    recorded: &serde_json::Map<String, Value>,
    live: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let mut merged = recorded.clone();
    for (key, value) in live {
        let entry = merged.entry(key.clone()).or_insert(Value::Null);
        match (entry, value) {
            (Value::Object(before), Value::Object(after)) if key != "tags" => {
                *before = merge_live(before, after);
            }
            (entry, value) => *entry = value.clone(),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_maps_compare_trails_items_by_key_and_ignore_others() {
        let applied = json!({"spec": {"containers": [
            {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}]}
        ]}});
        let merged = json!({"spec": {"containers": [
            {"name": "sidecar", "image": "mesh:3"},
            {"name": "web", "image": "web:1", "env": [
                {"name": "DEBUG", "value": "1"}, {"name": "A", "value": "1"}
            ]}
        ]}});
        assert!(differences(&applied, &merged, false).is_empty());
        let changed = json!({"spec": {"containers": [
            {"name": "web", "image": "web:2", "env": [{"name": "DEBUG", "value": "1"}]}
        ]}});
        assert_eq!(
            differences(&applied, &changed, false),
            [
                "spec.containers[name=web].image: \"web:1\" -> \"web:2\"",
                "spec.containers[name=web].env[name=A]: {\"name\":\"A\",\"value\":\"1\"} -> (absent)",
            ]
        );
    }

    fn map(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn lists_compare_as_sets_and_name_what_was_added() {
        let recorded = map(json!({"subnet_ids": ["a", "b"], "ingress": [{"port": 443}]}));
        let live = map(json!({"subnet_ids": ["b", "a"], "ingress": [{"port": 443}, {"port": 22}]}));
        assert_eq!(
            attribute_differences(&recorded, &live),
            vec![r#"ingress: added {"port":22}"#.to_string()]
        );
    }

    #[test]
    fn only_attributes_the_read_returned_are_compared() {
        let recorded = map(json!({"versioning": true, "force_destroy": true}));
        let live = map(json!({"versioning": false}));
        assert_eq!(
            attribute_differences(&recorded, &live),
            vec!["versioning: true -> false".to_string()]
        );
    }

    #[test]
    fn a_tag_removed_by_hand_is_a_difference() {
        let recorded = map(json!({"tags": {"team": "audit", "env": "dev"}}));
        let live = map(json!({"tags": {"env": "dev"}}));
        assert_eq!(
            attribute_differences(&recorded, &live),
            vec![r#"tags.team: "audit" -> (absent)"#.to_string()]
        );
    }

    #[test]
    fn merge_keeps_what_the_read_does_not_see_and_replaces_tags_whole() {
        let recorded = map(
            json!({"scaling": {"min": 1, "max": 3, "desired": 2}, "tags": {"a": "1", "b": "2"}, "disk": 20}),
        );
        let live = map(json!({"scaling": {"min": 2, "max": 5}, "tags": {"a": "1"}}));
        assert_eq!(
            Value::Object(merge_live(&recorded, &live)),
            json!({"scaling": {"min": 2, "max": 5, "desired": 2}, "tags": {"a": "1"}, "disk": 20})
        );
    }
}
