//! The tower connector hyper uses: `Guard::connect`, then TLS.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hookwarden_netguard::{Guard, TargetHost};
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected as HyperConnected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::ConnectError;
use super::proxy::ProxySet;

/// Where a connection left from and where it went. Attached to every response (as a hyper
/// response extension) and reported in [`OutboundResponse`](super::OutboundResponse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    /// The local address (one of the configured bind addresses, or the OS's choice).
    pub local: SocketAddr,
    /// The checked remote address that was connected to (through a proxy: the address the
    /// proxy reported, else the proxy's).
    pub remote: SocketAddr,
    /// The egress proxy the connection went through, if any.
    pub proxy: Option<SocketAddr>,
}

#[derive(Clone)]
pub(crate) struct GuardedConnector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    guard: Arc<Guard>,
    tls: Arc<rustls::ClientConfig>,
    bind: Option<IpAddr>,
    connect_timeout: Duration,
    proxies: Option<Arc<ProxySet>>,
}

impl GuardedConnector {
    pub(crate) fn new(
        guard: Arc<Guard>,
        tls: Arc<rustls::ClientConfig>,
        bind: Option<IpAddr>,
        connect_timeout: Duration,
        proxies: Option<Arc<ProxySet>>,
    ) -> Self {
        Self {
            inner: Arc::new(ConnectorInner {
                guard,
                tls,
                bind,
                connect_timeout,
                proxies,
            }),
        }
    }
}

impl ConnectorInner {
    async fn connect(&self, uri: Uri) -> Result<GuardedStream, ConnectError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(ConnectError::BadUri("scheme is not http or https")),
        };
        let host = uri
            .host()
            .and_then(TargetHost::from_host_str)
            .ok_or(ConnectError::BadUri("missing or invalid host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let (stream, info) = match &self.proxies {
            // Through a proxy: the name is resolved and every answer checked here, and the proxy
            // is asked for a checked address (a generic CONNECT proxy would resolve the name
            // itself and reach whatever it points to). The name goes along for a Hookwarden
            // proxy's host rules; TLS and `Host` still use it.
            Some(proxies) => {
                let addrs = self
                    .guard
                    .resolve_checked(&host)
                    .await
                    .map_err(|e| ConnectError::Guard(Arc::new(e)))?;
                let name = host.domain();
                let mut last = None;
                let mut tunnel = None;
                for ip in addrs
                    .into_iter()
                    .take(hookwarden_netguard::MAX_CONNECT_ATTEMPTS)
                {
                    let authority = SocketAddr::new(ip, port).to_string();
                    match proxies.connect(&authority, name, self.bind).await {
                        Ok(t) => {
                            tunnel = Some(t);
                            break;
                        }
                        // The proxy could not reach this address: try the next one.
                        Err(
                            e @ ConnectError::Proxy {
                                class: super::error::ErrorClass::Connect,
                                ..
                            },
                        ) => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                let t = match (tunnel, last) {
                    (Some(t), _) => t,
                    (None, Some(e)) => return Err(e),
                    (None, None) => {
                        return Err(ConnectError::BadUri("the host has no checked address"));
                    }
                };
                let info = ConnInfo {
                    local: t.local,
                    remote: t.remote,
                    proxy: Some(t.proxy),
                };
                (t.stream, info)
            }
            None => {
                let c = self
                    .guard
                    .connect(&host, port, self.bind, self.connect_timeout)
                    .await
                    .map_err(|e| ConnectError::Guard(Arc::new(e)))?;
                let info = ConnInfo {
                    local: c.local,
                    remote: c.remote,
                    proxy: None,
                };
                (c.stream, info)
            }
        };
        if !https {
            return Ok(GuardedStream {
                io: TokioIo::new(MaybeTls::Plain(stream)),
                info,
                tls_failure: None,
            });
        }
        let server_name = match &host {
            TargetHost::Ip(ip) => ServerName::IpAddress((*ip).into()),
            TargetHost::Domain(d) => ServerName::try_from(d.clone())
                .map_err(|_| ConnectError::BadUri("host is not a valid TLS server name"))?,
        };
        let connector = TlsConnector::from(self.tls.clone());
        match tokio::time::timeout(self.connect_timeout, connector.connect(server_name, stream))
            .await
        {
            Ok(Ok(tls)) => Ok(GuardedStream {
                io: TokioIo::new(MaybeTls::Tls(Box::new(tls))),
                info,
                tls_failure: Some(TlsFailure::default()),
            }),
            Ok(Err(e)) => Err(ConnectError::from_tls_io(&e)),
            Err(_) => Err(ConnectError::TlsTimeout(self.connect_timeout)),
        }
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = GuardedStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<GuardedStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connect(uri).await })
    }
}

/// A TCP connection, plain or carrying TLS (`T`: the client's or, for the server's listeners,
/// the server's TLS stream).
pub enum MaybeTls<T> {
    /// No TLS.
    Plain(TcpStream),
    /// TLS over the connection (boxed: a TLS stream is large).
    Tls(Box<T>),
}

impl<T> MaybeTls<T> {
    /// Whether the connection carries TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The first TLS error a connection's stream returned, shared with hyper's connection info.
///
/// With TLS 1.3 a server refuses a client certificate (or its absence) only after the client's
/// handshake has completed, with an alert the client reads later. When that alert is read before
/// hyper has written the request, hyper cancels the request with a bare "connection closed" and
/// the TLS error is not in its source chain; the client then finds it here (through the
/// connection info hyper attaches to the error) so the attempt is still reported as the TLS
/// refusal it was.
#[derive(Clone, Default)]
pub(crate) struct TlsFailure(Arc<OnceLock<rustls::Error>>);

impl TlsFailure {
    fn record(&self, e: &io::Error) {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let _ = self.0.set(tls.clone());
        }
    }

    pub(crate) fn get(&self) -> Option<&rustls::Error> {
        self.0.get()
    }
}

/// The connection handed to hyper: the stream plus where it left from and went to.
pub(crate) struct GuardedStream {
    io: TokioIo<MaybeTls<TlsStream<TcpStream>>>,
    info: ConnInfo,
    /// `Some` for TLS connections.
    tls_failure: Option<TlsFailure>,
}

impl GuardedStream {
    /// Pass a result through, remembering a TLS error in it.
    fn seen<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let (Poll::Ready(Err(e)), Some(slot)) = (&r, &self.tls_failure) {
            slot.record(e);
        }
        r
    }
}

impl Connection for GuardedStream {
    fn connected(&self) -> HyperConnected {
        let connected = HyperConnected::new().extra(self.info);
        match &self.tls_failure {
            Some(slot) => connected.extra(slot.clone()),
            None => connected,
        }
    }
}

impl Read for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.seen(r)
    }
}

impl Write for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.seen(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.seen(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.seen(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.seen(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::error::{ErrorClass, from_client_error};
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn info(addr: SocketAddr) -> ConnInfo {
        ConnInfo {
            local: addr,
            remote: addr,
            proxy: None,
        }
    }

    /// A TLS 1.3 server that requires a client certificate and a client that has none: the
    /// client's handshake completes, and the refusal arrives as an alert on the first read. The
    /// stream keeps it for hyper's connection info.
    #[tokio::test]
    async fn a_tls_alert_read_after_the_handshake_is_kept_for_the_connection() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![der], key)
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.map(|_| ())
        });

        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("the client's side of the handshake completes");
        let slot = TlsFailure::default();
        let stream = GuardedStream {
            io: TokioIo::new(MaybeTls::Tls(Box::new(tls))),
            info: info(addr),
            tls_failure: Some(slot.clone()),
        };
        assert!(served.await.unwrap().is_err(), "the server refuses");
        let mut stream = TokioIo::new(stream);
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).await;
        assert!(read.is_err(), "{read:?}");
        assert_eq!(
            slot.get(),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            ))
        );
    }

    /// A connection that accepts nothing: reads wait, writes fail as a closed socket does.
    struct DeadStream {
        tls_failure: TlsFailure,
    }

    impl Connection for DeadStream {
        fn connected(&self) -> HyperConnected {
            let addr = SocketAddr::from(([127, 0, 0, 1], 9));
            HyperConnected::new()
                .extra(info(addr))
                .extra(self.tls_failure.clone())
        }
    }

    impl Read for DeadStream {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: ReadBufCursor<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl Write for DeadStream {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// When hyper reports only that the connection closed (as it does for a request it cancels
    /// because the connection died of a TLS alert before the request was written), the
    /// classification comes from the connection's TLS failure, if it had one.
    #[tokio::test]
    async fn a_closed_connection_is_classified_by_its_tls_failure() {
        for failed in [true, false] {
            let slot = TlsFailure::default();
            if failed {
                slot.0
                    .set(rustls::Error::AlertReceived(
                        rustls::AlertDescription::CertificateRequired,
                    ))
                    .unwrap();
            }
            let connector = tower::service_fn(move |_: Uri| {
                std::future::ready(Ok::<_, io::Error>(DeadStream {
                    tls_failure: slot.clone(),
                }))
            });
            let client: Client<_, Full<Bytes>> =
                Client::builder(TokioExecutor::new()).build(connector);
            let req = http::Request::get("http://receiver.test/")
                .body(Full::default())
                .unwrap();
            let err = client.request(req).await.expect_err("dead connection");
            assert!(err.connect_info().is_some(), "{err:?}");
            let err = from_client_error(err);
            if failed {
                assert_eq!(err.class(), ErrorClass::Tls, "{err}");
                assert_eq!(err.code(), "TLS_CLIENT_CERT_REJECTED", "{err}");
            } else {
                assert_eq!(err.class(), ErrorClass::Protocol, "{err}");
                assert_eq!(err.code(), "CONNECTION_CLOSED", "{err}");
            }
        }
    }
}
