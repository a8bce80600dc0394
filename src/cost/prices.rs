//! Prices: a trimmed extract of the AWS Price List bulk offer files, one file per region.
//!
//! Each offer in an extract keeps the shape of the bulk offer file it came from (`offerCode`,
//! `publicationDate`, `products` with their `attributes`, `terms.OnDemand` with their
//! `priceDimensions`), trimmed to the products trails prices ([`KEPT`]). The extracts shipped
//! in `prices/` are compiled in; `trails prices update --from FILE` reads a downloaded offer
//! file and writes `.trails/prices/REGION.json` beside the blueprint, which wins over them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The origin of the shipped extracts.
pub const BUILT_IN: &str = "built in";

/// The extracts shipped in `prices/`, by region.
const SHIPPED: &[(&str, &str)] = &[
    ("eu-west-1", include_str!("../../prices/eu-west-1.json")),
    ("us-east-1", include_str!("../../prices/us-east-1.json")),
];

/// The products trails prices, by offer: `(offer code, product family, usage type suffix)`.
/// An offer file is trimmed to these; [`super::usage`] selects among them.
pub const KEPT: &[(&str, Option<&str>, Option<&str>)] = &[
    ("AmazonEKS", None, Some("AmazonEKS-Hours:perCluster")),
    ("AmazonEKS", None, Some("AmazonEKS-Hours:extendedSupport")),
    ("AmazonEC2", Some("Compute Instance"), None),
    ("AmazonEC2", Some("NAT Gateway"), Some("NatGateway-Hours")),
    ("AmazonVPC", None, Some("PublicIPv4:InUseAddress")),
    ("AmazonRDS", Some("Database Instance"), None),
    ("AmazonRDS", Some("Database Storage"), None),
    ("AmazonElastiCache", Some("Cache Instance"), None),
    ("AmazonS3", None, Some("TimedStorage-ByteHrs")),
    (
        "AWSELB",
        Some("Load Balancer-Network"),
        Some("LoadBalancerUsage"),
    ),
];

/// One region's prices.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extract {
    /// `v1.0`, as in the offer files.
    pub format_version: String,
    /// The AWS region (`eu-west-1`).
    pub region: String,
    /// The offers, by offer code (`AmazonEKS`).
    pub offers: BTreeMap<String, Offer>,
}

/// One offer, in the bulk offer file's shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// `AmazonEKS`, `AmazonEC2`...
    pub offer_code: String,
    /// The offer file's version, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When AWS published these prices (`2024-04-01T00:00:00Z`).
    pub publication_date: String,
    /// Where the figures were taken from, for extracts not made from an offer file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Products by SKU.
    #[serde(default)]
    pub products: BTreeMap<String, Product>,
    /// Their prices.
    #[serde(default)]
    pub terms: Terms,
}

/// A product of an offer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Its SKU.
    pub sku: String,
    /// `Compute Instance`, `NAT Gateway`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_family: Option<String>,
    /// `usagetype`, `instanceType`, `regionCode`...
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The terms of an offer: only on-demand prices are read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Terms {
    /// By SKU, then by offer term code.
    #[serde(rename = "OnDemand", default)]
    pub on_demand: BTreeMap<String, BTreeMap<String, Term>>,
}

/// One on-demand term of a product.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Term {
    /// By rate code.
    #[serde(default)]
    pub price_dimensions: BTreeMap<String, Dimension>,
}

/// One price of a term.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dimension {
    /// `Hrs`, `GB-Mo`...
    pub unit: String,
    /// By currency: `{"USD": "0.1000000000"}`.
    pub price_per_unit: BTreeMap<String, String>,
    /// AWS's description of the price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The first unit of a tier (`0` for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_range: Option<String>,
}

/// What a billed component needs: a product of one offer, picked by family, usage type
/// (suffix: AWS prefixes it with a region code, `EU-`) and exact attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The offer code.
    pub offer: &'static str,
    /// The product family, when it narrows.
    pub family: Option<&'static str>,
    /// The usage type, without its region prefix.
    pub usage: Option<String>,
    /// Attributes that must be equal.
    pub attributes: Vec<(&'static str, String)>,
}

/// A price found for a selector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    /// USD per unit.
    pub usd: f64,
    /// The unit (`Hrs`).
    pub unit: String,
    /// The offer's publication date.
    pub published: String,
    /// The product's SKU.
    pub sku: String,
}

/// The prices of one region and where they came from.
#[derive(Debug, Clone)]
pub struct Prices {
    /// The extract (empty when none is known for the region).
    pub extract: Extract,
    /// `built in` or the file it was read from.
    pub origin: String,
}

impl Prices {
    /// The prices for `region`: `.trails/prices/REGION.json` beside the blueprint when
    /// present, else the shipped extract, else none.
    pub fn for_region(blueprint_dir: &Path, region: &str) -> anyhow::Result<Self> {
        let file = override_file(blueprint_dir, region);
        if file.exists() {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the prices in {}", file.display()))?;
            let extract: Extract = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a trails price extract (write it with `trails prices update`)",
                    file.display()
                )
            })?;
            return Ok(Self {
                extract,
                origin: file.display().to_string(),
            });
        }
        let extract = SHIPPED
            .iter()
            .find(|(name, _)| *name == region)
            .map(|(_, text)| {
                serde_json::from_str(text)
                    .with_context(|| format!("the built-in prices of {region} do not parse"))
            })
            .transpose()?
            .unwrap_or_else(|| Extract {
                format_version: "v1.0".into(),
                region: region.into(),
                offers: BTreeMap::new(),
            });
        Ok(Self {
            extract,
            origin: BUILT_IN.into(),
        })
    }

    /// The first-tier on-demand USD price of the product `selector` picks, if the extract
    /// has exactly such a product.
    pub fn find(&self, selector: &Selector) -> Option<Price> {
        let offer = self.extract.offers.get(selector.offer)?;
        offer
            .products
            .values()
            .filter(|product| selects(selector, product))
            .find_map(|product| {
                let terms = offer.terms.on_demand.get(&product.sku)?;
                let dimension = terms
                    .values()
                    .flat_map(|term| term.price_dimensions.values())
                    .find(|d| d.begin_range.as_deref().is_none_or(|begin| begin == "0"))?;
                let usd = dimension.price_per_unit.get("USD")?.parse::<f64>().ok()?;
                Some(Price {
                    usd,
                    unit: dimension.unit.clone(),
                    published: offer.publication_date.clone(),
                    sku: product.sku.clone(),
                })
            })
    }

    /// `AmazonEKS 2024-04-01`, one per offer, for the output.
    pub fn publications(&self) -> Vec<String> {
        self.extract
            .offers
            .values()
            .map(|offer| {
                let day = offer.publication_date.get(..10).unwrap_or_default();
                format!("{} {day}", offer.offer_code)
            })
            .collect()
    }
}

/// Where `prices update` writes a region's extract.
pub fn override_file(blueprint_dir: &Path, region: &str) -> PathBuf {
    blueprint_dir
        .join(".trails")
        .join("prices")
        .join(format!("{region}.json"))
}

fn usage_is(usagetype: &str, suffix: &str) -> bool {
    usagetype == suffix
        || usagetype
            .strip_suffix(suffix)
            .is_some_and(|prefix| prefix.ends_with('-'))
}

/// Whether `product` is of `family` and its usage type is `usage` (each when given).
fn of_kind(product: &Product, family: Option<&str>, usage: Option<&str>) -> bool {
    family.is_none_or(|family| product.product_family.as_deref() == Some(family))
        && usage.is_none_or(|usage| {
            product
                .attributes
                .get("usagetype")
                .is_some_and(|t| usage_is(t, usage))
        })
}

fn selects(selector: &Selector, product: &Product) -> bool {
    of_kind(product, selector.family, selector.usage.as_deref())
        && selector
            .attributes
            .iter()
            .all(|(name, value)| product.attributes.get(*name) == Some(value))
}

fn kept(offer: &str, product: &Product) -> bool {
    KEPT.iter()
        .any(|(code, family, usage)| *code == offer && of_kind(product, *family, *usage))
}

/// Reads a downloaded bulk offer file (one service, one region: the file the Price List's
/// `regionIndex` points at) and merges what trails prices into the region's prices beside the
/// blueprint ([`override_file`]), replacing that offer's earlier prices. Returns the region,
/// how many products were kept and the file written.
pub fn update(blueprint_dir: &Path, from: &Path) -> anyhow::Result<(String, usize, PathBuf)> {
    let text = std::fs::read_to_string(from)
        .with_context(|| format!("cannot read the offer file {}", from.display()))?;
    let offer: Offer = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an AWS Price List offer file (expected offerCode, publicationDate, \
             products and terms)",
            from.display()
        )
    })?;
    if offer.offer_code.is_empty() || offer.publication_date.is_empty() {
        bail!(
            "{}: `offerCode` and `publicationDate` must be set, as in every offer file",
            from.display()
        );
    }
    if !KEPT.iter().any(|(code, _, _)| *code == offer.offer_code) {
        let known: Vec<&str> = KEPT.iter().map(|(code, _, _)| *code).collect();
        bail!(
            "{}: trails prices nothing of offer `{}`; it reads {}",
            from.display(),
            offer.offer_code,
            known.join(", ")
        );
    }
    let regions: std::collections::BTreeSet<&str> = offer
        .products
        .values()
        .filter(|product| kept(&offer.offer_code, product))
        .filter_map(|product| product.attributes.get("regionCode").map(String::as_str))
        .collect();
    let region = match regions.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => one.to_string(),
        [] => bail!(
            "{}: no product trails prices carries a `regionCode`; download the offer file of \
             one region (the offer's region index lists them)",
            from.display()
        ),
        many => bail!(
            "{}: products of {} regions ({}); download the offer file of one region",
            from.display(),
            many.len(),
            many.join(", ")
        ),
    };
    let products: BTreeMap<String, Product> = offer
        .products
        .iter()
        .filter(|(_, product)| kept(&offer.offer_code, product))
        .filter(|(_, product)| {
            product.attributes.get("regionCode").map(String::as_str) == Some(region.as_str())
        })
        .map(|(sku, product)| (sku.clone(), product.clone()))
        .collect();
    let on_demand = offer
        .terms
        .on_demand
        .iter()
        .filter(|(sku, _)| products.contains_key(*sku))
        .map(|(sku, terms)| (sku.clone(), terms.clone()))
        .collect();
    let count = products.len();
    let file = override_file(blueprint_dir, &region);
    let mut extract = Prices::for_region(blueprint_dir, &region)?.extract;
    extract.offers.insert(
        offer.offer_code.clone(),
        Offer {
            offer_code: offer.offer_code.clone(),
            version: offer.version.clone(),
            publication_date: offer.publication_date.clone(),
            source: Some(from.display().to_string()),
            products,
            terms: Terms { on_demand },
        },
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&extract).context("serializing the prices")?;
    std::fs::write(&file, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok((region, count, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_type_matches_with_or_without_its_region_prefix() {
        assert!(usage_is("NatGateway-Hours", "NatGateway-Hours"));
        assert!(usage_is("EU-NatGateway-Hours", "NatGateway-Hours"));
        assert!(!usage_is("EU-NatGateway-Bytes", "NatGateway-Hours"));
        assert!(!usage_is("XNatGateway-Hours", "NatGateway-Hours"));
    }

    #[test]
    fn every_shipped_extract_parses_names_its_region_and_says_where_its_figures_come_from() {
        for (region, _) in SHIPPED {
            let prices = Prices::for_region(Path::new("/nonexistent"), region).expect("parses");
            assert_eq!(prices.origin, BUILT_IN);
            let extract = prices.extract;
            assert_eq!(&extract.region, region);
            for offer in extract.offers.values() {
                assert!(
                    offer
                        .source
                        .as_deref()
                        .is_some_and(|s| s.starts_with("https://")),
                    "{region} {}: every shipped figure names its published source",
                    offer.offer_code
                );
                assert!(!offer.publication_date.is_empty());
            }
        }
    }
}
