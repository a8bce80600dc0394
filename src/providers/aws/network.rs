//! VPC, subnets, internet gateway, elastic IPs, NAT gateways, route tables, security groups.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, IpPermission, IpRange, ResourceType, UserIdGroupPair,
};
use serde_json::{Map, Value, json};

use super::described::{self, by_id, ec2_read, listing};
use super::{
    AwsProvider, Context, Registration, gone_is_fine, is_not_found, ownership_filters,
    recorded_spec, sweep, tag_specification,
};
use crate::providers::{Applied, ProviderError, Read, spec};
use crate::resources::Spec as _;
use crate::resources::network::{
    AclRule, Eip, FlowLog, InternetGateway, NatGateway, NetworkAcl, Route, RouteTable,
    SecurityGroup, SecurityRule, Subnet, Vpc,
};
use crate::state::Recorded;

/// The network types, each with its provider.
pub const TYPES: &[Registration] = &[
    (Vpc::KIND, |context| Box::new(VpcProvider(context.clone()))),
    (Subnet::KIND, |context| {
        Box::new(SubnetProvider(context.clone()))
    }),
    (InternetGateway::KIND, |context| {
        Box::new(InternetGatewayProvider(context.clone()))
    }),
    (Eip::KIND, |context| Box::new(EipProvider(context.clone()))),
    (NatGateway::KIND, |context| {
        Box::new(NatGatewayProvider(context.clone()))
    }),
    (RouteTable::KIND, |context| {
        Box::new(RouteTableProvider(context.clone()))
    }),
    (SecurityGroup::KIND, |context| {
        Box::new(SecurityGroupProvider(context.clone()))
    }),
    (NetworkAcl::KIND, |context| {
        Box::new(NetworkAclProvider(context.clone()))
    }),
    (FlowLog::KIND, |context| {
        Box::new(FlowLogProvider(context.clone()))
    }),
];

fn outputs(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect()
}

/// True when an EC2 resource carries the ownership tags of the desired one. Checked here as
/// well as in the request's filters: adopting the wrong resource is worse than creating one.
fn is_ours(tags: &[aws_sdk_ec2::types::Tag], desired: &BTreeMap<String, String>) -> bool {
    super::owns(
        tags.iter().filter_map(|tag| tag.key().zip(tag.value())),
        desired,
    )
}

/// The result of a call that only needs the new resource's id.
fn only_id(id: impl Into<String>) -> Applied {
    let id = id.into();
    Applied {
        outputs: outputs(&[("id", &id)]),
        id,
    }
}

/// The environment a resource's tags name, for the leftovers destroy removes with it.
fn environment(tags: &BTreeMap<String, String>) -> Option<sweep::Owner<'_>> {
    Some(sweep::Owner::Environment {
        blueprint: tags.get("trails:blueprint")?,
        environment: tags.get("trails:environment")?,
    })
}

fn no_id(operation: &str) -> ProviderError {
    ProviderError::Invalid(format!("{operation} returned no id"))
}

fn recorded_id(recorded: &Recorded) -> Result<&str, ProviderError> {
    recorded
        .id
        .as_deref()
        .ok_or_else(|| ProviderError::Invalid("the state records no id for this resource".into()))
}

/// Brings an EC2 resource's tags from `before` to `after`.
async fn sync_tags(
    context: &Context,
    id: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    let removed: Vec<_> = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .map(|key| aws_sdk_ec2::types::Tag::builder().key(key).build())
        .collect();
    if !removed.is_empty() {
        context
            .ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(removed))
            .send()
            .await
            .map_err(|e| ProviderError::api("DeleteTags", e))?;
    }
    if before != after {
        context
            .ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(super::ec2_tags(after)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateTags", e))?;
    }
    Ok(())
}

struct VpcProvider(Context);

impl VpcProvider {
    async fn set_dns(&self, id: &str, vpc: &Vpc) -> Result<(), ProviderError> {
        // EC2 takes one DNS attribute per call.
        self.0
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_support(
                AttributeBooleanValue::builder()
                    .value(vpc.enable_dns_support)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ProviderError::api("ModifyVpcAttribute", e))?;
        self.0
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_hostnames(
                AttributeBooleanValue::builder()
                    .value(vpc.enable_dns_hostnames)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ProviderError::api("ModifyVpcAttribute", e))?;
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for VpcProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let id = recorded_id(recorded)?;
        let context = &self.0;
        let read = described::read(
            context,
            "vpc",
            id,
            &recorded.attributes,
            listing!(
                context,
                describe_vpcs.set_filters,
                vpcs,
                vpc_id,
                "DescribeVpcs",
                |vpc| Some(described::vpc(vpc))
            ),
            by_id!(
                context,
                describe_vpcs.vpc_ids,
                id,
                vpcs,
                "DescribeVpcs",
                |vpc| Some(described::vpc(vpc))
            ),
        )
        .await?;
        let Read::Live(mut live) = read else {
            return Ok(Some(read));
        };
        // EC2 answers one DNS attribute per call, and only for one VPC at a time.
        for (attribute, key) in [
            (
                aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
                "enable_dns_support",
            ),
            (
                aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
                "enable_dns_hostnames",
            ),
        ] {
            let answer = described::none_if_missing(
                context
                    .ec2
                    .describe_vpc_attribute()
                    .vpc_id(id)
                    .attribute(attribute)
                    .send()
                    .await,
                "DescribeVpcAttribute",
            )?;
            let Some(answer) = answer else {
                return Ok(Some(Read::Gone));
            };
            let flag = answer
                .enable_dns_support()
                .or(answer.enable_dns_hostnames())
                .and_then(|value| value.value())
                .unwrap_or(false);
            live.insert(key.into(), json!(flag));
        }
        Ok(Some(Read::Live(live)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let vpc: Vpc = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_vpcs()
            .set_filters(Some(ownership_filters(&vpc.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeVpcs", e))?;
        Ok(found
            .vpcs()
            .iter()
            .find(|v| is_ours(v.tags(), &vpc.tags))
            .and_then(|v| v.vpc_id())
            .map(|id| Applied {
                id: id.to_string(),
                outputs: outputs(&[("id", id), ("cidr_block", &vpc.cidr_block)]),
            }))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let vpc: Vpc = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_vpc()
            .cidr_block(&vpc.cidr_block)
            .tag_specifications(tag_specification(ResourceType::Vpc, &vpc.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateVpc", e))?;
        let id = created
            .vpc()
            .and_then(|v| v.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateVpc"))?;
        self.set_dns(&id, &vpc).await?;
        Ok(Applied {
            outputs: outputs(&[("id", &id), ("cidr_block", &vpc.cidr_block)]),
            id,
        })
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let vpc: Vpc = spec(desired)?;
        let before: Vpc = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        if before.enable_dns_support != vpc.enable_dns_support
            || before.enable_dns_hostnames != vpc.enable_dns_hostnames
        {
            self.set_dns(id, &vpc).await?;
        }
        sync_tags(&self.0, id, &before.tags, &vpc.tags).await?;
        Ok(Applied {
            id: id.to_string(),
            outputs: outputs(&[("id", id), ("cidr_block", &vpc.cidr_block)]),
        })
    }

    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let id = recorded_id(recorded)?;
        if self.0.run.destroying {
            let vpc: Vpc = recorded_spec(recorded)?;
            if let Some(owner) = environment(&vpc.tags) {
                sweep::remove(&self.0, address, owner, sweep::Scope::Vpc(id)).await?;
            }
        }
        match self.0.ec2.delete_vpc().vpc_id(id).send().await {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) if error.code() == Some("DependencyViolation") => {
                let left = sweep::remaining_in_vpc(&self.0, id).await;
                Err(ProviderError::Conflict(format!(
                    "the VPC {id} still holds {}; they do not carry this environment's tags, \
                     so trails leaves them: remove them and run destroy again",
                    if left.is_empty() {
                        "something AWS did not list".to_string()
                    } else {
                        sweep::list(&left)
                    }
                )))
            }
            Err(error) => Err(ProviderError::api("DeleteVpc", error)),
        }
    }
}

struct SubnetProvider(Context);

impl SubnetProvider {
    async fn set_public_ip(&self, id: &str, subnet: &Subnet) -> Result<(), ProviderError> {
        self.0
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(
                AttributeBooleanValue::builder()
                    .value(subnet.map_public_ip_on_launch)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| ProviderError::api("ModifySubnetAttribute", e))?;
        Ok(())
    }

    fn applied(id: &str) -> Applied {
        Applied {
            id: id.to_string(),
            outputs: outputs(&[("id", id), ("arn", id)]),
        }
    }
}

#[async_trait]
impl AwsProvider for SubnetProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "subnet",
            describe_subnets.set_filters / subnet_ids,
            subnets,
            subnet_id,
            "DescribeSubnets",
            |subnet| Some(described::subnet(subnet))
        )
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let subnet: Subnet = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_subnets()
            .set_filters(Some(ownership_filters(&subnet.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeSubnets", e))?;
        Ok(found
            .subnets()
            .iter()
            .find(|s| is_ours(s.tags(), &subnet.tags))
            .map(|s| {
                let mut applied = Self::applied(s.subnet_id().unwrap_or_default());
                if let Some(arn) = s.subnet_arn() {
                    applied.outputs.insert("arn".into(), json!(arn));
                }
                applied
            }))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let subnet: Subnet = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_subnet()
            .vpc_id(&subnet.vpc_id)
            .cidr_block(&subnet.cidr_block)
            .availability_zone(&subnet.availability_zone)
            .tag_specifications(tag_specification(ResourceType::Subnet, &subnet.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateSubnet", e))?;
        let created = created
            .subnet()
            .ok_or_else(|| ProviderError::Invalid("CreateSubnet returned no subnet".into()))?;
        let id = created.subnet_id().unwrap_or_default().to_string();
        if subnet.map_public_ip_on_launch {
            self.set_public_ip(&id, &subnet).await?;
        }
        let mut applied = Self::applied(&id);
        if let Some(arn) = created.subnet_arn() {
            applied.outputs.insert("arn".into(), json!(arn));
        }
        Ok(applied)
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let subnet: Subnet = spec(desired)?;
        let before: Subnet = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        if before.map_public_ip_on_launch != subnet.map_public_ip_on_launch {
            self.set_public_ip(id, &subnet).await?;
        }
        sync_tags(&self.0, id, &before.tags, &subnet.tags).await?;
        Ok(Applied {
            id: id.to_string(),
            outputs: recorded.outputs.clone(),
        })
    }

    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let id = recorded_id(recorded)?;
        if self.0.run.destroying {
            let subnet: Subnet = recorded_spec(recorded)?;
            if let Some(owner) = environment(&subnet.tags) {
                sweep::remove(&self.0, address, owner, sweep::Scope::Subnet(id)).await?;
            }
        }
        gone_is_fine(
            self.0.ec2.delete_subnet().subnet_id(id).send().await,
            "DeleteSubnet",
        )
    }
}

struct InternetGatewayProvider(Context);

impl InternetGatewayProvider {
    async fn attach(&self, id: &str, vpc_id: &str) -> Result<(), ProviderError> {
        self.0
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| ProviderError::api("AttachInternetGateway", e))?;
        Ok(())
    }

    async fn detach(&self, id: &str, vpc_id: &str) -> Result<(), ProviderError> {
        match self
            .0
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) || error.code() == Some("Gateway.NotAttached") => {
                Ok(())
            }
            Err(error) => Err(ProviderError::api("DetachInternetGateway", error)),
        }
    }
}

#[async_trait]
impl AwsProvider for InternetGatewayProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "internet_gateway",
            describe_internet_gateways.set_filters / internet_gateway_ids,
            internet_gateways,
            internet_gateway_id,
            "DescribeInternetGateways",
            |gateway| Some(described::internet_gateway(gateway))
        )
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let gateway: InternetGateway = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(ownership_filters(&gateway.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeInternetGateways", e))?;
        let Some(existing) = found
            .internet_gateways()
            .iter()
            .find(|g| is_ours(g.tags(), &gateway.tags))
        else {
            return Ok(None);
        };
        let id = existing
            .internet_gateway_id()
            .unwrap_or_default()
            .to_string();
        let attached = existing
            .attachments()
            .iter()
            .any(|a| a.vpc_id() == Some(gateway.vpc_id.as_str()));
        if !attached {
            self.attach(&id, &gateway.vpc_id).await?;
        }
        Ok(Some(only_id(id)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let gateway: InternetGateway = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_specification(
                ResourceType::InternetGateway,
                &gateway.tags,
            ))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateInternetGateway", e))?;
        let id = created
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateInternetGateway"))?;
        self.attach(&id, &gateway.vpc_id).await?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let gateway: InternetGateway = spec(desired)?;
        let before: InternetGateway = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        if before.vpc_id != gateway.vpc_id {
            self.detach(id, &before.vpc_id).await?;
            self.attach(id, &gateway.vpc_id).await?;
        }
        sync_tags(&self.0, id, &before.tags, &gateway.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let gateway: InternetGateway = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        self.detach(id, &gateway.vpc_id).await?;
        gone_is_fine(
            self.0
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await,
            "DeleteInternetGateway",
        )
    }
}

struct EipProvider(Context);

#[async_trait]
impl AwsProvider for EipProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let id = recorded_id(recorded)?;
        let context = &self.0;
        // DescribeAddresses has no pages: one call answers for every address of the region.
        described::read(
            context,
            "eip",
            id,
            &recorded.attributes,
            |filters| async move {
                let answer = context
                    .ec2
                    .describe_addresses()
                    .set_filters(Some(filters))
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("DescribeAddresses", e))?;
                Ok(answer
                    .addresses()
                    .iter()
                    .filter_map(|address| {
                        Some((
                            address.allocation_id()?.to_string(),
                            described::eip(address),
                        ))
                    })
                    .collect())
            },
            by_id!(
                context,
                describe_addresses.allocation_ids,
                id,
                addresses,
                "DescribeAddresses",
                |address| Some(described::eip(address))
            ),
        )
        .await
        .map(Some)
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let eip: Eip = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_addresses()
            .set_filters(Some(ownership_filters(&eip.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeAddresses", e))?;
        Ok(found
            .addresses()
            .iter()
            .find(|a| is_ours(a.tags(), &eip.tags))
            .map(|address| {
                let id = address.allocation_id().unwrap_or_default();
                Applied {
                    id: id.to_string(),
                    outputs: outputs(&[
                        ("id", id),
                        ("public_ip", address.public_ip().unwrap_or_default()),
                    ]),
                }
            }))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let eip: Eip = spec(desired)?;
        let allocated = self
            .0
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_specification(ResourceType::ElasticIp, &eip.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("AllocateAddress", e))?;
        let id = allocated.allocation_id().unwrap_or_default().to_string();
        Ok(Applied {
            outputs: outputs(&[
                ("id", &id),
                ("public_ip", allocated.public_ip().unwrap_or_default()),
            ]),
            id,
        })
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let eip: Eip = spec(desired)?;
        let before: Eip = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        sync_tags(&self.0, id, &before.tags, &eip.tags).await?;
        Ok(Applied {
            id: id.to_string(),
            outputs: recorded.outputs.clone(),
        })
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        gone_is_fine(
            self.0
                .ec2
                .release_address()
                .allocation_id(recorded_id(recorded)?)
                .send()
                .await,
            "ReleaseAddress",
        )
    }
}

struct NatGatewayProvider(Context);

impl NatGatewayProvider {
    async fn wait_available(&self, id: &str) -> Result<(), ProviderError> {
        self.0
            .ec2
            .wait_until_nat_gateway_available()
            .nat_gateway_ids(id)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| match error {
                aws_sdk_ec2::waiters::nat_gateway_available::WaitUntilNatGatewayAvailableError::ExceededMaxWait(_) => {
                    ProviderError::Timeout {
                        what: format!("NAT gateway {id} to become available"),
                        seconds: self.0.wait_timeout.as_secs(),
                    }
                }
                other => ProviderError::api("waiting for NatGatewayAvailable", other),
            })?;
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for NatGatewayProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "nat_gateway",
            describe_nat_gateways.set_filter / nat_gateway_ids,
            nat_gateways,
            nat_gateway_id,
            "DescribeNatGateways",
            described::nat_gateway
        )
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let gateway: NatGateway = spec(desired)?;
        let mut filters = ownership_filters(&gateway.tags);
        filters.push(
            aws_sdk_ec2::types::Filter::builder()
                .name("state")
                .values("pending")
                .values("available")
                .build(),
        );
        let found = self
            .0
            .ec2
            .describe_nat_gateways()
            .set_filter(Some(filters))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeNatGateways", e))?;
        let Some(id) = found
            .nat_gateways()
            .iter()
            .find(|g| is_ours(g.tags(), &gateway.tags))
            .and_then(|g| g.nat_gateway_id())
            .map(str::to_string)
        else {
            return Ok(None);
        };
        self.wait_available(&id).await?;
        Ok(Some(only_id(id)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError> {
        let gateway: NatGateway = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_nat_gateway()
            .set_client_token(super::idempotency(token))
            .subnet_id(&gateway.subnet_id)
            .allocation_id(&gateway.allocation_id)
            .tag_specifications(tag_specification(ResourceType::Natgateway, &gateway.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateNatGateway", e))?;
        let id = created
            .nat_gateway()
            .and_then(|g| g.nat_gateway_id())
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateNatGateway"))?;
        self.wait_available(&id).await?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let gateway: NatGateway = spec(desired)?;
        let before: NatGateway = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        sync_tags(&self.0, id, &before.tags, &gateway.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let id = recorded_id(recorded)?;
        match self
            .0
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(ProviderError::api("DeleteNatGateway", error)),
        }
        // The elastic IP and the subnet stay busy until the gateway is really gone.
        self.0
            .ec2
            .wait_until_nat_gateway_deleted()
            .nat_gateway_ids(id)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for NatGatewayDeleted", error))?;
        Ok(())
    }
}

struct RouteTableProvider(Context);

impl RouteTableProvider {
    async fn add_route(&self, table: &str, route: &Route) -> Result<(), ProviderError> {
        self.0
            .ec2
            .create_route()
            .route_table_id(table)
            .destination_cidr_block(&route.destination_cidr_block)
            .set_gateway_id(route.gateway_id.clone())
            .set_nat_gateway_id(route.nat_gateway_id.clone())
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateRoute", e))?;
        Ok(())
    }

    /// Current subnet associations of a table: subnet id to association id.
    /// The table's subnet associations by subnet, or `None` when the table is gone.
    async fn associations(
        &self,
        table: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ProviderError> {
        let Some(described) = super::none_if_missing(
            self.0
                .ec2
                .describe_route_tables()
                .route_table_ids(table)
                .send()
                .await,
            "DescribeRouteTables",
        )?
        else {
            return Ok(None);
        };
        Ok(Some(
            described
                .route_tables()
                .iter()
                .flat_map(|t| t.associations())
                .filter(|a| !a.main().unwrap_or(false))
                .filter_map(|a| {
                    Some((
                        a.subnet_id()?.to_string(),
                        a.route_table_association_id()?.to_string(),
                    ))
                })
                .collect(),
        ))
    }

    async fn sync(
        &self,
        table: &str,
        before: &[Route],
        desired: &RouteTable,
    ) -> Result<(), ProviderError> {
        for route in before {
            if !desired.routes.contains(route) {
                self.0
                    .ec2
                    .delete_route()
                    .route_table_id(table)
                    .destination_cidr_block(&route.destination_cidr_block)
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("DeleteRoute", e))?;
            }
        }
        for route in &desired.routes {
            if !before.contains(route) {
                self.add_route(table, route).await?;
            }
        }
        let current = self.associations(table).await?.ok_or_else(|| {
            ProviderError::Conflict(format!(
                "route table {table} was deleted outside trails; `trails apply --refresh` plans it anew"
            ))
        })?;
        let wanted: BTreeSet<&String> = desired.subnet_ids.iter().collect();
        for (subnet, association) in &current {
            if !wanted.contains(subnet) {
                self.0
                    .ec2
                    .disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("DisassociateRouteTable", e))?;
            }
        }
        for subnet in wanted {
            if !current.contains_key(subnet) {
                self.0
                    .ec2
                    .associate_route_table()
                    .route_table_id(table)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("AssociateRouteTable", e))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for RouteTableProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "route_table",
            describe_route_tables.set_filters / route_table_ids,
            route_tables,
            route_table_id,
            "DescribeRouteTables",
            |table| Some(described::route_table(table))
        )
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let table: RouteTable = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_route_tables()
            .set_filters(Some(ownership_filters(&table.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeRouteTables", e))?;
        let Some(existing) = found
            .route_tables()
            .iter()
            .find(|t| is_ours(t.tags(), &table.tags))
        else {
            return Ok(None);
        };
        let id = existing.route_table_id().unwrap_or_default().to_string();
        // An interrupted create may have stopped half way: bring routes and subnets in line.
        let present: Vec<Route> = existing
            .routes()
            .iter()
            .filter(|r| r.gateway_id() != Some("local"))
            .filter_map(|r| {
                Some(Route {
                    destination_cidr_block: r.destination_cidr_block()?.to_string(),
                    gateway_id: r.gateway_id().map(str::to_string),
                    nat_gateway_id: r.nat_gateway_id().map(str::to_string),
                })
            })
            .collect();
        self.sync(&id, &present, &table).await?;
        Ok(Some(only_id(id)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let table: RouteTable = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_route_table()
            .vpc_id(&table.vpc_id)
            .tag_specifications(tag_specification(ResourceType::RouteTable, &table.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateRouteTable", e))?;
        let id = created
            .route_table()
            .and_then(|t| t.route_table_id())
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateRouteTable"))?;
        self.sync(&id, &[], &table).await?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let table: RouteTable = spec(desired)?;
        let before: RouteTable = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        self.sync(id, &before.routes, &table).await?;
        sync_tags(&self.0, id, &before.tags, &table.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let id = recorded_id(recorded)?;
        let Some(associations) = self.associations(id).await? else {
            return Ok(());
        };
        for association in associations.values() {
            self.0
                .ec2
                .disassociate_route_table()
                .association_id(association)
                .send()
                .await
                .map_err(|e| ProviderError::api("DisassociateRouteTable", e))?;
        }
        gone_is_fine(
            self.0
                .ec2
                .delete_route_table()
                .route_table_id(id)
                .send()
                .await,
            "DeleteRouteTable",
        )
    }
}

/// One rule reduced to what identifies it, for comparing desired and live rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RuleKey {
    /// IP protocol, `-1` for all.
    pub protocol: String,
    /// First port (-1 for all traffic).
    pub from_port: i32,
    /// Last port (-1 for all traffic).
    pub to_port: i32,
    /// Source CIDR.
    pub cidr: Option<String>,
    /// Source security group.
    pub group: Option<String>,
}

fn normalise_ports(protocol: &str, from: i32, to: i32) -> (i32, i32) {
    if protocol == "-1" {
        (-1, -1)
    } else {
        (from, to)
    }
}

/// The declared rules, keyed; `own_id` stands for self-referencing rules.
fn desired_keys(rules: &[SecurityRule], own_id: &str) -> BTreeMap<RuleKey, String> {
    let mut keys = BTreeMap::new();
    for rule in rules {
        let (from_port, to_port) = normalise_ports(&rule.protocol, rule.from_port, rule.to_port);
        let base = RuleKey {
            protocol: rule.protocol.clone(),
            from_port,
            to_port,
            cidr: None,
            group: None,
        };
        for cidr in &rule.cidr_blocks {
            keys.insert(
                RuleKey {
                    cidr: Some(cidr.clone()),
                    ..base.clone()
                },
                rule.description.clone(),
            );
        }
        let group = match (&rule.security_group_id, rule.self_referencing) {
            (Some(group), _) => Some(group.clone()),
            (None, true) => Some(own_id.to_string()),
            (None, false) => None,
        };
        if let Some(group) = group {
            keys.insert(
                RuleKey {
                    group: Some(group),
                    ..base.clone()
                },
                rule.description.clone(),
            );
        }
    }
    keys
}

/// The live permissions, keyed like [`desired_keys`].
fn live_keys(permissions: &[IpPermission]) -> BTreeSet<RuleKey> {
    let mut keys = BTreeSet::new();
    for permission in permissions {
        let protocol = permission.ip_protocol().unwrap_or("-1").to_string();
        let (from_port, to_port) = normalise_ports(
            &protocol,
            permission.from_port().unwrap_or(-1),
            permission.to_port().unwrap_or(-1),
        );
        let base = RuleKey {
            protocol,
            from_port,
            to_port,
            cidr: None,
            group: None,
        };
        for range in permission.ip_ranges() {
            keys.insert(RuleKey {
                cidr: range.cidr_ip().map(str::to_string),
                ..base.clone()
            });
        }
        for pair in permission.user_id_group_pairs() {
            keys.insert(RuleKey {
                group: pair.group_id().map(str::to_string),
                ..base.clone()
            });
        }
    }
    keys
}

fn permission(key: &RuleKey, description: Option<&str>) -> IpPermission {
    let mut builder = IpPermission::builder().ip_protocol(&key.protocol);
    if key.protocol != "-1" {
        builder = builder.from_port(key.from_port).to_port(key.to_port);
    }
    if let Some(cidr) = &key.cidr {
        builder = builder.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(description.map(str::to_string))
                .build(),
        );
    }
    if let Some(group) = &key.group {
        builder = builder.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(group)
                .set_description(description.map(str::to_string))
                .build(),
        );
    }
    builder.build()
}

struct SecurityGroupProvider(Context);

impl SecurityGroupProvider {
    /// Makes the group's live rules exactly the desired ones: authorizes what is missing and
    /// revokes what is extra, rule by rule, so nothing allowed is ever briefly cut off.
    async fn sync_rules(&self, id: &str, group: &SecurityGroup) -> Result<(), ProviderError> {
        let described = self
            .0
            .ec2
            .describe_security_groups()
            .group_ids(id)
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeSecurityGroups", e))?;
        let live = described.security_groups().first();
        let live_in = live_keys(live.map(|g| g.ip_permissions()).unwrap_or_default());
        let live_out = live_keys(live.map(|g| g.ip_permissions_egress()).unwrap_or_default());
        let want_in = desired_keys(&group.ingress, id);
        let want_out = desired_keys(&group.egress, id);

        let add_in: Vec<_> = want_in
            .iter()
            .filter(|(key, _)| !live_in.contains(key))
            .map(|(key, description)| permission(key, Some(description)))
            .collect();
        if !add_in.is_empty() {
            self.0
                .ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(add_in))
                .send()
                .await
                .map_err(|e| ProviderError::api("AuthorizeSecurityGroupIngress", e))?;
        }
        let add_out: Vec<_> = want_out
            .iter()
            .filter(|(key, _)| !live_out.contains(key))
            .map(|(key, description)| permission(key, Some(description)))
            .collect();
        if !add_out.is_empty() {
            self.0
                .ec2
                .authorize_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(add_out))
                .send()
                .await
                .map_err(|e| ProviderError::api("AuthorizeSecurityGroupEgress", e))?;
        }
        let remove_in: Vec<_> = live_in
            .iter()
            .filter(|key| !want_in.contains_key(*key))
            .map(|key| permission(key, None))
            .collect();
        if !remove_in.is_empty() {
            self.0
                .ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(remove_in))
                .send()
                .await
                .map_err(|e| ProviderError::api("RevokeSecurityGroupIngress", e))?;
        }
        // A new group allows all egress; groups that declare none must lose that rule.
        let remove_out: Vec<_> = live_out
            .iter()
            .filter(|key| !want_out.contains_key(*key))
            .map(|key| permission(key, None))
            .collect();
        if !remove_out.is_empty() {
            self.0
                .ec2
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(remove_out))
                .send()
                .await
                .map_err(|e| ProviderError::api("RevokeSecurityGroupEgress", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for SecurityGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "security_group",
            describe_security_groups.set_filters / group_ids,
            security_groups,
            group_id,
            "DescribeSecurityGroups",
            |group| Some(described::security_group(group))
        )
    }

    fn canonical(&self, attributes: Map<String, Value>) -> Map<String, Value> {
        described::both_directions(attributes, described::rule_lines)
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let group: SecurityGroup = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_security_groups()
            .set_filters(Some(ownership_filters(&group.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeSecurityGroups", e))?;
        let Some(id) = found
            .security_groups()
            .iter()
            .find(|g| is_ours(g.tags(), &group.tags))
            .and_then(|g| g.group_id())
            .map(str::to_string)
        else {
            return Ok(None);
        };
        self.sync_rules(&id, &group).await?;
        Ok(Some(only_id(id)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: SecurityGroup = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_security_group()
            .group_name(&group.name)
            .description(&group.description)
            .vpc_id(&group.vpc_id)
            .tag_specifications(tag_specification(ResourceType::SecurityGroup, &group.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateSecurityGroup", e))?;
        let id = created
            .group_id()
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateSecurityGroup"))?;
        self.sync_rules(&id, &group).await?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: SecurityGroup = spec(desired)?;
        let before: SecurityGroup = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        self.sync_rules(id, &group).await?;
        sync_tags(&self.0, id, &before.tags, &group.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        gone_is_fine(
            self.0
                .ec2
                .delete_security_group()
                .group_id(recorded_id(recorded)?)
                .send()
                .await,
            "DeleteSecurityGroup",
        )
    }
}

struct NetworkAclProvider(Context);

/// EC2 wants protocol numbers in ACL entries.
fn protocol_number(protocol: &str) -> &str {
    match protocol {
        "tcp" => "6",
        "udp" => "17",
        "icmp" => "1",
        other => other,
    }
}

/// An ACL entry reduced to what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EntryKey {
    egress: bool,
    rule_number: i32,
    protocol: String,
    action: String,
    cidr: String,
    ports: Option<(i32, i32)>,
}

fn desired_entries(acl: &NetworkAcl) -> BTreeSet<EntryKey> {
    let entry = |egress: bool, rule: &AclRule| EntryKey {
        egress,
        rule_number: rule.rule_number,
        protocol: protocol_number(&rule.protocol).to_string(),
        action: rule.action.clone(),
        cidr: rule.cidr_block.clone(),
        ports: (rule.protocol != "-1").then_some((rule.from_port, rule.to_port)),
    };
    acl.ingress
        .iter()
        .map(|rule| entry(false, rule))
        .chain(acl.egress.iter().map(|rule| entry(true, rule)))
        .collect()
}

impl NetworkAclProvider {
    async fn describe(
        &self,
        filters: Vec<aws_sdk_ec2::types::Filter>,
    ) -> Result<Vec<aws_sdk_ec2::types::NetworkAcl>, ProviderError> {
        let described = self
            .0
            .ec2
            .describe_network_acls()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeNetworkAcls", e))?;
        Ok(described.network_acls().to_vec())
    }

    async fn describe_one(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_ec2::types::NetworkAcl>, ProviderError> {
        match self
            .0
            .ec2
            .describe_network_acls()
            .network_acl_ids(id)
            .send()
            .await
        {
            Ok(described) => Ok(described.network_acls().first().cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api("DescribeNetworkAcls", error)),
        }
    }

    fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name(name)
            .values(value)
            .build()
    }

    /// Moves a subnet's ACL association to `acl`.
    async fn associate(&self, subnet: &str, acl: &str) -> Result<(), ProviderError> {
        let current = self
            .describe(vec![Self::filter("association.subnet-id", subnet)])
            .await?;
        let association = current
            .iter()
            .flat_map(|a| a.associations())
            .find(|a| a.subnet_id() == Some(subnet))
            .and_then(|a| a.network_acl_association_id())
            .ok_or_else(|| ProviderError::Api {
                operation: "DescribeNetworkAcls".into(),
                message: format!("subnet {subnet} has no network ACL association"),
            })?
            .to_string();
        self.0
            .ec2
            .replace_network_acl_association()
            .association_id(association)
            .network_acl_id(acl)
            .send()
            .await
            .map_err(|e| ProviderError::api("ReplaceNetworkAclAssociation", e))?;
        Ok(())
    }

    async fn default_acl(&self, vpc: &str) -> Result<String, ProviderError> {
        let found = self
            .describe(vec![
                Self::filter("vpc-id", vpc),
                Self::filter("default", "true"),
            ])
            .await?;
        found
            .first()
            .and_then(|a| a.network_acl_id())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Api {
                operation: "DescribeNetworkAcls".into(),
                message: format!("VPC {vpc} has no default network ACL"),
            })
    }

    /// Makes entries and subnet associations exactly the desired ones.
    async fn sync(&self, id: &str, acl: &NetworkAcl) -> Result<(), ProviderError> {
        let live = self.describe_one(id).await?;
        let live = live.as_ref();
        let live_entries: BTreeSet<EntryKey> = live
            .map(|a| a.entries())
            .unwrap_or_default()
            .iter()
            // 32767 is the implicit deny-all every ACL has.
            .filter(|e| e.rule_number() != Some(32767))
            .map(|e| EntryKey {
                egress: e.egress().unwrap_or(false),
                rule_number: e.rule_number().unwrap_or(0),
                protocol: e.protocol().unwrap_or("-1").to_string(),
                action: e
                    .rule_action()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
                cidr: e.cidr_block().unwrap_or_default().to_string(),
                ports: e
                    .port_range()
                    .filter(|_| e.protocol() != Some("-1"))
                    .map(|p| (p.from().unwrap_or(0), p.to().unwrap_or(0))),
            })
            .collect();
        let wanted = desired_entries(acl);
        for stale in live_entries.difference(&wanted) {
            self.0
                .ec2
                .delete_network_acl_entry()
                .network_acl_id(id)
                .rule_number(stale.rule_number)
                .egress(stale.egress)
                .send()
                .await
                .map_err(|e| ProviderError::api("DeleteNetworkAclEntry", e))?;
        }
        for entry in wanted.difference(&live_entries) {
            let mut request = self
                .0
                .ec2
                .create_network_acl_entry()
                .network_acl_id(id)
                .rule_number(entry.rule_number)
                .protocol(&entry.protocol)
                .rule_action(aws_sdk_ec2::types::RuleAction::from(entry.action.as_str()))
                .egress(entry.egress)
                .cidr_block(&entry.cidr);
            if let Some((from, to)) = entry.ports {
                request = request.port_range(
                    aws_sdk_ec2::types::PortRange::builder()
                        .from(from)
                        .to(to)
                        .build(),
                );
            }
            request
                .send()
                .await
                .map_err(|e| ProviderError::api("CreateNetworkAclEntry", e))?;
        }
        let associated: BTreeSet<String> = live
            .map(|a| a.associations())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect();
        let wanted_subnets: BTreeSet<String> = acl.subnet_ids.iter().cloned().collect();
        for subnet in wanted_subnets.difference(&associated) {
            self.associate(subnet, id).await?;
        }
        let released: Vec<&String> = associated.difference(&wanted_subnets).collect();
        if !released.is_empty() {
            let default = self.default_acl(&acl.vpc_id).await?;
            for subnet in released {
                self.associate(subnet, &default).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for NetworkAclProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "network_acl",
            describe_network_acls.set_filters / network_acl_ids,
            network_acls,
            network_acl_id,
            "DescribeNetworkAcls",
            |acl| Some(described::network_acl(acl))
        )
    }

    fn canonical(&self, attributes: Map<String, Value>) -> Map<String, Value> {
        described::both_directions(attributes, described::acl_lines)
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let acl: NetworkAcl = spec(desired)?;
        let found = self.describe(ownership_filters(&acl.tags)).await?;
        let Some(id) = found
            .iter()
            .find(|a| is_ours(a.tags(), &acl.tags))
            .and_then(|a| a.network_acl_id())
            .map(str::to_string)
        else {
            return Ok(None);
        };
        self.sync(&id, &acl).await?;
        Ok(Some(only_id(id)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let acl: NetworkAcl = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_network_acl()
            .vpc_id(&acl.vpc_id)
            .tag_specifications(tag_specification(ResourceType::NetworkAcl, &acl.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateNetworkAcl", e))?;
        let id = created
            .network_acl()
            .and_then(|a| a.network_acl_id())
            .map(str::to_string)
            .ok_or_else(|| no_id("CreateNetworkAcl"))?;
        self.sync(&id, &acl).await?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let acl: NetworkAcl = spec(desired)?;
        let before: NetworkAcl = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        self.sync(id, &acl).await?;
        sync_tags(&self.0, id, &before.tags, &acl.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let acl: NetworkAcl = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        let Some(live) = self.describe_one(id).await? else {
            return Ok(());
        };
        // Subnets must always have an ACL: hand them back to the VPC's default one first.
        let subnets: Vec<String> = live
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_string))
            .collect();
        if !subnets.is_empty() {
            let default = self.default_acl(&acl.vpc_id).await?;
            for subnet in &subnets {
                self.associate(subnet, &default).await?;
            }
        }
        gone_is_fine(
            self.0
                .ec2
                .delete_network_acl()
                .network_acl_id(id)
                .send()
                .await,
            "DeleteNetworkAcl",
        )
    }
}

struct FlowLogProvider(Context);

#[async_trait]
impl AwsProvider for FlowLogProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        ec2_read!(
            self.0,
            recorded,
            "flow_log",
            describe_flow_logs.set_filter / flow_log_ids,
            flow_logs,
            flow_log_id,
            "DescribeFlowLogs",
            |log| Some(described::flow_log(log))
        )
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let log: FlowLog = spec(desired)?;
        let found = self
            .0
            .ec2
            .describe_flow_logs()
            .set_filter(Some(ownership_filters(&log.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeFlowLogs", e))?;
        Ok(found
            .flow_logs()
            .iter()
            .find(|f| is_ours(f.tags(), &log.tags))
            .and_then(|f| f.flow_log_id())
            .map(only_id))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let log: FlowLog = spec(desired)?;
        let created = self
            .0
            .ec2
            .create_flow_logs()
            .resource_ids(&log.vpc_id)
            .resource_type(aws_sdk_ec2::types::FlowLogsResourceType::Vpc)
            .traffic_type(aws_sdk_ec2::types::TrafficType::from(
                log.traffic_type.as_str(),
            ))
            .log_destination_type(aws_sdk_ec2::types::LogDestinationType::S3)
            .log_destination(&log.log_destination)
            .tag_specifications(tag_specification(ResourceType::VpcFlowLog, &log.tags))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateFlowLogs", e))?;
        if let Some(refused) = created.unsuccessful().first() {
            return Err(ProviderError::Api {
                operation: "CreateFlowLogs".into(),
                message: refused
                    .error()
                    .and_then(|e| e.message())
                    .unwrap_or("refused without a reason")
                    .to_string(),
            });
        }
        let id = created
            .flow_log_ids()
            .first()
            .cloned()
            .ok_or_else(|| no_id("CreateFlowLogs"))?;
        Ok(only_id(id))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let log: FlowLog = spec(desired)?;
        let before: FlowLog = recorded_spec(recorded)?;
        let id = recorded_id(recorded)?;
        sync_tags(&self.0, id, &before.tags, &log.tags).await?;
        Ok(only_id(id))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let deleted = self
            .0
            .ec2
            .delete_flow_logs()
            .flow_log_ids(recorded_id(recorded)?)
            .send()
            .await;
        gone_is_fine(deleted, "DeleteFlowLogs")
    }
}
