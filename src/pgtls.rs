//! TLS for PostgreSQL connections (RDS for PostgreSQL 15 and later refuses connections without
//! it: `rds.force_ssl` is on by default).
//!
//! - A server that offers TLS gets it (tokio-postgres' default `sslmode=prefer`); its
//!   certificate is verified, host name included, against the CA certificates in the PEM file
//!   `PGSSLROOTCERT` names (libpq's variable; for RDS, the RDS CA bundle
//!   `global-bundle.pem`). Without that file no certificate verifies, and the error says so.
//! - `sslmode=require` in a URL asks for TLS and, as libpq does when there is no root
//!   certificate file, does not verify the certificate: for a tunnel, whose `127.0.0.1` is not
//!   the name in the server's certificate. With `PGSSLROOTCERT` set it verifies as above.
//! - With `PGSSLROOTCERT` set, the default `sslmode=prefer` becomes `require` (libpq's
//!   `verify-full`, as the certificate and host name are verified): a server, or anyone in the
//!   path, that answers without TLS is refused instead of being sent the password in clear.
//! - `sslmode=disable` connects in clear.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The variable naming the CA certificates to verify servers against.
pub const ROOT_CERT_VARIABLE: &str = "PGSSLROOTCERT";

/// What to add to a connection error when the server's certificate could not be verified.
pub const VERIFY_HINT: &str = "the server's certificate is verified against the CA \
    certificates in the file PGSSLROOTCERT names (for RDS, the RDS CA bundle global-bundle.pem); \
    through a tunnel, add sslmode=require to the URL to encrypt without verifying";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whether a CA to verify against is named: then TLS is required, not merely preferred.
fn verifying() -> bool {
    std::env::var_os(ROOT_CERT_VARIABLE).is_some_and(|path| !path.is_empty())
}

/// `config` as trails connects with it: with a CA named, `prefer` (the default) becomes
/// `require`, so the connection cannot be downgraded to clear text.
pub fn harden(config: &mut tokio_postgres::Config) {
    if verifying() && config.get_ssl_mode() == SslMode::Prefer {
        config.ssl_mode(SslMode::Require);
    }
}

/// The TLS connector for a connection made with `config`.
pub fn connector(config: &tokio_postgres::Config) -> Result<MakeRustlsConnect, String> {
    let roots = std::env::var_os(ROOT_CERT_VARIABLE)
        .filter(|path| !path.is_empty())
        .map(std::path::PathBuf::from);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let tls = match roots {
        Some(path) => {
            let mut store = RootCertStore::empty();
            let certificates = CertificateDer::pem_file_iter(&path)
                .map_err(|error| format!("{ROOT_CERT_VARIABLE} {}: {error}", path.display()))?;
            for certificate in certificates {
                let certificate = certificate
                    .map_err(|error| format!("{ROOT_CERT_VARIABLE} {}: {error}", path.display()))?;
                store
                    .add(certificate)
                    .map_err(|error| format!("{ROOT_CERT_VARIABLE} {}: {error}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "{ROOT_CERT_VARIABLE} {} holds no PEM certificate",
                    path.display()
                ));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None if config.get_ssl_mode() == SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth(),
        None => builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(tls))
}

/// Accepts any certificate, but still checks that the server holds its key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether a connection error is a certificate that did not verify.
pub fn is_verify_failure(message: &str) -> bool {
    message.contains("invalid peer certificate")
}
