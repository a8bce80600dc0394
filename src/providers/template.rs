//! Renders the blueprint's tera templates (Kubernetes manifests, Helm values) at apply time,
//! when the outputs their values reference are known.
//!
//! Every string a `{{ ... }}` inserts is escaped for YAML so that it reads back as the same
//! string under YAML 1.1 (Helm, Kubernetes) and 1.2: a string such as `"1.10"`, `"true"`,
//! `"010"` or `"on"` is double-quoted, never left to be read as a number or a boolean, and a
//! value holding a newline, `: `, `#` or a quote cannot add keys or documents. A template that
//! wants a number says so (`replicas: {{ values.replicas | int }}`); numbers, booleans and
//! `| safe` are inserted as they are. A value belongs outside quotes in a template: inside a
//! quoted string it makes the YAML invalid (an error) instead of changing its meaning.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::ProviderError;

/// Renders `relative` (under `templates_dir`) with `values` available as `values.NAME`.
pub fn render(
    templates_dir: &Path,
    relative: &str,
    values: &BTreeMap<String, Value>,
) -> Result<String, ProviderError> {
    let path = templates_dir.join(relative);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ProviderError::Invalid(format!("cannot read template {}: {error}", path.display()))
    })?;
    if let Some(literal) = quoted_twice(&text) {
        return Err(ProviderError::Invalid(format!(
            "template {}: `default(value=\"{literal}\")` would be quoted twice (tera escapes a \
             string default before the expression's own escaping); give the value in the \
             blueprint, or a number or boolean default with `| int` or `| bool`",
            path.display()
        )));
    }
    let mut tera = tera::Tera::default();
    // Every template, whatever its name ends with.
    tera.autoescape_on(vec![""]);
    tera.set_escape_fn(yaml_scalar);
    // Stricter than tera's own `int`, which reads any text it cannot parse as 0: a typo in a
    // replica count must fail the render, not scale a StatefulSet to nothing.
    tera.register_filter("int", whole_number);
    tera.register_filter("bool", boolean);
    let name = path.display().to_string();
    tera.add_raw_template(&name, &text).map_err(|error| {
        ProviderError::Invalid(format!(
            "template {name} does not parse: {}",
            crate::error_chain(&error)
        ))
    })?;
    let mut context = tera::Context::new();
    context.insert("values", values);
    tera.render(&name, &context).map_err(|error| {
        ProviderError::Invalid(format!(
            "template {name} does not render: {}",
            crate::error_chain(&error)
        ))
    })
}

/// The first string literal given to tera's `default` filter that YAML would need quoted:
/// tera escapes such a default once when it evaluates it and again as the expression's
/// result, so it would reach the document with its quotes.
fn quoted_twice(text: &str) -> Option<&str> {
    text.match_indices("default(value=\"")
        .find_map(|(at, opening)| {
            let rest = &text[at + opening.len()..];
            let literal = &rest[..rest.find('"')?];
            (!plain(literal)).then_some(literal)
        })
}

/// The `int` filter: a whole number, or a string that is one; anything else is an error.
fn whole_number(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    match value {
        Value::Number(number) if number.is_i64() || number.is_u64() => Ok(value.clone()),
        Value::String(text) => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| tera::Error::msg(format!("`int`: {text:?} is not a whole number"))),
        other => Err(tera::Error::msg(format!(
            "`int`: {other} is not a whole number"
        ))),
    }
}

/// The `bool` filter: `true` or `false`, as a boolean or as text; anything else is an error.
fn boolean(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    match value {
        Value::Bool(_) => Ok(value.clone()),
        Value::String(text) if text == "true" || text == "false" => Ok(Value::Bool(text == "true")),
        other => Err(tera::Error::msg(format!(
            "`bool`: {other} is neither true nor false"
        ))),
    }
}

/// `text` as it may stand in YAML so that it reads back as the same string: itself when both
/// YAML 1.1 (Helm's parser) and 1.2 read it as that string, else a double-quoted string.
fn yaml_scalar(text: &str) -> String {
    if plain(text) {
        text.to_string()
    } else {
        double_quoted(text)
    }
}

/// A plain scalar that YAML 1.1 and 1.2 both read back as this very string, in a block or a
/// flow (`[a, b]`): letters, digits and a few punctuation marks that never start or end a
/// structure (no `,`, brackets or braces), nothing that ends a key (`: `) or
/// starts a comment (` #`), and nothing either version resolves to another type (numbers in
/// any base, sexagesimal, dates, `.inf`, `~`, `null`, `yes`/`on`/`y` and the other booleans,
/// `<<`, `=`). Anything else is quoted, which is always correct.
fn plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_./:+=@~()$%^".contains(c))
        && text.trim() == text
        && !text.contains(": ")
        && !text.ends_with(':')
        && !text.contains(" #")
        && !resolves_to_another_type(text)
}

/// Whether YAML 1.1 or 1.2 reads `text` (which starts with a letter) as a boolean or null.
/// Numbers, dates and `.inf` start with a digit, a sign or a dot and never get here.
fn resolves_to_another_type(text: &str) -> bool {
    const WORDS: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null"];
    WORDS.contains(&text.to_ascii_lowercase().as_str())
}

/// `text` as a YAML double-quoted scalar: every character YAML would read otherwise (quotes,
/// backslashes, line breaks including NEL and the Unicode separators, controls, the byte-order
/// mark and non-characters) escaped, so it reads back as exactly `text` in YAML 1.1 and 1.2.
fn double_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                quoted.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_values_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("ok.yaml"),
            "replicas: {{ values.replicas }}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("bad.yaml"), "x: {{ values.missing }}\n").expect("write");
        let values = BTreeMap::from([("replicas".to_string(), json!(3))]);
        assert_eq!(
            render(dir.path(), "ok.yaml", &values).expect("renders"),
            "replicas: 3\n"
        );
        let error = render(dir.path(), "bad.yaml", &values)
            .expect_err("missing value")
            .to_string();
        assert!(
            error.contains("bad.yaml") && error.contains("missing"),
            "{error}"
        );
        // A value cannot add keys: it is quoted unless it reads back as itself.
        std::fs::write(
            dir.path().join("values.yaml"),
            "image: {{ values.image }}\nreplicas: {{ values.replicas }}\nnote: {{ values.note }}\n\
             arn: {{ values.arn }}\n",
        )
        .expect("write");
        let hostile = "x\nprivileged: true\n---\nkind: ClusterRoleBinding # \"q\" 'q'";
        let values = BTreeMap::from([
            ("image".to_string(), json!("ghcr.io/turia/trails:0.1.0")),
            ("replicas".to_string(), json!(3)),
            ("note".to_string(), json!(hostile)),
            ("arn".to_string(), json!("arn:aws:iam::123456789012:role/x")),
        ]);
        let text = render(dir.path(), "values.yaml", &values).expect("renders");
        let parsed: serde_json::Value = serde_yaml::from_str(&text).expect("one YAML document");
        assert_eq!(
            parsed,
            json!({"image": "ghcr.io/turia/trails:0.1.0", "replicas": 3, "note": hostile,
                   "arn": "arn:aws:iam::123456789012:role/x"})
        );
        for unsafe_text in [
            "a: b", "a #b", "- x", "[x]", "{x}", "*x", "&x", "!x", "|", "'q'", "",
        ] {
            assert!(!plain(unsafe_text), "{unsafe_text:?} must be quoted");
        }
        let error = render(dir.path(), "absent.yaml", &values)
            .expect_err("absent file")
            .to_string();
        assert!(error.contains("absent.yaml"), "{error}");
    }

    /// `k: {{ values.v }}` and `k: [{{ values.v }}]` rendered with the string `v`, read back.
    fn round_trip(v: &str) -> (serde_json::Value, serde_json::Value) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("t.yaml"),
            "k: {{ values.v }}
flow: [{{ values.v }}, x]
",
        )
        .expect("write");
        let values = BTreeMap::from([("v".to_string(), json!(v))]);
        let text = render(dir.path(), "t.yaml", &values).expect("renders");
        let parsed: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|error| panic!("{v:?} rendered as {text:?}: {error}"));
        (parsed["k"].clone(), parsed["flow"][0].clone())
    }

    #[test]
    fn strings_that_yaml_would_read_as_another_type_stay_strings() {
        // YAML 1.2 numbers, YAML 1.1 octal, hex, sexagesimal, booleans and nulls, dates,
        // floats with a trailing zero (`1.10` read as 1.1), and the safe plain strings.
        for text in [
            "1.10",
            "3",
            "010",
            "0x1F",
            "0o17",
            "0b101",
            "190:20:30",
            "1e3",
            ".inf",
            "-.5",
            "true",
            "True",
            "yes",
            "Yes",
            "on",
            "ON",
            "off",
            "y",
            "N",
            "no",
            "null",
            "Null",
            "~",
            "2026-12-08",
            "2001-12-14t21:59:43.10-05:00",
            "<<",
            "=",
            "",
            " padded ",
            "a,b",
            "16Gi",
            "gp3",
            "arn:aws:iam::1:role/x",
            "http://a:8080/x",
            "eu-west-1",
        ] {
            let (block, flow) = round_trip(text);
            assert_eq!(block, json!(text), "{text:?} in a block");
            assert_eq!(flow, json!(text), "{text:?} in a flow");
        }
        for word in ["yes", "On", "NULL", "n", "1.10", "010"] {
            assert!(!plain(word), "{word:?} must be quoted for YAML 1.1 readers");
        }
        // Numbers a template asks for stay numbers.
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("n.yaml"),
            "n: {{ values.n | int }}
",
        )
        .expect("write");
        let values = BTreeMap::from([("n".to_string(), json!("3"))]);
        assert_eq!(
            render(dir.path(), "n.yaml", &values).expect("renders"),
            "n: 3\n"
        );
        // A typo in a number fails the render instead of becoming 0.
        let values = BTreeMap::from([("n".to_string(), json!("three"))]);
        let error = render(dir.path(), "n.yaml", &values)
            .expect_err("not a number")
            .to_string();
        assert!(error.contains("\"three\" is not a whole number"), "{error}");
    }

    #[test]
    fn a_string_default_that_would_be_quoted_twice_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let values = BTreeMap::new();
        std::fs::write(
            dir.path().join("d.yaml"),
            "m: {{ values.m | default(value=\"256Mi\") }}\n",
        )
        .expect("write");
        let error = render(dir.path(), "d.yaml", &values)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("default(value=\"256Mi\")"), "{error}");
        std::fs::write(
            dir.path().join("ok.yaml"),
            "i: {{ values.i | default(value=\"ghcr.io/x:1\") }}\nn: {{ values.n | default(value=3) }}\n\
             b: {{ values.b | default(value=true) | bool }}\n",
        )
        .expect("write");
        let parsed: serde_json::Value =
            serde_yaml::from_str(&render(dir.path(), "ok.yaml", &values).expect("renders"))
                .expect("yaml");
        assert_eq!(parsed, json!({"i": "ghcr.io/x:1", "n": 3, "b": true}));
    }

    proptest::proptest! {
        #[test]
        fn any_string_reads_back_as_itself(text in "\\PC*|[\\s\\S]{0,12}|[0-9a-zA-Z.:_+-]{1,8}") {
            let (block, flow) = round_trip(&text);
            proptest::prop_assert_eq!(block, json!(text.clone()));
            proptest::prop_assert_eq!(flow, json!(text));
        }
    }
}
