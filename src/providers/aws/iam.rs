//! IAM roles (trust policy, inline policies, managed policy attachments) and the cluster's
//! OIDC provider, through which Kubernetes service accounts assume their IRSA roles.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use serde_json::{Map, Value, json};

use super::{
    AwsProvider, Context, Registration, check_owns, gone_is_fine, is_not_found, none_if_missing,
    recorded_output, recorded_spec, tag_changes,
};
use crate::providers::{Applied, ProviderError, Read, spec};
use crate::resources::Spec as _;
use crate::resources::iam::{IamRole, OidcProvider};
use crate::state::Recorded;

/// The iam types, each with its provider.
pub const TYPES: &[Registration] = &[
    (IamRole::KIND, |context| {
        Box::new(RoleProvider(context.clone()))
    }),
    (OidcProvider::KIND, |context| {
        Box::new(OidcProviderProvider(context.clone()))
    }),
];

fn tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, ProviderError> {
    tags.iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|error| ProviderError::Invalid(format!("tag {key}: {error}")))
        })
        .collect()
}

fn tag_pairs(tags: &[Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|tag| (tag.key(), tag.value()))
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tag_pairs(tags)
        .filter(|(key, _)| !key.starts_with("aws:"))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A policy document as IAM returns it: URL-encoded JSON (the emulator's may be plain).
fn document(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(text))
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A policy in the one form IAM cannot tell apart from another: a one-element list is its
/// element (`"Action": ["s3:GetObject"]` is `"Action": "s3:GetObject"`).
fn policy(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.len() == 1 => policy(&items[0]),
        Value::Array(items) => Value::Array(items.iter().map(policy).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), policy(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl RoleProvider {
    /// The role's trust policy, attached and inline policies and tags: one call for the role,
    /// one per page of attachments and of inline names, one per inline policy.
    async fn read_role(&self, name: &str) -> Result<Option<Map<String, Value>>, ProviderError> {
        let iam = &self.0.iam;
        let role = match iam.get_role().role_name(name).send().await {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("GetRole", error)),
        };
        let Some(role) = role.role() else {
            return Ok(None);
        };
        let mut attached = Vec::new();
        let mut pages = iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProviderError::api("ListAttachedRolePolicies", e))?;
            attached.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|policy| policy.policy_arn().map(str::to_string)),
            );
        }
        let mut inline = Map::new();
        let mut pages = iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProviderError::api("ListRolePolicies", e))?;
            for policy_name in page.policy_names() {
                let answer = iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("GetRolePolicy", e))?;
                inline.insert(policy_name.clone(), document(answer.policy_document()));
            }
        }
        let mut live = Map::new();
        live.insert(
            "assume_role_policy".into(),
            role.assume_role_policy_document()
                .map(document)
                .unwrap_or(Value::Null),
        );
        live.insert("managed_policy_arns".into(), json!(attached));
        live.insert("inline_policies".into(), Value::Object(inline));
        live.insert("tags".into(), json!(tag_map(role.tags())));
        Ok(Some(live))
    }
}

struct RoleProvider(Context);

impl RoleProvider {
    /// Brings the role's trust policy, inline policies and attachments from `before` to `after`.
    async fn converge(
        &self,
        before: Option<&IamRole>,
        after: &IamRole,
    ) -> Result<(), ProviderError> {
        let iam = &self.0.iam;
        let name = &after.name;
        if before.is_some_and(|before| before.assume_role_policy != after.assume_role_policy) {
            iam.update_assume_role_policy()
                .role_name(name)
                .policy_document(after.assume_role_policy.to_string())
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateAssumeRolePolicy", e))?;
        }
        let empty = BTreeMap::new();
        let inline_before = before.map_or(&empty, |before| &before.inline_policies);
        for (policy, document) in &after.inline_policies {
            if inline_before.get(policy) != Some(document) {
                iam.put_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .policy_document(document.to_string())
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("PutRolePolicy", e))?;
            }
        }
        for policy in inline_before.keys() {
            if !after.inline_policies.contains_key(policy) {
                gone_is_fine(
                    iam.delete_role_policy()
                        .role_name(name)
                        .policy_name(policy)
                        .send()
                        .await,
                    "DeleteRolePolicy",
                )?;
            }
        }
        let attached_before: BTreeSet<&String> = before
            .map(|before| before.managed_policy_arns.iter().collect())
            .unwrap_or_default();
        let attached_after: BTreeSet<&String> = after.managed_policy_arns.iter().collect();
        for arn in attached_after.difference(&attached_before) {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(*arn)
                .send()
                .await
                .map_err(|e| ProviderError::api("AttachRolePolicy", e))?;
        }
        for arn in attached_before.difference(&attached_after) {
            gone_is_fine(
                iam.detach_role_policy()
                    .role_name(name)
                    .policy_arn(*arn)
                    .send()
                    .await,
                "DetachRolePolicy",
            )?;
        }
        Ok(())
    }
}

fn role_applied(name: &str, arn: &str) -> Applied {
    let mut outputs = Map::new();
    outputs.insert("arn".into(), json!(arn));
    outputs.insert("name".into(), json!(name));
    Applied {
        id: name.to_string(),
        outputs,
    }
}

#[async_trait]
impl AwsProvider for RoleProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let role: IamRole = recorded_spec(recorded)?;
        Ok(Some(match self.read_role(&role.name).await? {
            Some(live) => Read::Live(live),
            None => Read::Gone,
        }))
    }

    fn canonical(&self, mut attributes: Map<String, Value>) -> Map<String, Value> {
        if let Some(trust) = attributes.get_mut("assume_role_policy") {
            *trust = policy(trust);
        }
        if let Some(Value::Object(inline)) = attributes.get_mut("inline_policies") {
            for document in inline.values_mut() {
                *document = policy(document);
            }
        }
        attributes
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let role: IamRole = spec(desired)?;
        let found = match self.0.iam.get_role().role_name(&role.name).send().await {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("GetRole", error)),
        };
        let Some(existing) = found.role() else {
            return Ok(None);
        };
        check_owns(
            tag_pairs(existing.tags()),
            &role.tags,
            &format!("IAM role {}", role.name),
        )?;
        // The create may have stopped before its policies: attach and put them all again
        // (both are idempotent), and set the trust policy in case it differs.
        let mut unknown = role.clone();
        unknown.assume_role_policy = Value::Null;
        unknown.inline_policies.clear();
        unknown.managed_policy_arns.clear();
        self.converge(Some(&unknown), &role).await?;
        Ok(Some(role_applied(&role.name, existing.arn())))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let role: IamRole = spec(desired)?;
        let created = self
            .0
            .iam
            .create_role()
            .role_name(&role.name)
            .assume_role_policy_document(role.assume_role_policy.to_string())
            .set_tags(Some(tags(&role.tags)?))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateRole", e))?;
        let arn = created
            .role()
            .map(|created| created.arn().to_string())
            .unwrap_or_default();
        self.converge(None, &role).await?;
        Ok(role_applied(&role.name, &arn))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let role: IamRole = spec(desired)?;
        let before: IamRole = recorded_spec(previous)?;
        self.converge(Some(&before), &role).await?;
        let (removed, set) = tag_changes(&before.tags, &role.tags);
        if !removed.is_empty() {
            self.0
                .iam
                .untag_role()
                .role_name(&role.name)
                .set_tag_keys(Some(removed))
                .send()
                .await
                .map_err(|e| ProviderError::api("UntagRole", e))?;
        }
        if !set.is_empty() {
            self.0
                .iam
                .tag_role()
                .role_name(&role.name)
                .set_tags(Some(tags(&set)?))
                .send()
                .await
                .map_err(|e| ProviderError::api("TagRole", e))?;
        }
        Ok(role_applied(&role.name, &recorded_output(previous, "arn")))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let role: IamRole = recorded_spec(previous)?;
        let iam = &self.0.iam;
        // IAM refuses to delete a role that still has policies or instance profiles.
        let attached = match iam
            .list_attached_role_policies()
            .role_name(&role.name)
            .max_items(1000)
            .send()
            .await
        {
            Ok(attached) => attached,
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(ProviderError::api("ListAttachedRolePolicies", error)),
        };
        for policy in attached.attached_policies() {
            if let Some(arn) = policy.policy_arn() {
                gone_is_fine(
                    iam.detach_role_policy()
                        .role_name(&role.name)
                        .policy_arn(arn)
                        .send()
                        .await,
                    "DetachRolePolicy",
                )?;
            }
        }
        let inline = iam
            .list_role_policies()
            .role_name(&role.name)
            .max_items(1000)
            .send()
            .await
            .map_err(|e| ProviderError::api("ListRolePolicies", e))?;
        for policy in inline.policy_names() {
            gone_is_fine(
                iam.delete_role_policy()
                    .role_name(&role.name)
                    .policy_name(policy)
                    .send()
                    .await,
                "DeleteRolePolicy",
            )?;
        }
        let profiles = iam
            .list_instance_profiles_for_role()
            .role_name(&role.name)
            .max_items(1000)
            .send()
            .await
            .map_err(|e| ProviderError::api("ListInstanceProfilesForRole", e))?;
        for profile in profiles.instance_profiles() {
            gone_is_fine(
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(profile.instance_profile_name())
                    .role_name(&role.name)
                    .send()
                    .await,
                "RemoveRoleFromInstanceProfile",
            )?;
        }
        gone_is_fine(
            iam.delete_role().role_name(&role.name).send().await,
            "DeleteRole",
        )
    }
}

struct OidcProviderProvider(Context);

/// The issuer as IAM names it: the URL without its scheme.
fn issuer(url: &str) -> &str {
    url.strip_prefix("https://").unwrap_or(url)
}

fn oidc_applied(arn: &str, url: &str) -> Applied {
    let mut outputs = Map::new();
    outputs.insert("arn".into(), json!(arn));
    outputs.insert("issuer".into(), json!(issuer(url)));
    Applied {
        id: arn.to_string(),
        outputs,
    }
}

impl OidcProviderProvider {
    async fn sync_client_ids(
        &self,
        arn: &str,
        before: &[String],
        after: &[String],
    ) -> Result<(), ProviderError> {
        for client_id in after.iter().filter(|id| !before.contains(id)) {
            self.0
                .iam
                .add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .client_id(client_id)
                .send()
                .await
                .map_err(|e| ProviderError::api("AddClientIDToOpenIDConnectProvider", e))?;
        }
        for client_id in before.iter().filter(|id| !after.contains(id)) {
            self.0
                .iam
                .remove_client_id_from_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .client_id(client_id)
                .send()
                .await
                .map_err(|e| ProviderError::api("RemoveClientIDFromOpenIDConnectProvider", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for OidcProviderProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let Some(arn) = recorded.id.as_deref() else {
            return Err(ProviderError::Invalid(
                "the state records no ARN for this OIDC provider".into(),
            ));
        };
        let Some(found) = none_if_missing(
            self.0
                .iam
                .get_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .send()
                .await,
            "GetOpenIDConnectProvider",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let mut live = Map::new();
        live.insert("url".into(), json!(found.url()));
        live.insert("client_ids".into(), json!(found.client_id_list()));
        live.insert("tags".into(), json!(tag_map(found.tags())));
        Ok(Some(Read::Live(live)))
    }

    fn canonical(&self, mut attributes: Map<String, Value>) -> Map<String, Value> {
        // IAM keeps the issuer without its scheme.
        if let Some(Value::String(url)) = attributes.get_mut("url") {
            *url = issuer(url).to_string();
        }
        attributes
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let provider: OidcProvider = spec(desired)?;
        let listed = self
            .0
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| ProviderError::api("ListOpenIDConnectProviders", e))?;
        // The ARN ends with the issuer: `arn:aws:iam::ACCOUNT:oidc-provider/ISSUER`.
        let suffix = format!("oidc-provider/{}", issuer(&provider.url));
        let Some(arn) = listed
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|entry| entry.arn())
            .find(|arn| arn.ends_with(&suffix))
        else {
            return Ok(None);
        };
        let existing = self
            .0
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .map_err(|e| ProviderError::api("GetOpenIDConnectProvider", e))?;
        check_owns(
            tag_pairs(existing.tags()),
            &provider.tags,
            &format!("OIDC provider {}", provider.url),
        )?;
        self.sync_client_ids(arn, existing.client_id_list(), &provider.client_ids)
            .await?;
        Ok(Some(oidc_applied(arn, &provider.url)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let provider: OidcProvider = spec(desired)?;
        // No thumbprint: IAM trusts the root CAs of EKS's issuers on its own.
        let created = self
            .0
            .iam
            .create_open_id_connect_provider()
            .url(&provider.url)
            .set_client_id_list(Some(provider.client_ids.clone()))
            .set_tags(Some(tags(&provider.tags)?))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateOpenIDConnectProvider", e))?;
        let arn = created
            .open_id_connect_provider_arn()
            .ok_or_else(|| {
                ProviderError::Invalid("CreateOpenIDConnectProvider returned no ARN".into())
            })?
            .to_string();
        Ok(oidc_applied(&arn, &provider.url))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let provider: OidcProvider = spec(desired)?;
        let before: OidcProvider = recorded_spec(previous)?;
        let arn = recorded_output(previous, "arn");
        self.sync_client_ids(&arn, &before.client_ids, &provider.client_ids)
            .await?;
        let (removed, set) = tag_changes(&before.tags, &provider.tags);
        if !removed.is_empty() {
            self.0
                .iam
                .untag_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .set_tag_keys(Some(removed))
                .send()
                .await
                .map_err(|e| ProviderError::api("UntagOpenIDConnectProvider", e))?;
        }
        if !set.is_empty() {
            self.0
                .iam
                .tag_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .set_tags(Some(tags(&set)?))
                .send()
                .await
                .map_err(|e| ProviderError::api("TagOpenIDConnectProvider", e))?;
        }
        Ok(oidc_applied(&arn, &provider.url))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        gone_is_fine(
            self.0
                .iam
                .delete_open_id_connect_provider()
                .open_id_connect_provider_arn(recorded_output(previous, "arn"))
                .send()
                .await,
            "DeleteOpenIDConnectProvider",
        )
    }
}
