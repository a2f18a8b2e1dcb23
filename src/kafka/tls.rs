//! TLS client configuration for the brokers, shared by the watcher (through rskafka) and the lag reader (its own
//! connections), so both trust the same roots and present the same client certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// The TLS material could not be loaded or does not fit together.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file (`ca_file`, `cert_file` or `key_file`) cannot be read or holds no usable item.
    #[error("{key} {}", .path.display())]
    Pem {
        /// The key that names the file, e.g. `ca_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// `ca_file` holds a certificate that cannot be a trust root.
    #[error("ca_file {}", .path.display())]
    Root {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// `ca_file` holds no PEM certificate.
    #[error("ca_file {}: no PEM certificate in the file", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration (protocol versions, or a client key that does not fit its certificate).
    #[error("cannot configure TLS")]
    Config(#[source] rustls::Error),
    /// A broker address whose host part is not a name or address a certificate can be checked against.
    #[error("{address}: not a host name to verify")]
    ServerName {
        /// The broker address.
        address: String,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// rustls client configuration for `tls`: the CA file when given, else the system's roots, and the client
/// certificate for mutual TLS when given. The `ring` provider is named explicitly, so no process-wide default
/// has to be installed.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = |source| TlsError::Pem {
                key: "ca_file",
                path: path.clone(),
                source,
            };
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(pem)? {
                roots.add(cert.map_err(pem)?).map_err(|source| TlsError::Root {
                    path: path.clone(),
                    source,
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsError::NoCertificate { path: path.clone() });
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
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::Pem {
                    key: "cert_file",
                    path: cert.clone(),
                    source,
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
                key: "key_file",
                path: key.clone(),
                source,
            })?;
            builder.with_client_auth_cert(chain, key).map_err(TlsError::Config)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// [`client_config`] when `tls.enabled`, else `None` (plaintext).
pub fn client_config_if_enabled(tls: &TlsConfig) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    tls.enabled.then(|| client_config(tls)).transpose()
}

/// The name to verify a broker's certificate against: the host part of `host:port` (an IP address or a DNS
/// name, IPv6 in brackets).
pub fn server_name(address: &str) -> Result<rustls::pki_types::ServerName<'static>, TlsError> {
    let host = address.rsplit_once(':').map_or(address, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|source| TlsError::ServerName {
        address: address.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("kafka-0.kafka:9093").map(|n| n.to_str().into_owned()).ok(),
            Some("kafka-0.kafka".to_owned())
        );
        assert_eq!(
            server_name("127.0.0.1:9093").map(|n| n.to_str().into_owned()).ok(),
            Some("127.0.0.1".to_owned())
        );
        assert_eq!(
            server_name("[::1]:9093").map(|n| n.to_str().into_owned()).ok(),
            Some("::1".to_owned())
        );
        assert!(server_name("bad host:9093").is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("cdc-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").ok();
        let tls = TlsConfig {
            enabled: true,
            ca_file: Some(empty),
            ..TlsConfig::default()
        };
        let message = client_config(&tls).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("no PEM certificate"), "{message}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
