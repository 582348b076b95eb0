//! Resolve, check, then connect to exactly the checked address.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::classify::normalize;
use crate::policy::{AddressPolicy, Denied};
use crate::resolve::{MAX_ANSWERS, Resolve};
use crate::url_policy::{Target, TargetHost, UrlError, UrlPolicy, parse_endpoint_url};

/// The default bound on one DNS lookup made by [`Guard`].
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many addresses of one name are tried by [`Guard::connect`].
pub const MAX_CONNECT_ATTEMPTS: usize = 8;

/// The address policy plus a resolver: the one place where outbound destinations are decided.
///
/// # DNS answers
///
/// A name is accepted only if **every** address it resolves to is permitted. A name that answers
/// with a mix of public and internal addresses is refused as a whole: mixed answers are the
/// signature of DNS rebinding and of "pinning" attacks (hoping the client picks the internal
/// one), and no legitimate webhook receiver needs them.
///
/// # Connecting
///
/// [`Guard::connect`] resolves once, checks, and then connects to exactly the checked addresses,
/// in the order the resolver gave them. There is never a second lookup between the check and the
/// connect, so a name whose answer changes (rebinding) cannot slip in an unchecked address.
pub struct Guard {
    policy: AddressPolicy,
    resolver: Arc<dyn Resolve>,
    resolve_timeout: Duration,
}

impl Guard {
    /// A guard with the default resolve timeout ([`DEFAULT_RESOLVE_TIMEOUT`]).
    pub fn new(policy: AddressPolicy, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            policy,
            resolver,
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
        }
    }

    /// Change the bound on one DNS lookup.
    pub fn with_resolve_timeout(mut self, timeout: Duration) -> Self {
        self.resolve_timeout = timeout;
        self
    }

    /// The address policy.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// The resolver.
    pub fn resolver(&self) -> &Arc<dyn Resolve> {
        &self.resolver
    }

    /// [`parse_endpoint_url`] followed by [`Target::check_target`] with this guard's policy: every
    /// check that can be made without DNS.
    pub fn check_url(&self, input: &str, opts: &UrlPolicy) -> Result<Target, UrlError> {
        let target = parse_endpoint_url(input, opts)?;
        target.check_target(&self.policy)?;
        Ok(target)
    }

    /// Check one address against the policy.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), GuardError> {
        self.policy.check(ip).map_err(|denied| GuardError::Denied {
            host: TargetHost::Ip(ip),
            denied,
        })
    }

    /// The permitted addresses of `host` (an address literal is checked as it is; a name is
    /// resolved once, and refused if *any* answer is denied). Addresses are normalised
    /// (IPv4-mapped IPv6 → IPv4), deduplicated, and at most [`MAX_ANSWERS`].
    ///
    /// `localhost` and names under `.localhost` are never asked of a resolver: RFC 6761 makes
    /// them loopback, `127.0.0.1` and `::1`, and those of the two the policy permits are the
    /// answer (both are loopback, so this is not the public/internal mix refused above). Every
    /// user of a guard (deliveries, the egress proxy) thus treats them the same way, whatever
    /// the machine's hosts file says.
    pub async fn resolve_checked(&self, host: &TargetHost) -> Result<Vec<IpAddr>, GuardError> {
        let name = match host {
            TargetHost::Ip(ip) => {
                self.check_ip(*ip)?;
                return Ok(vec![normalize(*ip)]);
            }
            TargetHost::Domain(_) if host.is_localhost_name() => {
                return localhost_permitted(&self.policy).map_err(|denied| GuardError::Denied {
                    host: host.clone(),
                    denied,
                });
            }
            TargetHost::Domain(name) => name,
        };
        let answers =
            match tokio::time::timeout(self.resolve_timeout, self.resolver.resolve(name)).await {
                Ok(Ok(answers)) => answers,
                Ok(Err(source)) if source.kind() == io::ErrorKind::NotFound => {
                    return Err(GuardError::NoAddresses { host: name.clone() });
                }
                Ok(Err(source)) => {
                    return Err(GuardError::Resolve {
                        host: name.clone(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(GuardError::Timeout {
                        phase: TimeoutPhase::Resolve,
                        after: self.resolve_timeout,
                    });
                }
            };
        let mut out: Vec<IpAddr> = Vec::with_capacity(answers.len().min(MAX_ANSWERS));
        for ip in answers {
            if let Err(denied) = self.policy.check(ip) {
                return Err(GuardError::Denied {
                    host: host.clone(),
                    denied,
                });
            }
            let ip = normalize(ip);
            if !out.contains(&ip) && out.len() < MAX_ANSWERS {
                out.push(ip);
            }
        }
        if out.is_empty() {
            return Err(GuardError::NoAddresses { host: name.clone() });
        }
        Ok(out)
    }

    /// Resolve and check `host` once, then connect to the checked addresses in turn (at most
    /// [`MAX_CONNECT_ATTEMPTS`]) until one accepts. With `bind`, the socket is bound to that local
    /// address first and only addresses of its family are tried. `connect_timeout` bounds all
    /// attempts together (each of the remaining attempts gets an equal share of what is left).
    /// `TCP_NODELAY` is set on the stream.
    pub async fn connect(
        &self,
        host: &TargetHost,
        port: u16,
        bind: Option<IpAddr>,
        connect_timeout: Duration,
    ) -> Result<Connected, GuardError> {
        let addrs = self.resolve_checked(host).await?;
        let bind = bind.map(normalize);
        let candidates: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|ip| bind.is_none_or(|b| b.is_ipv4() == ip.is_ipv4()))
            .take(MAX_CONNECT_ATTEMPTS)
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        if candidates.is_empty() {
            return Err(GuardError::Connect {
                addr: None,
                source: io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!(
                        "{host} has no address of the same family as the bind address {}",
                        bind.map_or_else(String::new, |b| b.to_string())
                    ),
                ),
            });
        }
        // A huge timeout must not overflow (`Instant + Duration` panics on overflow).
        let now = Instant::now();
        let deadline = now
            .checked_add(connect_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let mut last_err = None;
        for (i, addr) in candidates.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let left = u32::try_from(candidates.len() - i).unwrap_or(u32::MAX);
            let budget = (deadline - now) / left;
            match tokio::time::timeout(budget, connect_one(*addr, bind)).await {
                Ok(Ok(stream)) => {
                    let local = match stream.local_addr() {
                        Ok(a) => a,
                        Err(source) => {
                            last_err = Some(GuardError::Connect {
                                addr: Some(*addr),
                                source,
                            });
                            continue;
                        }
                    };
                    // Best effort: a failure here does not make the connection unusable.
                    let _ = stream.set_nodelay(true);
                    return Ok(Connected {
                        stream,
                        local,
                        remote: *addr,
                    });
                }
                Ok(Err(source)) => {
                    last_err = Some(GuardError::Connect {
                        addr: Some(*addr),
                        source,
                    });
                }
                Err(_) => {
                    last_err = Some(GuardError::Timeout {
                        phase: TimeoutPhase::Connect,
                        after: connect_timeout,
                    });
                }
            }
        }
        Err(last_err.unwrap_or(GuardError::Timeout {
            phase: TimeoutPhase::Connect,
            after: connect_timeout,
        }))
    }
}

/// The loopback addresses RFC 6761 gives `localhost` names, in order of preference.
pub const LOCALHOST_ADDRESSES: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
];

/// Those of [`LOCALHOST_ADDRESSES`] that `policy` permits; the first denial when it permits
/// neither.
pub(crate) fn localhost_permitted(policy: &AddressPolicy) -> Result<Vec<IpAddr>, Denied> {
    let mut out = Vec::with_capacity(2);
    let mut first_denial = None;
    for ip in LOCALHOST_ADDRESSES {
        match policy.check(ip) {
            Ok(()) => out.push(ip),
            Err(d) => {
                first_denial.get_or_insert(d);
            }
        }
    }
    match first_denial {
        Some(d) if out.is_empty() => Err(d),
        _ => Ok(out),
    }
}

async fn connect_one(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bind) = bind {
        socket.bind(SocketAddr::new(bind, 0))?;
    }
    socket.connect(addr).await
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("policy", &self.policy)
            .field("resolve_timeout", &self.resolve_timeout)
            .finish_non_exhaustive()
    }
}

/// A connection made by [`Guard::connect`].
#[derive(Debug)]
pub struct Connected {
    /// The stream (`TCP_NODELAY` set).
    pub stream: TcpStream,
    /// The local address it left from.
    pub local: SocketAddr,
    /// The checked address it went to.
    pub remote: SocketAddr,
}

/// Which step timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// The DNS lookup.
    Resolve,
    /// The TCP connect.
    Connect,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Resolve => "DNS lookup",
            TimeoutPhase::Connect => "connect",
        })
    }
}

/// Why [`Guard`] refused or failed to reach a destination. [`GuardError::code`] is stable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The address, or one of the addresses the name resolved to, is not permitted.
    #[error("{}", denied_message(host, denied))]
    Denied {
        /// The host that was asked for.
        host: TargetHost,
        /// The refused address and why.
        denied: Denied,
    },
    /// The DNS lookup failed.
    #[error("DNS lookup for {host} failed: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The name does not exist or has no address records.
    #[error("{host} has no address records")]
    NoAddresses {
        /// The name.
        host: String,
    },
    /// Every connection attempt failed (the error is the last attempt's).
    #[error("connecting to {} failed: {source}", addr.map_or_else(|| "destination".to_owned(), |a| a.to_string()))]
    Connect {
        /// The address of the last attempt, if one was made.
        addr: Option<SocketAddr>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A step took too long.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// Which step.
        phase: TimeoutPhase,
        /// The bound that was exceeded.
        after: Duration,
    },
}

fn denied_message(host: &TargetHost, denied: &Denied) -> String {
    match host {
        TargetHost::Ip(_) => denied.to_string(),
        TargetHost::Domain(name) => format!("{name} resolves to a refused address: {denied}"),
    }
}

impl GuardError {
    /// A stable machine-readable code: `DESTINATION_DENIED`, `DNS_ERROR`, `DNS_NO_ADDRESSES`,
    /// `DNS_TIMEOUT`, `CONNECT_ERROR`, `CONNECT_TIMEOUT`.
    pub fn code(&self) -> &'static str {
        match self {
            GuardError::Denied { .. } => "DESTINATION_DENIED",
            GuardError::Resolve { .. } => "DNS_ERROR",
            GuardError::NoAddresses { .. } => "DNS_NO_ADDRESSES",
            GuardError::Connect { .. } => "CONNECT_ERROR",
            GuardError::Timeout {
                phase: TimeoutPhase::Resolve,
                ..
            } => "DNS_TIMEOUT",
            GuardError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            } => "CONNECT_TIMEOUT",
        }
    }

    /// Whether a later attempt may succeed without a configuration change (everything except a
    /// policy denial).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, GuardError::Denied { .. })
    }

    /// The denial, for [`GuardError::Denied`].
    pub fn denied(&self) -> Option<&Denied> {
        match self {
            GuardError::Denied { denied, .. } => Some(denied),
            _ => None,
        }
    }
}
