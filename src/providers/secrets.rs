//! Sensitive outputs (the RDS master password, the Redis AUTH token) are never in the state or
//! the plan: attributes that reference them keep the reference, and the value is read from
//! Secrets Manager only when a change runs, straight into the provider call.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::ProviderError;
use crate::blueprint::expression::{self, Expression};
use crate::state::State;

/// Where a sensitive output's value is kept: the output recording the secret's ARN, and the
/// JSON field inside the secret (`None` when the secret is the value itself).
pub fn location(kind: &str, output: &str) -> Option<(&'static str, Option<&'static str>)> {
    match (kind, output) {
        ("aws.db_instance", "password") => Some(("master_user_secret_arn", Some("password"))),
        ("aws.elasticache_replication_group", "auth_token") => {
            Some(("auth_token_secret_arn", None))
        }
        ("postgres.role", "password") => Some(("password_secret_arn", None)),
        _ => None,
    }
}

/// Puts back into recorded `attributes` the sensitive references that deleting a resource of
/// `kind` needs and that the state keeps only as digests: dropping a PostgreSQL database or
/// role logs in as the instance's master user. Returns whether it put any back.
pub fn restore_for_delete(kind: &str, attributes: &mut serde_json::Map<String, Value>) -> bool {
    use crate::resources::Spec;
    use crate::resources::dayone::{PostgresDatabase, PostgresRole};
    use crate::resources::rds::DbInstance;
    if kind != PostgresDatabase::KIND.name && kind != PostgresRole::KIND.name {
        return false;
    }
    let Some(instance) = attributes.get("instance").and_then(Value::as_str) else {
        return false;
    };
    let reference = crate::resources::output::<DbInstance>(instance, "password");
    attributes.insert("password".to_string(), Value::String(reference));
    true
}

/// One sensitive reference in a change's attributes and where its value is.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The reference as it stands in the attributes, `${ADDRESS.OUTPUT}`.
    reference: String,
    /// The secret's ARN.
    arn: String,
    /// The field inside the secret's JSON.
    field: Option<&'static str>,
}

/// The sensitive references in `desired`, located through the outputs recorded in `state`.
pub fn sealed(desired: &Value, state: &State) -> Result<Vec<Sealed>, ProviderError> {
    let mut found = Vec::new();
    let mut failure = None;
    crate::graph::visit_strings(desired, &mut |text| {
        if !text.contains("${") {
            return;
        }
        let Ok(parts) = expression::parse(text) else {
            return;
        };
        for part in parts {
            let Expression::Reference(reference) = part else {
                continue;
            };
            let Some((kind, _)) = reference.address.rsplit_once('.') else {
                continue;
            };
            let Some((arn_output, field)) = location(kind, &reference.output) else {
                continue;
            };
            let arn = state
                .resources
                .get(&reference.address)
                .and_then(|recorded| recorded.outputs.get(arn_output))
                .and_then(Value::as_str)
                .filter(|arn| !arn.is_empty());
            match arn {
                Some(arn) => found.push(Sealed {
                    reference: reference.to_string(),
                    arn: arn.to_string(),
                    field,
                }),
                None => {
                    failure = Some(ProviderError::Invalid(format!(
                        "{reference} has no value to read: {} recorded no {arn_output} \
                         (for Redis, the AUTH token exists only with transit encryption)",
                        reference.address
                    )))
                }
            }
        }
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(found),
    }
}

/// Reads secrets from Secrets Manager.
#[derive(Clone, Debug)]
pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
}

impl Secrets {
    /// Reads through `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// Replaces every sealed reference in `desired` with the secret's value; returns the
    /// version read of each secret, by ARN.
    pub async fn reveal(
        &self,
        desired: &mut Value,
        sealed: &[Sealed],
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let mut versions = BTreeMap::new();
        if sealed.is_empty() {
            return Ok(versions);
        }
        let mut secrets: HashMap<&str, String> = HashMap::new();
        let mut values: Vec<(&str, String)> = Vec::new();
        for item in sealed {
            if !secrets.contains_key(item.arn.as_str()) {
                let read = self
                    .client
                    .get_secret_value()
                    .secret_id(&item.arn)
                    .send()
                    .await
                    .map_err(|error| ProviderError::api("GetSecretValue", error))?;
                secrets.insert(
                    &item.arn,
                    read.secret_string().unwrap_or_default().to_string(),
                );
                if let Some(version) = read.version_id() {
                    versions.insert(item.arn.clone(), version.to_string());
                }
            }
            let text = secrets.get(item.arn.as_str()).cloned().unwrap_or_default();
            let value = match item.field {
                None => text,
                Some(field) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|json| json.get(field).and_then(Value::as_str).map(str::to_string))
                    .ok_or_else(|| {
                        ProviderError::Invalid(format!(
                            "secret {} has no JSON field {field} (for {})",
                            item.arn, item.reference
                        ))
                    })?,
            };
            values.push((item.reference.as_str(), value));
        }
        substitute(desired, &values);
        Ok(versions)
    }

    /// For each secret whose recorded version is no longer the current one (it was rotated):
    /// `ARN: VERSION -> VERSION`. Reads only metadata (DescribeSecret), never a value.
    pub async fn rotated(
        &self,
        recorded: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, ProviderError> {
        let mut rotated = Vec::new();
        for (arn, version) in recorded {
            let described = self
                .client
                .describe_secret()
                .secret_id(arn)
                .send()
                .await
                .map_err(|error| ProviderError::api("DescribeSecret", error))?;
            let current = described.version_ids_to_stages().and_then(|stages| {
                stages
                    .iter()
                    .find(|(_, stages)| stages.iter().any(|stage| stage == "AWSCURRENT"))
                    .map(|(id, _)| id.clone())
            });
            if let Some(current) = current
                && &current != version
            {
                rotated.push(format!(
                    "secret {arn} was rotated (version {version} -> {current}): the copy of its \
                     value is updated"
                ));
            }
        }
        Ok(rotated)
    }
}

fn substitute(value: &mut Value, values: &[(&str, String)]) {
    match value {
        Value::String(text) => {
            for (reference, secret) in values {
                if text.contains(reference) {
                    *text = text.replace(reference, secret);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| substitute(item, values)),
        Value::Object(entries) => entries
            .values_mut()
            .for_each(|item| substitute(item, values)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_references_to_kept_secrets_are_sealed() {
        let mut state = State::empty("b", "e");
        let desired = json!({"data": {
            "password": "${aws.db_instance.main.password}",
            "host": "db.example",
        }});
        let error = sealed(&desired, &state)
            .expect_err("not recorded")
            .to_string();
        assert!(error.contains("master_user_secret_arn"), "{error}");
        let recorded = serde_json::from_value(json!({
            "type": "aws.db_instance", "id": "main", "attributes": {},
            "outputs": {"master_user_secret_arn": "arn:secret"}
        }))
        .expect("recorded");
        state
            .resources
            .insert("aws.db_instance.main".into(), recorded);
        let found = sealed(&desired, &state).expect("sealed");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].arn, "arn:secret");
        let mut value = desired.clone();
        substitute(
            &mut value,
            &[(found[0].reference.as_str(), "s3cret".into())],
        );
        assert_eq!(value["data"]["password"], json!("s3cret"));
        assert_eq!(value["data"]["host"], json!("db.example"));
    }
}
