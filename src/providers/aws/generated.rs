//! Secrets trails generates and keeps in Secrets Manager (a Redis group's AUTH token, a
//! PostgreSQL role's password): made once with the owner's tags, reused by a resumed or a later
//! run, and deleted only when they carry those tags.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;

use super::{check_owns, gone_is_fine, is_not_found};
use crate::providers::ProviderError;

/// One generated secret: where it is kept and whose it is.
pub struct Generated<'a> {
    /// Its name in Secrets Manager.
    pub name: String,
    /// What it is, for the console.
    pub description: String,
    /// The owner's tags (trails' ownership tags among them).
    pub tags: &'a BTreeMap<String, String>,
}

/// 64 hex characters from the operating system's random source (two v4 UUIDs): printable, and
/// free of the characters passwords and tokens forbid (quotes, `@`, `/`).
pub fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Generated<'_> {
    /// The secret, if there is one; refused when it does not carry the owner's tags.
    pub async fn find(
        &self,
        secrets: &Client,
    ) -> Result<Option<DescribeSecretOutput>, ProviderError> {
        let existing = match secrets.describe_secret().secret_id(&self.name).send().await {
            Ok(existing) => existing,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeSecret", error)),
        };
        check_owns(
            existing
                .tags()
                .iter()
                .filter_map(|tag| tag.key().zip(tag.value())),
            self.tags,
            &format!("secret {}", self.name),
        )?;
        Ok(Some(existing))
    }

    /// The value and the ARN: the existing secret's (a run interrupted after storing it, or
    /// a later run), otherwise a new secret holding [`random`].
    pub async fn ensure(&self, secrets: &Client) -> Result<(String, String), ProviderError> {
        if let Some(existing) = self.find(secrets).await? {
            let value = secrets
                .get_secret_value()
                .secret_id(&self.name)
                .send()
                .await
                .map_err(|e| ProviderError::api("GetSecretValue", e))?;
            return Ok((
                value.secret_string().unwrap_or_default().to_string(),
                existing.arn().unwrap_or_default().to_string(),
            ));
        }
        let value = random();
        let created = secrets
            .create_secret()
            .name(&self.name)
            .description(&self.description)
            .secret_string(&value)
            .set_tags(Some(
                self.tags
                    .iter()
                    .map(|(key, value)| {
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key(key)
                            .value(value)
                            .build()
                    })
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateSecret", e))?;
        Ok((value, created.arn().unwrap_or_default().to_string()))
    }

    /// Deletes the secret, without a recovery window (what it protects is gone, and a new one
    /// of the same name may need its secret at once), if it exists and carries the tags.
    pub async fn delete(&self, secrets: &Client) -> Result<(), ProviderError> {
        let Some(existing) = self.find(secrets).await? else {
            return Ok(());
        };
        gone_is_fine(
            secrets
                .delete_secret()
                .set_secret_id(existing.arn().map(str::to_string))
                .force_delete_without_recovery(true)
                .send()
                .await,
            "DeleteSecret",
        )
    }
}
