//! The cost of an environment before and after a plan, per resource, from the Price List
//! extracts of [`prices`] and the billed components of [`usage`]; and the gates on it (the
//! environment's `budget`, `--max-increase`).
//!
//! A component the prices cannot price is listed as unpriced, never guessed: the totals are
//! then lower bounds, and say so.

pub mod prices;
pub mod usage;

use serde::Serialize;

use crate::blueprint::Loaded;
use crate::graph::Graph;
use crate::plan::Plan;
use crate::resources::Kind;
use crate::state::State;
use prices::Prices;
use usage::Component;

/// The estimate `plan` shows and gates on.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Always `USD`: the Price List's currency.
    pub currency: &'static str,
    /// The month of what the state records.
    pub monthly_before: f64,
    /// The month of what the blueprint asks for (nothing after a destroy).
    pub monthly_after: f64,
    /// False when a component is unpriced: the totals are then lower bounds.
    pub complete: bool,
    /// The region the prices are for.
    pub region: String,
    /// Where the prices came from (`built in` or a file) and each offer's publication date.
    pub prices: PriceSource,
    /// Every resource something is billed for.
    pub per_resource: Vec<Line>,
    /// An ephemeral environment's cost until its TTL ends, at the after rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_expiry: Option<UntilExpiry>,
}

/// Where the prices came from.
#[derive(Debug, Clone, Serialize)]
pub struct PriceSource {
    /// `built in`, or the extract file that `trails prices update` wrote.
    pub origin: String,
    /// `AmazonEKS 2024-04-01`, one per offer.
    pub published: Vec<String>,
}

/// An ephemeral environment's cost over its life.
#[derive(Debug, Clone, Serialize)]
pub struct UntilExpiry {
    /// Its TTL in hours.
    pub hours: f64,
    /// The after rate over those hours.
    pub usd: f64,
}

/// One resource's cost.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Its address.
    pub address: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A month of it as recorded.
    pub monthly_before: f64,
    /// A month of it as the blueprint asks.
    pub monthly_after: f64,
    /// The components of the after side (the before side when it goes).
    pub components: Vec<Priced>,
}

impl Line {
    /// After minus before.
    pub fn delta(&self) -> f64 {
        self.monthly_after - self.monthly_before
    }
}

/// One component with its price, or why it has none.
#[derive(Debug, Clone, Serialize)]
pub struct Priced {
    /// What it is.
    pub name: String,
    /// Units a month.
    pub quantity: f64,
    /// Their unit.
    pub unit: &'static str,
    /// USD per unit, when priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_unit: Option<f64>,
    /// A month of it, when priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly: Option<f64>,
    /// Why it is not priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<String>,
    /// The assumption behind the quantity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn price(prices: &Prices, component: Component) -> Priced {
    let (usd_per_unit, unpriced) = match &component.product {
        None => (None, Some("the Price List has no price for it".to_string())),
        Some(selector) => match prices.find(selector) {
            Some(found) if found.unit.eq_ignore_ascii_case(component.unit) => {
                (Some(found.usd), None)
            }
            Some(found) => (
                None,
                Some(format!(
                    "priced per {}, not per {}",
                    found.unit, component.unit
                )),
            ),
            None => {
                let mut what: Vec<String> = selector.usage.iter().cloned().collect();
                what.extend(selector.attributes.iter().map(|(k, v)| format!("{k}={v}")));
                (
                    None,
                    Some(format!(
                        "no {} price for {} in the {} prices",
                        selector.offer,
                        what.join(", "),
                        prices.extract.region
                    )),
                )
            }
        },
    };
    Priced {
        monthly: usd_per_unit.map(|usd| usd * component.quantity),
        name: component.name,
        quantity: component.quantity,
        unit: component.unit,
        usd_per_unit,
        unpriced,
        note: component.note,
    }
}

/// A sum in whole cents (and never `-0.0`, which an empty `f64` sum is).
fn total(amounts: impl Iterator<Item = f64>) -> f64 {
    (amounts.fold(0.0, |sum, amount| sum + amount) * 100.0).round() / 100.0 + 0.0
}

fn monthly(components: &[Priced]) -> f64 {
    total(components.iter().filter_map(|c| c.monthly))
}

/// Estimates the environment before (`recorded`) and after `plan`.
pub fn estimate(
    loaded: &Loaded,
    graph: &Graph,
    recorded: &State,
    plan: &Plan,
) -> anyhow::Result<Estimate> {
    let dir = loaded
        .file
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."));
    let region = &loaded.document.region;
    let prices = Prices::for_region(dir, region)?;
    let today = crate::policy::today()?.format("%Y-%m-%d").to_string();
    let priced = |kind: &Kind, attributes: &serde_json::Map<String, serde_json::Value>| {
        usage::components(kind, attributes, &today)
            .into_iter()
            .map(|component| price(&prices, component))
            .collect::<Vec<_>>()
    };
    // By address, in the blueprint's order then the state's: the type, the components as
    // recorded (before) and as the blueprint asks (after; none in a destroy).
    type Sides = (&'static Kind, Vec<Priced>, Vec<Priced>);
    let mut sides: indexmap::IndexMap<&str, Sides> = indexmap::IndexMap::new();
    if !plan.destroy {
        for resource in graph.resources() {
            let after = priced(resource.kind, &resource.attributes);
            sides.insert(&resource.address, (resource.kind, Vec::new(), after));
        }
    }
    for (address, record) in &recorded.resources {
        if let Some(kind) = crate::resources::kind(&record.kind) {
            sides
                .entry(address.as_str())
                .or_insert_with(|| (kind, Vec::new(), Vec::new()))
                .1 = priced(kind, &record.attributes);
        }
    }
    let lines: Vec<Line> = sides
        .into_iter()
        .filter(|(_, (_, before, after))| !(before.is_empty() && after.is_empty()))
        .map(|(address, (kind, before, after))| Line {
            address: address.to_string(),
            kind: kind.name,
            monthly_before: monthly(&before),
            monthly_after: monthly(&after),
            components: if after.is_empty() { before } else { after },
        })
        .collect();
    let monthly_after = total(lines.iter().map(|l| l.monthly_after));
    let until_expiry = crate::state::lifetime::ttl(&loaded.settings)
        .filter(|_| !plan.destroy)
        .map(|ttl| {
            let hours = ttl.as_secs_f64() / 3600.0;
            UntilExpiry {
                hours,
                usd: total(std::iter::once(monthly_after * hours / usage::HOURS)),
            }
        });
    Ok(Estimate {
        currency: "USD",
        monthly_before: total(lines.iter().map(|l| l.monthly_before)),
        monthly_after,
        complete: lines
            .iter()
            .flat_map(|l| &l.components)
            .all(|c| c.unpriced.is_none()),
        region: region.clone(),
        prices: PriceSource {
            origin: prices.origin.clone(),
            published: prices.publications(),
        },
        per_resource: lines,
        until_expiry,
    })
}

pub use crate::blueprint::schema::parse_budget;

/// The limits a plan's cost must keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// The environment's monthly budget (USD).
    pub budget: Option<f64>,
    /// The largest monthly increase allowed (USD).
    pub max_increase: Option<f64>,
}

impl Estimate {
    /// After minus before.
    pub fn delta(&self) -> f64 {
        self.monthly_after - self.monthly_before
    }

    /// Why `apply` refuses, or `None` when the cost keeps its limits. Unpriced components
    /// make the totals lower bounds, so a limit exceeded is exceeded for certain.
    pub fn refusal(&self, limits: Limits) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(budget) = limits.budget
            && self.monthly_after > budget
        {
            reasons.push(format!(
                "the monthly estimate {} exceeds the environment's budget {}",
                money(self.monthly_after),
                money(budget)
            ));
        }
        if let Some(most) = limits.max_increase
            && self.delta() > most
        {
            reasons.push(format!(
                "the monthly estimate grows by {}, more than --max-increase {}",
                money(self.delta()),
                money(most)
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    fn bound(&self) -> &'static str {
        if self.complete { "" } else { "at least " }
    }

    fn unpriced(&self) -> usize {
        self.per_resource
            .iter()
            .flat_map(|l| &l.components)
            .filter(|c| c.unpriced.is_some())
            .count()
    }

    fn headline(&self) -> String {
        let mut out = format!(
            "{}{} a month before, {}{} after ({})",
            self.bound(),
            money(self.monthly_before),
            self.bound(),
            money(self.monthly_after),
            signed(self.delta())
        );
        if let Some(until) = &self.until_expiry {
            out.push_str(&format!(
                "; {}{} until the TTL ends ({} h)",
                self.bound(),
                money(until.usd),
                until.hours
            ));
        }
        out
    }

    fn source(&self) -> String {
        let published = if self.prices.published.is_empty() {
            "none".to_string()
        } else {
            self.prices.published.join(", ")
        };
        let origin = if self.prices.origin == prices::BUILT_IN {
            self.prices.origin.clone()
        } else {
            format!("from {}", self.prices.origin)
        };
        format!("prices for {} {origin}: {published}", self.region)
    }
}

/// `$1,234.50`.
pub fn money(usd: f64) -> String {
    let cents = (usd.abs() * 100.0).round() as u64;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if usd < 0.0 && cents > 0 { "-" } else { "" };
    format!("{sign}${grouped}.{:02}", cents % 100)
}

fn signed(usd: f64) -> String {
    if usd >= 0.005 {
        format!("+{}", money(usd))
    } else {
        money(usd)
    }
}

fn component_text(component: &Priced) -> String {
    let quantity = format!("{} {}", component.quantity, component.unit);
    match (&component.usd_per_unit, &component.unpriced) {
        (Some(usd), _) => format!("{}: {quantity} × ${usd}", component.name),
        (None, Some(why)) => format!("{}: unpriced, {why}", component.name),
        (None, None) => component.name.clone(),
    }
}

/// The Cost section of `plan`'s text.
pub fn text(estimate: &Estimate, limits: Limits) -> String {
    let mut out = format!(
        "Cost (USD; {}):\n  {}\n",
        estimate.source(),
        estimate.headline()
    );
    let unpriced = estimate.unpriced();
    if unpriced > 0 {
        out.push_str(&format!(
            "  {unpriced} component(s) unpriced, so the totals are lower bounds; `trails prices \
             update --from OFFER_FILE` adds prices from AWS's Price List\n"
        ));
    }
    for line in &estimate.per_resource {
        out.push_str(&format!(
            "  {:>10}  {}  ({} a month)\n",
            signed(line.delta()),
            line.address,
            money(line.monthly_after)
        ));
        for component in &line.components {
            out.push_str(&format!("              {}\n", component_text(component)));
            if let Some(note) = &component.note {
                out.push_str(&format!("                ({note})\n"));
            }
        }
    }
    if let Some(budget) = limits.budget {
        let state = if estimate.monthly_after > budget {
            "exceeded"
        } else if estimate.complete {
            "kept"
        } else {
            "kept by what is priced"
        };
        out.push_str(&format!("  budget {} a month: {state}\n", money(budget)));
    }
    out
}

/// The Cost section of the Markdown plan.
pub fn markdown(estimate: &Estimate, limits: Limits) -> String {
    let mut out = format!(
        "**Monthly estimate:** {}.\n\n_{}_\n",
        estimate.headline(),
        estimate.source()
    );
    if let Some(budget) = limits.budget {
        out.push_str(&format!(
            "\nBudget {} a month: {}.\n",
            money(budget),
            if estimate.monthly_after > budget {
                "**exceeded**"
            } else {
                "kept"
            }
        ));
    }
    if estimate.per_resource.is_empty() {
        return out;
    }
    out.push_str("\n| Resource | Before | After | Change | Components |\n|---|---|---|---|---|\n");
    for line in &estimate.per_resource {
        let parts: Vec<String> = line.components.iter().map(component_text).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            line.address,
            money(line.monthly_before),
            money(line.monthly_after),
            signed(line.delta()),
            parts.join("; ").replace('|', "\\|")
        ));
    }
    out
}

/// The environment's budget, read from its settings (validation has checked it).
pub fn limits(loaded: &Loaded, max_increase: Option<f64>) -> Limits {
    Limits {
        budget: loaded
            .settings
            .budget
            .as_deref()
            .and_then(|text| parse_budget(text).ok()),
        max_increase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_in_dollars_and_cents_with_thousands_grouped() {
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(73.0), "$73.00");
        assert_eq!(money(1234.5), "$1,234.50");
        assert_eq!(money(-12.345), "-$12.35");
        assert_eq!(money(1_000_000.0), "$1,000,000.00");
    }

    #[test]
    fn a_budget_is_an_amount_in_usd_a_month() {
        assert_eq!(parse_budget("1500 USD/month"), Ok(1500.0));
        assert_eq!(parse_budget("1,500"), Ok(1500.0));
        assert_eq!(parse_budget("$20 USD"), Ok(20.0));
        assert!(parse_budget("1500 EUR/month").is_err());
        assert!(parse_budget("lots").is_err());
        assert!(parse_budget("-3").is_err());
        assert!(parse_budget("10 USD/month please").is_err());
    }
}
