//! Validation and enrichment of audit events (seed 001, E2.S5 and E2.S6).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// One problem with one field of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Dotted path, e.g. `actor.id`.
    pub field: String,
    /// What was expected.
    pub message: String,
}

fn error(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// Fields that must be non-empty strings.
/// Deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 32;

/// Most elements (array items and object members) a body may hold. A batch of 1,000 events of
/// the seed's shape holds a few tens of thousands.
pub const MAX_ELEMENTS: usize = 200_000;

/// Why a body's shape is refused before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ELEMENTS`] elements.
    TooManyElements,
}

/// Checks a body's nesting depth and element count on its bytes, before anything is built: a
/// 10 MiB body of tiny values would otherwise become hundreds of MiB of parsed values.
/// Malformed JSON is left to the parser.
pub fn check_shape(body: &[u8]) -> Result<(), ShapeError> {
    let (mut depth, mut elements) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                elements += 1;
                if depth > MAX_DEPTH {
                    return Err(ShapeError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => elements += 1,
            _ => {}
        }
        if elements > MAX_ELEMENTS {
            return Err(ShapeError::TooManyElements);
        }
    }
    Ok(())
}

const REQUIRED: &[(&str, &str)] = &[
    ("actor", "id"),
    ("action", "name"),
    ("resource", "type"),
    ("resource", "id"),
];

/// Optional fields whose type is checked when present.
const OPTIONAL_STRINGS: &[(&str, &str)] = &[
    ("actor", "type"),
    ("actor", "name"),
    ("action", "category"),
    ("resource", "name"),
];

/// Every problem of `event`, or none.
pub fn validate(event: &Value) -> Vec<FieldError> {
    let Some(object) = event.as_object() else {
        return vec![error("", "an event must be a JSON object")];
    };
    let mut errors = Vec::new();
    for section in ["actor", "action", "resource"] {
        match object.get(section) {
            None | Some(Value::Null) => {}
            Some(Value::Object(_)) => {}
            Some(_) => errors.push(error(section, "must be an object")),
        }
    }
    for (section, field) in REQUIRED {
        let path = format!("{section}.{field}");
        match object.get(*section).and_then(Value::as_object) {
            None if object.get(*section).is_some_and(|v| !v.is_null()) => {}
            None => errors.push(error(&path, "is required")),
            Some(inner) => match inner.get(*field) {
                None | Some(Value::Null) => errors.push(error(&path, "is required")),
                Some(Value::String(text)) if text.trim().is_empty() => {
                    errors.push(error(&path, "must not be empty"))
                }
                Some(Value::String(_)) => {}
                Some(_) => errors.push(error(&path, "must be a string")),
            },
        }
    }
    for (section, field) in OPTIONAL_STRINGS {
        if let Some(value) = object
            .get(*section)
            .and_then(Value::as_object)
            .and_then(|inner| inner.get(*field))
            && !value.is_string()
            && !value.is_null()
        {
            errors.push(error(&format!("{section}.{field}"), "must be a string"));
        }
    }
    match object.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) if DateTime::parse_from_rfc3339(text).is_ok() => {}
        Some(_) => errors.push(error(
            "timestamp",
            "must be an RFC 3339 date-time, e.g. 2026-11-22T10:00:00Z",
        )),
    }
    for field in ["metadata", "context"] {
        if let Some(value) = object.get(field)
            && !value.is_object()
            && !value.is_null()
        {
            errors.push(error(field, "must be an object"));
        }
    }
    if object.contains_key("event_id") || object.contains_key("tenant_id") {
        for field in ["event_id", "tenant_id"] {
            if object.contains_key(field) {
                errors.push(error(field, "is set by the service and must not be sent"));
            }
        }
    }
    errors
}

/// What enrichment stamped on an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// UUIDv7 of the event.
    pub event_id: String,
    /// When the service received it (RFC 3339, UTC, milliseconds).
    pub received_at: String,
}

/// Adds `event_id` (UUIDv7), `received_at`, `event_date` (of the event's own `timestamp` when
/// it has one, else of `received_at`), `tenant_id`, the lower-cased `action.name` and
/// `processing.node`. `event` must have passed [`validate`].
pub fn enrich(
    event: &mut Map<String, Value>,
    tenant_id: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Receipt {
    let event_id = Uuid::now_v7().to_string();
    let received_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let occurred = event
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or(now);
    if let Some(Value::String(name)) = event
        .get_mut("action")
        .and_then(Value::as_object_mut)
        .and_then(|action| action.get_mut("name"))
    {
        *name = name.to_lowercase();
    }
    event.insert("event_id".into(), json!(event_id));
    event.insert("received_at".into(), json!(received_at));
    event.insert(
        "event_date".into(),
        json!(occurred.format("%Y-%m-%d").to_string()),
    );
    event.insert("tenant_id".into(), json!(tenant_id));
    let processing = event
        .entry("processing")
        .or_insert_with(|| Value::Object(Map::new()));
    if !processing.is_object() {
        *processing = Value::Object(Map::new());
    }
    if let Some(processing) = processing.as_object_mut() {
        processing.insert("node".into(), json!(node));
    }
    Receipt {
        event_id,
        received_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_too_deep_or_too_wide_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(check_shape(deep.as_bytes()), Err(ShapeError::TooDeep));
        let wide = format!("[{}0]", "0,".repeat(MAX_ELEMENTS));
        assert_eq!(
            check_shape(wide.as_bytes()),
            Err(ShapeError::TooManyElements)
        );
        // Brackets and commas inside strings, escaped quotes included, are text.
        let text = format!(
            "{{\"a\": \"{}\\\"{}\"}}",
            "[".repeat(100),
            ",".repeat(MAX_ELEMENTS + 1)
        );
        assert_eq!(check_shape(text.as_bytes()), Ok(()));
        let nested = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check_shape(nested.as_bytes()), Ok(()));
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn every_missing_or_mistyped_field_is_named() {
        let errors = validate(&json!({
            "actor": { "id": 7 },
            "action": {},
            "resource": { "type": "", "id": "doc-1" },
            "timestamp": "yesterday"
        }));
        assert_eq!(
            fields(&errors),
            ["actor.id", "action.name", "resource.type", "timestamp"]
        );
        assert_eq!(errors[0].message, "must be a string");
        let errors = validate(&json!({ "actor": "me" }));
        assert_eq!(
            fields(&errors),
            ["actor", "action.name", "resource.type", "resource.id"]
        );
        assert_eq!(fields(&validate(&json!([1]))), [""]);
    }

    #[test]
    fn a_complete_event_passes_and_is_enriched() {
        let mut event = json!({
            "actor": { "id": "u-1", "type": "user" },
            "action": { "name": "Document.Viewed" },
            "resource": { "type": "document", "id": "d-9" },
            "timestamp": "2026-11-21T23:59:59+00:00"
        });
        assert!(validate(&event).is_empty());
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123Z")
            .expect("time")
            .with_timezone(&Utc);
        let object = event.as_object_mut().expect("object");
        let receipt = enrich(object, "tenant-a", "node-1", now);
        assert_eq!(receipt.received_at, "2026-11-22T10:00:00.123Z");
        let id = Uuid::parse_str(&receipt.event_id).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(event["action"]["name"], "document.viewed");
        assert_eq!(event["event_date"], "2026-11-21");
        assert_eq!(event["tenant_id"], "tenant-a");
        assert_eq!(event["processing"]["node"], "node-1");
        assert_eq!(event["event_id"], receipt.event_id.as_str());
    }

    #[test]
    fn clients_cannot_choose_the_ids_the_service_stamps() {
        let errors = validate(&json!({
            "actor": { "id": "u" }, "action": { "name": "a" },
            "resource": { "type": "t", "id": "i" }, "tenant_id": "someone-else"
        }));
        assert_eq!(fields(&errors), ["tenant_id"]);
    }
}
