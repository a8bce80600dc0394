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
//! - Without it, `prefer` still becomes `require` for a server that is not on this machine
//!   (encrypted, the certificate unverified, as libpq's `require`): only a loopback address or
//!   a Unix socket may be answered in clear.
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

/// `config` as trails connects with it: `prefer` (the default) becomes `require` with a CA
/// named, or for any server not on this machine, so the connection cannot be downgraded to
/// clear text and the password never crosses a network in clear. A server on a loopback
/// address or a Unix socket (a local server, a tunnel's end) keeps `prefer`.
pub fn harden(config: &mut tokio_postgres::Config) {
    let mode = hardened(config.get_ssl_mode(), verifying(), local_only(config));
    config.ssl_mode(mode);
}

fn hardened(mode: SslMode, verifying: bool, local: bool) -> SslMode {
    if mode == SslMode::Prefer && (verifying || !local) {
        SslMode::Require
    } else {
        mode
    }
}

/// Whether every host of `config` is this machine.
fn local_only(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|address| address.is_loopback())
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => true,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn local(url: &str) -> bool {
        local_only(&url.parse().expect("a URL"))
    }

    #[test]
    fn only_a_server_on_this_machine_may_be_answered_in_clear() {
        assert!(!local("postgres://u@db.example.com/x"));
        assert!(!local("postgres://u@10.0.3.7:5432/x"));
        assert!(local("postgres://u@127.0.0.1:5432/x"));
        assert!(local("postgres://u@localhost/x"));
        assert!(local("postgres://u@[::1]:5432/x"));
        assert!(local("host=/var/run/postgresql user=u dbname=x"));
        assert_eq!(
            hardened(SslMode::Prefer, false, false),
            SslMode::Require,
            "remote"
        );
        assert_eq!(hardened(SslMode::Prefer, false, true), SslMode::Prefer);
        assert_eq!(
            hardened(SslMode::Prefer, true, true),
            SslMode::Require,
            "a CA named"
        );
        assert_eq!(hardened(SslMode::Disable, true, false), SslMode::Disable);
    }
}
