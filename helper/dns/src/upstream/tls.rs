//! The rustls client configuration for DoT and DoH: which roots are trusted and with which
//! crypto provider (ring, the only one in the workspace). This module owns certificate trust;
//! it must never offer a way to skip verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Which certificate authorities an encrypted upstream's certificate must chain to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The operating system's store (`/etc/ssl/certs` and friends on Linux, the certificate
    /// store on Windows), read through `rustls-native-certs`.
    #[default]
    System,
    /// Only the CAs in this PEM file (tests, private resolvers); the system store is not used.
    CaFile(PathBuf),
}

/// Builds the root store for `trust`.
pub fn root_store(trust: &Trust) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            // Unparsable system certificates are skipped, as browsers do.
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let details = if found.errors.is_empty() {
                    "the store is empty".to_owned()
                } else {
                    found
                        .errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(ConfigError::NoSystemRoots { details });
            }
        }
        Trust::CaFile(path) => {
            for (index, cert) in read_pem_certs(path)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| ConfigError::BadCaCert {
                    path: path.clone(),
                    index,
                    source: Box::new(e),
                })?;
            }
        }
    }
    Ok(roots)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        certs.push(item.map_err(|e| ConfigError::BadCaCert {
            path: path.to_owned(),
            index,
            source: Box::new(e),
        })?);
    }
    if certs.is_empty() {
        return Err(ConfigError::NoCertInCa {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A client configuration with ring as provider, safe protocol versions (TLS 1.2 and 1.3)
/// and `roots` as the only trust anchors. Session resumption uses rustls' in-memory cache.
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, ConfigError> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = root_store(&Trust::CaFile(missing.clone())).unwrap_err();
        assert!(matches!(err, ConfigError::ReadCa { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = root_store(&Trust::CaFile(empty)).unwrap_err();
        assert!(matches!(err, ConfigError::NoCertInCa { .. }), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = root_store(&Trust::CaFile(garbage)).unwrap_err();
        assert!(
            matches!(err, ConfigError::BadCaCert { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn system_roots_load_or_say_why_not() {
        match root_store(&Trust::System) {
            Ok(roots) => assert!(!roots.is_empty()),
            Err(e) => assert!(matches!(e, ConfigError::NoSystemRoots { .. }), "{e}"),
        }
    }

    #[test]
    fn a_config_builds_with_ring() {
        let config = client_config(RootCertStore::empty()).unwrap();
        assert!(config.alpn_protocols.is_empty());
    }
}
