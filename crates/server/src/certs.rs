//! Client certificates for mTLS to endpoints: reading uploaded PEM, generating self-signed
//! certificates, and turning a stored certificate into the identity the guarded client presents.
//! Private keys never leave the server; they are sealed with the master key.

use crate::crypto::{SecretBox, random_bytes};
use crate::error::ApiError;
use hookwarden_egress::client::ClientIdentity;
use hookwarden_store::{ClientCertificate, Millis};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Longest accepted certificate chain or key PEM.
pub const MAX_PEM_BYTES: usize = 64 * 1024;
const MAX_CHAIN: usize = 10;

/// What Hookwarden learns from a certificate chain (about its leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
    pub sha1: String,
    pub not_before: Millis,
    pub not_after: Millis,
}

fn invalid(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid(code, msg)
}

/// Parse a PEM chain (leaf first) and its key, check that they belong together, that the leaf
/// may be used for client authentication and has not expired.
pub fn inspect(chain_pem: &str, key_pem: &str, now: Millis) -> Result<CertificateInfo, ApiError> {
    if chain_pem.len() > MAX_PEM_BYTES || key_pem.len() > MAX_PEM_BYTES {
        return Err(invalid(
            "CERTIFICATE_INVALID",
            format!("certificate and key PEM are at most {MAX_PEM_BYTES} bytes each"),
        ));
    }
    // PEM is text: a NUL (which a JSON string can carry) has no place in it, even outside the
    // blocks the parser reads.
    if chain_pem.contains('\0') || key_pem.contains('\0') {
        return Err(invalid(
            "CERTIFICATE_INVALID",
            "certificate and key PEM must not contain a NUL character",
        ));
    }
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        let c = c.map_err(|e| invalid("CERTIFICATE_INVALID", format!("certificate PEM: {e}")))?;
        if chain.len() >= MAX_CHAIN {
            return Err(invalid(
                "CERTIFICATE_INVALID",
                format!("at most {MAX_CHAIN} certificates in a chain"),
            ));
        }
        chain.push(c);
    }
    let leaf = chain.first().ok_or_else(|| {
        invalid(
            "CERTIFICATE_INVALID",
            "certificate_pem holds no CERTIFICATE block",
        )
    })?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid("CERTIFICATE_INVALID", format!("leaf certificate: {e}")))?;
    if let Ok(Some(eku)) = cert.extended_key_usage()
        && !eku.value.client_auth
        && !eku.value.any
    {
        return Err(invalid(
            "CERTIFICATE_NOT_FOR_CLIENT_AUTH",
            "the certificate's extended key usage does not allow TLS client authentication",
        ));
    }
    let not_before = cert.validity().not_before.timestamp().saturating_mul(1000);
    let not_after = cert.validity().not_after.timestamp().saturating_mul(1000);
    if not_after <= now {
        return Err(invalid(
            "CERTIFICATE_EXPIRED",
            "the certificate has expired",
        ));
    }
    // The key must parse and match the leaf.
    ClientIdentity {
        id: "upload".into(),
        cert_chain_pem: chain_pem.to_owned(),
        private_key_pem: key_pem.to_owned(),
    }
    .validate()
    .map_err(|e| {
        invalid(
            "CERTIFICATE_KEY_MISMATCH",
            format!("the private key is unusable or does not belong to the certificate ({e})"),
        )
    })?;
    Ok(CertificateInfo {
        subject: dn_text(cert.subject().to_string()),
        issuer: dn_text(cert.issuer().to_string()),
        serial: hex::encode(cert.raw_serial()),
        sha256: hex::encode(Sha256::digest(leaf.as_ref())),
        sha1: hex::encode(Sha1::digest(leaf.as_ref())),
        not_before,
        not_after,
    })
}

/// A distinguished name as text, its control characters (say, a NUL in a crafted certificate's
/// common name) written as RFC 4514 `\XX` escapes of their UTF-8 bytes.
fn dn_text(s: String) -> String {
    if !s.chars().any(char::is_control) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `{"generate": {...}}`: a self-signed client certificate.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub common_name: String,
    /// 1 to 3650; default 365.
    #[serde(default)]
    pub days_valid: Option<u32>,
    #[serde(default)]
    pub organization: Option<String>,
    /// `ecdsa-p256` (default), `ecdsa-p384` or `ed25519`.
    #[serde(default)]
    pub key_type: Option<String>,
}

fn check_dn_text(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
        return Err(invalid(
            "VALIDATION_FAILED",
            format!("{field} must be 1 to 64 printable characters"),
        ));
    }
    Ok(())
}

/// (certificate PEM, private key PEM).
pub fn generate(req: &GenerateRequest, now: Millis) -> Result<(String, String), ApiError> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SerialNumber,
    };
    check_dn_text("generate.common_name", &req.common_name)?;
    if let Some(o) = &req.organization {
        check_dn_text("generate.organization", o)?;
    }
    let days = req.days_valid.unwrap_or(365);
    if !(1..=3650).contains(&days) {
        return Err(invalid(
            "VALIDATION_FAILED",
            "generate.days_valid must be 1 to 3650",
        ));
    }
    let alg = match req.key_type.as_deref().unwrap_or("ecdsa-p256") {
        "ecdsa-p256" => &rcgen::PKCS_ECDSA_P256_SHA256,
        "ecdsa-p384" => &rcgen::PKCS_ECDSA_P384_SHA384,
        "ed25519" => &rcgen::PKCS_ED25519,
        other => {
            return Err(invalid(
                "VALIDATION_FAILED",
                format!("generate.key_type {other:?}: use ecdsa-p256, ecdsa-p384 or ed25519"),
            ));
        }
    };
    let failed = |e: rcgen::Error| {
        tracing::error!(error = %e, "certificate generation failed");
        ApiError::internal()
    };
    let key = KeyPair::generate_for(alg).map_err(failed)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, req.common_name.as_str());
    if let Some(o) = &req.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    let secs = now / 1000;
    let start =
        time::OffsetDateTime::from_unix_timestamp(secs - 300).map_err(|_| ApiError::internal())?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days));
    let mut serial = random_bytes::<16>();
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A stored client certificate whose private key cannot be unsealed (a master key that is not
/// the one it was sealed with, or a damaged row).
#[derive(Debug, thiserror::Error)]
#[error("client certificate {id}: {error}")]
pub struct IdentityError {
    pub id: String,
    pub error: crate::crypto::SecretBoxError,
}

/// The identity the guarded client presents for this certificate (the key unsealed).
pub fn identity(
    cert: &ClientCertificate,
    secrets: &SecretBox,
) -> Result<ClientIdentity, IdentityError> {
    let key = secrets
        .open(&cert.private_key)
        .map_err(|error| IdentityError {
            id: cert.id.clone(),
            error,
        })?;
    Ok(ClientIdentity {
        id: cert.id.clone(),
        cert_chain_pem: cert.certificate_pem.clone(),
        private_key_pem: key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    #[test]
    fn generated_certificates_inspect_cleanly() {
        for kt in ["ecdsa-p256", "ecdsa-p384", "ed25519"] {
            let req = GenerateRequest {
                common_name: "hookwarden-test".into(),
                days_valid: Some(30),
                organization: Some("Example Org".into()),
                key_type: Some(kt.into()),
            };
            let (cert, key) = generate(&req, NOW).unwrap();
            let info = inspect(&cert, &key, NOW).unwrap();
            assert!(
                info.subject.contains("CN=hookwarden-test"),
                "{}",
                info.subject
            );
            assert_eq!(info.subject, info.issuer);
            assert_eq!(info.sha256.len(), 64);
            assert_eq!(info.sha1.len(), 40);
            assert_eq!(info.not_after - info.not_before, 30 * 86_400_000);
            // Expired by then.
            let later = NOW + 31 * 86_400_000;
            assert_eq!(
                inspect(&cert, &key, later).unwrap_err().code,
                "CERTIFICATE_EXPIRED"
            );
        }
    }

    #[test]
    fn refuses_bad_input() {
        let req = |cn: &str, days, kt: Option<&str>| GenerateRequest {
            common_name: cn.into(),
            days_valid: days,
            organization: None,
            key_type: kt.map(String::from),
        };
        assert!(generate(&req("", None, None), NOW).is_err());
        assert!(generate(&req("a\nb", None, None), NOW).is_err());
        assert!(generate(&req("ok", Some(0), None), NOW).is_err());
        assert!(generate(&req("ok", Some(5000), None), NOW).is_err());
        assert!(generate(&req("ok", None, Some("rsa")), NOW).is_err());
        let (c1, k1) = generate(&req("one", None, None), NOW).unwrap();
        let (_, k2) = generate(&req("two", None, None), NOW).unwrap();
        assert_eq!(
            inspect(&c1, &k2, NOW).unwrap_err().code,
            "CERTIFICATE_KEY_MISMATCH"
        );
        assert_eq!(
            inspect("junk", &k1, NOW).unwrap_err().code,
            "CERTIFICATE_INVALID"
        );
        assert_eq!(
            inspect(&c1, "junk", NOW).unwrap_err().code,
            "CERTIFICATE_KEY_MISMATCH"
        );
        assert_eq!(
            inspect(&format!("{c1}\0"), &k1, NOW).unwrap_err().code,
            "CERTIFICATE_INVALID"
        );
        assert_eq!(
            inspect(&c1, &format!("\0{k1}"), NOW).unwrap_err().code,
            "CERTIFICATE_INVALID"
        );
        let huge = "a".repeat(MAX_PEM_BYTES + 1);
        assert_eq!(
            inspect(&huge, &k1, NOW).unwrap_err().code,
            "CERTIFICATE_INVALID"
        );
    }

    /// A certificate whose subject holds control characters (a NUL included) is shown, and
    /// stored, with them escaped.
    #[test]
    fn control_characters_in_names_are_escaped() {
        use rcgen::{CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            DnValue::Utf8String("evil\0.example\u{1b}".into()),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW / 1000 - 60).unwrap();
        params.not_after = params.not_before + time::Duration::days(2);
        let cert = params.self_signed(&key).unwrap();
        let info = inspect(&cert.pem(), &key.serialize_pem(), NOW).unwrap();
        assert!(!info.subject.contains('\0'), "{:?}", info.subject);
        assert!(
            info.subject.contains("evil\\00.example\\1B"),
            "{}",
            info.subject
        );
        assert_eq!(info.subject, info.issuer);
        assert_eq!(dn_text("CN=plain".into()), "CN=plain");
    }

    #[test]
    fn identity_unseals_the_key() {
        use base64::Engine;
        let (cert, key) = generate(
            &GenerateRequest {
                common_name: "x".into(),
                days_valid: None,
                organization: None,
                key_type: None,
            },
            NOW,
        )
        .unwrap();
        let sb = SecretBox::new(
            &base64::engine::general_purpose::STANDARD.encode([3u8; 32]),
            &[],
        )
        .unwrap();
        let stored = ClientCertificate {
            id: "cert_1".into(),
            name: String::new(),
            certificate_pem: cert,
            private_key: sb.seal(&key),
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            sha256: String::new(),
            sha1: String::new(),
            not_before: 0,
            not_after: 0,
            generated: true,
            status: hookwarden_store::CertificateStatus::Active,
            created_at: 0,
            retired_at: None,
        };
        assert!(!stored.private_key.contains("PRIVATE KEY"));
        let id = identity(&stored, &sb).unwrap();
        assert_eq!(id.private_key_pem, key);
        id.validate().unwrap();
        assert!(identity(&stored, &SecretBox::ephemeral()).is_err());
    }
}
