//! Errors of the guarded client, classified by who failed and whether to retry.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hookwarden_netguard::{GuardError, TimeoutPhase, UrlError};

use super::connector::TlsFailure;

/// A boxed error source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A setup error: the client or a client identity could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The client configuration is invalid.
    #[error("invalid egress client configuration: {0}")]
    Config(String),
    /// An extra root CA certificate could not be read.
    #[error("invalid extra root certificate: {0}")]
    RootCertificate(String),
    /// A client identity (mTLS certificate chain and key) is invalid.
    #[error("invalid client identity: {0}")]
    Identity(String),
    /// TLS could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

impl EgressError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EgressError::Config(_) => "EGRESS_CONFIG_INVALID",
            EgressError::RootCertificate(_) => "EGRESS_ROOT_CERT_INVALID",
            EgressError::Identity(_) => "CLIENT_IDENTITY_INVALID",
            EgressError::Tls(_) => "EGRESS_TLS_SETUP_FAILED",
        }
    }
}

/// Who or what made a request fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Refused by policy before anything was sent: URL rules or a denied destination address.
    Policy,
    /// Our configuration for this request is unusable (an invalid client identity).
    Config,
    /// DNS: lookup failed, timed out, or the name has no addresses.
    Dns,
    /// TCP connect failed (refused, unreachable, reset).
    Connect,
    /// TLS handshake or certificate failure (including a server refusing our client certificate).
    Tls,
    /// A timeout: connect, TLS handshake, or the whole request.
    Timeout,
    /// The peer broke HTTP: malformed response, connection closed before a complete response.
    Protocol,
    /// A bug or an impossible state on our side.
    Internal,
    /// The egress proxy could not be used: unreachable, refused our credentials, overloaded, or
    /// broke the protocol. Retried like a connect error; never a reason to connect directly.
    Proxy,
}

impl ErrorClass {
    /// `"policy"`, `"config"`, `"dns"`, `"connect"`, `"tls"`, `"timeout"`, `"protocol"`,
    /// `"internal"`, `"proxy"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Policy => "policy",
            ErrorClass::Config => "config",
            ErrorClass::Dns => "dns",
            ErrorClass::Connect => "connect",
            ErrorClass::Tls => "tls",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Internal => "internal",
            ErrorClass::Proxy => "proxy",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`GuardedClient::send`](crate::client::GuardedClient::send) failed.
///
/// [`SendError::class`], [`SendError::code`] and [`SendError::is_retryable`] are what callers
/// should branch on; the variants carry detail for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The URL was refused (invalid, scheme, credentials, port, or a denied address literal).
    #[error("{0}")]
    Url(#[from] UrlError),
    /// Resolving, checking or connecting failed (including a name resolving to a denied address).
    #[error("{0}")]
    Guard(Arc<GuardError>),
    /// The request's client identity is invalid.
    #[error("{0}")]
    Identity(EgressError),
    /// The TLS handshake failed, or the server refused our client certificate.
    #[error("TLS failure: {message}")]
    Tls {
        /// `TLS_CERTIFICATE_INVALID` (the server's certificate), `TLS_CLIENT_CERT_REJECTED` (the
        /// server refused our client certificate, or its absence), `TLS_HANDSHAKE_FAILED`.
        code: &'static str,
        /// What rustls (or the socket) said.
        message: String,
    },
    /// The TLS handshake took longer than the connect timeout.
    #[error("TLS handshake timed out after {after:?}")]
    TlsTimeout {
        /// The bound.
        after: Duration,
    },
    /// The whole request (connect, send, response head and bounded body) took too long.
    #[error("request timed out after {after:?}")]
    Timeout {
        /// The bound.
        after: Duration,
    },
    /// The peer broke HTTP or closed the connection early.
    #[error("HTTP failure: {source}")]
    Protocol {
        /// `CONNECTION_CLOSED`, `HTTP_PROTOCOL_ERROR`.
        code: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Sending through an egress proxy failed: the proxy refused the destination (class
    /// `Policy`), reported a DNS, connect or timeout failure of the destination (classes `Dns`,
    /// `Connect`, `Timeout`), or could not be used at all (class `Proxy`).
    #[error("{message}")]
    Proxy {
        /// Who failed.
        class: ErrorClass,
        /// `PROXY_UNREACHABLE`, `PROXY_AUTH_FAILED`, `PROXY_ERROR`, `PROXY_PROTOCOL_ERROR`,
        /// `PROXY_TIMEOUT`, `PROXY_DENIED`, `PROXY_HOST_DENIED`, `PROXY_HOST_NOT_ALLOWED`,
        /// `PROXY_HOST_INVALID`, `PROXY_PORT_NOT_ALLOWED`, `PROXY_BAD_GATEWAY`,
        /// `PROXY_GATEWAY_TIMEOUT`, or the destination codes the proxy reported
        /// (`DESTINATION_DENIED`, `DNS_…`, `CONNECT_ERROR`, `CONNECT_TIMEOUT`).
        code: &'static str,
        /// What happened.
        message: String,
    },
    /// The request could not be built (a method or header the HTTP layer refuses).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SendError {
    /// Who failed.
    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Url(_) => ErrorClass::Policy,
            SendError::Guard(g) => match &**g {
                GuardError::Denied { .. } => ErrorClass::Policy,
                GuardError::Resolve { .. }
                | GuardError::NoAddresses { .. }
                | GuardError::Timeout {
                    phase: TimeoutPhase::Resolve,
                    ..
                } => ErrorClass::Dns,
                GuardError::Timeout { .. } => ErrorClass::Timeout,
                _ => ErrorClass::Connect,
            },
            SendError::Identity(_) => ErrorClass::Config,
            SendError::Tls { .. } => ErrorClass::Tls,
            SendError::TlsTimeout { .. } | SendError::Timeout { .. } => ErrorClass::Timeout,
            SendError::Protocol { .. } => ErrorClass::Protocol,
            SendError::InvalidRequest(_) | SendError::Internal(_) => ErrorClass::Internal,
            SendError::Proxy { class, .. } => *class,
        }
    }

    /// A stable machine-readable code: the [`UrlError`] and [`GuardError`] codes
    /// (`URL_…`, `DESTINATION_DENIED`, `DNS_ERROR`, `DNS_NO_ADDRESSES`, `DNS_TIMEOUT`,
    /// `CONNECT_ERROR`, `CONNECT_TIMEOUT`), and `CLIENT_IDENTITY_INVALID`,
    /// `TLS_CERTIFICATE_INVALID`, `TLS_CLIENT_CERT_REJECTED`, `TLS_HANDSHAKE_FAILED`, `TLS_HANDSHAKE_TIMEOUT`,
    /// `REQUEST_TIMEOUT`, `CONNECTION_CLOSED`, `HTTP_PROTOCOL_ERROR`, `REQUEST_INVALID`,
    /// `INTERNAL_ERROR`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::Url(e) => e.code(),
            SendError::Guard(g) => g.code(),
            SendError::Identity(e) => e.code(),
            SendError::Tls { code, .. } => code,
            SendError::TlsTimeout { .. } => "TLS_HANDSHAKE_TIMEOUT",
            SendError::Timeout { .. } => "REQUEST_TIMEOUT",
            SendError::Protocol { code, .. } => code,
            SendError::Proxy { code, .. } => code,
            SendError::InvalidRequest(_) => "REQUEST_INVALID",
            SendError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// Whether the same request may succeed later without anyone changing Hookwarden's
    /// configuration: false for policy refusals, invalid identities and invalid requests; true
    /// for DNS, connect, TLS (receivers fix certificates), timeouts and protocol failures.
    pub fn is_retryable(&self) -> bool {
        match self.class() {
            ErrorClass::Policy | ErrorClass::Config | ErrorClass::Internal => false,
            ErrorClass::Dns
            | ErrorClass::Connect
            | ErrorClass::Tls
            | ErrorClass::Timeout
            | ErrorClass::Protocol
            | ErrorClass::Proxy => true,
        }
    }

    /// The guard error, for connect-phase failures.
    pub fn guard_error(&self) -> Option<&GuardError> {
        match self {
            SendError::Guard(g) => Some(g),
            _ => None,
        }
    }
}

/// What the connector reports to hyper; turned back into a [`SendError`] by
/// [`from_client_error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Guard(Arc<GuardError>),
    #[error("TLS failure: {message}")]
    Tls { code: &'static str, message: String },
    #[error("TLS handshake timed out after {0:?}")]
    TlsTimeout(Duration),
    #[error("invalid request URI: {0}")]
    BadUri(&'static str),
    #[error("{message}")]
    Proxy {
        class: ErrorClass,
        code: &'static str,
        message: String,
    },
}

impl ConnectError {
    fn to_send_error(&self) -> SendError {
        match self {
            ConnectError::Guard(g) => SendError::Guard(g.clone()),
            ConnectError::Tls { code, message } => SendError::Tls {
                code,
                message: message.clone(),
            },
            ConnectError::TlsTimeout(after) => SendError::TlsTimeout { after: *after },
            ConnectError::BadUri(why) => SendError::Internal(format!("connector: {why}")),
            ConnectError::Proxy {
                class,
                code,
                message,
            } => SendError::Proxy {
                class: *class,
                code,
                message: message.clone(),
            },
        }
    }

    pub(crate) fn from_tls_io(e: &io::Error) -> ConnectError {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => ConnectError::Tls {
                code: tls_code(tls),
                message: tls.to_string(),
            },
            None => ConnectError::Tls {
                code: "TLS_HANDSHAKE_FAILED",
                message: e.to_string(),
            },
        }
    }
}

fn tls_code(e: &rustls::Error) -> &'static str {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => "TLS_CERTIFICATE_INVALID",
        // As the client, the only certificate the server can complain about is ours (or its
        // absence).
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied,
        ) => "TLS_CLIENT_CERT_REJECTED",
        _ => "TLS_HANDSHAKE_FAILED",
    }
}

/// Classify an error from hyper-util's client by walking its source chain.
pub(crate) fn from_client_error(err: hyper_util::client::legacy::Error) -> SendError {
    let mut code = "HTTP_PROTOCOL_ERROR";
    {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(&err);
        let mut depth = 0;
        while let Some(e) = cur {
            if let Some(ce) = e.downcast_ref::<ConnectError>() {
                return ce.to_send_error();
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return tls_send_error(tls);
            }
            if let Some(io) = e.downcast_ref::<io::Error>()
                && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
            {
                return tls_send_error(tls);
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>()
                && (h.is_incomplete_message() || h.is_canceled() || h.is_closed())
            {
                code = "CONNECTION_CLOSED";
            }
            if let Some(io) = e.downcast_ref::<io::Error>()
                && matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                )
            {
                code = "CONNECTION_CLOSED";
            }
            depth += 1;
            if depth > 32 {
                break;
            }
            cur = e.source();
        }
    }
    // The connection may have died of a TLS error before hyper wrote the request, in which case
    // hyper reports only that the connection closed (see `TlsFailure`).
    if let Some(connected) = err.connect_info() {
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        if let Some(tls) = extras.get::<TlsFailure>().and_then(TlsFailure::get) {
            return tls_send_error(tls);
        }
    }
    SendError::Protocol {
        code,
        source: Box::new(err),
    }
}

/// Classify an error while reading the response body.
pub(crate) fn from_body_error(err: hyper::Error) -> SendError {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&err);
    let mut depth = 0;
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return tls_send_error(tls);
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        cur = e.source();
    }
    let code = if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        "CONNECTION_CLOSED"
    } else {
        "HTTP_PROTOCOL_ERROR"
    };
    SendError::Protocol {
        code,
        source: Box::new(err),
    }
}

fn tls_send_error(e: &rustls::Error) -> SendError {
    SendError::Tls {
        code: tls_code(e),
        message: e.to_string(),
    }
}
