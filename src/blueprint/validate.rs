//! Semantic checks of a typed blueprint. Every check runs; all problems are reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ipnet::Ipv4Net;

use super::diagnostic::{Diagnostic, FieldPath};
use super::load::Loaded;
use super::naming;
use super::schema::{Document, NatLayout, ObjectLockMode};

/// Runs every check on a loaded blueprint and returns the problems found (errors and warnings).
pub fn validate(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut checker = Checker {
        loaded,
        diagnostics: Vec::new(),
    };
    checker.document();
    checker.environment();
    checker.network();
    checker.eks();
    checker.postgres();
    checker.redis();
    checker.buckets();
    checker.iam();
    checker.kubernetes();
    checker.helm();
    checker.day_one();
    checker.ingest();
    checker.policy();
    checker
        .diagnostics
        .extend(loaded.overlay_warnings.iter().cloned());
    super::load::blame(
        checker.diagnostics,
        &loaded.environment,
        loaded.overlay_lines,
    )
}

struct Checker<'a> {
    loaded: &'a Loaded,
    diagnostics: Vec<Diagnostic>,
}

/// Prefix lengths AWS accepts for a VPC or a subnet.
const PREFIX_RANGE: std::ops::RangeInclusive<u8> = 16..=28;

impl Checker<'_> {
    fn doc(&self) -> &Document {
        &self.loaded.document
    }

    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let location = self.loaded.locate(path);
        self.diagnostics
            .push(Diagnostic::error(path, message).at(location));
    }

    fn warning(&mut self, path: &FieldPath, message: impl Into<String>) {
        let location = self.loaded.locate(path);
        self.diagnostics
            .push(Diagnostic::warning(path, message).at(location));
    }

    fn document(&mut self) {
        let name = self.doc().blueprint.clone();
        if !naming::is_blueprint_name(&name) {
            self.error(
                &FieldPath::of("blueprint"),
                format!(
                    "`{name}` is not a usable name: use 1 to 24 lowercase letters, digits and \
                     dashes, starting with a letter (it prefixes every AWS name)"
                ),
            );
        }
        if let Some(backend) = self.doc().state.clone() {
            match backend.s3 {
                None => self.error(
                    &FieldPath::of("state"),
                    "`state` needs a backend: `s3: { bucket: NAME, prefix: PATH, region: REGION }`",
                ),
                Some(s3) => {
                    let path = FieldPath::of("state").key("s3");
                    if !naming::is_bucket_name(&s3.bucket) {
                        self.error(
                            &path.key("bucket"),
                            format!(
                                "`{}` is not an S3 bucket name (3 to 63 lowercase letters, \
                                 digits, dots and dashes)",
                                s3.bucket
                            ),
                        );
                    }
                    if let Some(region) = s3.region.filter(|region| !naming::is_region(region)) {
                        self.error(
                            &path.key("region"),
                            format!("`{region}` is not an AWS region name such as `eu-west-1`"),
                        );
                    }
                }
            }
        }
        let region = self.doc().region.clone();
        match naming::region_problem(&region) {
            Ok(None) => {}
            Ok(Some(warning)) => self.warning(&FieldPath::of("region"), warning),
            Err(error) => self.error(&FieldPath::of("region"), error),
        }
        for key in self.doc().tags.keys().cloned().collect::<Vec<_>>() {
            if key.starts_with("trails:") || key.starts_with("aws:") {
                self.error(
                    &FieldPath::of("tags").key(key.clone()),
                    format!("tag `{key}` is reserved: the `trails:` and `aws:` prefixes belong to trails and AWS"),
                );
            }
        }
    }

    fn environment(&mut self) {
        let environment = self.loaded.environment.clone();
        let path = FieldPath::of("environments").key(environment.clone());
        if !naming::is_dns_label(&environment) || environment.len() > 16 {
            self.error(
                &path,
                format!(
                    "environment name `{environment}` must be 1 to 16 lowercase letters, digits \
                     and dashes, starting with a letter (it is part of AWS names)"
                ),
            );
        }
        let settings = &self.loaded.settings;
        if settings.protect && settings.ephemeral {
            self.error(
                &path,
                "an environment cannot be both `protect: true` and `ephemeral: true`",
            );
        }
        match (&settings.ttl, settings.ephemeral) {
            (Some(_), false) => self.error(
                &path.key("ttl"),
                "`ttl` only applies to `ephemeral: true` environments",
            ),
            (Some(ttl), true) => {
                if let Err(error) = humantime::parse_duration(ttl) {
                    self.error(
                        &path.key("ttl"),
                        format!("`{ttl}` is not a duration such as `72h` or `7days` ({error})"),
                    );
                }
            }
            _ => {}
        }
        if let Some(budget) = &settings.budget
            && let Err(problem) = super::schema::parse_budget(budget)
        {
            self.error(&path.key("budget"), problem);
        }
    }

    fn network(&mut self) {
        let Some(network) = self.doc().network.clone() else {
            return;
        };
        let base = FieldPath::of("network");
        let vpc = self.cidr(&base.key("cidr"), &network.cidr);
        let zones = network.azs.clone();
        if zones.is_empty() {
            self.error(
                &base.key("azs"),
                "list at least one availability zone (`a`, `b`, ...)",
            );
        } else if zones.len() < 2 {
            self.warning(
                &base.key("azs"),
                "a single availability zone is not highly available; SPEC asks for 2 or 3",
            );
        }
        let region = self.doc().region.clone();
        let mut seen = BTreeSet::new();
        for (index, zone) in zones.iter().enumerate() {
            let path = base.key("azs").index(index);
            match naming::zone_name(&region, zone) {
                Some(full) => {
                    if !seen.insert(full.clone()) {
                        self.error(&path, format!("zone `{full}` is listed twice"));
                    }
                }
                None => self.error(
                    &path,
                    format!(
                        "`{zone}` is not a zone of {region}: write a letter (`a`) or the full \
                         name (`{region}a`)"
                    ),
                ),
            }
        }
        let mut all: Vec<(FieldPath, Ipv4Net)> = Vec::new();
        let tiers = [
            ("public", &network.subnets.public),
            ("private", &network.subnets.private),
            ("database", &network.subnets.database),
        ];
        for (tier, cidrs) in tiers {
            let path = base.key("subnets").key(tier);
            let required = tier != "database";
            if (required || !cidrs.is_empty()) && cidrs.len() != zones.len() {
                self.error(
                    &path,
                    format!(
                        "{} {tier} subnet{} for {} availability zone{} ({}): give exactly one \
                         CIDR per zone, in the order of `network.azs`",
                        cidrs.len(),
                        if cidrs.len() == 1 { "" } else { "s" },
                        zones.len(),
                        if zones.len() == 1 { "" } else { "s" },
                        zones.join(", ")
                    ),
                );
            }
            for (index, cidr) in cidrs.iter().enumerate() {
                let path = path.index(index);
                let Some(subnet) = self.cidr(&path, cidr) else {
                    continue;
                };
                if let Some(vpc) = vpc
                    && !vpc.contains(&subnet)
                {
                    self.error(
                        &path,
                        format!("subnet {subnet} does not fit in the VPC's {vpc}"),
                    );
                }
                if let Some((other_path, other)) =
                    all.iter().find(|(_, other)| overlaps(other, &subnet))
                {
                    let message = format!("subnet {subnet} overlaps {other} at {other_path}");
                    self.error(&path, message);
                }
                all.push((path, subnet));
            }
        }
        for (index, cidr) in network.ingress_cidrs.iter().enumerate() {
            self.any_cidr(&base.key("ingress_cidrs").index(index), cidr);
        }
        if let Some(flow_logs) = &network.flow_logs {
            if !self.doc().buckets.contains_key(&flow_logs.bucket) {
                let known = self.bucket_names();
                self.error(
                    &base.key("flow_logs").key("bucket"),
                    format!(
                        "no bucket `{}` under `buckets`; declared: {known}",
                        flow_logs.bucket
                    ),
                );
            }
            if !["ALL", "ACCEPT", "REJECT"].contains(&flow_logs.traffic.as_str()) {
                self.error(
                    &base.key("flow_logs").key("traffic"),
                    format!(
                        "`{}` is not a traffic type; use ALL, ACCEPT or REJECT",
                        flow_logs.traffic
                    ),
                );
            }
        }
        if network.nat == NatLayout::None && self.doc().eks.is_some() {
            self.warning(
                &base.key("nat"),
                "without NAT the cluster's nodes cannot pull images from the internet",
            );
        }
    }

    /// The URL of a day-one service (OpenSearch, ClickHouse): http(s), and no password, since
    /// the URL is kept in plans and the state.
    fn service_url(&mut self, path: &FieldPath, url: &str, endpoint: &str, port: &str) {
        match url::Url::parse(url) {
            // References to outputs are resolved later.
            Err(_) if url.contains("${") => {}
            Err(error) => self.error(
                path,
                format!(
                    "expected an http(s) URL, found `{}` ({error})",
                    without_login(url)
                ),
            ),
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => self.error(
                path,
                format!(
                    "expected an http or https URL, found scheme `{}`",
                    parsed.scheme()
                ),
            ),
            Ok(parsed) if parsed.password().is_some() => self.error(
                path,
                format!(
                    "a password here would be kept in plans and the state; give it when \
                     running, in the environment (not on the command line): \
                     `TRAILS_ENDPOINTS={endpoint}=https://USER:PASSWORD@HOST:{port}`; \
                     `--endpoint` takes the URL without it"
                ),
            ),
            Ok(_) => {}
        }
    }

    fn bucket_names(&self) -> String {
        let names: Vec<_> = self.doc().buckets.keys().cloned().collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    fn cidr(&mut self, path: &FieldPath, text: &str) -> Option<Ipv4Net> {
        let net = self.any_cidr(path, text)?;
        if !PREFIX_RANGE.contains(&net.prefix_len()) {
            self.error(
                path,
                format!(
                    "{net}: AWS accepts prefixes from /{} to /{}",
                    PREFIX_RANGE.start(),
                    PREFIX_RANGE.end()
                ),
            );
            return None;
        }
        Some(net)
    }

    fn any_cidr(&mut self, path: &FieldPath, text: &str) -> Option<Ipv4Net> {
        match text.parse::<Ipv4Net>() {
            Ok(net) if net.network() == net.addr() => Some(net),
            Ok(net) => {
                self.error(
                    path,
                    format!("`{text}` has host bits set; the network is {}", net.trunc()),
                );
                None
            }
            Err(_) => {
                self.error(
                    path,
                    format!("`{text}` is not an IPv4 CIDR such as `10.0.0.0/16`"),
                );
                None
            }
        }
    }

    fn eks(&mut self) {
        let Some(eks) = self.doc().eks.clone() else {
            return;
        };
        let base = FieldPath::of("eks");
        if self.doc().network.is_none() {
            self.error(
                &base,
                "an EKS cluster needs a `network` section for its subnets",
            );
        }
        let today = crate::policy::today()
            .map(|day| day.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        match naming::eks_version_problem(&eks.version, &today) {
            Ok(None) => {}
            Ok(Some(warning)) => self.warning(&base.key("version"), warning),
            Err(error) => self.error(&base.key("version"), error),
        }
        for (addon, version) in &eks.addons {
            if let Some(warning) = naming::eks_addon_problem(addon, version, &eks.version) {
                self.warning(&base.key("addons").key(addon.clone()), warning);
            }
        }
        const LOG_TYPES: &[&str] = &[
            "api",
            "audit",
            "authenticator",
            "controllerManager",
            "scheduler",
        ];
        for (index, log) in eks.logging.iter().enumerate() {
            if !LOG_TYPES.contains(&log.as_str()) {
                self.error(
                    &base.key("logging").index(index),
                    format!("`{log}` is not a log type; use {}", LOG_TYPES.join(", ")),
                );
            }
        }
        for (index, cidr) in eks.public_access_cidrs.iter().enumerate() {
            self.any_cidr(&base.key("public_access_cidrs").index(index), cidr);
        }
        if eks.node_pools.is_empty() {
            self.error(&base.key("node_pools"), "declare at least one node pool");
        }
        for (name, pool) in &eks.node_pools {
            let path = base.key("node_pools").key(name.clone());
            if !naming::is_dns_label(name) {
                self.error(
                    &path,
                    format!("node pool name `{name}` must be a DNS label"),
                );
            }
            if pool.min > pool.max {
                self.error(
                    &path.key("min"),
                    format!("min {} is greater than max {}", pool.min, pool.max),
                );
            }
            if pool.max == 0 {
                self.error(&path.key("max"), "max must be at least 1");
            }
            if let Some(desired) = pool.desired
                && (desired < pool.min || desired > pool.max)
            {
                self.error(
                    &path.key("desired"),
                    format!(
                        "desired {desired} is outside min {} .. max {}",
                        pool.min, pool.max
                    ),
                );
            }
            if pool.instance_types.is_empty() {
                self.error(
                    &path.key("instance_types"),
                    "list at least one instance type",
                );
            }
            if !["ON_DEMAND", "SPOT"].contains(&pool.capacity_type.as_str()) {
                self.error(
                    &path.key("capacity_type"),
                    format!("`{}`: use ON_DEMAND or SPOT", pool.capacity_type),
                );
            }
            if pool.disk_gb < 20 {
                self.error(
                    &path.key("disk_gb"),
                    "EKS nodes need at least 20 GiB of disk",
                );
            }
            for (index, taint) in pool.taints.iter().enumerate() {
                if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&taint.effect.as_str())
                {
                    self.error(
                        &path.key("taints").index(index).key("effect"),
                        format!(
                            "`{}`: use NoSchedule, PreferNoSchedule or NoExecute",
                            taint.effect
                        ),
                    );
                }
            }
        }
    }

    fn needs_database_subnets(&mut self, path: &FieldPath, what: &str) {
        match &self.doc().network {
            None => self.error(path, format!("{what} needs a `network` section")),
            Some(network) if network.subnets.database.is_empty() => self.error(
                path,
                format!("{what} needs `network.subnets.database` (one CIDR per zone)"),
            ),
            Some(_) => {}
        }
    }

    fn postgres(&mut self) {
        let protect = self.loaded.settings.protect;
        for (name, instance) in self.doc().postgres.clone() {
            let path = FieldPath::of("postgres").key(name.clone());
            if !naming::is_dns_label(&name) {
                self.error(&path, format!("instance name `{name}` must be a DNS label"));
            }
            self.needs_database_subnets(&path, "a PostgreSQL instance");
            if !instance.engine_version.starts_with("16") {
                self.warning(
                    &path.key("engine_version"),
                    format!(
                        "the platform is built for PostgreSQL 16; `{}` is untested",
                        instance.engine_version
                    ),
                );
            }
            if !instance.instance_class.starts_with("db.") {
                self.error(
                    &path.key("instance_class"),
                    format!(
                        "`{}` is not an RDS instance class such as `db.r6g.large`",
                        instance.instance_class
                    ),
                );
            }
            if !(20..=65536).contains(&instance.storage_gb) {
                self.error(&path.key("storage_gb"), "storage must be 20 to 65536 GiB");
            }
            if let Some(max) = instance.max_storage_gb
                && max < instance.storage_gb
            {
                self.error(
                    &path.key("max_storage_gb"),
                    format!(
                        "max_storage_gb {max} is below storage_gb {}",
                        instance.storage_gb
                    ),
                );
            }
            if instance.backup_retention_days > 35 {
                self.error(
                    &path.key("backup_retention_days"),
                    "RDS keeps automated backups for at most 35 days",
                );
            }
            if !naming::is_time_window(&instance.backup_window) {
                self.error(
                    &path.key("backup_window"),
                    format!(
                        "`{}` is not a UTC window such as `03:00-04:00`",
                        instance.backup_window
                    ),
                );
            }
            if !naming::is_identifier(&instance.master_username) {
                self.error(
                    &path.key("master_username"),
                    "the master user name must be letters, digits and underscores, starting with a letter",
                );
            }
            if protect && !instance.multi_az {
                self.warning(
                    &path.key("multi_az"),
                    "a protected environment with a single-AZ database has no standby",
                );
            }
            // Deletion protection in a protected environment is policy rule
            // `rds.deletion-protection`, an error in the plan.
            // A role belongs to the server, not to one database: one name, one role.
            let mut roles: BTreeMap<&str, &str> = BTreeMap::new();
            for (database, spec) in &instance.databases {
                let db_path = path.key("databases").key(database.clone());
                if !naming::is_identifier(database) {
                    self.error(
                        &db_path,
                        format!("database name `{database}` must be a plain SQL identifier"),
                    );
                }
                for (index, schema) in spec.schemas.iter().enumerate() {
                    if !naming::is_identifier(schema) {
                        self.error(
                            &db_path.key("schemas").index(index),
                            format!("schema name `{schema}` must be a plain SQL identifier"),
                        );
                    }
                }
                for (index, file) in spec.migrations.iter().enumerate() {
                    self.file_exists(&db_path.key("migrations").index(index), file);
                }
                for (role, declared) in &spec.roles {
                    let role_path = db_path.key("roles").key(role.clone());
                    if let Some(first) = roles.insert(role, database) {
                        self.error(
                            &role_path,
                            format!(
                                "role `{role}` is also declared by database `{first}`; a role \
                                 is shared by the whole instance, so declare it once"
                            ),
                        );
                    }
                    if !naming::is_identifier(role) {
                        self.error(
                            &role_path,
                            format!("role name `{role}` must be a plain SQL identifier"),
                        );
                    }
                    for (table, privileges) in &declared.tables {
                        let table_path = role_path.key("tables").key(table.clone());
                        if !table.split('.').all(naming::is_identifier)
                            || table.split('.').count() > 2
                        {
                            self.error(
                                &table_path,
                                format!(
                                    "`{table}` must be a table name, or `schema.table`, of plain \
                                     SQL identifiers"
                                ),
                            );
                        }
                        for (index, privilege) in privileges.iter().enumerate() {
                            let upper = privilege.to_uppercase();
                            if !crate::resources::dayone::TABLE_PRIVILEGES.contains(&upper.as_str())
                            {
                                self.error(
                                    &table_path.index(index),
                                    format!(
                                        "`{privilege}` is not a table privilege; expected one of {}",
                                        crate::resources::dayone::TABLE_PRIVILEGES.join(", ")
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn redis(&mut self) {
        const POLICIES: &[&str] = &[
            "volatile-lru",
            "allkeys-lru",
            "volatile-lfu",
            "allkeys-lfu",
            "volatile-random",
            "allkeys-random",
            "volatile-ttl",
            "noeviction",
        ];
        for (name, group) in self.doc().redis.clone() {
            let path = FieldPath::of("redis").key(name.clone());
            if !naming::is_dns_label(&name) {
                self.error(
                    &path,
                    format!("replication group name `{name}` must be a DNS label"),
                );
            }
            self.needs_database_subnets(&path, "a Redis replication group");
            if !group.engine_version.starts_with('7') {
                self.warning(
                    &path.key("engine_version"),
                    format!(
                        "the platform is built for Redis 7; `{}` is untested",
                        group.engine_version
                    ),
                );
            }
            if !group.node_type.starts_with("cache.") {
                self.error(
                    &path.key("node_type"),
                    format!(
                        "`{}` is not an ElastiCache node type such as `cache.r6g.large`",
                        group.node_type
                    ),
                );
            }
            if !group.cluster_mode && group.shards != 1 {
                self.error(
                    &path.key("shards"),
                    format!(
                        "{} shards need `cluster_mode: true`; without it there is one shard",
                        group.shards
                    ),
                );
            }
            if !(1..=500).contains(&group.shards) {
                self.error(&path.key("shards"), "shards must be 1 to 500");
            }
            if group.replicas_per_shard > 5 {
                self.error(
                    &path.key("replicas_per_shard"),
                    "at most 5 replicas per shard",
                );
            }
            if group.cluster_mode && !group.automatic_failover {
                self.error(
                    &path.key("automatic_failover"),
                    "cluster mode requires automatic failover",
                );
            }
            if group.automatic_failover && group.replicas_per_shard == 0 {
                self.error(
                    &path.key("replicas_per_shard"),
                    "automatic failover needs at least one replica per shard",
                );
            }
            if !POLICIES.contains(&group.maxmemory_policy.as_str()) {
                self.error(
                    &path.key("maxmemory_policy"),
                    format!(
                        "`{}` is not a maxmemory policy; use one of {}",
                        group.maxmemory_policy,
                        POLICIES.join(", ")
                    ),
                );
            }
        }
    }

    fn buckets(&mut self) {
        let ephemeral = self.loaded.settings.ephemeral;
        let mut names = BTreeSet::new();
        for (short, bucket) in self.doc().buckets.clone() {
            let path = FieldPath::of("buckets").key(short.clone());
            if !naming::is_dns_label(&short) {
                self.error(
                    &path,
                    format!(
                        "bucket key `{short}` must be a DNS label; set `name` for the full S3 name"
                    ),
                );
            }
            let name = naming::bucket_name(self.loaded, &short, bucket.name.as_deref());
            if !naming::is_bucket_name(&name) {
                self.error(
                    &path,
                    format!(
                        "bucket name `{name}` is not valid in S3: 3 to 63 lowercase letters, \
                         digits, dots and dashes, starting and ending with a letter or digit"
                    ),
                );
            }
            if !names.insert(name.clone()) {
                self.error(&path, format!("bucket name `{name}` is used twice"));
            }
            if !["AES256", "aws:kms"].contains(&bucket.encryption.as_str()) {
                self.error(
                    &path.key("encryption"),
                    format!("`{}`: use AES256 or aws:kms", bucket.encryption),
                );
            }
            if let Some(lock) = &bucket.object_lock {
                let lock_path = path.key("object_lock");
                if !bucket.versioning {
                    self.error(
                        &path.key("versioning"),
                        "Object Lock needs versioning; set `versioning: true`",
                    );
                }
                if lock.days == 0 {
                    self.error(&lock_path.key("days"), "retention must be at least 1 day");
                }
                if lock.mode == ObjectLockMode::Compliance && ephemeral {
                    self.error(
                        &lock_path.key("mode"),
                        format!(
                            "Object Lock in compliance mode cannot be bypassed, so environment \
                             `{}` (ephemeral) could never be destroyed; use governance mode or \
                             no lock here",
                            self.loaded.environment
                        ),
                    );
                }
                if lock.mode == ObjectLockMode::Compliance && bucket.force_destroy {
                    self.warning(
                        &path.key("force_destroy"),
                        "objects under compliance-mode retention cannot be deleted before they expire",
                    );
                }
            }
            let mut ids = BTreeSet::new();
            for (index, rule) in bucket.lifecycle.iter().enumerate() {
                let rule_path = path.key("lifecycle").index(index);
                if !ids.insert(rule.id.clone()) {
                    self.error(
                        &rule_path.key("id"),
                        format!("rule id `{}` is used twice", rule.id),
                    );
                }
                if rule.transitions.is_empty()
                    && rule.expire_days.is_none()
                    && rule.noncurrent_expire_days.is_none()
                {
                    self.error(
                        &rule_path,
                        "a rule needs transitions, expire_days or noncurrent_expire_days",
                    );
                }
                const CLASSES: &[&str] = &[
                    "STANDARD_IA",
                    "ONEZONE_IA",
                    "INTELLIGENT_TIERING",
                    "GLACIER_IR",
                    "GLACIER",
                    "DEEP_ARCHIVE",
                ];
                for (t, transition) in rule.transitions.iter().enumerate() {
                    if !CLASSES.contains(&transition.storage_class.as_str()) {
                        self.error(
                            &rule_path.key("transitions").index(t).key("storage_class"),
                            format!(
                                "`{}` is not a storage class; use one of {}",
                                transition.storage_class,
                                CLASSES.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    fn iam(&mut self) {
        let Some(iam) = self.doc().iam.clone() else {
            return;
        };
        for (name, role) in &iam.service_accounts {
            let path = FieldPath::of("iam.service_accounts").key(name.clone());
            if self.doc().eks.is_none() {
                self.error(
                    &path,
                    "service-account roles need the blueprint's EKS cluster (its OIDC provider)",
                );
            }
            if !naming::is_dns_label(name) {
                self.error(&path, format!("role name `{name}` must be a DNS label"));
            }
            for short in role.buckets.keys() {
                if !self.doc().buckets.contains_key(short) {
                    let known = self.bucket_names();
                    self.error(
                        &path.key("buckets").key(short.clone()),
                        format!("no bucket `{short}` under `buckets`; declared: {known}"),
                    );
                }
            }
            if role.buckets.is_empty() {
                self.warning(&path.key("buckets"), "the role grants nothing");
            }
        }
    }

    fn kubernetes(&mut self) {
        let doc = self.doc().clone();
        let in_cluster = doc.kubernetes.is_some() || !doc.helm.is_empty() || doc.ingest.is_some();
        let has_cluster =
            doc.eks.is_some() || doc.kubernetes.as_ref().is_some_and(|k| k.context.is_some());
        if in_cluster && !has_cluster {
            self.error(
                &FieldPath::of("kubernetes"),
                "in-cluster resources need a cluster: declare `eks`, or `kubernetes.context` for an existing one",
            );
        }
        if doc.eks.is_some() && doc.kubernetes.as_ref().is_some_and(|k| k.context.is_some()) {
            self.error(
                &FieldPath::of("kubernetes.context"),
                "the blueprint declares an EKS cluster; `context` is for existing clusters only",
            );
        }
        let Some(kubernetes) = doc.kubernetes else {
            return;
        };
        let base = FieldPath::of("kubernetes");
        for name in kubernetes.namespaces.keys() {
            if !naming::is_dns_label(name) {
                self.error(
                    &base.key("namespaces").key(name.clone()),
                    format!("namespace `{name}` must be a DNS label (lowercase, digits, dashes)"),
                );
            }
        }
        let defaults: Vec<_> = kubernetes
            .storage_classes
            .iter()
            .filter(|(_, class)| class.default)
            .map(|(name, _)| name.clone())
            .collect();
        if defaults.len() > 1 {
            self.error(
                &base.key("storage_classes"),
                format!(
                    "only one storage class can be the default; marked: {}",
                    defaults.join(", ")
                ),
            );
        }
        for (name, class) in &kubernetes.storage_classes {
            let path = base.key("storage_classes").key(name.clone());
            if !["Delete", "Retain"].contains(&class.reclaim_policy.as_str()) {
                self.error(&path.key("reclaim_policy"), "use Delete or Retain");
            }
            if !["WaitForFirstConsumer", "Immediate"].contains(&class.volume_binding_mode.as_str())
            {
                self.error(
                    &path.key("volume_binding_mode"),
                    "use WaitForFirstConsumer or Immediate",
                );
            }
        }
        for (name, binding) in &kubernetes.rbac {
            if let Some(namespace) = &binding.namespace {
                self.namespace_declared(
                    &base.key("rbac").key(name.clone()).key("namespace"),
                    namespace,
                );
            }
        }
        for (name, secret) in &kubernetes.secrets {
            let path = base.key("secrets").key(name.clone());
            self.namespace_declared(&path.key("namespace"), &secret.namespace);
            if secret.data.is_empty() {
                self.error(&path.key("data"), "a secret needs at least one key");
            }
        }
        for (name, manifest) in &kubernetes.manifests {
            let path = base.key("manifests").key(name.clone());
            self.template(&path.key("template"), &manifest.template);
            if let Some(namespace) = &manifest.namespace {
                self.namespace_declared(&path.key("namespace"), namespace);
            }
        }
    }

    fn namespace_declared(&mut self, path: &FieldPath, namespace: &str) {
        let declared = self
            .doc()
            .kubernetes
            .as_ref()
            .is_some_and(|k| k.namespaces.contains_key(namespace));
        if !declared && !naming::is_system_namespace(namespace) {
            self.warning(
                path,
                format!(
                    "namespace `{namespace}` is not declared under `kubernetes.namespaces`; \
                     trails will not create it"
                ),
            );
        }
    }

    fn helm(&mut self) {
        for (name, release) in self.doc().helm.clone() {
            let path = FieldPath::of("helm").key(name.clone());
            if !naming::is_dns_label(&name) {
                self.error(&path, format!("release name `{name}` must be a DNS label"));
            }
            if !naming::is_pinned_version(&release.version) {
                self.error(
                    &path.key("version"),
                    format!(
                        "`{}` is not a pinned chart version (helm reads it as a range); write an \
                         exact MAJOR.MINOR.PATCH such as `4.11.3`",
                        release.version
                    ),
                );
            }
            if !release.repository.starts_with("https://")
                && !release.repository.starts_with("oci://")
            {
                self.error(
                    &path.key("repository"),
                    "a chart repository is an https:// or oci:// URL",
                );
            }
            if !naming::is_dns_label(&release.namespace) {
                self.error(&path.key("namespace"), "a namespace must be a DNS label");
            } else {
                self.namespace_declared(&path.key("namespace"), &release.namespace);
            }
            if release.values_template.is_none() && !release.values.is_empty() {
                self.error(
                    &path.key("values"),
                    "these values would be dropped: helm gets only what `values_template` \
                     renders from them; add `values_template: FILE` (a template under \
                     `templates`) or remove `values`",
                );
            }
            if let Some(template) = &release.values_template {
                self.template(&path.key("values_template"), template);
            }
            if release.timeout_minutes == 0 {
                self.error(&path.key("timeout_minutes"), "must be at least 1");
            }
        }
    }

    fn release_exists(&mut self, path: &FieldPath, release: &Option<String>) {
        if let Some(release) = release
            && !self.doc().helm.contains_key(release)
        {
            let known: Vec<_> = self.doc().helm.keys().cloned().collect();
            self.error(
                path,
                format!(
                    "no Helm release `{release}` under `helm`; declared: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }

    fn day_one(&mut self) {
        let doc = self.doc().clone();
        if let Some(kafka) = &doc.kafka {
            let base = FieldPath::of("kafka");
            self.release_exists(&base.key("release"), &kafka.release);
            if let Some(tls) = crate::resources::dayone::kafka_tls(self.loaded, kafka)
                && let Some(file) = tls.ca_file
                && !file.is_file()
            {
                self.error(
                    &base.key("tls").key("ca_file"),
                    format!(
                        "CA file {} not found (a PEM file of the CA certificates that sign the \
                         brokers'; the path is relative to the blueprint's directory)",
                        file.display()
                    ),
                );
            }
            if kafka.bootstrap_servers.trim().is_empty() {
                self.error(
                    &base.key("bootstrap_servers"),
                    "give at least one host:port",
                );
            }
            for (name, topic) in &kafka.topics {
                let path = base.key("topics").key(name.clone());
                if !naming::is_topic_name(name) {
                    self.error(
                        &path,
                        format!(
                            "topic name `{name}` must be 1 to 249 letters, digits, `.`, `_` or `-`"
                        ),
                    );
                }
                if topic.partitions == 0 {
                    self.error(
                        &path.key("partitions"),
                        "a topic needs at least 1 partition",
                    );
                }
                if topic.replication_factor == 0 {
                    self.error(&path.key("replication_factor"), "must be at least 1");
                }
            }
        }
        if let Some(clickhouse) = &doc.clickhouse {
            let base = FieldPath::of("clickhouse");
            self.release_exists(&base.key("release"), &clickhouse.release);
            self.service_url(&base.key("url"), &clickhouse.url, "clickhouse", "8123");
            for (name, database) in &clickhouse.databases {
                let path = base.key("databases").key(name.clone());
                if !naming::is_identifier(name) {
                    self.error(
                        &path,
                        format!("database name `{name}` must be a plain identifier"),
                    );
                }
                for (index, file) in database.migrations.iter().enumerate() {
                    self.file_exists(&path.key("migrations").index(index), file);
                }
            }
        }
        if let Some(opensearch) = &doc.opensearch {
            let base = FieldPath::of("opensearch");
            self.release_exists(&base.key("release"), &opensearch.release);
            self.service_url(&base.key("url"), &opensearch.url, "opensearch", "9200");
            for name in opensearch
                .index_templates
                .keys()
                .chain(opensearch.ism_policies.keys())
            {
                if let Err(problem) = opensearch_name(name) {
                    let section = if opensearch.index_templates.contains_key(name) {
                        "index_templates"
                    } else {
                        "ism_policies"
                    };
                    self.error(&base.key(section).key(name.clone()), problem);
                }
            }
            for (name, file) in &opensearch.index_templates {
                self.template(&base.key("index_templates").key(name.clone()), file);
            }
            for (name, file) in &opensearch.ism_policies {
                self.template(&base.key("ism_policies").key(name.clone()), file);
            }
        }
    }

    fn policy(&mut self) {
        let Some(policy) = self.doc().policy.clone() else {
            return;
        };
        let base = FieldPath::of("policy");
        for (index, path) in policy.paths.iter().enumerate() {
            let at = base.key("paths").index(index);
            match crate::policy::rego::files(self.loaded, std::slice::from_ref(path)) {
                Err(error) => self.error(&at, format!("{error:#}")),
                Ok(files) if files.is_empty() => self.warning(&at, "holds no .rego file"),
                Ok(files) => {
                    if let Some(problem) = crate::policy::rego::problems(&files) {
                        self.error(&at, problem);
                    }
                }
            }
        }
        for (index, waiver) in policy.waive.iter().enumerate() {
            let at = base.key("waive").index(index);
            for (field, value) in [
                ("rule", &waiver.rule),
                ("address", &waiver.address),
                ("reason", &waiver.reason),
            ] {
                if value.trim().is_empty() {
                    self.error(&at.key(field), format!("a waiver needs its `{field}`"));
                }
            }
            if crate::policy::parse_date(&waiver.expires).is_none() {
                self.error(
                    &at.key("expires"),
                    format!(
                        "`{}` is not a date; write the waiver's last day as YYYY-MM-DD",
                        waiver.expires
                    ),
                );
            }
        }
    }

    fn ingest(&mut self) {
        let Some(ingest) = self.doc().ingest.clone() else {
            return;
        };
        let base = FieldPath::of("ingest");
        if !naming::is_dns_label(&ingest.namespace) {
            self.error(&base.key("namespace"), "a namespace must be a DNS label");
        } else {
            self.namespace_declared(&base.key("namespace"), &ingest.namespace);
        }
        if !naming::is_pinned_image(&ingest.image) {
            self.error(
                &base.key("image"),
                format!(
                    "`{}` is not pinned: give a tag other than `latest` or a digest",
                    ingest.image
                ),
            );
        }
        if ingest.replicas == 0 {
            self.error(&base.key("replicas"), "at least 1 replica");
        }
        if let Some(scaling) = &ingest.autoscaling {
            if scaling.min == 0 || scaling.min > scaling.max {
                self.error(
                    &base.key("autoscaling"),
                    format!(
                        "min {} must be at least 1 and not above max {}",
                        scaling.min, scaling.max
                    ),
                );
            }
            if !(1..=100).contains(&scaling.cpu_percent) {
                self.error(&base.key("autoscaling").key("cpu_percent"), "1 to 100");
            }
        }
        for (variable, secret) in &ingest.trust {
            let path = base.key("trust").key(variable.clone());
            let well_formed = variable
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && variable
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !well_formed {
                self.error(
                    &path,
                    format!(
                        "`{variable}` is not an environment variable name such as KAFKA_TLS_CA_FILE"
                    ),
                );
            } else if ingest.env.contains_key(variable) {
                self.error(
                    &path,
                    format!("`{variable}` is also set in `ingest.env`: name the file in one place"),
                );
            }
            if !naming::is_dns_label(secret) {
                self.error(
                    &path,
                    format!("`{secret}` is not a Secret name (a DNS label)"),
                );
            }
        }
        for template in super::INGEST_TEMPLATES {
            self.template(&base, &format!("ingest/{template}"));
        }
    }

    /// A path that stays inside the templates directory: relative, without `..`.
    fn inside_templates(&mut self, path: &FieldPath, relative: &str) -> bool {
        let escapes = std::path::Path::new(relative)
            .components()
            .any(|component| {
                !matches!(
                    component,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if escapes {
            self.error(
                path,
                format!(
                    "`{relative}` leaves the `templates` directory: paths are relative to it and \
                     stay inside it (no `..`, not absolute)"
                ),
            );
        }
        !escapes
    }

    fn file_exists(&mut self, path: &FieldPath, relative: &str) {
        if !self.inside_templates(path, relative) {
            return;
        }
        let full = self.loaded.templates_dir.join(relative);
        if !full.is_file() {
            self.error(
                path,
                format!(
                    "file `{relative}` not found (looked for {}; paths are relative to the `templates` directory)",
                    full.display()
                ),
            );
        }
    }

    fn template(&mut self, path: &FieldPath, relative: &str) {
        if !self.inside_templates(path, relative) {
            return;
        }
        let full = self.loaded.templates_dir.join(relative);
        match std::fs::read_to_string(&full) {
            Err(error) => self.error(
                path,
                format!(
                    "template `{relative}` cannot be read ({error}; looked for {}; paths are \
                     relative to the `templates` directory)",
                    full.display()
                ),
            ),
            Ok(text) => {
                if let Err(error) = check_template(&full, &text) {
                    self.error(path, error);
                }
            }
        }
    }
}

/// Checks an OpenSearch index template or ISM policy name: it becomes a URL path segment, so
/// only what OpenSearch allows in names (lowercase letters, digits, `.`, `_`, `-`), not
/// starting with `_`, `-` or `+`, and not `.` or `..`.
pub fn opensearch_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.starts_with(['_', '-', '+'])
        || !name.chars().all(allowed)
    {
        return Err(format!(
            "`{name}` is not an OpenSearch name: lowercase letters, digits, `.`, `_` and `-`, \
             not starting with `_`, `-` or `+`"
        ));
    }
    Ok(())
}

/// Parses a tera template without rendering it; the error names the file and the problem.
pub fn check_template(file: &Path, text: &str) -> Result<(), String> {
    let mut tera = tera::Tera::default();
    tera.add_raw_template(&file.display().to_string(), text)
        .map(|_| ())
        .map_err(|error| {
            format!(
                "template {} does not parse: {}",
                file.display(),
                crate::error_chain(&error)
            )
        })
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A URL's text with whatever stands before its last `@` hidden: an unparseable URL may still
/// carry a password, which messages must not repeat.
fn without_login(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if scheme_end < at => {
            format!("{}://…@{}", &url[..scheme_end], &url[at + 1..])
        }
        (_, Some(at)) => format!("…@{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_login;

    #[test]
    fn a_url_in_a_message_never_shows_its_login() {
        assert_eq!(
            without_login("http://admin:a/b@host:9200/x"),
            "http://…@host:9200/x"
        );
        assert_eq!(without_login("admin:pw@host"), "…@host");
        assert_eq!(without_login("https://host:9200"), "https://host:9200");
    }
}
