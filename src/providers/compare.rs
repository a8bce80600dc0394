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
