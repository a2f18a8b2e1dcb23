//! TLS for the catalog's connection on the rustls the binary links already (no OpenSSL, no connector crate):
//! asked for when the URL says `sslmode=prefer` (the default: TLS when the server offers it) or `sslmode=require`
//! (see [`super::pg`]). The server's certificate is always verified, against `--ca-file` or the system's roots,
//! which is stricter than libpq's `require` (which encrypts without verifying): a catalog read over an unverified
//! channel could be answered by anyone, and its answer becomes the jobs' SQL.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The TLS client configuration: the trusted roots, ring's provider, no client certificate.
#[derive(Clone)]
pub struct TlsConfig(Arc<rustls::ClientConfig>);

impl TlsConfig {
    /// Trusts the CAs of `ca_file` (PEM) when given, else the system's roots.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no certificate", path.display()));
                }
            }
            None => {
                // Unparsable system certificates are skipped, as every TLS client does.
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }

    /// The configuration, for one connection's handshake.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.0.clone()
    }
}
