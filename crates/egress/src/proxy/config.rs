//! The egress proxy's configuration file (TOML or YAML). See `docs/egress-proxy.md` for the
//! documented format; every key has a safe default except what names the operator's network.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hookwarden_netguard::{CidrList, IpNet};
use serde::{Deserialize, Serialize};

use super::auth::{PasswordHash, Users};
use super::policy::{Policy, PolicyConfig};

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A configuration error (the proxy refuses to start).
#[derive(Debug, thiserror::Error)]
#[error("egress proxy configuration: {0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The plain-TCP listener (HTTP/1.1 proxy requests). Default `127.0.0.1:4750`.
    pub listen: String,
    /// An optional listener for `/metrics` (Prometheus) and `/health`. Off by default.
    pub metrics_listen: Option<String>,
    /// An optional TLS listener (clients use `https://` proxy URLs; client certificates can
    /// identify them).
    pub tls: Option<TlsListenerConfig>,
    /// Outgoing side: source addresses, address policy, DNS overrides.
    pub egress: EgressSection,
    /// Bounds on connections, tunnels, headers and time.
    pub limits: Limits,
    /// Proxy users (`Proxy-Authorization: Basic`). When empty (and no client certificate is
    /// required), clients are not authenticated.
    pub users: Vec<UserConfig>,
    /// Which hosts and ports clients may reach.
    pub policy: PolicyConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4750".into(),
            metrics_listen: None,
            tls: None,
            egress: EgressSection::default(),
            limits: Limits::default(),
            users: Vec::new(),
            policy: PolicyConfig::default(),
        }
    }
}

/// `[tls]`: a TLS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Where to listen.
    pub listen: String,
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. When set, a client may
    /// identify itself by certificate: its subject common name is its client name.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a valid client certificate (needs `client_ca_file`).
    #[serde(default)]
    pub require_client_certificate: bool,
}

/// `[egress]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSection {
    /// Local addresses outgoing connections leave from (used in turn). Empty: the OS chooses.
    pub bind_addresses: Vec<IpAddr>,
    /// Exceptions to the default denial of internal addresses (e.g. a lab network). Deny wins.
    pub allow_ranges: Vec<String>,
    /// Extra ranges that are always refused.
    pub deny_ranges: Vec<String>,
    /// Fixed DNS answers (host → addresses), checked like real answers.
    pub resolve_overrides: BTreeMap<String, Vec<IpAddr>>,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Client connections at once; more are closed at once. Default 4096.
    pub max_connections: usize,
    /// Client connections of one address at once (an IPv6 /64 counts as one address); more are
    /// closed at once. A connection carries at most one tunnel, so this bounds one client's
    /// tunnels too. Keep it above the busiest sender's concurrency (`hookwarden serve` opens up
    /// to `delivery.concurrency` connections, 512 by default). 0: no per-address bound.
    /// Default 1024.
    pub max_connections_per_peer: usize,
    /// Upstream connections (tunnels and forwarded requests) at once; more get 503. Default 4096.
    pub max_tunnels: usize,
    /// Largest request head (request line and headers). Default 16384 bytes.
    pub max_header_bytes: usize,
    /// Time for a client to send a request head (and finish a TLS handshake); also how long an
    /// idle client connection is kept between requests. Default 10 s.
    pub header_read_timeout_secs: u64,
    /// Longest a write to a client may wait for the client to read (a refusal, a forwarded
    /// response); then its connection is closed. Default 30 s. (Tunnels are bounded by
    /// `idle_timeout_secs`.)
    pub write_timeout_secs: u64,
    /// DNS lookup and TCP connect to the destination. Default 10 s.
    pub connect_timeout_secs: u64,
    /// A tunnel (or a forwarded response) with no byte in either direction for this long is
    /// closed. Default 300 s.
    pub idle_timeout_secs: u64,
    /// The longest a tunnel may live. Default 3600 s.
    pub max_tunnel_secs: u64,
    /// A forwarded plain-HTTP request must get its response head within this. Default 60 s.
    pub request_timeout_secs: u64,
    /// On shutdown, how long open connections may finish. Default 10 s.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_peer: 1024,
            max_tunnels: 4096,
            max_header_bytes: 16 * 1024,
            header_read_timeout_secs: 10,
            write_timeout_secs: 30,
            connect_timeout_secs: 10,
            idle_timeout_secs: 300,
            max_tunnel_secs: 3600,
            request_timeout_secs: 60,
            shutdown_grace_secs: 10,
        }
    }
}

/// `[[users]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name (also the client name that `[[policy.clients]]` rules match).
    pub name: String,
    /// `sha256$<salt hex>$<digest hex>`, as printed by `hookwarden egress-proxy --hash-password`.
    pub password_hash: String,
}

/// A configuration checked and turned into what the proxy runs with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub(crate) cfg: ProxyConfig,
    pub(crate) listen: SocketAddr,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) tls_listen: Option<SocketAddr>,
    pub(crate) allow: Vec<IpNet>,
    pub(crate) deny: Vec<IpNet>,
    pub(crate) users: Users,
    pub(crate) policy: Policy,
}

fn addr(what: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| err(format!("{what}: {s:?} is not an address:port")))
}

fn ranges(what: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    CidrList::parse_entries(list)
        .map(CidrList::into_vec)
        .map_err(|e| err(format!("{what}: {e}")))
}

impl ProxyConfig {
    /// Read a TOML file, or a YAML file when its name ends in `.yaml` or `.yml` (the same keys).
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(err(format!("{} is too large", path.display())));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if yaml {
            Self::parse_yaml(&text)
        } else {
            Self::parse(&text)
        }
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
        toml::from_str(text).map_err(|e| err(e.to_string()))
    }

    /// Parse YAML text: the same structure as the TOML file (tables are mappings, arrays of
    /// tables are sequences of mappings). Duplicate keys, unknown keys and aliases past the
    /// parser's budget are refused; a file with no document at all means every default.
    pub fn parse_yaml(text: &str) -> Result<ProxyConfig, ConfigError> {
        let empty = text
            .lines()
            .map(str::trim)
            .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
        if empty {
            return Self::parse("");
        }
        serde_saphyr::from_str(text).map_err(|e| err(format!("YAML: {e}")))
    }

    /// Check everything and prepare it.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let l = &self.limits;
        if l.max_connections == 0 || l.max_connections > 1_000_000 {
            return Err(err("limits.max_connections must be 1..=1000000"));
        }
        if l.max_connections_per_peer > 1_000_000 {
            return Err(err("limits.max_connections_per_peer must be 0..=1000000"));
        }
        if l.max_tunnels == 0 || l.max_tunnels > 1_000_000 {
            return Err(err("limits.max_tunnels must be 1..=1000000"));
        }
        if !(1024..=1024 * 1024).contains(&l.max_header_bytes) {
            return Err(err("limits.max_header_bytes must be 1024..=1048576"));
        }
        for (name, v) in [
            ("header_read_timeout_secs", l.header_read_timeout_secs),
            ("write_timeout_secs", l.write_timeout_secs),
            ("connect_timeout_secs", l.connect_timeout_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("max_tunnel_secs", l.max_tunnel_secs),
            ("request_timeout_secs", l.request_timeout_secs),
        ] {
            if v == 0 || v > 7 * 86_400 {
                return Err(err(format!("limits.{name} must be 1..=604800")));
            }
        }
        if self.egress.bind_addresses.len() > 64 {
            return Err(err("egress.bind_addresses: at most 64"));
        }
        let listen = addr("listen", &self.listen)?;
        let metrics_listen = match &self.metrics_listen {
            Some(s) => Some(addr("metrics_listen", s)?),
            None => None,
        };
        let tls_listen = match &self.tls {
            Some(t) => {
                if t.require_client_certificate && t.client_ca_file.is_none() {
                    return Err(err(
                        "tls.require_client_certificate needs tls.client_ca_file",
                    ));
                }
                Some(addr("tls.listen", &t.listen)?)
            }
            None => None,
        };
        let allow = ranges("egress.allow_ranges", &self.egress.allow_ranges)?;
        let deny = ranges("egress.deny_ranges", &self.egress.deny_ranges)?;
        if self.users.len() > 10_000 {
            return Err(err("users: at most 10000"));
        }
        let mut users = Users::default();
        for u in &self.users {
            if u.name.is_empty() || u.name.len() > 128 || u.name.contains(':') {
                return Err(err(format!(
                    "users: {:?} is not a valid user name (1 to 128 bytes, no ':')",
                    u.name
                )));
            }
            let hash = PasswordHash::parse(&u.password_hash)
                .map_err(|e| err(format!("users.{}: {e}", u.name)))?;
            if !users.insert(u.name.clone(), hash) {
                return Err(err(format!("users: {:?} is listed twice", u.name)));
            }
        }
        let policy = Policy::from_config(&self.policy).map_err(|e| err(format!("policy: {e}")))?;
        Ok(Validated {
            cfg: self,
            listen,
            metrics_listen,
            tls_listen,
            allow,
            deny,
            users,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let v = ProxyConfig::parse("").unwrap().validate().unwrap();
        assert_eq!(v.listen.to_string(), "127.0.0.1:4750");
        assert!(v.users.is_empty());
        assert_eq!(v.cfg.limits.max_tunnels, 4096);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
[egress]
bind_addresses = ["127.0.0.3"]
allow_ranges = ["127.0.0.0/8"]
deny_ranges = ["127.0.0.9"]
resolve_overrides = { "hooks.example" = ["127.0.0.2"] }
[limits]
max_connections = 10
idle_timeout_secs = 5
[[users]]
name = "hookwarden"
password_hash = "sha256$00112233445566778899aabbccddeeff$0000000000000000000000000000000000000000000000000000000000000000"
[policy]
action = "enforce"
allowed_ports = [443, 8443]
allow = ["*.example.com"]
global_deny = ["bad.example.com"]
[[policy.clients]]
name = "hookwarden"
action = "open"
"#;
        let v = ProxyConfig::parse(text).unwrap().validate().unwrap();
        assert_eq!(v.deny.len(), 1);
        assert!(!v.users.is_empty());
    }

    #[test]
    fn yaml_says_the_same_as_toml() {
        let toml = r#"
listen = "127.0.0.1:0"
[egress]
allow_ranges = ["127.0.0.0/8"]
resolve_overrides = { "hooks.example" = ["127.0.0.2"] }
[limits]
max_connections = 10
[[users]]
name = "hookwarden"
password_hash = "sha256$00112233445566778899aabbccddeeff$0000000000000000000000000000000000000000000000000000000000000000"
[policy]
action = "report"
allowed_ports = [443, 8443]
allow = ["*.example.com"]
[[policy.clients]]
name = "hookwarden"
action = "open"
deny = ["internal.example.com"]
"#;
        let yaml = r#"
# the same policy, in YAML
listen: "127.0.0.1:0"
egress:
  allow_ranges: ["127.0.0.0/8"]
  resolve_overrides:
    hooks.example: ["127.0.0.2"]
limits:
  max_connections: 10
users:
  - name: hookwarden
    password_hash: "sha256$00112233445566778899aabbccddeeff$0000000000000000000000000000000000000000000000000000000000000000"
policy:
  action: report
  allowed_ports: [443, 8443]
  allow: ["*.example.com"]
  clients:
    - name: hookwarden
      action: open
      deny: [internal.example.com]
"#;
        let a = ProxyConfig::parse(toml).unwrap();
        let b = ProxyConfig::parse_yaml(yaml).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        b.validate().unwrap();
        // No document: every default, as an empty TOML file.
        let d = ProxyConfig::parse_yaml("# nothing\n---\n").unwrap();
        assert_eq!(
            format!("{d:?}"),
            format!("{:?}", ProxyConfig::parse("").unwrap())
        );
    }

    #[test]
    fn yaml_refuses_what_toml_refuses_and_more() {
        for bad in [
            "unknown: 1",
            "listen: [1, 2]",
            "limits:\n  max_connections: many",
            // A key given twice must not silently pick one.
            "policy:\n  action: enforce\n  action: open",
            "- just\n- a list",
        ] {
            assert!(ProxyConfig::parse_yaml(bad).is_err(), "{bad}");
        }
        for bad in ["limits:\n  max_connections: 0", "policy:\n  action: maybe"] {
            let r = ProxyConfig::parse_yaml(bad).and_then(ProxyConfig::validate);
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn load_picks_the_format_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("p.toml", "[policy]\naction = \"open\"\n"),
            ("p.yaml", "policy:\n  action: open\n"),
            ("p.YML", "policy:\n  action: open\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let v = ProxyConfig::load(&path).unwrap().validate().unwrap();
            assert!(format!("{:?}", v.cfg.policy).contains("Open"), "{name}");
        }
        // YAML text in a .toml file is read as TOML, and refused.
        let path = dir.path().join("wrong.toml");
        std::fs::write(&path, "policy:\n  action: open\n").unwrap();
        assert!(ProxyConfig::load(&path).is_err());
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "listen = \"nope\"",
            "[limits]\nmax_connections = 0",
            "[limits]\nidle_timeout_secs = 0",
            "[egress]\nallow_ranges = [\"x\"]",
            "[[users]]\nname = \"a\"\npassword_hash = \"plain\"",
            "[policy]\naction = \"maybe\"",
            "[policy]\nallow = [\"a.*.com\"]",
            "unknown = 1",
            "[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"c\"\nkey_file = \"k\"\nrequire_client_certificate = true",
        ] {
            let r = ProxyConfig::parse(bad).and_then(ProxyConfig::validate);
            assert!(r.is_err(), "{bad}");
        }
    }
}
