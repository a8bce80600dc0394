//! Names trails derives for AWS and Kubernetes objects, and the rules names must follow.

use super::load::Loaded;

/// `BLUEPRINT-ENV`, the prefix of every AWS name an environment owns.
pub fn prefix(loaded: &Loaded) -> String {
    format!("{}-{}", loaded.document.blueprint, loaded.environment)
}

/// The AWS name of a bucket: the explicit one, or `BLUEPRINT-ENV-SHORT`.
pub fn bucket_name(loaded: &Loaded, short: &str, explicit: Option<&str>) -> String {
    explicit
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{short}", prefix(loaded)))
}

/// A full availability-zone name from a suffix (`a`) or a full name in the region.
pub fn zone_name(region: &str, zone: &str) -> Option<String> {
    let is_suffix = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_lowercase());
    if is_suffix(zone) {
        Some(format!("{region}{zone}"))
    } else if let Some(suffix) = zone.strip_prefix(region)
        && is_suffix(suffix)
    {
        Some(zone.to_string())
    } else {
        None
    }
}

/// The letter that ends a zone name, used in resource names (`private-a`).
pub fn zone_letter(zone: &str) -> String {
    zone.chars()
        .last()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// RFC 1123 label: lowercase letters, digits and dashes, starting with a letter, at most 63.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A blueprint's name: a DNS label of at most 24 characters (it prefixes every AWS name).
pub fn is_blueprint_name(name: &str) -> bool {
    is_dns_label(name) && name.len() <= 24
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-2`.
pub fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// The AWS regions trails knows, taken on [`REGIONS_TAKEN`] from AWS's "AWS Region billing
/// codes" and "Supported AWS Regions" documentation pages (commercial, GovCloud and China).
pub const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

/// When [`REGIONS`] was taken.
pub const REGIONS_TAKEN: &str = "2026-12-02";

/// What is wrong with a region name, if anything: `Err` for one that cannot be a region or is
/// a typo of a known one (with the known one), `Ok(Some)` for a well-formed one trails does not
/// know (AWS may have opened it since [`REGIONS_TAKEN`]), `Ok(None)` for a known one.
pub fn region_problem(region: &str) -> Result<Option<String>, String> {
    if REGIONS.contains(&region) {
        return Ok(None);
    }
    let near = REGIONS
        .iter()
        .map(|known| {
            (
                strsim::normalized_damerau_levenshtein(region, known),
                *known,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match near {
        Some((_, known)) => Err(format!(
            "`{region}` is not an AWS region; did you mean `{known}`?"
        )),
        None if is_region(region) => Ok(Some(format!(
            "`{region}` is not a region trails knows (its list was taken on {REGIONS_TAKEN}); \
             if AWS opened it since, this warning can be ignored"
        ))),
        None => Err(format!(
            "`{region}` is not an AWS region name such as `eu-west-1`"
        )),
    }
}

/// EKS's Kubernetes minor versions with the last day of their standard and of their extended
/// support (`YYYY-MM-DD`), as the EKS release calendar gave them on [`EKS_VERSIONS_TAKEN`]
/// (read from endoflife.date's copy of it; AWS's "Understand the Kubernetes version lifecycle
/// on EKS" page holds the calendar: 14 months of standard support, then 12 of extended).
pub const EKS_VERSIONS: &[(u16, &str, &str)] = &[
    (29, "2025-03-23", "2026-03-23"),
    (30, "2025-07-23", "2026-07-23"),
    (31, "2025-11-26", "2026-11-26"),
    (32, "2026-03-23", "2027-03-23"),
    (33, "2026-07-29", "2027-07-29"),
    (34, "2026-12-02", "2027-12-02"),
    (35, "2027-03-27", "2028-03-27"),
];

/// When [`EKS_VERSIONS`] was taken.
pub const EKS_VERSIONS_TAKEN: &str = "2026-12-02";

/// EKS add-on versions known to run on a Kubernetes minor, as AWS's own add-on pages listed
/// them on [`EKS_ADDONS_TAKEN`] ("Manage kube-proxy in Amazon EKS clusters", "Manage CoreDNS
/// for DNS in Amazon EKS clusters": the latest version of the EKS add-on type per minor).
/// An add-on or minor missing here is not known to trails: `validate` says it could not check
/// it. An empty version in a blueprint asks EKS for its default for the cluster's minor.
pub const EKS_ADDON_VERSIONS: &[(&str, u16, &[&str])] = &[
    (
        "kube-proxy",
        35,
        &["v1.35.3-eksbuild.2", "v1.35.3-eksbuild.13"],
    ),
    (
        "kube-proxy",
        34,
        &["v1.34.6-eksbuild.2", "v1.34.6-eksbuild.13"],
    ),
    (
        "kube-proxy",
        33,
        &["v1.33.10-eksbuild.2", "v1.33.10-eksbuild.13"],
    ),
    ("coredns", 35, &["v1.13.2-eksbuild.4"]),
    ("coredns", 34, &["v1.13.2-eksbuild.4"]),
    ("coredns", 33, &["v1.13.2-eksbuild.4"]),
];

/// When [`EKS_ADDON_VERSIONS`] was taken.
pub const EKS_ADDONS_TAKEN: &str = "2026-12-08";

/// What is wrong with add-on `addon` pinned at `version` on a cluster of Kubernetes
/// `cluster_version` (`1.N`), as a warning: a kube-proxy of another minor (kube-proxy follows
/// the control plane's minor), a version not on [`EKS_ADDON_VERSIONS`] for that minor, or an
/// add-on or minor the table does not know (so nothing was checked). `None` for a known
/// version or an empty one (EKS's default for the minor).
pub fn eks_addon_problem(addon: &str, version: &str, cluster_version: &str) -> Option<String> {
    if version.is_empty() {
        return None;
    }
    let minor = kubernetes_minor(cluster_version)?;
    if addon == "kube-proxy" && !version.starts_with(&format!("v1.{minor}.")) {
        return Some(format!(
            "kube-proxy {version} is not for Kubernetes 1.{minor}: kube-proxy runs the control \
             plane's minor version (v1.{minor}.x-eksbuild.N)"
        ));
    }
    let known = EKS_ADDON_VERSIONS
        .iter()
        .find(|(name, m, _)| *name == addon && *m == minor)
        .map(|(_, _, versions)| *versions);
    match known {
        Some(versions) if versions.contains(&version) => None,
        Some(versions) => Some(format!(
            "{addon} {version} is not on trails' list for Kubernetes 1.{minor} (taken \
             {EKS_ADDONS_TAKEN}: {}); `aws eks describe-addon-versions --addon-name {addon} \
             --kubernetes-version 1.{minor}` lists what EKS offers",
            versions.join(", ")
        )),
        None => Some(format!(
            "trails could not check {addon} {version} against Kubernetes 1.{minor}: its list \
             (taken {EKS_ADDONS_TAKEN}) does not know that add-on on that version; an empty \
             version lets EKS choose its default for the minor"
        )),
    }
}

/// Where a Kubernetes version stands in EKS's support on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EksSupport {
    /// In standard support.
    Standard,
    /// In extended support, which costs more, until the day given.
    Extended(&'static str),
    /// Past extended support since the day given: EKS upgrades such clusters itself.
    Ended(&'static str),
    /// Not on the calendar (malformed, too old or too new).
    Unknown,
}

/// `N` of a Kubernetes minor version `1.N`.
fn kubernetes_minor(version: &str) -> Option<u16> {
    match version.split_once('.') {
        Some(("1", minor)) => minor.parse().ok(),
        _ => None,
    }
}

/// Where `version` (`1.N`) stands on `today` (`YYYY-MM-DD`) by [`EKS_VERSIONS`].
pub fn eks_support(version: &str, today: &str) -> EksSupport {
    let minor = kubernetes_minor(version);
    match EKS_VERSIONS.iter().find(|(m, _, _)| Some(*m) == minor) {
        None => EksSupport::Unknown,
        Some((_, _, extended)) if today > *extended => EksSupport::Ended(extended),
        Some((_, standard, extended)) if today > *standard => EksSupport::Extended(extended),
        Some(_) => EksSupport::Standard,
    }
}

/// What is wrong with an EKS Kubernetes version as of `today` (`YYYY-MM-DD`): `Err` for one EKS
/// cannot run (not `1.N`, older than the list, or beyond the next one to come), `Ok(Some)` for
/// a warning (past its standard or extended support, or newer than the list), `Ok(None)` for a
/// version in standard support.
pub fn eks_version_problem(version: &str, today: &str) -> Result<Option<String>, String> {
    let minor = kubernetes_minor(version).ok_or_else(|| {
        format!("`{version}` is not a pinned Kubernetes minor version such as \"1.33\"")
    })?;
    let (oldest, newest) = match (EKS_VERSIONS.first(), EKS_VERSIONS.last()) {
        (Some(oldest), Some(newest)) => (oldest.0, newest.0),
        _ => return Ok(None),
    };
    if minor > newest + 1 {
        return Err(format!(
            "EKS has no Kubernetes {version}: the newest on trails' list (taken {EKS_VERSIONS_TAKEN}) \
             is 1.{newest}"
        ));
    }
    if minor > newest {
        return Ok(Some(format!(
            "Kubernetes {version} is newer than trails' list of EKS versions (taken \
             {EKS_VERSIONS_TAKEN}); if EKS offers it since, this warning can be ignored"
        )));
    }
    match eks_support(version, today) {
        EksSupport::Unknown => Err(format!(
            "EKS no longer runs Kubernetes {version}: the oldest version it still ran on \
             {EKS_VERSIONS_TAKEN} was 1.{oldest}"
        )),
        EksSupport::Ended(extended) => Ok(Some(format!(
            "EKS's extended support of Kubernetes {version} ended on {extended}: a new cluster \
             cannot be made with it and EKS upgrades existing ones on its own; move to a newer \
             version"
        ))),
        EksSupport::Extended(extended) => Ok(Some(format!(
            "Kubernetes {version} left EKS's standard support; extended support, until \
             {extended}, costs more per cluster hour"
        ))),
        EksSupport::Standard => Ok(None),
    }
}

/// `03:00-04:00`.
pub fn is_time_window(window: &str) -> bool {
    let time = |t: &str| match t.split_once(':') {
        Some((h, m)) => {
            h.len() == 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        }
        None => false,
    };
    window
        .split_once('-')
        .is_some_and(|(start, end)| time(start) && time(end))
}

/// A plain SQL identifier.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// S3's bucket naming rules (without the rarely hit IP-address form).
pub fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.contains("..")
}

/// Namespaces every cluster has, which trails never creates.
pub fn is_system_namespace(namespace: &str) -> bool {
    matches!(
        namespace,
        "default" | "kube-system" | "kube-public" | "kube-node-lease"
    )
}

/// An exact chart version: `MAJOR.MINOR.PATCH` (a `v` before it, a pre-release or build
/// after it allowed). Helm reads anything else as a range: `6` and `6.1` match every
/// `6.x` and `6.1.x`, `^6`, `~6.1` and `6.x` likewise.
pub fn is_pinned_version(version: &str) -> bool {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let core = bare.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
}

/// Kafka topic names.
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// An image reference with a digest, or a tag other than `latest`.
pub fn is_pinned_image(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

/// A name usable as the last part of an address: dots become dashes.
pub fn address_name(name: &str) -> String {
    name.replace(['.', '_', '/'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_accept_letters_and_full_names_of_the_region_only() {
        assert_eq!(zone_name("eu-west-1", "a").as_deref(), Some("eu-west-1a"));
        assert_eq!(
            zone_name("eu-west-1", "eu-west-1c").as_deref(),
            Some("eu-west-1c")
        );
        assert_eq!(zone_name("eu-west-1", "us-east-1a"), None);
        assert_eq!(zone_name("eu-west-1", "ab"), None);
    }

    #[test]
    fn names_follow_aws_and_kubernetes_rules() {
        assert!(is_region("eu-west-1") && is_region("us-gov-west-1"));
        assert!(!is_region("europe") && !is_region("eu-west"));
        assert_eq!(region_problem("eu-west-1"), Ok(None));
        assert!(region_problem("eu-centrl-1").is_err_and(|e| e.contains("`eu-central-1`")));
        assert!(region_problem("xx-moon-1").is_ok_and(|warning| warning.is_some()));
        assert!(region_problem("europe").is_err());
        assert!(is_dns_label("turia-trails") && !is_dns_label("Turia") && !is_dns_label("a-"));
        assert!(is_bucket_name("turia-prod-backups") && !is_bucket_name("Up"));
        let day = "2026-12-02";
        assert_eq!(eks_version_problem("1.35", day), Ok(None));
        assert!(eks_version_problem("1.30.2", day).is_err());
        assert!(eks_version_problem("1.99", day).is_err_and(|e| e.contains("newest")));
        assert!(eks_version_problem("1.20", day).is_err_and(|e| e.contains("no longer")));
        assert!(eks_version_problem("1.36", day).is_ok_and(|w| w.is_some()));
        assert!(eks_version_problem("1.32", day).is_ok_and(|w| {
            w.is_some_and(|w| w.contains("extended support, until 2027-03-23"))
        }));
        assert_eq!(eks_support("1.35", day), EksSupport::Standard);
        assert_eq!(eks_support("1.32", day), EksSupport::Extended("2027-03-23"));
        assert_eq!(eks_support("1.30", day), EksSupport::Ended("2026-07-23"));
        assert_eq!(eks_support("1.99", day), EksSupport::Unknown);
        assert!(eks_version_problem("1.30", day).is_ok_and(|w| {
            w.is_some_and(|w| w.contains("extended support of Kubernetes 1.30 ended"))
        }));
        // Add-ons: kube-proxy follows the control plane; others are checked against the list,
        // and what the list does not know is said to be unchecked, not passed.
        assert_eq!(
            eks_addon_problem("kube-proxy", "v1.35.3-eksbuild.2", "1.35"),
            None
        );
        assert_eq!(eks_addon_problem("vpc-cni", "", "1.35"), None);
        assert!(
            eks_addon_problem("kube-proxy", "v1.30.0-eksbuild.3", "1.35")
                .is_some_and(|w| w.contains("not for Kubernetes 1.35"))
        );
        assert!(
            eks_addon_problem("coredns", "v1.11.1-eksbuild.9", "1.35")
                .is_some_and(|w| w.contains("v1.13.2-eksbuild.4"))
        );
        assert!(
            eks_addon_problem("vpc-cni", "v1.18.3-eksbuild.1", "1.35")
                .is_some_and(|w| w.contains("could not check"))
        );
        assert!(is_time_window("03:00-04:00") && !is_time_window("3-4"));
        assert!(
            is_pinned_version("4.11.3") && !is_pinned_version("4.x") && !is_pinned_version("^4")
        );
        assert!(is_pinned_version("v1.16.1") && is_pinned_version("1.0.0-rc.1+build.5"));
        assert!(
            !is_pinned_version("6") && !is_pinned_version("6.1") && !is_pinned_version("~6.1.0")
        );
        assert!(is_pinned_image("ghcr.io/turia/ingest:0.1.0"));
        assert!(!is_pinned_image("ghcr.io/turia/ingest:latest"));
        assert!(!is_pinned_image("localhost:5000/ingest"));
    }
}
