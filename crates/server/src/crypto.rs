//! Random secrets, API-key hashing and encryption of secrets at rest.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS CSPRNG failing is not recoverable: refusing to run beats a weak secret.
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b
}

/// A new endpoint signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks).
pub fn new_signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(random_bytes::<32>()))
}

/// A new admin API key (`hwk_` + 32 random bytes, base64url) and its SHA-256.
pub fn new_api_key() -> (String, [u8; 32]) {
    let key = format!("hwk_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let hash = hash_api_key(&key);
    (key, hash)
}

/// API keys carry 256 bits of entropy, so a plain SHA-256 is a sufficient one-way hash.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new prefixed identifier: `ep_01j…` (ULID, time-ordered, lower case).
pub fn new_id(prefix: &str) -> String {
    hookwarden_store::new_prefixed_id(prefix)
}

const ENC_PREFIX: &str = "enc1:";

/// Encrypts secrets at rest when a master key is configured; otherwise stores them as they are.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("encrypting", &self.cipher.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("security.master_key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("a stored secret is encrypted but no security.master_key is configured")]
    NoKey,
    #[error("a stored secret could not be decrypted (wrong security.master_key?)")]
    Decrypt,
}

impl SecretBox {
    pub fn new(master_key_b64: Option<&str>) -> Result<SecretBox, SecretBoxError> {
        let cipher = match master_key_b64 {
            None => None,
            Some(k) => {
                let raw = STANDARD
                    .decode(k.trim())
                    .map_err(|_| SecretBoxError::BadKey)?;
                if raw.len() != 32 {
                    return Err(SecretBoxError::BadKey);
                }
                Some(XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| SecretBoxError::BadKey)?)
            }
        };
        Ok(SecretBox { cipher })
    }

    pub fn is_encrypting(&self) -> bool {
        self.cipher.is_some()
    }

    /// The form to store.
    pub fn seal(&self, plain: &str) -> String {
        match &self.cipher {
            None => plain.to_owned(),
            Some(c) => {
                let nonce = random_bytes::<24>();
                // Encryption with a valid key and nonce cannot fail for in-memory buffers.
                let ct = c
                    .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
                    .unwrap_or_default();
                let mut out = Vec::with_capacity(24 + ct.len());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                format!("{ENC_PREFIX}{}", STANDARD.encode(out))
            }
        }
    }

    /// The plain value of a stored secret (stored plain values are returned as they are, so a
    /// master key can be introduced on an existing database).
    pub fn open(&self, stored: &str) -> Result<String, SecretBoxError> {
        let Some(b64) = stored.strip_prefix(ENC_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let c = self.cipher.as_ref().ok_or(SecretBoxError::NoKey)?;
        let raw = STANDARD.decode(b64).map_err(|_| SecretBoxError::Decrypt)?;
        if raw.len() < 24 {
            return Err(SecretBoxError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(24);
        let plain = c
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SecretBoxError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretBoxError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_standard_webhooks_shaped_and_unique() {
        let a = new_signing_secret();
        let b = new_signing_secret();
        assert_ne!(a, b);
        let raw = STANDARD.decode(a.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn api_keys_hash_stably() {
        let (k, h) = new_api_key();
        assert!(k.starts_with("hwk_"));
        assert_eq!(hash_api_key(&k), h);
        assert_ne!(hash_api_key("hwk_other"), h);
    }

    #[test]
    fn secret_box_round_trips_and_rejects_tampering() {
        let key = STANDARD.encode([9u8; 32]);
        let sb = SecretBox::new(Some(&key)).unwrap();
        let sealed = sb.seal("whsec_abc");
        assert!(sealed.starts_with("enc1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sb.open(&sealed).unwrap(), "whsec_abc");
        // Two seals of one value differ (random nonce).
        assert_ne!(sb.seal("whsec_abc"), sealed);
        let mut bytes = STANDARD.decode(&sealed[5..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("enc1:{}", STANDARD.encode(bytes));
        assert!(matches!(sb.open(&tampered), Err(SecretBoxError::Decrypt)));
        let other = SecretBox::new(Some(&STANDARD.encode([1u8; 32]))).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(matches!(
            SecretBox::new(None).unwrap().open(&sealed),
            Err(SecretBoxError::NoKey)
        ));
        assert!(SecretBox::new(Some("short")).is_err());
        assert!(matches!(sb.open("enc1:!!"), Err(SecretBoxError::Decrypt)));
        assert!(matches!(sb.open("enc1:AAAA"), Err(SecretBoxError::Decrypt)));
        // Plain stored values pass through.
        assert_eq!(sb.open("whsec_plain").unwrap(), "whsec_plain");
    }
}
