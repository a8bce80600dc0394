//! `${...}` expressions inside blueprint strings: variables, the environment, resource outputs.

use std::fmt;

/// Providers whose resources may be referenced as `${PROVIDER.TYPE.NAME.OUTPUT}`.
pub const PROVIDERS: &[&str] = &[
    "aws",
    "k8s",
    "helm",
    "kafka",
    "postgres",
    "clickhouse",
    "opensearch",
];

/// A reference to another resource's output, e.g. `${aws.db_instance.main.endpoint}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The referenced resource's address, `PROVIDER.TYPE.NAME`.
    pub address: String,
    /// The output of that resource.
    pub output: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}.{}}}", self.address, self.output)
    }
}

/// One piece of a string that may hold expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// Plain text (with `$${` already turned into `${`).
    Literal(String),
    /// `${var.NAME}`.
    Variable(String),
    /// `${env.FIELD}`.
    Environment(String),
    /// `${PROVIDER.TYPE.NAME.OUTPUT}`.
    Reference(Reference),
}

/// Splits a string into literals and expressions; `$${` stands for a literal `${`.
pub fn parse(text: &str) -> Result<Vec<Expression>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 && rest[..start].ends_with('$') {
            literal.push_str(&rest[..start - 1]);
            literal.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unterminated `${{` in {text:?}; close it with `}}` or write `$${{` for a literal"
            ));
        };
        if !literal.is_empty() {
            parts.push(Expression::Literal(std::mem::take(&mut literal)));
        }
        parts.push(expression(after[..end].trim())?);
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Expression::Literal(literal));
    }
    Ok(parts)
}

/// Writes a literal back so that a later parse sees the same literal.
pub fn escape(literal: &str) -> String {
    literal.replace("${", "$${")
}

/// The resource references in a string, in order.
pub fn references(text: &str) -> Result<Vec<Reference>, String> {
    if !text.contains("${") {
        return Ok(Vec::new());
    }
    Ok(parse(text)?
        .into_iter()
        .filter_map(|part| match part {
            Expression::Reference(reference) => Some(reference),
            _ => None,
        })
        .collect())
}

fn expression(inner: &str) -> Result<Expression, String> {
    let parts: Vec<&str> = inner.split('.').collect();
    let valid = |part: &&str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match parts.as_slice() {
        ["var", name] if valid(name) => Ok(Expression::Variable(name.to_string())),
        ["env", field] if valid(field) => Ok(Expression::Environment(field.to_string())),
        [provider, kind, name, output]
            if PROVIDERS.contains(provider) && [kind, name, output].iter().all(|p| valid(p)) =>
        {
            Ok(Expression::Reference(Reference {
                address: format!("{provider}.{kind}.{name}"),
                output: output.to_string(),
            }))
        }
        _ => Err(format!(
            "cannot understand `${{{inner}}}`: expected `${{var.NAME}}`, `${{env.name}}` or a \
             resource output `${{PROVIDER.TYPE.NAME.OUTPUT}}` with PROVIDER one of {}",
            PROVIDERS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_variables_and_references() {
        let parts = parse("postgres://${aws.db_instance.main.endpoint}:5432/${var.db}").unwrap();
        assert_eq!(
            parts,
            vec![
                Expression::Literal("postgres://".into()),
                Expression::Reference(Reference {
                    address: "aws.db_instance.main".into(),
                    output: "endpoint".into()
                }),
                Expression::Literal(":5432/".into()),
                Expression::Variable("db".into()),
            ]
        );
    }

    #[test]
    fn double_dollar_is_a_literal() {
        assert_eq!(
            parse("cost $${not.a.ref}").unwrap(),
            vec![Expression::Literal("cost ${not.a.ref}".into())]
        );
        assert_eq!(escape("cost ${x}"), "cost $${x}");
    }

    #[test]
    fn malformed_expressions_are_explained() {
        assert!(parse("${var.x").unwrap_err().contains("unterminated"));
        assert!(parse("${gcp.x.y.z}").unwrap_err().contains("PROVIDER"));
        assert!(parse("${var.}").is_err());
    }
}
