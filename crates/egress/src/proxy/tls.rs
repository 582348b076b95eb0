//! The proxy's optional TLS listener: server certificate, optional client certificates, and
//! the client name taken from a client certificate.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::config::{ConfigError, TlsListenerConfig};

fn err(msg: String) -> ConfigError {
    ConfigError(msg)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let meta = std::fs::metadata(path).map_err(|e| err(format!("tls: {}: {e}", path.display())))?;
    if meta.len() > 1024 * 1024 {
        return Err(err(format!("tls: {} is too large", path.display())));
    }
    std::fs::read(path).map_err(|e| err(format!("tls: {}: {e}", path.display())))
}

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .take(1024)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("tls: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!("tls: {}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Build the acceptor (HTTP/1.1 ALPN, ring provider).
pub(crate) fn acceptor(c: &TlsListenerConfig) -> Result<TlsAcceptor, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&c.cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&c.key_file)?)
        .map_err(|e| err(format!("tls: {}: {e}", c.key_file.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("tls: {e}")))?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| err(format!("tls: {}: {e}", ca.display())))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if c.require_client_certificate {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build().map_err(|e| err(format!("tls: client CA: {e}")))?,
            )
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| err(format!("tls: certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// The subject common name of a verified client certificate.
pub(crate) fn client_name(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, conn) = stream.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty() && cn.len() <= 256).then(|| cn.to_owned())
}
