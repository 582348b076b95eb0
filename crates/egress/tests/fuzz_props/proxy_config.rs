//! Fuzz properties of the egress proxy's configuration loaders (`ProxyConfig::parse`,
//! `ProxyConfig::parse_yaml`, `validate`).
//!
//! - **Raw.** The input as TOML text and as YAML text: no panic, in parsing or validation; a
//!   configuration that validates respects every documented bound (at most 10,000 patterns per
//!   list, clients and users, 64 bind addresses, limits in range, non-empty port lists without 0).
//! - **Structured.** A configuration is generated from the input (listeners, egress lists,
//!   overrides, limits, users, policy with client rules; strings with any character, numbers at
//!   the edges, sometimes a list one past its bound) and written both as TOML and as YAML by the
//!   emitters below. Both accept it or both refuse it; when accepted, both give the same
//!   configuration, which validates to the same result.
#![allow(dead_code)]

use hookwarden_egress::proxy::ProxyConfig;

use super::input::Input;

const MAX_PATTERNS: usize = 10_000;

/// The fuzz entry point.
pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if input.u8().is_multiple_of(3) {
        let text = String::from_utf8_lossy(input.rest()).into_owned();
        if let Ok(c) = ProxyConfig::parse(&text) {
            let _ = check_valid(c);
        }
        if let Ok(c) = ProxyConfig::parse_yaml(&text) {
            let _ = check_valid(c);
        }
        return;
    }
    let doc = generate(&mut input);
    let toml = doc.toml();
    let yaml = doc.yaml();
    // Values can be ill-typed (an address that is not one): then both formats refuse.
    let (a, b) = match (ProxyConfig::parse(&toml), ProxyConfig::parse_yaml(&yaml)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(_), Err(_)) => return,
        (a, b) => panic!(
            "TOML and YAML disagree on acceptance: {:?} / {:?}\n{toml}\n---\n{yaml}",
            a.err(),
            b.err()
        ),
    };
    assert_eq!(
        format!("{a:?}"),
        format!("{b:?}"),
        "TOML and YAML disagree\n{toml}\n---\n{yaml}"
    );
    let va = check_valid(a);
    let vb = check_valid(b);
    assert_eq!(va, vb, "validation differs\n{toml}\n---\n{yaml}");
}

/// Validate; when valid, the bounds hold. Returns the validation outcome as text.
fn check_valid(c: ProxyConfig) -> Result<(), String> {
    let copy = c.clone();
    match c.validate() {
        Ok(_) => {
            let p = &copy.policy;
            for list in [&p.allow, &p.deny, &p.global_allow, &p.global_deny] {
                assert!(
                    list.len() <= MAX_PATTERNS,
                    "{} patterns accepted",
                    list.len()
                );
            }
            assert!(p.clients.len() <= 10_000);
            assert!(!p.allowed_ports.is_empty() && !p.allowed_ports.contains(&0));
            for r in &p.clients {
                for list in [&r.allow, &r.deny] {
                    assert!(list.len() <= MAX_PATTERNS);
                }
                if let Some(ports) = &r.allowed_ports {
                    assert!(!ports.is_empty() && !ports.contains(&0));
                }
                assert!(!r.name.is_empty() && r.name.len() <= 256);
            }
            assert!(copy.users.len() <= 10_000);
            assert!(copy.egress.bind_addresses.len() <= 64);
            let l = &copy.limits;
            assert!((1..=1_000_000).contains(&l.max_connections));
            assert!((1..=1_000_000).contains(&l.max_tunnels));
            assert!((1024..=1024 * 1024).contains(&l.max_header_bytes));
            for v in [
                l.header_read_timeout_secs,
                l.connect_timeout_secs,
                l.idle_timeout_secs,
                l.max_tunnel_secs,
                l.request_timeout_secs,
            ] {
                assert!((1..=7 * 86_400).contains(&v));
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A value in both languages.
enum V {
    Str(String),
    Int(i64),
    List(Vec<V>),
}

/// One generated document: top-level keys and tables (ordered).
struct Doc {
    top: Vec<(&'static str, V)>,
    tables: Vec<(&'static str, Vec<(String, V)>)>,
    users: Vec<Vec<(&'static str, V)>>,
    clients: Vec<Vec<(&'static str, V)>>,
}

fn any_str(input: &mut Input<'_>) -> String {
    input.str(24)
}

fn pick(input: &mut Input<'_>, options: &[&str]) -> String {
    if input.u8().is_multiple_of(8) {
        return any_str(input);
    }
    options[usize::from(input.u8()) % options.len()].to_owned()
}

fn int(input: &mut Input<'_>) -> i64 {
    match input.u8() % 4 {
        0 => i64::from(input.u8()),
        1 => i64::from(input.u32()),
        2 => [
            0,
            1,
            1023,
            1024,
            1_048_576,
            1_048_577,
            604_800,
            604_801,
            1_000_001,
            i64::MAX,
        ][usize::from(input.u8() % 10)],
        _ => i64::from(input.u16()),
    }
}

fn strings(input: &mut Input<'_>, options: &[&str]) -> V {
    if input.u8() == 0xff {
        // One past the bound.
        return V::List((0..=MAX_PATTERNS).map(|_| V::Str("*".into())).collect());
    }
    V::List(
        (0..input.u8() % 4)
            .map(|_| V::Str(pick(input, options)))
            .collect(),
    )
}

const HOSTS: [&str; 8] = [
    "*",
    "*.example.com",
    "api.example.com.",
    "A.B",
    "10.0.0.1",
    "a.*.com",
    "",
    "x_y.internal",
];
const RANGES: [&str; 6] = [
    "127.0.0.0/8",
    "::1",
    "10.0.0.0/33",
    "192.168.1.1, 10.0.0.0/8",
    "x",
    "",
];
const IPS: [&str; 5] = ["127.0.0.1", "::1", "10.0.0.2", "1.2.3", "::ffff:1.2.3.4"];
const HASH: &str = "sha256$00112233445566778899aabbccddeeff$0000000000000000000000000000000000000000000000000000000000000000";

fn generate(input: &mut Input<'_>) -> Doc {
    let mut doc = Doc {
        top: Vec::new(),
        tables: Vec::new(),
        users: Vec::new(),
        clients: Vec::new(),
    };
    let flags = input.u16();
    if flags & 1 != 0 {
        doc.top.push((
            "listen",
            V::Str(pick(
                input,
                &["127.0.0.1:0", "[::1]:4750", "nope", "0.0.0.0:65535"],
            )),
        ));
    }
    if flags & 2 != 0 {
        doc.top.push((
            "metrics_listen",
            V::Str(pick(input, &["127.0.0.1:0", "x:1"])),
        ));
    }
    if flags & 4 != 0 {
        let bind: Vec<V> = (0..input.u8() % 3)
            .map(|_| V::Str(pick(input, &IPS)))
            .collect();
        let allow = strings(input, &RANGES);
        let deny = strings(input, &RANGES);
        let egress: Vec<(String, V)> = vec![
            ("bind_addresses".into(), V::List(bind)),
            ("allow_ranges".into(), allow),
            ("deny_ranges".into(), deny),
        ];
        doc.tables.push(("egress", egress));
        let mut overrides: Vec<(String, V)> = Vec::new();
        for i in 0..input.u8() % 3 {
            let name = format!("{}{i}", any_str(input));
            overrides.push((
                name,
                V::List(
                    (0..input.u8() % 3)
                        .map(|_| V::Str(pick(input, &IPS)))
                        .collect(),
                ),
            ));
        }
        doc.tables.push(("egress.resolve_overrides", overrides));
    }
    if flags & 8 != 0 {
        let keys = [
            "max_connections",
            "max_tunnels",
            "max_header_bytes",
            "header_read_timeout_secs",
            "connect_timeout_secs",
            "idle_timeout_secs",
            "max_tunnel_secs",
            "request_timeout_secs",
            "shutdown_grace_secs",
        ];
        let mut limits = Vec::new();
        for k in keys {
            if input.bool() {
                limits.push((k.to_owned(), V::Int(int(input))));
            }
        }
        doc.tables.push(("limits", limits));
    }
    if flags & 16 != 0 {
        for i in 0..input.u8() % 3 {
            let name = format!("{}{i}", pick(input, &["hookwarden", "a:b", "", "ü"]));
            let hash = pick(input, &[HASH, "plain", "sha256$00$00"]);
            doc.users.push(vec![
                ("name", V::Str(name)),
                ("password_hash", V::Str(hash)),
            ]);
        }
    }
    let mut policy: Vec<(String, V)> = Vec::new();
    if flags & 32 != 0 {
        policy.push((
            "action".into(),
            V::Str(pick(input, &["enforce", "report", "open", "maybe"])),
        ));
    }
    if flags & 64 != 0 {
        policy.push((
            "allowed_ports".into(),
            V::List(
                (0..input.u8() % 3)
                    .map(|_| V::Int(i64::from(input.u16() % 4 * 443 / 3)))
                    .collect(),
            ),
        ));
    }
    for key in ["allow", "deny", "global_allow", "global_deny"] {
        if input.bool() {
            policy.push((key.into(), strings(input, &HOSTS)));
        }
    }
    doc.tables.push(("policy", policy));
    if flags & 128 != 0 {
        for i in 0..input.u8() % 3 {
            let mut c: Vec<(&'static str, V)> = vec![(
                "name",
                V::Str(format!("{}{i}", pick(input, &["hookwarden", "c", ""]))),
            )];
            if input.bool() {
                c.push((
                    "action",
                    V::Str(pick(input, &["open", "report", "enforce"])),
                ));
            }
            if input.bool() {
                c.push((
                    "allowed_ports",
                    V::List(vec![V::Int(i64::from(input.u16()))]),
                ));
            }
            if input.bool() {
                c.push(("allow", strings(input, &HOSTS)));
            }
            if input.bool() {
                c.push(("deny", strings(input, &HOSTS)));
            }
            doc.clients.push(c);
        }
    }
    doc
}

/// A double-quoted string both TOML (basic string) and YAML read the same way: printable ASCII
/// as it is, everything else as `\uXXXX` / `\UXXXXXXXX`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn flow(v: &V) -> String {
    match v {
        V::Str(s) => quote(s),
        V::Int(i) => i.to_string(),
        V::List(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Doc {
    fn toml(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.top {
            out.push_str(&format!("{k} = {}\n", flow(v)));
        }
        for (name, entries) in &self.tables {
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{} = {}\n", quote(k), flow(v)));
            }
            if *name == "policy" {
                for c in &self.clients {
                    out.push_str("[[policy.clients]]\n");
                    for (k, v) in c {
                        out.push_str(&format!("{k} = {}\n", flow(v)));
                    }
                }
            }
        }
        for u in &self.users {
            out.push_str("[[users]]\n");
            for (k, v) in u {
                out.push_str(&format!("{k} = {}\n", flow(v)));
            }
        }
        out
    }

    fn yaml(&self) -> String {
        let mut out = String::from("# generated\n");
        for (k, v) in &self.top {
            out.push_str(&format!("{k}: {}\n", flow(v)));
        }
        let mut egress_open = false;
        for (name, entries) in &self.tables {
            let (indent, header) = match name.split_once('.') {
                Some((parent, child)) => {
                    if !(parent == "egress" && egress_open) {
                        out.push_str(&format!("{parent}:\n"));
                    }
                    ("    ", format!("  {child}:"))
                }
                None => {
                    egress_open = *name == "egress";
                    ("  ", format!("{name}:"))
                }
            };
            let has_clients = *name == "policy" && !self.clients.is_empty();
            let empty = entries.is_empty() && !has_clients;
            out.push_str(&header);
            out.push_str(if empty { " {}\n" } else { "\n" });
            for (k, v) in entries {
                out.push_str(&format!("{indent}{}: {}\n", quote(k), flow(v)));
            }
            if *name == "policy" && !self.clients.is_empty() {
                out.push_str("  clients:\n");
                for c in &self.clients {
                    for (i, (k, v)) in c.iter().enumerate() {
                        let lead = if i == 0 { "    - " } else { "      " };
                        out.push_str(&format!("{lead}{k}: {}\n", flow(v)));
                    }
                }
            }
        }
        if !self.users.is_empty() {
            out.push_str("users:\n");
            for u in &self.users {
                for (i, (k, v)) in u.iter().enumerate() {
                    let lead = if i == 0 { "  - " } else { "    " };
                    out.push_str(&format!("{lead}{k}: {}\n", flow(v)));
                }
            }
        }
        out
    }
}
