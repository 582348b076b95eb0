//! Random secrets, API-key hashing and encryption of secrets at rest.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    #[expect(
        clippy::expect_used,
        reason = "the OS CSPRNG failing is not recoverable: refusing to run beats a weak secret"
    )]
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

/// Sealed values written by earlier releases: `enc1:` + base64(nonce ‖ ciphertext), without a key
/// id (opened by trying each configured key).
const ENC1_PREFIX: &str = "enc1:";
/// Sealed values: `enc2:<key id>:` + base64(nonce ‖ ciphertext). The key id (8 hex digits of a
/// hash of the key) says which master key sealed it, so a rotation knows what is left to do.
const ENC2_PREFIX: &str = "enc2:";

/// One master key: its cipher and its id.
#[derive(Clone)]
struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    fn from_b64(k: &str) -> Result<MasterKey, SecretBoxError> {
        let raw = STANDARD
            .decode(k.trim())
            .map_err(|_| SecretBoxError::BadKey)?;
        if raw.len() != 32 {
            return Err(SecretBoxError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| SecretBoxError::BadKey)?;
        Ok(MasterKey {
            id: key_id(&raw),
            cipher,
        })
    }

    fn open_raw(&self, b64: &str) -> Result<String, SecretBoxError> {
        let raw = STANDARD.decode(b64).map_err(|_| SecretBoxError::Decrypt)?;
        if raw.len() < 24 {
            return Err(SecretBoxError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| SecretBoxError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretBoxError::Decrypt)
    }
}

/// The id of a master key: 8 hex digits of SHA-256 over a label and the key (not a way to
/// recover or test the key: 32 bits of a hash of 256 random bits).
fn key_id(raw: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"hookwarden master key id\0");
    h.update(raw);
    hex::encode(&h.finalize()[..4])
}

/// A new master key: base64 of 32 random bytes.
pub fn new_master_key() -> String {
    STANDARD.encode(random_bytes::<32>())
}

/// Seals secrets at rest with the master key (XChaCha20-Poly1305, a random nonce per value), and
/// opens what it or an earlier key sealed. There is no way to store a secret unsealed.
#[derive(Clone)]
pub struct SecretBox {
    current: MasterKey,
    /// Earlier master keys, still opened during a rotation (see `hookwarden secrets rotate`).
    previous: Vec<MasterKey>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.current.id)
            .field("previous_key_ids", &self.previous_ids())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("a master key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error(
        "a stored secret was sealed with master key {0}, which is not configured (restore it, or list it in security.previous_master_keys)"
    )]
    UnknownKey(String),
    #[error("a stored secret could not be decrypted (wrong master key, or the value was altered)")]
    Decrypt,
}

/// What a stored value is, as far as sealing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Stored in clear (written before sealing was the rule).
    Plain,
    /// Sealed with the current master key.
    Current,
    /// Sealed by an older release's format or with an earlier key: opened, but due for a
    /// re-seal.
    Stale,
}

impl SecretBox {
    /// The current master key (base64 of 32 bytes) and earlier ones still to be opened.
    pub fn new(current_b64: &str, previous_b64: &[String]) -> Result<SecretBox, SecretBoxError> {
        let current = MasterKey::from_b64(current_b64)?;
        let previous = previous_b64
            .iter()
            .map(|k| MasterKey::from_b64(k))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Ok(SecretBox { current, previous })
    }

    /// A box with a new random key (tests, and tools that seal nothing that is kept).
    pub fn ephemeral() -> SecretBox {
        match SecretBox::new(&new_master_key(), &[]) {
            Ok(b) => b,
            // 32 random bytes always make a key.
            Err(_) => unreachable!("a new master key is always valid"),
        }
    }

    /// The current master key's id.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// The earlier keys' ids.
    pub fn previous_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|k| k.id.as_str()).collect()
    }

    /// The form to store.
    pub fn seal(&self, plain: &str) -> String {
        let nonce = random_bytes::<24>();
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self
            .current
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(24 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{ENC2_PREFIX}{}:{}", self.current.id, STANDARD.encode(out))
    }

    /// The plain value of a stored secret. Values stored in clear by earlier releases are
    /// returned as they are (start-up seals them; see [`SecretBox::sealing`]).
    pub fn open(&self, stored: &str) -> Result<String, SecretBoxError> {
        if let Some(rest) = stored.strip_prefix(ENC2_PREFIX) {
            let (kid, b64) = rest.split_once(':').ok_or(SecretBoxError::Decrypt)?;
            let key = std::iter::once(&self.current)
                .chain(&self.previous)
                .find(|k| k.id == kid)
                .ok_or_else(|| SecretBoxError::UnknownKey(kid.chars().take(16).collect()))?;
            return key.open_raw(b64);
        }
        if let Some(b64) = stored.strip_prefix(ENC1_PREFIX) {
            return std::iter::once(&self.current)
                .chain(&self.previous)
                .find_map(|k| k.open_raw(b64).ok())
                .ok_or(SecretBoxError::Decrypt);
        }
        Ok(stored.to_owned())
    }

    /// Whether a stored value is plain, sealed with the current key, or due for a re-seal.
    pub fn sealing(&self, stored: &str) -> Sealing {
        match stored.strip_prefix(ENC2_PREFIX) {
            Some(rest)
                if rest
                    .split_once(':')
                    .is_some_and(|(k, _)| k == self.current.id) =>
            {
                Sealing::Current
            }
            Some(_) => Sealing::Stale,
            None if stored.starts_with(ENC1_PREFIX) => Sealing::Stale,
            None => Sealing::Plain,
        }
    }

    /// `stored` sealed with the current key: `None` when it already is.
    pub fn reseal(&self, stored: &str) -> Result<Option<String>, SecretBoxError> {
        match self.sealing(stored) {
            Sealing::Current => Ok(None),
            _ => Ok(Some(self.seal(&self.open(stored)?))),
        }
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
        let sb = SecretBox::new(&key, &[]).unwrap();
        let sealed = sb.seal("whsec_abc");
        assert!(
            sealed.starts_with(&format!("enc2:{}:", sb.key_id())),
            "{sealed}"
        );
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sb.open(&sealed).unwrap(), "whsec_abc");
        assert_eq!(sb.sealing(&sealed), Sealing::Current);
        // Two seals of one value differ (random nonce).
        assert_ne!(sb.seal("whsec_abc"), sealed);
        let (head, b64) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD.decode(b64).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", STANDARD.encode(bytes));
        assert!(matches!(sb.open(&tampered), Err(SecretBoxError::Decrypt)));
        let other = SecretBox::new(&STANDARD.encode([1u8; 32]), &[]).unwrap();
        assert!(matches!(
            other.open(&sealed),
            Err(SecretBoxError::UnknownKey(_))
        ));
        assert!(SecretBox::new("short", &[]).is_err());
        assert!(SecretBox::new(&key, &["short".into()]).is_err());
        assert!(sb.open("enc2:!!").is_err());
        assert!(sb.open(&format!("enc2:{}:!!", sb.key_id())).is_err());
        assert!(sb.open(&format!("enc2:{}:AAAA", sb.key_id())).is_err());
        // Plain stored values pass through, and are due for sealing.
        assert_eq!(sb.open("whsec_plain").unwrap(), "whsec_plain");
        assert_eq!(sb.sealing("whsec_plain"), Sealing::Plain);
    }

    #[test]
    fn rotation_opens_old_values_and_reseals_them_with_the_new_key() {
        let old_b64 = STANDARD.encode([3u8; 32]);
        let old = SecretBox::new(&old_b64, &[]).unwrap();
        let sealed_old = old.seal("s1");
        // The format of earlier releases: enc1 without a key id.
        let enc1 = {
            let nonce = [5u8; 24];
            let ct = XChaCha20Poly1305::new_from_slice(&[3u8; 32])
                .unwrap()
                .encrypt(XNonce::from_slice(&nonce), b"s0".as_ref())
                .unwrap();
            format!("enc1:{}", STANDARD.encode([&nonce[..], &ct[..]].concat()))
        };
        assert_eq!(old.open(&enc1).unwrap(), "s0");
        let new =
            SecretBox::new(&STANDARD.encode([4u8; 32]), std::slice::from_ref(&old_b64)).unwrap();
        assert_ne!(new.key_id(), old.key_id());
        assert_eq!(new.previous_ids(), vec![old.key_id()]);
        assert_eq!(new.open(&sealed_old).unwrap(), "s1");
        assert_eq!(new.open(&enc1).unwrap(), "s0");
        assert_eq!(new.sealing(&sealed_old), Sealing::Stale);
        assert_eq!(new.sealing(&enc1), Sealing::Stale);
        let resealed = new.reseal(&sealed_old).unwrap().unwrap();
        assert_eq!(new.sealing(&resealed), Sealing::Current);
        assert_eq!(new.reseal(&resealed).unwrap(), None);
        assert_eq!(
            new.open(&new.reseal(&enc1).unwrap().unwrap()).unwrap(),
            "s0"
        );
        assert_eq!(
            new.open(&new.reseal("plain").unwrap().unwrap()).unwrap(),
            "plain"
        );
        // Without the old key, old values cannot be opened (and say which key they need).
        let alone = SecretBox::new(&STANDARD.encode([4u8; 32]), &[]).unwrap();
        match alone.open(&sealed_old) {
            Err(SecretBoxError::UnknownKey(id)) => assert_eq!(id, old.key_id()),
            other => panic!("{other:?}"),
        }
        // The current key listed as previous too is not a second key.
        let same = SecretBox::new(&old_b64, std::slice::from_ref(&old_b64)).unwrap();
        assert!(same.previous_ids().is_empty());
    }
}
