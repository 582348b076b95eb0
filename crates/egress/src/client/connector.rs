//! The tower connector hyper uses: `Guard::connect`, then TLS.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
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
            // Through a proxy, which resolves and checks the name itself. Address literals were
            // already checked by `check_url`; check again here all the same.
            Some(proxies) => {
                if let TargetHost::Ip(ip) = &host {
                    self.guard
                        .check_ip(*ip)
                        .map_err(|e| ConnectError::Guard(Arc::new(e)))?;
                }
                let authority = match &host {
                    TargetHost::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
                    h => format!("{h}:{port}"),
                };
                let t = proxies.connect(&authority, self.bind).await?;
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

/// A plain or TLS stream.
pub(crate) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
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

impl AsyncWrite for MaybeTls {
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

/// The connection handed to hyper: the stream plus where it left from and went to.
pub(crate) struct GuardedStream {
    io: TokioIo<MaybeTls>,
    info: ConnInfo,
}

impl Connection for GuardedStream {
    fn connected(&self) -> HyperConnected {
        HyperConnected::new().extra(self.info)
    }
}

impl Read for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
