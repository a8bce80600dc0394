//! Kafka topics, through the brokers' admin API (librdkafka via rdkafka).
//!
//! Topics carry no tags, and brokers refuse topic configuration keys they do not know, so the
//! state is the record of which topics are trails': a topic that exists when trails would create
//! it is refused, unless the environment's own interrupted create made it (its intent is in the
//! state) or `trails import` names it. Kafka cannot remove partitions, so a topic with more than
//! declared is a conflict for a human to settle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::{Map, Value, json};

use super::{Applied, Provider, ProviderError, Read, recorded_spec, spec};
use crate::resources::dayone::Topic;
use crate::state::{Intent, Recorded};

/// How long one admin request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Registers the topic provider.
pub fn register(by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    by_kind.insert("kafka.topic", Box::new(TopicProvider));
}

struct TopicProvider;

/// An admin client for one cluster, over TLS when `tls` is given.
pub fn admin(
    bootstrap_servers: &str,
    tls: Option<&crate::kafkatls::Tls>,
) -> Result<Arc<Admin>, ProviderError> {
    crate::kafkatls::client(bootstrap_servers, tls)
        .set("socket.timeout.ms", "10000")
        .create()
        .map(Arc::new)
        .map_err(|error| ProviderError::api("connect to the Kafka brokers", error))
}

/// A Kafka admin client.
pub type Admin = AdminClient<DefaultClientContext>;

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// The number of partitions of `name`, or `None` when the brokers do not know the topic.
pub async fn partitions(
    admin: &Arc<Admin>,
    name: &str,
    timeout: Duration,
) -> Result<Option<usize>, ProviderError> {
    // Metadata requests block, so they run on a blocking thread.
    let admin = Arc::clone(admin);
    let topic = name.to_string();
    let metadata =
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(Some(&topic), timeout))
            .await
            .map_err(|error| ProviderError::Invalid(format!("metadata task failed: {error}")))?
            .map_err(|error| ProviderError::api("fetch topic metadata", error))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == name) else {
        return Ok(None);
    };
    match found.error() {
        None => Ok(Some(found.partitions().len())),
        Some(error)
            if RDKafkaErrorCode::from(error) == RDKafkaErrorCode::UnknownTopicOrPartition =>
        {
            Ok(None)
        }
        Some(error) => Err(ProviderError::Api {
            operation: format!("metadata of topic {name}"),
            message: RDKafkaErrorCode::from(error).to_string(),
        }),
    }
}

fn applied(topic: &Topic) -> Applied {
    let outputs = [
        ("name".to_string(), json!(topic.name)),
        ("partitions".to_string(), json!(topic.partitions)),
    ]
    .into_iter()
    .collect();
    Applied {
        id: topic.name.clone(),
        outputs,
    }
}

/// Grows the topic to the declared partitions and sets its declared configuration.
async fn converge(
    admin: &Arc<Admin>,
    topic: &Topic,
    config_changed: bool,
) -> Result<(), ProviderError> {
    let current = partitions(admin, &topic.name, REQUEST_TIMEOUT)
        .await?
        .ok_or_else(|| ProviderError::Conflict(format!("topic {} is gone", topic.name)))?;
    let wanted = topic.partitions as usize;
    if current > wanted {
        return Err(ProviderError::Conflict(format!(
            "topic {} has {current} partitions and the blueprint declares {wanted}; Kafka \
             cannot remove partitions: raise `partitions` to {current} or delete the topic",
            topic.name
        )));
    }
    if current < wanted {
        let results = admin
            .create_partitions(&[NewPartitions::new(&topic.name, wanted)], &options())
            .await
            .map_err(|error| ProviderError::api("CreatePartitions", error))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(ProviderError::Api {
                    operation: format!("CreatePartitions {name} to {wanted}"),
                    message: code.to_string(),
                });
            }
        }
    }
    if config_changed {
        // AlterConfigs replaces the topic's whole dynamic configuration: keys the blueprint no
        // longer lists go back to the broker's defaults.
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(&topic.name));
        for (key, value) in &topic.config {
            change = change.set(key, value);
        }
        let results = admin
            .alter_configs(&[change], &options())
            .await
            .map_err(|error| ProviderError::api("AlterConfigs", error))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(ProviderError::Api {
                    operation: format!("AlterConfigs of topic {}", topic.name),
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Provider for TopicProvider {
    async fn find(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        // `create` adopts an existing topic and brings it to the blueprint; a bare lookup here
        // would record a topic with the wrong partitions as if it were right.
        Ok(None)
    }

    /// The topic an interrupted create made: its CreateTopics carried the declared
    /// partitions and configuration.
    async fn find_intended(
        &self,
        _address: &str,
        desired: &Value,
        _intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        let topic: Topic = spec(desired)?;
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        Ok(partitions(&admin, &topic.name, REQUEST_TIMEOUT)
            .await?
            .map(|_| applied(&topic)))
    }

    async fn import(
        &self,
        address: &str,
        desired: &Value,
        id: &str,
    ) -> Result<Applied, ProviderError> {
        let topic: Topic = spec(desired)?;
        if topic.name != id {
            return Err(ProviderError::Invalid(format!(
                "{address} is topic `{}` in the blueprint, not `{id}`",
                topic.name
            )));
        }
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        // Overrides it has beyond the declared ones stay (a `diff` shows them); the declared
        // configuration is set when there is one.
        converge(&admin, &topic, !topic.config.is_empty()).await?;
        Ok(applied(&topic))
    }

    async fn create(
        &self,
        address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let topic: Topic = spec(desired)?;
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        let partitions = i32::try_from(topic.partitions)
            .map_err(|_| ProviderError::Invalid(format!("{} partitions", topic.partitions)))?;
        let replication = i32::try_from(topic.replication_factor).map_err(|_| {
            ProviderError::Invalid(format!("replication factor {}", topic.replication_factor))
        })?;
        let mut new = NewTopic::new(
            &topic.name,
            partitions,
            TopicReplication::Fixed(replication),
        );
        for (key, value) in &topic.config {
            new = new.set(key, value);
        }
        let results = admin
            .create_topics(&[new], &options())
            .await
            .map_err(|error| ProviderError::api("CreateTopics", error))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(ProviderError::NotOurs(format!(
                        "Kafka topic {name} already exists and this environment did not \
                         record making it: trails does not take it over. Rename it in the \
                         blueprint, delete it, or adopt it explicitly with `trails import \
                         {address} {name}`",
                        name = topic.name
                    )));
                }
                Err((name, code)) => {
                    return Err(ProviderError::Api {
                        operation: format!("CreateTopics {name}"),
                        message: code.to_string(),
                    });
                }
            }
        }
        Ok(applied(&topic))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let topic: Topic = spec(desired)?;
        let before: Topic = recorded_spec(recorded)?;
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        converge(&admin, &topic, before.config != topic.config).await?;
        Ok(applied(&topic))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let topic: Topic = recorded_spec(recorded)?;
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        let results = admin
            .delete_topics(&[topic.name.as_str()], &options())
            .await
            .map_err(|error| ProviderError::api("DeleteTopics", error))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(ProviderError::Api {
                        operation: format!("DeleteTopics {name}"),
                        message: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The topic's partitions and configuration: the keys trails set and any other override
    /// (`DynamicTopic`; the broker's defaults are not trails' to compare); gone when the
    /// brokers do not know the topic.
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let topic: Topic = recorded_spec(recorded)?;
        let admin = admin(&topic.bootstrap_servers, topic.tls.as_ref())?;
        let Some(partitions) = partitions(&admin, &topic.name, REQUEST_TIMEOUT).await? else {
            return Ok(Some(Read::Gone));
        };
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic(&topic.name)], &options())
            .await
            .map_err(|error| ProviderError::api("DescribeConfigs", error))?;
        let mut config = BTreeMap::new();
        for result in described {
            let resource = result.map_err(|code| ProviderError::Api {
                operation: format!("DescribeConfigs of topic {}", topic.name),
                message: code.to_string(),
            })?;
            for entry in resource.entries {
                // The effective value of every key trails set (whatever the broker says its
                // source is: tansu calls them defaults), and overrides set by hand.
                let declared = topic.config.contains_key(&entry.name);
                if (declared || entry.source == ConfigSource::DynamicTopic)
                    && let Some(value) = entry.value
                {
                    config.insert(entry.name, value);
                }
            }
        }
        let mut live = Map::new();
        live.insert("partitions".into(), json!(partitions));
        live.insert("config".into(), json!(config));
        Ok(Some(Read::Live(live)))
    }
}
