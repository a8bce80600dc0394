//! The ingest service's deployment: its environment as a secret and its objects from
//! `ingest/` in the templates directory.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::dayone::{PostgresDatabase, Topic};
use super::helm::Release;
use super::kube::{Manifest, Secret, in_cluster};
use super::{address, file_digest, sorted};
use crate::blueprint::FieldPath;
use crate::blueprint::INGEST_TEMPLATES;
use crate::blueprint::naming::address_name;
use crate::graph::Builder;

/// Charts that install the ServiceMonitor CRD.
const PROMETHEUS_OPERATOR_CHARTS: &[&str] = &["kube-prometheus-stack", "prometheus-operator-crds"];

/// Name of the secret that carries the service's environment.
pub const ENV_SECRET: &str = "ingest-env";

/// Expands `ingest`.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let Some(ingest) = &loaded.document.ingest else {
        return;
    };
    let base = FieldPath::of("ingest");
    // The whole environment goes into a secret: it usually carries credentials.
    let secret = builder.add(
        ENV_SECRET,
        &Secret {
            owner: builder.owner::<Secret>(ENV_SECRET),
            name: ENV_SECRET.to_string(),
            namespace: ingest.namespace.clone(),
            data: sorted(&ingest.env),
        },
        base.key("env"),
    );
    in_cluster(builder, &secret, Some(&ingest.namespace));

    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    values.insert("image".into(), json!(ingest.image));
    values.insert("namespace".into(), json!(ingest.namespace));
    values.insert("resources".into(), json!(ingest.resources));
    values.insert("env_secret".into(), json!(ENV_SECRET));
    // Each trusted CA: the variable that names the file, the Secret and where it is mounted.
    let trust: Vec<Value> = ingest
        .trust
        .iter()
        .map(|(variable, secret)| {
            json!({
                "variable": variable,
                "secret": secret,
                "volume": format!("trust-{}", address_name(secret)),
                "directory": format!("/etc/trails/trust/{secret}"),
                "file": format!("/etc/trails/trust/{secret}/ca.crt"),
            })
        })
        .collect();
    values.insert("trust".into(), json!(trust));
    // With autoscaling the HPA owns the replica count (from `autoscaling.min` up); a count in
    // the Deployment would undo its scaling on every apply and show as drift.
    match &ingest.autoscaling {
        Some(scaling) => {
            values.insert("autoscaling".into(), json!(scaling));
        }
        None => {
            values.insert("replicas".into(), json!(ingest.replicas));
        }
    }
    if let Some(host) = &ingest.host {
        values.insert("host".into(), json!(host));
        values.insert("tls_issuer".into(), json!(ingest.tls_issuer));
    }

    // The service needs its topics and its API-key table before it can become ready.
    let prerequisites: Vec<String> = {
        let doc = &loaded.document;
        let topics = doc.kafka.iter().flat_map(|kafka| {
            kafka
                .topics
                .keys()
                .map(|name| address::<Topic>(&address_name(name)))
        });
        let databases = doc.postgres.iter().flat_map(|(instance, spec)| {
            spec.databases.keys().map(move |database| {
                address::<PostgresDatabase>(&format!("{instance}-{}", address_name(database)))
            })
        });
        topics.chain(databases).collect()
    };

    for template in INGEST_TEMPLATES {
        let stem = template.trim_end_matches(".yaml");
        let wanted = match stem {
            "hpa" => ingest.autoscaling.is_some(),
            "ingress" => ingest.host.is_some(),
            _ => true,
        };
        if !wanted {
            continue;
        }
        let path = format!("ingest/{template}");
        let name = format!("ingest-{stem}");
        let address = builder.add(
            &name,
            &Manifest {
                owner: builder.owner::<Manifest>(&name),
                template: path.clone(),
                template_digest: file_digest(loaded, &path),
                namespace: Some(ingest.namespace.clone()),
                values: values.clone(),
            },
            base.clone(),
        );
        in_cluster(builder, &address, Some(&ingest.namespace));
        if stem == "servicemonitor" {
            // Its kind comes with the Prometheus operator: the release that brings the CRDs
            // goes first (and, on destroy, after it).
            for (name, release) in &loaded.document.helm {
                if PROMETHEUS_OPERATOR_CHARTS.contains(&release.chart.as_str()) {
                    builder.depends(&address, &super::address::<Release>(name));
                }
            }
        }
        if stem == "deployment" {
            builder.depends(&address, &secret);
            builder.depends_on_declared(&address, &ingest.depends_on, &base.key("depends_on"));
            for prerequisite in &prerequisites {
                builder.depends(&address, prerequisite);
            }
        }
    }
}
