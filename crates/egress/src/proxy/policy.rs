//! Which hosts and ports a proxy client may reach, before any DNS lookup. The address policy
//! (netguard) is applied afterwards, to every resolved address, whatever this says.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most patterns in one list; most client rules.
const MAX_PATTERNS: usize = 10_000;
const MAX_CLIENTS: usize = 10_000;

/// A `[policy]` section that cannot be used: what is wrong and where (`clients.ci.allow: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// What a rule does with hosts that no list names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Only hosts on an allow list pass; everything else is refused (the default).
    #[default]
    Enforce,
    /// Nothing is refused by host rules; would-be refusals are logged as `report`.
    Report,
    /// Every host passes except those on a deny list.
    Open,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Enforce => "enforce",
            Action::Report => "report",
            Action::Open => "open",
        }
    }
}

/// `[policy]`: the default rule, the global lists, and per-client rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The default rule's action.
    pub action: Action,
    /// Destination ports allowed (default 443 and 80). Never relaxed by `report` or `open`.
    pub allowed_ports: Vec<u16>,
    /// The default rule's allow list (host globs).
    pub allow: Vec<String>,
    /// The default rule's deny list.
    pub deny: Vec<String>,
    /// Allowed for every client (unless denied).
    pub global_allow: Vec<String>,
    /// Denied for every client; wins over every allow list.
    pub global_deny: Vec<String>,
    /// Rules for named clients (a proxy user name or a client certificate's common name).
    pub clients: Vec<ClientRuleConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            action: Action::Enforce,
            allowed_ports: vec![443, 80],
            allow: Vec::new(),
            deny: Vec::new(),
            global_allow: Vec::new(),
            global_deny: Vec::new(),
            clients: Vec::new(),
        }
    }
}

/// `[[policy.clients]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRuleConfig {
    /// The client name.
    pub name: String,
    /// Default: the default rule's action.
    #[serde(default)]
    pub action: Option<Action>,
    /// Default: the default rule's ports.
    #[serde(default)]
    pub allowed_ports: Option<Vec<u16>>,
    /// This client's allow list (host globs), instead of the default rule's.
    #[serde(default)]
    pub allow: Vec<String>,
    /// This client's deny list.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A host glob: `example.com` (exactly that name), `*.example.com` (any name below it, not
/// `example.com` itself), `*` (every host), or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
    Suffix(String),
}

impl Pattern {
    fn parse(p: &str) -> Result<Pattern, PolicyError> {
        let s = p.trim();
        let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if s == "*" {
            return Ok(Pattern::Any);
        }
        let (wild, rest) = match s.strip_prefix("*.") {
            Some(r) => (true, r.to_owned()),
            None => (false, s.clone()),
        };
        if rest.is_empty() || rest.contains('*') {
            return Err(PolicyError(format!(
                "{p:?}: `*` is allowed only as `*` or as the whole first label (`*.example.com`)"
            )));
        }
        if !wild && rest.parse::<IpAddr>().is_ok() {
            return Ok(Pattern::Exact(rest));
        }
        match normalize_host(&rest) {
            Some(h) if h == rest => {}
            _ => {
                return Err(PolicyError(format!(
                    "{p:?} is not a valid host name pattern"
                )));
            }
        }
        Ok(if wild {
            Pattern::Suffix(format!(".{rest}"))
        } else {
            Pattern::Exact(rest)
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(h) => h == host,
            Pattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Patterns(Vec<Pattern>);

impl Patterns {
    fn parse(what: &str, list: &[String]) -> Result<Patterns, PolicyError> {
        if list.len() > MAX_PATTERNS {
            return Err(PolicyError(format!(
                "{what}: at most {MAX_PATTERNS} patterns"
            )));
        }
        list.iter()
            .map(|p| Pattern::parse(p).map_err(|e| PolicyError(format!("{what}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
            .map(Patterns)
    }

    fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|p| p.matches(host))
    }
}

#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    ports: Vec<u16>,
    allow: Patterns,
    deny: Patterns,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Rule,
    clients: HashMap<String, Rule>,
    global_allow: Patterns,
    global_deny: Patterns,
}

/// Why a host was refused (or would have been, under `report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRefusal {
    /// The port is not allowed.
    Port,
    /// A deny list names the host.
    Denied,
    /// No allow list names the host (action `enforce`).
    NotAllowed,
}

impl HostRefusal {
    /// `PORT_NOT_ALLOWED`, `HOST_DENIED`, `HOST_NOT_ALLOWED`.
    pub fn code(self) -> &'static str {
        match self {
            HostRefusal::Port => "PORT_NOT_ALLOWED",
            HostRefusal::Denied => "HOST_DENIED",
            HostRefusal::NotAllowed => "HOST_NOT_ALLOWED",
        }
    }
}

/// The result of [`Policy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The action of the rule that applied.
    pub action: &'static str,
    /// `Some` when the host would be refused; under `report` it passes anyway.
    pub refusal: Option<HostRefusal>,
    /// Whether the request is refused.
    pub refused: bool,
}

fn check_ports(what: &str, ports: &[u16]) -> Result<(), PolicyError> {
    if ports.is_empty() || ports.contains(&0) {
        return Err(PolicyError(format!(
            "{what}: list at least one port, none of them 0"
        )));
    }
    Ok(())
}

impl Policy {
    /// Compile and check a policy.
    pub fn from_config(c: &PolicyConfig) -> Result<Policy, PolicyError> {
        check_ports("allowed_ports", &c.allowed_ports)?;
        let default = Rule {
            action: c.action,
            ports: c.allowed_ports.clone(),
            allow: Patterns::parse("allow", &c.allow)?,
            deny: Patterns::parse("deny", &c.deny)?,
        };
        if c.clients.len() > MAX_CLIENTS {
            return Err(PolicyError(format!("clients: at most {MAX_CLIENTS}")));
        }
        let mut clients = HashMap::new();
        for r in &c.clients {
            if r.name.is_empty() || r.name.len() > 256 {
                return Err(PolicyError("clients: a name is 1 to 256 bytes".into()));
            }
            let what = format!("clients.{}", r.name);
            let ports = r
                .allowed_ports
                .clone()
                .unwrap_or_else(|| c.allowed_ports.clone());
            check_ports(&format!("{what}.allowed_ports"), &ports)?;
            let rule = Rule {
                action: r.action.unwrap_or(c.action),
                ports,
                allow: Patterns::parse(&format!("{what}.allow"), &r.allow)?,
                deny: Patterns::parse(&format!("{what}.deny"), &r.deny)?,
            };
            if clients.insert(r.name.clone(), rule).is_some() {
                return Err(PolicyError(format!(
                    "clients: {:?} is listed twice",
                    r.name
                )));
            }
        }
        Ok(Policy {
            default,
            clients,
            global_allow: Patterns::parse("global_allow", &c.global_allow)?,
            global_deny: Patterns::parse("global_deny", &c.global_deny)?,
        })
    }

    /// Decide for `host` (already normalised by [`normalize_host`]) and `port`, for the client
    /// named `client` (its own rule, else the default rule).
    pub fn decide(&self, client: Option<&str>, host: &str, port: u16) -> Decision {
        let rule = client
            .and_then(|c| self.clients.get(c))
            .unwrap_or(&self.default);
        let action = rule.action.as_str();
        if !rule.ports.contains(&port) {
            return Decision {
                action,
                refusal: Some(HostRefusal::Port),
                refused: true,
            };
        }
        // `global_deny` is denied for every client whatever its action: `report` only relaxes
        // the client's own rule.
        if self.global_deny.matches(host) {
            return Decision {
                action,
                refusal: Some(HostRefusal::Denied),
                refused: true,
            };
        }
        let refusal = if rule.deny.matches(host) {
            Some(HostRefusal::Denied)
        } else if self.global_allow.matches(host)
            || rule.allow.matches(host)
            || rule.action == Action::Open
        {
            None
        } else {
            Some(HostRefusal::NotAllowed)
        };
        Decision {
            action,
            refusal,
            refused: refusal.is_some() && rule.action != Action::Report,
        }
    }
}

/// A destination host as a client wrote it in `CONNECT host:port` or an absolute URL: lowercase,
/// trailing dot removed, letters, digits, `-`, `_` and dots only, labels of 1 to 63 bytes, at
/// most 253 bytes — or an IPv4 address in dotted-decimal form. Anything else (brackets, IPv6
/// literals, percent signs, `@`, numeric spellings such as `2130706433` or `0x7f.1`, empty
/// labels) is `None`: refused as malformed.
pub fn normalize_host(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 254 {
        return None;
    }
    let h = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    let labels_ok = h.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return None;
    }
    let last = h.rsplit('.').next().unwrap_or(&h);
    // WHATWG reads a last label of digits, or `0x` followed by anything (even nothing: `0x` is
    // the number 0), as an IPv4 number.
    let numeric_last = last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x");
    if numeric_last {
        // Only the one unambiguous spelling of an IPv4 address: four decimal parts, no leading
        // zeros (so `0177.0.0.1` is not read as 177.0.0.1 here and 127.0.0.1 elsewhere).
        let v4: std::net::Ipv4Addr = h.parse().ok()?;
        return (v4.to_string() == h).then_some(h);
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        let c: PolicyConfig = toml::from_str(text).expect("toml");
        Policy::from_config(&c).expect("policy")
    }

    #[test]
    fn hosts_are_normalised_or_refused() {
        assert_eq!(
            normalize_host("Hooks.Example.COM.").as_deref(),
            Some("hooks.example.com")
        );
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(normalize_host("127.0.0.1.").as_deref(), Some("127.0.0.1"));
        for bad in [
            "",
            ".",
            "[::1]",
            "::1",
            "a..b",
            "a b",
            "a%2eb",
            "user@host",
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "127.1",
            "0177.0.0.1",
            "127.000.0.1",
            // WHATWG reads an empty hex number as 0: `0x` is 0.0.0.0 (found by fuzzing).
            "0x",
            "a.0x",
            "0X.",
            "1.2.3.4.5",
            "host:80",
            "é.example",
            &"a".repeat(64),
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn globs_match_subdomains_only() {
        let p = Pattern::parse("*.Example.com.").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
        let e = Pattern::parse("example.com").unwrap();
        assert!(e.matches("example.com"));
        assert!(!e.matches("a.example.com"));
        assert!(Pattern::parse("*").unwrap().matches("anything"));
        for bad in [
            "a.*.com",
            "*example.com",
            "*..",
            "",
            "ex ample.com",
            "*.*.com",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enforce_report_open_and_deny_wins() {
        let p = policy(
            r#"
action = "enforce"
allow = ["*.example.com", "api.partner.test"]
deny = ["evil.example.com"]
global_allow = ["status.vendor.test"]
global_deny = ["*.internal.test"]
[[clients]]
name = "reporter"
action = "report"
[[clients]]
name = "opener"
action = "open"
deny = ["blocked.test"]
allowed_ports = [8443]
"#,
        );
        let d = |c: Option<&str>, h: &str, port: u16| p.decide(c, h, port);
        assert!(!d(None, "a.example.com", 443).refused);
        assert!(!d(None, "status.vendor.test", 80).refused);
        assert_eq!(
            d(None, "example.com", 443).refusal,
            Some(HostRefusal::NotAllowed)
        );
        assert!(d(None, "example.com", 443).refused);
        assert_eq!(
            d(None, "evil.example.com", 443).refusal,
            Some(HostRefusal::Denied)
        );
        assert_eq!(
            d(None, "a.example.com", 22).refusal,
            Some(HostRefusal::Port)
        );
        // An unknown client gets the default rule.
        assert!(d(Some("nobody"), "other.test", 443).refused);
        // Report: nothing refused by host, still reported; ports still enforced.
        let r = d(Some("reporter"), "other.test", 443);
        assert_eq!(
            (r.refused, r.refusal),
            (false, Some(HostRefusal::NotAllowed))
        );
        assert_eq!(r.action, "report");
        assert!(d(Some("reporter"), "other.test", 25).refused);
        // `global_deny` is denied for every client, `report` ones included; the client's own
        // deny list is only reported.
        let r = d(Some("reporter"), "db.internal.test", 443);
        assert_eq!((r.refused, r.refusal), (true, Some(HostRefusal::Denied)));
        assert_eq!(r.action, "report");
        assert!(!d(Some("reporter"), "evil.example.com", 443).refused);
        // Open: everything but deny lists (its own and the global one).
        assert!(!d(Some("opener"), "other.test", 8443).refused);
        assert!(d(Some("opener"), "other.test", 443).refused);
        assert!(d(Some("opener"), "blocked.test", 8443).refused);
        assert!(d(Some("opener"), "db.internal.test", 8443).refused);
    }

    #[test]
    fn refuses_bad_policies() {
        for bad in [
            "allowed_ports = []",
            "allowed_ports = [0]",
            "allow = [\"*.*.x\"]",
            "[[clients]]\nname = \"\"",
            "[[clients]]\nname = \"a\"\n[[clients]]\nname = \"a\"",
        ] {
            let c: PolicyConfig = toml::from_str(bad).expect("toml");
            assert!(Policy::from_config(&c).is_err(), "{bad}");
        }
    }
}
