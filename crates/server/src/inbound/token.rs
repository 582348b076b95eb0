//! Secret URL tokens: `wh_` + base64url of 24 bytes (192 bits) from the OS CSPRNG.
//!
//! Only the SHA-256 of a token is stored (a token carries far more entropy than a hash can be
//! searched for, so no slow hash is needed) and looked up by that hash; the first
//! [`PREFIX_LEN`] characters are kept for display.

use crate::crypto::random_bytes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "wh_";
/// Random bytes per token.
const TOKEN_BYTES: usize = 24;
/// Characters of a token (`wh_` + 32 base64url characters).
pub const TOKEN_LEN: usize = 3 + 32;
/// Characters shown later (`wh_` + 6 = 36 of the 192 bits).
pub const PREFIX_LEN: usize = 9;

/// A new token and its hash.
pub fn new_token() -> (String, [u8; 32]) {
    let token = format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<TOKEN_BYTES>())
    );
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `s` has the shape of a token (anything else cannot match and is not looked up).
pub fn well_formed(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.starts_with(TOKEN_PREFIX)
        && s[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The display prefix of whatever was presented as a token (safe for logs: at most
/// [`PREFIX_LEN`] characters, anything unusual replaced by `?`).
pub fn display_prefix(s: &str) -> String {
    s.chars()
        .take(PREFIX_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_well_formed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert!(well_formed(&a), "{a}");
        assert_eq!(a.len(), TOKEN_LEN);
        assert_eq!(hash(&a), ha);
        let raw = URL_SAFE_NO_PAD.decode(&a[3..]).unwrap();
        assert!(raw.len() * 8 >= 128);
        assert_eq!(display_prefix(&a), &a[..PREFIX_LEN]);
        for bad in [
            "",
            "wh_",
            "xx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "wh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "wh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.a",
            "wh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaéa",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert_eq!(display_prefix("wh_a b/é\n"), "wh_a?b???");
        assert_eq!(display_prefix(""), "");
    }
}
