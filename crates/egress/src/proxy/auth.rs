//! Proxy users: salted SHA-256 password hashes checked in constant time, and the
//! `Proxy-Authorization: Basic` header.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SALT_LEN: usize = 16;

/// A stored password hash: `sha256$<32 hex digits of salt>$<64 hex digits of SHA-256(salt ‖
/// password)>`.
///
/// Proxy passwords are machine credentials: use long random ones (`--hash-password` prints one
/// when given none). A fast salted hash is then as strong as a slow one and keeps every request's
/// check cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; SALT_LEN],
    digest: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

fn digest(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

/// A `password_hash` that is not `sha256$<salt hex>$<digest hex>` (as printed by
/// `hookwarden egress-proxy --hash-password`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password_hash must be sha256$<salt hex>$<digest hex>")]
pub struct InvalidPasswordHash;

impl PasswordHash {
    /// Hash `password` with a new random salt.
    pub fn new(password: &str) -> PasswordHash {
        let mut salt = [0u8; SALT_LEN];
        #[expect(
            clippy::expect_used,
            reason = "the OS CSPRNG failing is not recoverable: refusing to run beats a weak salt"
        )]
        getrandom::fill(&mut salt).expect("the operating system's random number generator failed");
        PasswordHash {
            digest: digest(&salt, password.as_bytes()),
            salt,
        }
    }

    /// Parse the stored form.
    pub fn parse(s: &str) -> Result<PasswordHash, InvalidPasswordHash> {
        let bad = || InvalidPasswordHash;
        let mut parts = s.trim().split('$');
        let (Some("sha256"), Some(salt), Some(dig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidPasswordHash);
        };
        let salt: [u8; SALT_LEN] = hex::decode(salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        let digest: [u8; 32] = hex::decode(dig)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        Ok(PasswordHash { salt, digest })
    }

    /// Whether `password` matches (constant time in the digest comparison).
    pub fn verify(&self, password: &str) -> bool {
        digest(&self.salt, password.as_bytes())
            .ct_eq(&self.digest)
            .into()
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256${}${}",
            hex::encode(self.salt),
            hex::encode(self.digest)
        )
    }
}

/// The configured users.
#[derive(Debug, Clone, Default)]
pub(crate) struct Users {
    map: HashMap<String, PasswordHash>,
}

/// A fixed hash checked for unknown user names, so that they take as long as wrong passwords.
fn dummy() -> PasswordHash {
    PasswordHash {
        salt: [0x5a; SALT_LEN],
        digest: [0; 32],
    }
}

impl Users {
    /// Add a user; false when the name exists.
    pub(crate) fn insert(&mut self, name: String, hash: PasswordHash) -> bool {
        if self.map.contains_key(&name) {
            return false;
        }
        self.map.insert(name, hash);
        true
    }

    /// No users configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The user name when `header` (a `Proxy-Authorization` value) carries valid Basic
    /// credentials.
    pub(crate) fn check(&self, header: Option<&HeaderValue>) -> Option<String> {
        let (user, password) = parse_basic(header?)?;
        let ok = match self.map.get(&user) {
            Some(hash) => hash.verify(&password),
            None => {
                let _ = dummy().verify(&password);
                false
            }
        };
        ok.then_some(user)
    }
}

/// `Basic base64(user:password)`, bounded.
pub(crate) fn parse_basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    if v.len() > 1024 {
        return None;
    }
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "Basic {}",
            STANDARD.encode(format!("{user}:{pass}"))
        ))
        .unwrap()
    }

    #[test]
    fn hashes_round_trip_and_verify() {
        let h = PasswordHash::new("s3cret");
        let parsed = PasswordHash::parse(&h.to_string()).unwrap();
        assert_eq!(parsed, h);
        assert!(parsed.verify("s3cret"));
        assert!(!parsed.verify("s3cret "));
        assert_ne!(PasswordHash::new("s3cret"), h, "salted");
        assert!(!format!("{h:?}").contains(&hex::encode(h.digest)));
        for bad in [
            "",
            "sha256$00$00",
            "md5$a$b",
            "sha256$zz$zz",
            "sha256$a$b$c",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_credentials() {
        let mut users = Users::default();
        assert!(users.insert("hw".into(), PasswordHash::new("pa:ss")));
        assert!(!users.insert("hw".into(), PasswordHash::new("x")));
        assert_eq!(
            users.check(Some(&basic("hw", "pa:ss"))).as_deref(),
            Some("hw")
        );
        assert_eq!(users.check(Some(&basic("hw", "wrong"))), None);
        assert_eq!(users.check(Some(&basic("other", "pa:ss"))), None);
        assert_eq!(users.check(None), None);
        for raw in ["Bearer x", "Basic !!!", "Basic", "basic aHc="] {
            assert_eq!(
                users.check(Some(&HeaderValue::from_static(raw))),
                None,
                "{raw}"
            );
        }
        // Scheme is case-insensitive.
        let v = basic("hw", "pa:ss")
            .to_str()
            .unwrap()
            .replace("Basic", "bAsIc");
        assert_eq!(
            users
                .check(Some(&HeaderValue::from_str(&v).unwrap()))
                .as_deref(),
            Some("hw")
        );
    }
}
