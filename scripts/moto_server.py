"""moto's server with the few AWS operations trails needs that moto 5.2 lacks.

Run with the venv's python exactly like `moto_server` (`-H HOST -p PORT`). What is added follows
the AWS API reference of each operation, kept as small as trails' tests need:

- ElastiCache: cache parameter groups (Create/Describe/Modify/Reset/Delete, DescribeCacheParameters),
  ModifyCacheSubnetGroup and DeleteCacheSubnetGroup (both refused while a replication group uses
  the group, as AWS does), and replication groups that disappear once deleted (moto keeps them in
  `deleting` for ever, so a waiter for their deletion could never finish). Tags on parameter groups.
  Replication groups without cluster mode get NumCacheClusters nodes (moto reads only
  ReplicasPerNodeGroup there and makes a lone primary).
- EKS: CreateCluster and CreateNodegroup refuse a role that does not exist, does not trust
  eks.amazonaws.com (the cluster) or ec2.amazonaws.com (the nodes), or was created less than
  the seconds written in the file TRAILS_MOTO_IAM_PROPAGATION names (IAM's eventual
  consistency; none when there is no such file), with EKS's
  InvalidParameterException "Role with arn: ... could not be assumed".
- EKS: UpdateClusterVersion refuses while a managed node group is not on the cluster's minor
  version, and UpdateNodegroupVersion exists; a node group created without a version gets its
  cluster's (all as the EKS User Guide and API reference say).
- EKS: a version update of a cluster or node group can be made to end `Failed` or
  `Cancelled` (file TRAILS_MOTO_EKS_FAILING, lines `cluster Failed` / `nodegroup Cancelled`),
  with an error in DescribeUpdate and nothing changed, as EKS reports such updates.
- EKS: add-ons (Create/Describe/List/Update/Delete), UpdateClusterVersion (one minor version at a
  time, as AWS requires), DescribeUpdate for every update (moto's UpdateClusterConfig answers with
  the cluster instead of the update AWS returns; here it returns the update), and tags on node
  groups and add-ons (moto tags clusters only).
- S3: GetBucketVersioning answers with the `VersioningConfiguration` document S3 returns (moto
  5.2.5 names the root `GetBucketVersioningResponse`, which the AWS SDKs for Rust refuse).

- S3: a conditional PutObject or DeleteObject (If-Match, If-None-Match) checks and writes in
  one step, as S3 does; moto's own check and write can interleave with another request's.
- A call log: with TRAILS_MOTO_CALL_LOG set, every AWS request is appended to that file as
  `METHOD PATH OPERATION` (the query protocol's `Action`, the JSON protocol's `X-Amz-Target`,
  `-` for REST APIs, whose method tells a read from a write), so tests can prove that a command
  that only reads made no mutating call.
- A gate: with TRAILS_MOTO_GATE set to a file, a mutating call numbered above the number
  written in it (counted since start, by the rule of the tests' `Call::mutates`) waits until
  the number is raised or the file removed; `FILE.held` says how many calls wait. Tests kill
  trails at an exact call this way. Paths starting with TRAILS_MOTO_GATE_PASSES (the state
  bucket) pass the gate uncounted, so a second run can reach the lock while the first waits.
- Unreachable paths: with TRAILS_MOTO_FAILING set to a file, requests whose path starts with a
  line of it get 503 ServiceUnavailable, as from an S3 that cannot be reached.

Everything else is moto's own. When moto grows an operation, delete it here. AWS's managed IAM
policies (AmazonEKSClusterPolicy, ...) are loaded, as they exist in every real account.
"""

import os
import sys

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from moto.core.responses import ActionResult, EmptyResult
from moto.eks import urls as eks_urls
from moto.eks.exceptions import (
    InvalidParameterException,
    InvalidRequestException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from moto.eks.models import EKSBackend
from moto.eks.responses import EKSResponse
from moto.elasticache import models as elasticache_models
from moto.elasticache.exceptions import ElastiCacheException
from moto.elasticache.models import ElastiCacheBackend
from moto.elasticache.responses import ElastiCacheResponse
from moto.s3.responses import S3Response
from moto.server import main


# ElastiCache ---------------------------------------------------------------------------------


class CacheParameterGroupNotFound(ElastiCacheException):
    code = "CacheParameterGroupNotFound"

    def __init__(self, name):
        super().__init__(f"CacheParameterGroup {name} not found.")


class CacheParameterGroupAlreadyExists(ElastiCacheException):
    code = "CacheParameterGroupAlreadyExists"

    def __init__(self, name):
        super().__init__(f"Parameter group {name} already exists.")


class InvalidCacheParameterGroupState(ElastiCacheException):
    code = "InvalidCacheParameterGroupState"

    def __init__(self, name, user):
        super().__init__(f"Parameter group {name} is in use by {user}.")


class CacheSubnetGroupInUse(ElastiCacheException):
    code = "CacheSubnetGroupInUse"

    def __init__(self, name, user):
        super().__init__(f"Cache subnet group {name} is in use by {user}.")


class CacheSubnetGroupNotFound(ElastiCacheException):
    code = "CacheSubnetGroupNotFoundFault"

    def __init__(self, name):
        super().__init__(f"CacheSubnetGroup {name} not found.")


def _parameter_groups(backend):
    if not hasattr(backend, "trails_parameter_groups"):
        backend.trails_parameter_groups = {}
    return backend.trails_parameter_groups


def _parameter_group(backend, name):
    group = _parameter_groups(backend).get(name)
    if group is None:
        raise CacheParameterGroupNotFound(name)
    return group


def _user_of(backend, attribute, name):
    for group in backend.replication_groups.values():
        if getattr(group, attribute, None) == name:
            return group.replication_group_id
    return None


def create_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    if name in _parameter_groups(backend):
        raise CacheParameterGroupAlreadyExists(name)
    arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:parametergroup:{name}"
    group = {
        "CacheParameterGroupName": name,
        "CacheParameterGroupFamily": self._get_param("CacheParameterGroupFamily"),
        "Description": self._get_param("Description"),
        "IsGlobal": False,
        "ARN": arn,
        "parameters": {},
    }
    _parameter_groups(backend)[name] = group
    tags = self._get_param("Tags", [])
    if tags:
        backend.tagging_service.tag_resource(arn, tags)
    return ActionResult({"CacheParameterGroup": _public(group)})


def _public(group):
    return {key: value for key, value in group.items() if key != "parameters"}


def describe_cache_parameter_groups(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    if name:
        groups = [_parameter_group(backend, name)]
    else:
        groups = list(_parameter_groups(backend).values())
    return ActionResult({"CacheParameterGroups": [_public(group) for group in groups]})


def modify_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    group = _parameter_group(backend, name)
    for parameter in self._get_param("ParameterNameValues", []):
        group["parameters"][parameter["ParameterName"]] = parameter["ParameterValue"]
    return ActionResult({"CacheParameterGroupName": name})


def reset_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    group = _parameter_group(backend, name)
    if self._get_bool_param("ResetAllParameters"):
        group["parameters"].clear()
    for parameter in self._get_param("ParameterNameValues", []):
        group["parameters"].pop(parameter["ParameterName"], None)
    return ActionResult({"CacheParameterGroupName": name})


def describe_cache_parameters(self):
    backend = self.elasticache_backend
    group = _parameter_group(backend, self._get_param("CacheParameterGroupName"))
    parameters = [
        {
            "ParameterName": key,
            "ParameterValue": value,
            "Source": "user",
            "DataType": "string",
            "IsModifiable": True,
        }
        for key, value in sorted(group["parameters"].items())
    ]
    return ActionResult({"Parameters": parameters})


def delete_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    group = _parameter_group(backend, name)
    user = _user_of(backend, "cache_parameter_group_name", name)
    if user:
        raise InvalidCacheParameterGroupState(name, user)
    del _parameter_groups(backend)[name]
    backend.tagging_service.delete_all_tags_for_resource(group["ARN"])
    return EmptyResult()


def modify_cache_subnet_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheSubnetGroupName")
    if name not in backend.cache_subnet_groups:
        raise CacheSubnetGroupNotFound(name)
    group = backend.cache_subnet_groups[name]
    description = self._get_param("CacheSubnetGroupDescription")
    if description is not None:
        group.cache_subnet_group_description = description
    subnet_ids = self._get_param("SubnetIds")
    if subnet_ids:
        rebuilt = elasticache_models.CacheSubnetGroup(
            account_id=backend.account_id,
            region_name=backend.region_name,
            cache_subnet_group_name=name,
            cache_subnet_group_description=group.cache_subnet_group_description,
            subnet_ids=subnet_ids,
            tags=group.tags,
        )
        backend.cache_subnet_groups[name] = rebuilt
        group = rebuilt
    return ActionResult({"CacheSubnetGroup": group})


def delete_cache_subnet_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheSubnetGroupName")
    group = backend.cache_subnet_groups.get(name)
    if group is None:
        raise CacheSubnetGroupNotFound(name)
    user = _user_of(backend, "cache_subnet_group_name", name)
    if user:
        raise CacheSubnetGroupInUse(name, user)
    del backend.cache_subnet_groups[name]
    arn = getattr(group, "arn", None)
    if arn:
        backend.tagging_service.delete_all_tags_for_resource(arn)
    return EmptyResult()


_moto_delete_replication_group = ElastiCacheBackend.delete_replication_group


def delete_replication_group(self, replication_group_id, retain_primary_cluster):
    group = _moto_delete_replication_group(self, replication_group_id, retain_primary_cluster)
    # AWS removes the group once its nodes are gone; moto would keep it `deleting` for ever.
    del self.replication_groups[replication_group_id]
    self.tagging_service.delete_all_tags_for_resource(group.arn)
    return group


for handler in (
    create_cache_parameter_group,
    describe_cache_parameter_groups,
    modify_cache_parameter_group,
    reset_cache_parameter_group,
    describe_cache_parameters,
    delete_cache_parameter_group,
    modify_cache_subnet_group,
    delete_cache_subnet_group,
):
    setattr(ElastiCacheResponse, handler.__name__, handler)
ElastiCacheBackend.delete_replication_group = delete_replication_group

_moto_members_disabled = elasticache_models.ReplicationGroup._set_node_members_clusters_disabled


def _set_node_members_clusters_disabled(self, *args, **kwargs):
    clusters = kwargs.get("num_cache_clusters") or 1
    if not kwargs.get("replicas_per_node_group") and clusters > 1:
        kwargs["replicas_per_node_group"] = clusters - 1
    return _moto_members_disabled(self, *args, **kwargs)


elasticache_models.ReplicationGroup._set_node_members_clusters_disabled = (
    _set_node_members_clusters_disabled
)


class _ArnPattern:
    """moto's ARN check for tagging, widened to parameter groups."""

    def __init__(self, inner):
        self.inner = inner

    def match(self, arn):
        return self.inner.match(arn) or ":parametergroup:" in arn


_moto_backend_init = ElastiCacheBackend.__init__


def _backend_init(self, *args, **kwargs):
    _moto_backend_init(self, *args, **kwargs)
    self.arn_regex = _ArnPattern(self.arn_regex)


ElastiCacheBackend.__init__ = _backend_init


# EKS -----------------------------------------------------------------------------------------


def _cluster(backend, name):
    cluster = backend.clusters.get(name)
    if cluster is None:
        raise ResourceNotFoundException(
            clusterName=name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"No cluster found for name: {name}.",
        )
    return cluster


def _addons(cluster):
    if not hasattr(cluster, "trails_addons"):
        cluster.trails_addons = {}
    return cluster.trails_addons


def _addon(cluster, name):
    addon = _addons(cluster).get(name)
    if addon is None:
        raise ResourceNotFoundException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=name,
            message=f"No addon: {name} found in cluster: {cluster.name}",
        )
    return addon


def _updates(cluster):
    if not hasattr(cluster, "trails_updates"):
        cluster.trails_updates = {}
    return cluster.trails_updates


def _failing(target):
    """`Failed` or `Cancelled` when the file TRAILS_MOTO_EKS_FAILING has a line `TARGET
    STATUS` (`cluster Failed`, `nodegroup Cancelled`): the next version update of that target
    ends so, and changes nothing, as a failed or cancelled EKS update does."""
    try:
        with open(os.environ.get("TRAILS_MOTO_EKS_FAILING", ""), encoding="utf-8") as text:
            for line in text:
                words = line.split()
                if len(words) == 2 and words[0] == target and words[1] in ("Failed", "Cancelled"):
                    return words[1]
    except OSError:
        pass
    return None


def _update(cluster, kind, params, status="Successful", resource=None):
    """Records a finished update so that DescribeUpdate finds it."""
    import uuid

    errors = []
    if status != "Successful":
        errors.append(
            {
                "errorCode": "Unknown",
                "errorMessage": f"the update was {status.lower()} (made to by the test)",
                "resourceIds": [resource or cluster.name],
            }
        )
    update = {
        "id": str(uuid.uuid4()),
        "status": status,
        "type": kind,
        "params": [{"type": key, "value": str(value)} for key, value in params.items()],
        "errors": errors,
    }
    _updates(cluster)[update["id"]] = update
    return update


def describe_update(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    update_id = self._get_param("updateId")
    update = _updates(cluster).get(update_id)
    if update is None:
        raise ResourceNotFoundException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"No update found for ID: {update_id}",
        )
    return ActionResult({"update": update})


_moto_update_cluster_config = EKSResponse.update_cluster_config


def update_cluster_config(self):
    _moto_update_cluster_config(self)
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    params = {}
    for key in ("resourcesVpcConfig", "logging"):
        if self._get_param(key):
            params[key] = self._get_param(key)
    kind = "LoggingUpdate" if "logging" in params else "EndpointAccessUpdate"
    return ActionResult({"update": _update(cluster, kind, params)})


_moto_update_nodegroup_config = EKSBackend.update_nodegroup_config


def update_nodegroup_config(self, cluster_name, nodegroup_name, **kwargs):
    update = _moto_update_nodegroup_config(self, cluster_name, nodegroup_name, **kwargs)
    _updates(_cluster(self, cluster_name))[update["id"]] = update
    return update


EKSBackend.update_nodegroup_config = update_nodegroup_config


def create_addon(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    name = self._get_param("addonName")
    if name in _addons(cluster):
        raise ResourceInUseException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=name,
            message=f"Addon already exists with name: {name} in cluster: {cluster.name}",
        )
    arn = cluster.arn.replace(":cluster/", ":addon/") + f"/{name}/{len(_addons(cluster)) + 1}"
    addon = {
        "addonName": name,
        "clusterName": cluster.name,
        "status": "ACTIVE",
        "addonVersion": self._get_param("addonVersion") or "v1.0.0-eksbuild.1",
        "health": {"issues": []},
        "addonArn": arn,
        "tags": self._get_param("tags") or {},
    }
    _addons(cluster)[name] = addon
    return ActionResult({"addon": addon})


def describe_addon(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    return ActionResult({"addon": _addon(cluster, self._get_param("addonName"))})


def list_addons(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    return ActionResult({"addons": sorted(_addons(cluster))})


def update_addon(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    addon = _addon(cluster, self._get_param("addonName"))
    version = self._get_param("addonVersion")
    if version:
        addon["addonVersion"] = version
    return ActionResult({"update": _update(cluster, "AddonUpdate", {"AddonVersion": version or ""})})


def delete_addon(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    addon = _addon(cluster, self._get_param("addonName"))
    del _addons(cluster)[addon["addonName"]]
    return ActionResult({"addon": dict(addon, status="DELETING")})


def update_cluster_version(self):
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    wanted = self._get_param("version")
    try:
        now = [int(part) for part in cluster.version.split(".")[:2]]
        then = [int(part) for part in wanted.split(".")[:2]]
    except (AttributeError, ValueError):
        raise InvalidParameterException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"Unsupported Kubernetes version {wanted}",
        )
    if then[0] != now[0] or then[1] != now[1] + 1:
        raise InvalidRequestException(
            clusterName=cluster.name,
            nodegroupName=None,
            fargateProfileName=None,
            addonName=None,
            message=f"Cluster can only be upgraded one minor version at a time, from {cluster.version}",
        )
    # "Before updating your control plane to a new Kubernetes version, make sure that the
    # Kubernetes minor version of both the managed nodes and Fargate nodes in your cluster are
    # the same as your control plane's version" (EKS User Guide, "Update existing cluster to new
    # Kubernetes version"): EKS refuses the update while a managed node group lags.
    for group in cluster.nodegroups.values():
        if _minor(group.version) != _minor(cluster.version):
            raise InvalidRequestException(
                clusterName=cluster.name,
                nodegroupName=group.nodegroup_name,
                fargateProfileName=None,
                addonName=None,
                message=(
                    f"Nodegroup {group.nodegroup_name} is on Kubernetes {group.version}: update "
                    f"every managed node group to the cluster's version {cluster.version} first"
                ),
            )
    status = _failing("cluster") or "Successful"
    if status == "Successful":
        cluster.version = wanted
    return ActionResult(
        {"update": _update(cluster, "VersionUpdate", {"Version": wanted}, status)}
    )


def _minor(version):
    return ".".join(str(version).split(".")[:2])


def _trusts(document, service):
    """Whether a trust policy lets `service` call sts:AssumeRole."""
    import json
    from urllib.parse import unquote

    try:
        policy = json.loads(document)
    except (TypeError, ValueError):
        try:
            policy = json.loads(unquote(document))
        except (TypeError, ValueError):
            return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        services = (statement.get("Principal") or {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        if (
            statement.get("Effect") == "Allow"
            and any(action in ("sts:AssumeRole", "sts:*", "*") for action in actions)
            and service in services
        ):
            return True
    return False


def _assumable(backend, cluster_name, role_arn, service):
    """EKS assumes the role it is given at once: a role that does not exist, does not trust
    the service, or was made less than TRAILS_MOTO_IAM_PROPAGATION seconds ago (IAM is
    eventually consistent: "a change may not be visible immediately", IAM User Guide) is
    refused with the InvalidParameterException EKS answers."""
    from moto.core.utils import utcnow
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    refused = InvalidParameterException(
        clusterName=cluster_name,
        nodegroupName=None,
        fargateProfileName=None,
        addonName=None,
        message=(
            f"Role with arn: {role_arn} could not be assumed because it does not exist or "
            "the trusted entity is not correct"
        ),
    )
    try:
        iam = iam_backends[backend.account_id][get_partition(backend.region_name)]
        role = iam.get_role_by_arn(role_arn)
    except Exception:
        raise refused
    delay = 0.0
    try:
        with open(os.environ.get("TRAILS_MOTO_IAM_PROPAGATION", ""), encoding="utf-8") as text:
            delay = float(text.read().strip() or 0)
    except (OSError, ValueError):
        pass
    if (utcnow() - role.create_date).total_seconds() < delay:
        raise refused
    if not _trusts(role.assume_role_policy_document, service):
        raise refused


_moto_create_cluster = EKSBackend.create_cluster


def create_cluster(self, name, role_arn, *args, **kwargs):
    if name not in self.clusters:
        _assumable(self, name, role_arn, "eks.amazonaws.com")
    return _moto_create_cluster(self, name, role_arn, *args, **kwargs)


EKSBackend.create_cluster = create_cluster


_moto_create_nodegroup = EKSBackend.create_nodegroup


def create_nodegroup(self, cluster_name, *args, **kwargs):
    # Without a version a managed node group gets its cluster's (EKS API reference,
    # CreateNodegroup `version`), not moto's fixed default.
    if not kwargs.get("version") and cluster_name in self.clusters:
        kwargs["version"] = self.clusters[cluster_name].version
    node_role = kwargs.get("node_role", args[0] if args else None)
    if cluster_name in self.clusters:
        _assumable(self, cluster_name, node_role, "ec2.amazonaws.com")
    return _moto_create_nodegroup(self, cluster_name, *args, **kwargs)


EKSBackend.create_nodegroup = create_nodegroup


def update_nodegroup_version(self):
    """UpdateNodegroupVersion: to the given version, or the cluster's; never past the cluster."""
    cluster = _cluster(self.eks_backend, self._get_param("name"))
    name = self._get_param("nodegroupName")
    group = cluster.nodegroups.get(name)
    if group is None:
        raise ResourceNotFoundException(
            clusterName=cluster.name,
            nodegroupName=name,
            fargateProfileName=None,
            addonName=None,
            message=f"No node group found for name: {name}.",
        )
    wanted = self._get_param("version") or cluster.version
    if [int(p) for p in _minor(wanted).split(".")] > [int(p) for p in _minor(cluster.version).split(".")]:
        raise InvalidParameterException(
            clusterName=cluster.name,
            nodegroupName=name,
            fargateProfileName=None,
            addonName=None,
            message=f"Requested Kubernetes version {wanted} is newer than the cluster's {cluster.version}",
        )
    status = _failing("nodegroup") or "Successful"
    if status == "Successful":
        group.version = wanted
    update = _update(cluster, "VersionUpdate", {"Version": wanted}, status, name)
    return ActionResult({"update": update})


for handler in (
    update_nodegroup_version,
    create_addon,
    describe_addon,
    list_addons,
    update_addon,
    delete_addon,
    update_cluster_version,
    update_cluster_config,
    describe_update,
):
    setattr(EKSResponse, handler.__name__, handler)

eks_urls.url_paths.update(
    {
        "{0}/clusters/(?P<name>[^/]+)/addons$": eks_urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)$": eks_urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)/update$": eks_urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/updates$": eks_urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/node-groups/(?P<nodegroupName>[^/]+)/update-version$": eks_urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/updates/(?P<updateId>[^/]+)$": eks_urls.response.dispatch,
    }
)


def _tagged(backend, arn):
    """The tags dict of a node group or add-on by ARN, or None."""
    for cluster in backend.clusters.values():
        for nodegroup in cluster.nodegroups.values():
            if nodegroup.arn == arn:
                if nodegroup.tags is None:
                    nodegroup.tags = {}
                return nodegroup.tags
        for addon in _addons(cluster).values():
            if addon["addonArn"] == arn:
                return addon["tags"]
    return None


_moto_tag = EKSBackend.tag_resource
_moto_untag = EKSBackend.untag_resource
_moto_list_tags = EKSBackend.list_tags_for_resource


def tag_resource(self, resource_arn, tags):
    found = _tagged(self, resource_arn)
    if found is None:
        return _moto_tag(self, resource_arn, tags)
    found.update(tags)


def untag_resource(self, resource_arn, tag_keys):
    found = _tagged(self, resource_arn)
    if found is None:
        return _moto_untag(self, resource_arn, tag_keys)
    for key in tag_keys:
        found.pop(key, None)


def list_tags_for_resource(self, resource_arn):
    found = _tagged(self, resource_arn)
    if found is None:
        return _moto_list_tags(self, resource_arn)
    return found


EKSBackend.tag_resource = tag_resource
EKSBackend.untag_resource = untag_resource
EKSBackend.list_tags_for_resource = list_tags_for_resource


# EC2 ----------------------------------------------------------------------------------------
#
# What EC2 refuses while something still uses a resource (EC2 API reference): DeleteSubnet and
# DeleteSecurityGroup answer DependencyViolation while a network interface is in the subnet or
# uses the group (or another group's rule names it); ReleaseAddress of an address still
# associated answers InvalidIPAddress.InUse (nondefault VPC). A deleted NAT gateway stays
# `deleting`, its interface and address held, for the seconds written in the file
# TRAILS_MOTO_LINGER names (none without it), then is `deleted` and lets them go.

from moto.ec2.exceptions import DependencyViolationError, EC2ClientError
from moto.ec2.models import EC2Backend


class _AddressInUse(EC2ClientError):
    def __init__(self, allocation_id):
        super().__init__(
            "InvalidIPAddress.InUse",
            f"Address {allocation_id} is in use; disassociate it before releasing it.",
        )


def _linger():
    try:
        with open(os.environ.get("TRAILS_MOTO_LINGER", ""), encoding="utf-8") as text:
            return float(text.read().strip() or 0)
    except (OSError, ValueError):
        return 0.0


def _settle_nat_gateways(backend):
    """Ends the deletion of NAT gateways whose linger is over: their address is
    disassociated and their interface removed, as EC2 does once one is `deleted`."""
    import time

    for gateway in backend.nat_gateways.values():
        done = getattr(gateway, "trails_gone_at", None)
        if gateway.state != "deleting" or done is None or time.time() < done:
            continue
        gateway.state = "deleted"
        eni = getattr(gateway, "_eni", None)
        if eni is None:
            continue
        for address in list(backend.addresses):
            if address.eni is eni:
                backend.disassociate_address(address=address.public_ip)
        backend.enis.pop(eni.id, None)


_moto_delete_nat_gateway = EC2Backend.delete_nat_gateway


def delete_nat_gateway(self, nat_gateway_id):
    import time

    gateway = _moto_delete_nat_gateway(self, nat_gateway_id)
    if getattr(gateway, "trails_gone_at", None) is None:
        gateway.state = "deleting"
        gateway.trails_gone_at = time.time() + _linger()
    _settle_nat_gateways(self)
    return gateway


_moto_describe_nat_gateways = EC2Backend.describe_nat_gateways


def describe_nat_gateways(self, *args, **kwargs):
    _settle_nat_gateways(self)
    return _moto_describe_nat_gateways(self, *args, **kwargs)


_moto_delete_subnet = EC2Backend.delete_subnet


def delete_subnet(self, subnet_id):
    _settle_nat_gateways(self)
    if any(getattr(eni.subnet, "id", None) == subnet_id for eni in self.enis.values()):
        raise DependencyViolationError(
            f"The subnet '{subnet_id}' has dependencies and cannot be deleted."
        )
    return _moto_delete_subnet(self, subnet_id)


def _names_group(rule, group_id):
    source = getattr(rule, "source_group", None) or {}
    return source.get("GroupId") == group_id


_moto_delete_security_group = EC2Backend.delete_security_group


def delete_security_group(self, name=None, group_id=None):
    _settle_nat_gateways(self)
    target = group_id or getattr(self.get_security_group_by_name_or_id(name), "id", None)
    if target:
        used = any(
            any(getattr(group, "id", group) == target for group in eni.group_set)
            for eni in self.enis.values()
        )
        named = any(
            other.id != target
            and any(
                _names_group(rule, target) for rule in other.ingress_rules + other.egress_rules
            )
            for groups in self.groups.values()
            for other in groups.values()
        )
        if used or named:
            raise DependencyViolationError(f"resource {target} has a dependent object")
    return _moto_delete_security_group(self, name=name, group_id=group_id)


_moto_release_address = EC2Backend.release_address


def release_address(self, address=None, allocation_id=None):
    _settle_nat_gateways(self)
    for eip in self.addresses:
        if (allocation_id and eip.allocation_id == allocation_id) or (
            address and eip.public_ip == address
        ):
            if eip.eni is not None or eip.instance is not None:
                raise _AddressInUse(allocation_id or address)
    return _moto_release_address(self, address=address, allocation_id=allocation_id)


EC2Backend.delete_nat_gateway = delete_nat_gateway
EC2Backend.describe_nat_gateways = describe_nat_gateways
EC2Backend.delete_subnet = delete_subnet
EC2Backend.delete_security_group = delete_security_group
EC2Backend.release_address = release_address


# S3 -----------------------------------------------------------------------------------------


def get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{status}</Status>" if status else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}'
        "</VersioningConfiguration>"
    )
    return 200, {"Content-Type": "application/xml"}, body


S3Response.get_bucket_versioning = get_bucket_versioning


# S3 conditional writes are atomic ---------------------------------------------------------------
# moto checks If-Match / If-None-Match and then writes, with other requests served in between:
# two runs racing for one lock object could both succeed, which S3 never allows. One lock
# around conditional PutObject and DeleteObject makes check-and-write one step, as in S3.

_conditional = __import__("threading").Lock()


def _atomic_when_conditional(method):
    def guarded(self, *args, **kwargs):
        if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
            with _conditional:
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return guarded


S3Response.put_object = _atomic_when_conditional(S3Response.put_object)
S3Response.delete_object = _atomic_when_conditional(S3Response.delete_object)


# Call log ------------------------------------------------------------------------------------


def _mutates(method, operation):
    """The same rule as the tests' `Call::mutates`: anything but Describe/Get/List/Head."""
    if not operation:
        return method not in ("GET", "HEAD")
    return not operation.startswith(("Describe", "Get", "List", "Head"))


def _intercept(call_log, gate, passes, failing):
    import io
    import threading
    import time
    from urllib.parse import parse_qs

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lock = threading.Lock()
    counted = {"mutating": 0, "held": 0}
    dispatch = DomainDispatcherApplication.__call__

    def limit():
        try:
            with open(gate, encoding="utf-8") as text:
                return int(text.read().strip())
        except (OSError, ValueError):
            return None

    def held(change):
        with lock:
            counted["held"] += change
            with open(gate + ".held", "w", encoding="utf-8") as text:
                text.write(str(counted["held"]))

    def call(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        path_info = environ.get("PATH_INFO", "")
        if path_info.startswith("/moto-api"):
            return dispatch(self, environ, start_response)
        operation = parse_qs(environ.get("QUERY_STRING", "")).get("Action", [""])[0]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            operation = target.rsplit(".", 1)[-1]
        content_type = environ.get("CONTENT_TYPE", "")
        if not operation and method == "POST" and "x-www-form-urlencoded" in content_type:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            operation = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if call_log:
            with lock, open(call_log, "a", encoding="utf-8") as log:
                log.write(f"{method} {path_info} {operation or '-'}\n")
        if failing:
            try:
                with open(failing, encoding="utf-8") as text:
                    down = [line.strip() for line in text if line.strip()]
            except OSError:
                down = []
            if any(path_info.startswith(prefix) for prefix in down):
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable'
                    b"</Code><Message>made unreachable by the test</Message></Error>"
                )
                start_response(
                    "503 Service Unavailable",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
                )
                return [body]
        passing = passes and path_info.startswith(passes)
        if gate and not passing and _mutates(method, operation):
            with lock:
                counted["mutating"] += 1
                number = counted["mutating"]
            ceiling = limit()
            if ceiling is not None and number > ceiling:
                # Held until the gate opens: the test kills its client meanwhile, and the
                # request then runs, as AWS runs a request whose caller is gone.
                held(1)
                while ceiling is not None and number > ceiling:
                    time.sleep(0.02)
                    ceiling = limit()
                # Counted as held until moto has run it: a test that opens the gate goes on
                # only once the call's effect is there, not while it may still land.
                try:
                    return dispatch(self, environ, start_response)
                finally:
                    held(-1)
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call


if os.environ.get("TRAILS_MOTO_CALL_LOG") or os.environ.get("TRAILS_MOTO_GATE"):
    _intercept(
        os.environ.get("TRAILS_MOTO_CALL_LOG"),
        os.environ.get("TRAILS_MOTO_GATE"),
        os.environ.get("TRAILS_MOTO_GATE_PASSES"),
        os.environ.get("TRAILS_MOTO_FAILING"),
    )


if __name__ == "__main__":
    sys.exit(main())
