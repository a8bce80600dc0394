//! `trails eks-token`: an EKS bearer token as a Kubernetes `ExecCredential`, for kubeconfigs'
//! `exec` credential plugins. trails points the kube client and helm at itself this way, so a
//! token is signed afresh whenever the one in use is about to expire (they last 15 minutes,
//! shorter than a long `helm --wait`).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{Failure, Outcome};
use crate::providers::aws;
use crate::providers::kube::connect::{TOKEN_LIFETIME, eks_token};

/// Arguments of `trails eks-token`.
#[derive(Debug, Args)]
pub struct EksTokenArgs {
    /// The EKS cluster's name.
    #[arg(long)]
    cluster: String,
    /// Its region.
    #[arg(long)]
    region: String,
}

/// Prints `{"kind": "ExecCredential", ..., "status": {"token": ..., "expirationTimestamp": ...}}`.
pub fn run(args: EksTokenArgs) -> Result<Outcome, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .map_err(Failure::Internal)?;
    let context = runtime.block_on(aws::Context::load(&args.region, Duration::from_secs(60)));
    let token = runtime
        .block_on(eks_token(&context, &args.cluster))
        .map_err(|error| Failure::User(error.into()))?;
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(TOKEN_LIFETIME).unwrap_or(chrono::Duration::zero());
    let credential = serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {
            "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "token": token,
        },
    });
    println!("{credential}");
    Ok(Outcome::Success)
}
