//! TLS configuration: roots, the ring provider, client identities.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::EgressError;

/// Longest PEM text accepted for one certificate chain, key, or extra root bundle.
const MAX_PEM_LEN: usize = 256 * 1024;
/// Most certificates in one client chain.
const MAX_CHAIN_LEN: usize = 16;
/// Most certificates in one extra root bundle.
const MAX_ROOTS_PER_PEM: usize = 1024;
/// Longest identity id.
const MAX_ID_LEN: usize = 256;

/// A client certificate (mTLS) presented to the endpoints that use it.
///
/// Connections made with an identity are pooled apart from all others (keyed by `id` and checked
/// against the certificate and key), so a certificate is never presented to, and a connection
/// authenticated with it is never reused for, another endpoint's requests. Its TLS configuration is
/// built once and cached.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// A stable id (for example the endpoint or certificate id) used as the pool key.
    pub id: String,
    /// The certificate chain, leaf first, in PEM.
    pub cert_chain_pem: String,
    /// The private key of the leaf certificate in PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: String,
}

impl ClientIdentity {
    /// Check that the id is usable, the chain parses, the key parses, and the key belongs to the
    /// leaf certificate.
    pub fn validate(&self) -> Result<(), EgressError> {
        self.certified_key(&provider()).map(|_| ())
    }

    pub(crate) fn parse(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), EgressError> {
        let bad = |why: &str| EgressError::Identity(format!("{}: {why}", self.id_for_display()));
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            return Err(EgressError::Identity(format!(
                "id must be 1 to {MAX_ID_LEN} bytes"
            )));
        }
        if self.cert_chain_pem.len() > MAX_PEM_LEN || self.private_key_pem.len() > MAX_PEM_LEN {
            return Err(bad("PEM too large"));
        }
        let mut chain = Vec::new();
        for cert in CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes()) {
            let cert = cert.map_err(|e| bad(&format!("certificate chain: {e}")))?;
            if chain.len() >= MAX_CHAIN_LEN {
                return Err(bad("certificate chain too long"));
            }
            chain.push(cert);
        }
        if chain.is_empty() {
            return Err(bad("no certificate in the certificate chain PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(self.private_key_pem.as_bytes())
            .map_err(|e| bad(&format!("private key: {e}")))?;
        Ok((chain, key))
    }

    pub(crate) fn certified_key(
        &self,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, EgressError> {
        let (chain, key) = self.parse()?;
        CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| EgressError::Identity(format!("{}: {e}", self.id_for_display())))
    }

    fn id_for_display(&self) -> String {
        self.id.chars().take(64).collect()
    }

    /// Whether `other` holds the same certificate and key (the id is not compared).
    pub(crate) fn same_material(&self, other: &ClientIdentity) -> bool {
        self.cert_chain_pem == other.cert_chain_pem && self.private_key_pem == other.private_key_pem
    }
}

/// The private key is never printed.
impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("id", &self.id)
            .field(
                "cert_chain_pem",
                &format_args!("<{} bytes>", self.cert_chain_pem.len()),
            )
            .field("private_key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

/// The ring crypto provider (the only one Hookwarden uses).
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// webpki-roots plus the operator's extra CA certificates.
pub(crate) fn root_store(extra_pem: &[String]) -> Result<RootCertStore, EgressError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (i, pem) in extra_pem.iter().enumerate() {
        if pem.len() > MAX_PEM_LEN {
            return Err(EgressError::RootCertificate(format!(
                "bundle {i}: PEM too large"
            )));
        }
        let mut n = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert =
                cert.map_err(|e| EgressError::RootCertificate(format!("bundle {i}: {e}")))?;
            n += 1;
            if n > MAX_ROOTS_PER_PEM {
                return Err(EgressError::RootCertificate(format!(
                    "bundle {i}: too many certificates"
                )));
            }
            roots
                .add(cert)
                .map_err(|e| EgressError::RootCertificate(format!("bundle {i}: {e}")))?;
        }
        if n == 0 {
            return Err(EgressError::RootCertificate(format!(
                "bundle {i}: no certificate found"
            )));
        }
    }
    Ok(roots)
}

/// A client TLS configuration (HTTP/1.1 ALPN), with or without a client certificate.
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    identity: Option<CertifiedKey>,
) -> Result<Arc<rustls::ClientConfig>, EgressError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EgressError::Tls(e.to_string()))?
        .with_root_certificates(roots.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(key) => {
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
