//! Connecting to the blueprint's cluster: a kubeconfig context for an existing cluster, or the
//! EKS cluster trails created, reached with its endpoint and CA and a token signed the way
//! `aws eks get-token` signs it (no kubectl or aws CLI needed).

use std::io::Write;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine;
use kube::config::KubeConfigOptions;
use serde_json::json;

use crate::providers::{ProviderError, aws};

/// Which cluster the in-cluster resources go to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A context of the kubeconfig (`KUBECONFIG` or `~/.kube/config`); `None` is its current one.
    Context(Option<String>),
    /// The EKS cluster of this name, which the blueprint declares.
    Eks(String),
}

/// A kubeconfig for a tool such as helm: the arguments that point it at the cluster, and the
/// temporary file (mode 0600) those arguments name, removed when this is dropped.
pub struct Kubeconfig {
    /// `--kube-context NAME` or `--kubeconfig FILE`.
    pub args: Vec<String>,
    _file: Option<tempfile::NamedTempFile>,
}

/// A client for the target.
pub async fn client(
    target: &Target,
    context: &aws::Context,
) -> Result<kube::Client, ProviderError> {
    let config = match target {
        Target::Context(name) => {
            let options = KubeConfigOptions {
                context: name.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|error| {
                    ProviderError::api(
                        &format!(
                            "load kubeconfig context {}",
                            name.as_deref().unwrap_or("(current)")
                        ),
                        error,
                    )
                })?
        }
        Target::Eks(cluster) => {
            let (endpoint, ca) = describe(context, cluster).await?;
            let uri = endpoint.parse().map_err(|error| {
                ProviderError::Invalid(format!("EKS endpoint {endpoint} is not a URL: {error}"))
            })?;
            let mut config = kube::Config::new(uri);
            config.root_cert = Some(der_certificates(&ca)?);
            // Signed by trails itself whenever the current token is about to expire.
            let exec: kube::config::ExecConfig =
                serde_json::from_value(exec_credential(cluster, &context.region)?)
                    .map_err(|error| ProviderError::Invalid(format!("exec credential: {error}")))?;
            config.auth_info.exec = Some(exec);
            config
        }
    };
    kube::Client::try_from(config)
        .map_err(|error| ProviderError::api("create the Kubernetes client", error))
}

/// Arguments (and a file, when needed) that point helm at the target.
pub async fn kubeconfig(
    target: &Target,
    context: &aws::Context,
) -> Result<Kubeconfig, ProviderError> {
    match target {
        Target::Context(Some(name)) => Ok(Kubeconfig {
            args: vec!["--kube-context".into(), name.clone()],
            _file: None,
        }),
        Target::Context(None) => Ok(Kubeconfig {
            args: Vec::new(),
            _file: None,
        }),
        Target::Eks(cluster) => {
            let (endpoint, ca) = describe(context, cluster).await?;
            let document = eks_kubeconfig(cluster, &endpoint, &ca, &context.region)?;
            // Private to this user and removed after use (it names no secret, but the cluster).
            let mut file = tempfile::Builder::new()
                .prefix("trails-kubeconfig-")
                .tempfile()
                .map_err(|error| {
                    ProviderError::Invalid(format!("cannot write a kubeconfig: {error}"))
                })?;
            file.write_all(document.to_string().as_bytes())
                .map_err(|error| {
                    ProviderError::Invalid(format!("cannot write a kubeconfig: {error}"))
                })?;
            let path = file.path().display().to_string();
            Ok(Kubeconfig {
                args: vec!["--kubeconfig".into(), path],
                _file: Some(file),
            })
        }
    }
}

/// A kubeconfig for EKS cluster `cluster` at `endpoint` (its CA bundle `ca`, base64), whose
/// user runs this binary's `eks-token` for a token: one context named after the cluster.
pub fn eks_kubeconfig(
    cluster: &str,
    endpoint: &str,
    ca: &str,
    region: &str,
) -> Result<serde_json::Value, ProviderError> {
    let user = format!("trails-{cluster}");
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"exec": exec_credential(cluster, region)?}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }))
}

/// How long an EKS token is accepted (the STS presigned URL's lifetime, minus a margin).
pub const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(14 * 60);

/// A kubeconfig `exec` credential that runs this trails binary's `eks-token` for `cluster`:
/// clients run it again when the token it printed expires.
fn exec_credential(cluster: &str, region: &str) -> Result<serde_json::Value, ProviderError> {
    let program = std::env::current_exe().map_err(|error| {
        ProviderError::Invalid(format!("cannot find the trails binary itself: {error}"))
    })?;
    Ok(json!({
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": program.display().to_string(),
        "args": ["eks-token", "--cluster", cluster, "--region", region],
        "interactiveMode": "Never",
    }))
}

/// The cluster's endpoint and base64 CA bundle.
async fn describe(
    context: &aws::Context,
    cluster: &str,
) -> Result<(String, String), ProviderError> {
    let described = context
        .eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|error| ProviderError::api("DescribeCluster", error))?;
    let found = described.cluster();
    let endpoint = found.and_then(|c| c.endpoint()).ok_or_else(|| {
        ProviderError::Invalid(format!("EKS cluster {cluster} has no endpoint yet"))
    })?;
    let ca = found
        .and_then(|c| c.certificate_authority())
        .and_then(|ca| ca.data())
        .ok_or_else(|| {
            ProviderError::Invalid(format!(
                "EKS cluster {cluster} has no certificate authority yet"
            ))
        })?;
    Ok((endpoint.to_string(), ca.to_string()))
}

/// The DER certificates of a base64 PEM bundle, as EKS reports its CA.
fn der_certificates(ca: &str) -> Result<Vec<Vec<u8>>, ProviderError> {
    let invalid = |why: String| ProviderError::Invalid(format!("the cluster's CA bundle {why}"));
    let pem_text = base64::engine::general_purpose::STANDARD
        .decode(ca.trim())
        .map_err(|error| invalid(format!("is not base64: {error}")))?;
    let certificates =
        pem::parse_many(&pem_text).map_err(|error| invalid(format!("is not PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid("holds no certificate".to_string()));
    }
    Ok(certificates
        .into_iter()
        .map(|c| c.into_contents())
        .collect())
}

/// A bearer token for an EKS cluster: a presigned STS `GetCallerIdentity` URL that names the
/// cluster in the signed `x-k8s-aws-id` header, as `aws eks get-token` makes it. Valid for
/// 15 minutes on the cluster's side.
pub async fn eks_token(context: &aws::Context, cluster: &str) -> Result<String, ProviderError> {
    let provider = context.credentials.as_ref().ok_or_else(|| {
        ProviderError::Invalid("no AWS credentials are configured to sign an EKS token".into())
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|error| ProviderError::api("load AWS credentials", error))?;
    presign(
        &credentials.into(),
        &context.region,
        cluster,
        SystemTime::now(),
    )
}

fn presign(
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    region: &str,
    cluster: &str,
    time: SystemTime,
) -> Result<String, ProviderError> {
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|error| ProviderError::Invalid(format!("EKS token signing: {error}")))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        [("x-k8s-aws-id", cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|error| ProviderError::Invalid(format!("EKS token signing: {error}")))?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|error| ProviderError::Invalid(format!("EKS token signing: {error}")))?
        .into_parts();
    let mut signed = url::Url::parse(&url)
        .map_err(|error| ProviderError::Invalid(format!("EKS token signing: {error}")))?;
    for (name, value) in instructions.params() {
        signed.query_pairs_mut().append_pair(name, value);
    }
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed.as_str())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eks_token_is_a_presigned_get_caller_identity_for_the_cluster() {
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let token = presign(
            &credentials.into(),
            "eu-west-1",
            "trails-dev",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .expect("signs");
        let encoded = token.strip_prefix("k8s-aws-v1.").expect("prefix");
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .expect("base64url without padding");
        let url = String::from_utf8(url).expect("utf-8");
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        // The signature covers the cluster name: another cluster, another token.
        let other = presign(
            &aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            )
            .into(),
            "eu-west-1",
            "trails-prod",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .expect("signs");
        assert_ne!(token, other);
    }

    #[test]
    fn clients_get_their_token_from_this_binary_and_kube_reads_it() {
        let exec = exec_credential("turia-prod", "eu-west-1").expect("exec credential");
        let current = std::env::current_exe().expect("current exe");
        assert_eq!(exec["command"], current.display().to_string());
        assert_eq!(
            exec["args"],
            json!([
                "eks-token",
                "--cluster",
                "turia-prod",
                "--region",
                "eu-west-1"
            ])
        );
        let parsed: kube::config::ExecConfig =
            serde_json::from_value(exec).expect("kube's exec config");
        assert_eq!(
            parsed.api_version.as_deref(),
            Some("client.authentication.k8s.io/v1beta1")
        );
    }

    #[test]
    fn ca_bundles_must_hold_certificates() {
        assert!(der_certificates("not base64!").is_err());
        let empty = base64::engine::general_purpose::STANDARD.encode("no pem here");
        assert!(der_certificates(&empty).is_err());
    }
}
