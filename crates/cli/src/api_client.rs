//! A minimal client of Hookwarden's own admin API (HTTP or HTTPS with the web PKI roots), for
//! commands that act through a running server.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Refuses a base URL that would send the admin key in clear over a network: plain `http://`
/// is for loopback only.
pub(crate) fn check_base(base: &str) -> Result<()> {
    let uri: http::Uri = base
        .parse()
        .with_context(|| format!("{base} is not a URL"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                bail!(
                    "{base}: the admin key would travel in clear; use https:// (plain http:// is \
                     for 127.0.0.1, ::1 and localhost only)"
                )
            }
        }
        _ => bail!("{base}: the API URL must start with https:// or http://"),
    }
}

/// `POST url` with an empty JSON body and the admin key; returns the status and the body.
pub(crate) async fn post(url: &str, key: &str, timeout: Duration) -> Result<(u16, Bytes)> {
    tokio::time::timeout(timeout, post_inner(url, key))
        .await
        .with_context(|| format!("{url}: no answer within {} s", timeout.as_secs()))?
}

async fn post_inner(url: &str, key: &str) -> Result<(u16, Bytes)> {
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => bail!("{url}: the API URL must start with http:// or https://"),
    };
    let host = uri.host().context("the API URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let req = http::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority)
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::new()))?;
    if https {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .context("the API URL's host is not a valid TLS name")?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host}"))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<(u16, Bytes)>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}
