//! TLS termination for the main listener (rustls with the `ring` provider).
//!
//! With `[server.tls]` configured, a connection whose first byte is a TLS handshake record
//! (`0x16`) is terminated with the configured certificate; anything else is read as plain HTTP
//! and answered only where that is safe: [`crate::http_server::HttpsOnly`] refuses (or, for a
//! browser, redirects to `https`) every plain request except `/health`, ingest (which refuses
//! plain HTTP by its own audited rule in [`crate::inbound`]) and requests from trusted
//! TLS-terminating proxies. Handlers learn which it was from the [`ConnectionTls`] request
//! extension; answers over TLS carry `Strict-Transport-Security`.
//!
//! The certificate and key files are polled every `reload_interval_secs`: when their contents
//! change and the new pair is valid (parsable, key matching the certificate) new handshakes use
//! it; when it is invalid the previous pair keeps being served and a warning is logged. The time
//! from TCP accept to a finished handshake is bounded by `handshake_timeout_secs`.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Most certificates in a chain.
const MAX_CHAIN: usize = 16;

fn d_reload() -> u64 {
    5
}
fn d_handshake() -> u64 {
    10
}

/// `[server.tls]`: serve HTTPS with these PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for changes, seconds (default 5).
    #[serde(default = "d_reload")]
    pub reload_interval_secs: u64,
    /// Time allowed from connection to finished TLS handshake, seconds (default 10).
    #[serde(default = "d_handshake")]
    pub handshake_timeout_secs: u64,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<(), TlsError> {
        if !(1..=3600).contains(&self.reload_interval_secs) {
            return Err(TlsError::Setting(
                "server.tls.reload_interval_secs must be 1..=3600",
            ));
        }
        if !(1..=300).contains(&self.handshake_timeout_secs) {
            return Err(TlsError::Setting(
                "server.tls.handshake_timeout_secs must be 1..=300",
            ));
        }
        Ok(())
    }
}

/// Why a certificate and key cannot be served. Each says the file or the setting at fault,
/// once (the underlying error's text is part of the message, not repeated as a source).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A `[server.tls]` setting out of its range.
    #[error("{0}")]
    Setting(&'static str),
    #[error("{path}: {error}")]
    Unreadable {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("{0}: larger than 1 MiB")]
    TooLarge(std::path::PathBuf),
    #[error("certificate file: {0}")]
    CertificatePem(rustls_pki_types::pem::Error),
    #[error("certificate file: more than {MAX_CHAIN} certificates")]
    ChainTooLong,
    #[error("certificate file: no PEM certificate found")]
    NoCertificate,
    #[error("key file: {0}")]
    KeyPem(rustls_pki_types::pem::Error),
    #[error("certificate and key do not match: {0}")]
    Mismatch(String),
    #[error("certificate and key: {0}")]
    Unusable(rustls::Error),
}

/// Request extension: whether the request arrived over a TLS connection terminated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionTls(pub bool);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let unreadable = |error| TlsError::Unreadable {
        path: path.to_owned(),
        error,
    };
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let mut buf = Vec::new();
    f.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge(path.to_owned()));
    }
    Ok(buf)
}

/// Parses a certificate chain and its key and checks that they belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        let cert = cert.map_err(TlsError::CertificatePem)?;
        if chain.len() >= MAX_CHAIN {
            return Err(TlsError::ChainTooLong);
        }
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(e) => TlsError::Mismatch(format!("{e:?}")),
        e => TlsError::Unusable(e),
    })?;
    // `from_der` tolerates keys whose consistency it cannot tell; be strict.
    ck.keys_match()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(ck)
}

/// Serves the current certificate; swapped by the reloader.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The TLS side of the listener: the acceptor, the reloading certificate and the limits.
pub struct TlsTerminator {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
    handshake_timeout: Duration,
    files: TlsConfig,
    /// The file contents last tried (loaded or refused), to act on changes only.
    last_seen: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("cert_file", &self.files.cert_file)
            .finish()
    }
}

impl TlsTerminator {
    /// Loads the files (failing when they are unusable: TLS never silently falls back).
    pub fn new(cfg: &TlsConfig) -> Result<Arc<TlsTerminator>, TlsError> {
        cfg.validate()?;
        let cert = read_bounded(&cfg.cert_file)?;
        let key = read_bounded(&cfg.key_file)?;
        let ck = certified_key(&cert, &key)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(ck)),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Unusable)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(TlsTerminator {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            resolver,
            handshake_timeout: Duration::from_secs(cfg.handshake_timeout_secs),
            files: cfg.clone(),
            last_seen: std::sync::Mutex::new((cert, key)),
        }))
    }

    /// Checks the files once; swaps the certificate when they changed and are valid. Returns
    /// `Some(Ok(()))` after a reload, `Some(Err(_))` when a change was refused, `None` when
    /// nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let (cert, key) = match (
            read_bounded(&self.files.cert_file),
            read_bounded(&self.files.key_file),
        ) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                // Missing for a moment (being replaced): keep serving, try again later.
                debug!(error = %e, "TLS files not readable; keeping the current certificate");
                return None;
            }
        };
        {
            let mut last = self.last_seen.lock().ok()?;
            if last.0 == cert && last.1 == key {
                return None;
            }
            *last = (cert.clone(), key.clone());
        }
        match certified_key(&cert, &key) {
            Ok(ck) => {
                if let Ok(mut cur) = self.resolver.current.write() {
                    *cur = Arc::new(ck);
                }
                Some(Ok(()))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Polls the files until the terminator is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<TlsTerminator> = Arc::downgrade(self);
        let every = Duration::from_secs(self.files.reload_interval_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(t) = weak.upgrade() else { return };
                let t2 = t.clone();
                let result = tokio::task::spawn_blocking(move || t2.reload_if_changed())
                    .await
                    .ok()
                    .flatten();
                match result {
                    Some(Ok(())) => {
                        metrics::counter!("hookwarden_tls_certificate_reloads_total", "result" => "loaded").increment(1);
                        info!(cert_file = %t.files.cert_file.display(), "TLS certificate reloaded");
                    }
                    Some(Err(e)) => {
                        metrics::counter!("hookwarden_tls_certificate_reloads_total", "result" => "refused").increment(1);
                        warn!(error = %e, "new TLS certificate refused; still serving the previous one");
                    }
                    None => {}
                }
            }
        })
    }

    /// Turns an accepted TCP connection into plain or TLS, within the handshake timeout.
    /// `None`: closed, timed out or a failed handshake.
    pub async fn accept(&self, stream: TcpStream) -> Option<MaybeTlsStream> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let mut first = [0u8; 1];
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut first))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if first[0] != 0x16 {
            return Some(MaybeTlsStream::Plain(stream));
        }
        match tokio::time::timeout_at(deadline, self.acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(MaybeTlsStream::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                metrics::counter!("hookwarden_tls_handshake_failures_total", "reason" => "error")
                    .increment(1);
                debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!("hookwarden_tls_handshake_failures_total", "reason" => "timeout")
                    .increment(1);
                None
            }
        }
    }
}

/// A connection as served: plain TCP or TLS over TCP.
pub type MaybeTlsStream = hookwarden_egress::MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn loads_valid_pairs_and_refuses_mismatches() {
        let (c1, k1) = pair("a.test");
        let (c2, k2) = pair("b.test");
        assert!(certified_key(c1.as_bytes(), k1.as_bytes()).is_ok());
        let e = certified_key(c1.as_bytes(), k2.as_bytes()).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch(_)), "{e}");
        assert!(e.to_string().contains("do not match"), "{e}");
        assert!(matches!(
            certified_key(b"", k1.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            certified_key(c2.as_bytes(), b"garbage"),
            Err(TlsError::KeyPem(_))
        ));
        assert!(matches!(
            certified_key(b"-----BEGIN CERTIFICATE-----\n!!\n", k2.as_bytes()),
            Err(TlsError::CertificatePem(_) | TlsError::NoCertificate)
        ));
    }

    #[tokio::test]
    async fn reloads_on_change_and_keeps_serving_on_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair("a.test");
        let cfg = TlsConfig {
            cert_file: dir.path().join("c.pem"),
            key_file: dir.path().join("k.pem"),
            reload_interval_secs: 1,
            handshake_timeout_secs: 1,
        };
        std::fs::write(&cfg.cert_file, &c1).unwrap();
        assert!(
            matches!(TlsTerminator::new(&cfg), Err(TlsError::Unreadable { .. })),
            "missing key refused"
        );
        std::fs::write(&cfg.key_file, &k1).unwrap();
        let t = TlsTerminator::new(&cfg).unwrap();
        let serial = |t: &TlsTerminator| t.resolver.current.read().unwrap().cert[0].to_vec();
        let first = serial(&t);
        assert!(t.reload_if_changed().is_none());
        // A new key without its certificate: refused, old one kept, not retried until changed.
        let (c2, k2) = pair("b.test");
        std::fs::write(&cfg.key_file, &k2).unwrap();
        assert!(matches!(t.reload_if_changed(), Some(Err(_))));
        assert!(t.reload_if_changed().is_none());
        assert_eq!(serial(&t), first);
        std::fs::write(&cfg.cert_file, &c2).unwrap();
        assert!(matches!(t.reload_if_changed(), Some(Ok(()))));
        assert_ne!(serial(&t), first);
        // Files gone for a moment: nothing changes.
        std::fs::remove_file(&cfg.cert_file).unwrap();
        assert!(t.reload_if_changed().is_none());
        let bad = TlsConfig {
            handshake_timeout_secs: 0,
            ..cfg
        };
        assert!(bad.validate().is_err());
    }
}
