//! Small shared helpers: header access with limits, constant-time comparison,
//! HMAC, strict parsers for timestamps and encodings.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::error::VerifyError;

/// Most signatures accepted in one header (rotation rarely needs more than 2–3).
pub const MAX_SIGNATURES: usize = 16;
/// Longest signature-carrying header value we look at, in bytes.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;
/// Longest id / timestamp / date header value we look at, in bytes.
pub const MAX_SHORT_HEADER_LEN: usize = 256;

pub(crate) type HmacSha1 = Hmac<sha1::Sha1>;
pub(crate) type HmacSha256 = Hmac<sha2::Sha256>;
pub(crate) type HmacSha512 = Hmac<sha2::Sha512>;

/// Standard base64 that decodes with or without padding (as the Standard Webhooks
/// libraries do for secrets) but rejects non-canonical trailing bits.
pub(crate) const B64_LENIENT_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Strict standard base64 (padding required), used for signatures.
pub(crate) const B64: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Constant-time equality of two byte strings (length is not secret).
#[inline]
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Equality that hides both content and length: compares SHA-256 digests in constant
/// time. For passwords and API keys, where the length itself is secret.
pub(crate) fn ct_eq_hidden_len(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest as _;
    let ha = sha2::Sha256::digest(a);
    let hb = sha2::Sha256::digest(b);
    ha.ct_eq(&hb).into()
}

/// The one value of header `name`, trimmed of surrounding whitespace.
///
/// Missing or empty → `MissingHeader`; repeated, not visible ASCII, or longer than
/// `max_len` → `MalformedHeader`.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    label: &'static str,
    max_len: usize,
) -> Result<&'h str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(VerifyError::MissingHeader(label));
    };
    if values.next().is_some() {
        return Err(VerifyError::MalformedHeader(label));
    }
    if value.len() > max_len {
        return Err(VerifyError::MalformedHeader(label));
    }
    let s = value
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader(label))?
        .trim_matches(|c| c == ' ' || c == '\t');
    if s.is_empty() {
        return Err(VerifyError::MissingHeader(label));
    }
    Ok(s)
}

/// Like [`single_header`] but `Ok(None)` when the header is absent.
pub(crate) fn optional_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    label: &'static str,
    max_len: usize,
) -> Result<Option<&'h str>, VerifyError> {
    match single_header(headers, name, label, max_len) {
        Ok(v) => Ok(Some(v)),
        Err(VerifyError::MissingHeader(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The largest unix timestamp [`parse_unix_secs`] reads (15 digits).
pub(crate) const MAX_UNIX_SECS: i64 = 999_999_999_999_999;

/// Strict unix-seconds parser: 1..=15 ASCII digits, no sign, no leading zero (so the
/// string is its own canonical form and signing it verbatim equals signing the number).
pub(crate) fn parse_unix_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 15 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b.first() == Some(&b'0') {
        return None;
    }
    s.parse().ok()
}

/// RFC 3339 date-time → unix seconds (fractional seconds are truncated).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() > 64 {
        return None;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// RFC 3339, else RFC 2822 / HTTP-date (`Mon, 23 Nov 2026 10:00:00 GMT`) → unix seconds.
pub(crate) fn parse_date_flexible(s: &str) -> Option<i64> {
    if s.len() > 64 {
        return None;
    }
    parse_rfc3339(s).or_else(|| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822)
            .ok()
            .map(|t| t.unix_timestamp())
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a unix timestamp (years 0..=9999 only).
pub(crate) fn format_rfc3339_utc(ts: i64) -> Option<String> {
    use std::fmt::Write as _;
    let t = time::OffsetDateTime::from_unix_timestamp(ts).ok()?;
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut s = String::with_capacity(20);
    write!(
        s,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        year,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
    .ok()?;
    Some(s)
}

/// `Err(TimestampOutOfTolerance)` when `|now - ts| > tolerance` (negative tolerance = 0).
pub(crate) fn check_tolerance(ts: i64, now: i64, tolerance_secs: i64) -> Result<(), VerifyError> {
    let tol = tolerance_secs.max(0);
    if now.abs_diff(ts) > tol.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp: ts,
            now,
            tolerance_secs: tol,
        });
    }
    Ok(())
}

/// Decode `prefix` + exactly `2*N` hex digits (either case) into `N` bytes.
pub(crate) fn parse_prefixed_hex<const N: usize>(value: &str, prefix: &str) -> Option<[u8; N]> {
    let hex_part = value.strip_prefix(prefix)?;
    decode_hex_exact::<N>(hex_part)
}

/// Exactly `2*N` hex digits (either case) into `N` bytes.
pub(crate) fn decode_hex_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Exactly `N` bytes of strict standard base64.
pub(crate) fn decode_b64_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    // base64 of N bytes with padding is 4*ceil(N/3) characters.
    if s.len() != N.div_ceil(3) * 4 {
        return None;
    }
    let mut buf = [0u8; 96];
    let n = B64.decode_slice(s, &mut buf).ok()?;
    let slice = buf.get(..n)?;
    slice.try_into().ok()
}

/// Exactly `N` bytes of standard base64, padding optional (for keys).
pub(crate) fn decode_b64_lenient_exact<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() > N.div_ceil(3) * 4 {
        return None;
    }
    let mut buf = [0u8; 96];
    let n = B64_LENIENT_PAD.decode_slice(s, &mut buf).ok()?;
    buf.get(..n)?.try_into().ok()
}

/// HMAC over the concatenation of `parts`. `None` only if the MAC rejects the key,
/// which HMAC never does (any key length is valid); callers fail closed on it anyway.
pub(crate) fn hmac_parts<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<M> {
    let mut mac = <M as Mac>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac)
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    Some(
        hmac_parts::<HmacSha256>(key, parts)?
            .finalize()
            .into_bytes()
            .into(),
    )
}

/// HMAC-SHA1 of the concatenation of `parts`.
pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 20]> {
    Some(
        hmac_parts::<HmacSha1>(key, parts)?
            .finalize()
            .into_bytes()
            .into(),
    )
}

/// HMAC-SHA512 of the concatenation of `parts`.
pub(crate) fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 64]> {
    Some(
        hmac_parts::<HmacSha512>(key, parts)?
            .finalize()
            .into_bytes()
            .into(),
    )
}

/// A decoded key that lives on the stack when small (the common case) so signing does
/// not allocate for it.
pub(crate) enum KeyBuf {
    Stack([u8; 128], usize),
    Heap(Vec<u8>),
}

impl KeyBuf {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            KeyBuf::Stack(buf, n) => buf.get(..*n).unwrap_or(&[]),
            KeyBuf::Heap(v) => v,
        }
    }
}

/// Decode a Standard Webhooks symmetric secret: `whsec_<base64>` or bare base64.
/// Empty, non-base64, or decoding to zero bytes → `None`. `whpk_`/`whsk_` keys are
/// not symmetric secrets → `None`.
pub(crate) fn decode_whsec(secret: &str) -> Option<KeyBuf> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    if b64.is_empty() || secret.starts_with("whpk_") || secret.starts_with("whsk_") {
        return None;
    }
    let mut buf = [0u8; 128];
    let key = match B64_LENIENT_PAD.decode_slice(b64, &mut buf) {
        Ok(n) => KeyBuf::Stack(buf, n),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            KeyBuf::Heap(B64_LENIENT_PAD.decode(b64).ok()?)
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return None,
    };
    if key.as_slice().is_empty() {
        return None;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_parser_is_strict() {
        assert_eq!(parse_unix_secs("0"), Some(0));
        assert_eq!(parse_unix_secs("1531420618"), Some(1_531_420_618));
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            " 1",
            "1.5",
            "1e9",
            "9999999999999999",
            "١",
        ] {
            assert_eq!(parse_unix_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(
            format_rfc3339_utc(0).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        // 2026-11-23T10:00:00Z = 1795428000 (python: calendar.timegm((2026,11,23,10,0,0)))
        assert_eq!(
            format_rfc3339_utc(1_795_428_000).as_deref(),
            Some("2026-11-23T10:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-11-23T10:00:00Z"), Some(1_795_428_000));
        assert_eq!(
            parse_rfc3339("2026-11-23T11:00:00+01:00"),
            Some(1_795_428_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00.999999999Z"),
            Some(1_795_428_000)
        );
        assert_eq!(parse_rfc3339("2026-11-23 10:00:00"), None);
        assert_eq!(format_rfc3339_utc(i64::MAX), None);
        assert_eq!(format_rfc3339_utc(-62_167_219_201), None); // year -1
    }

    #[test]
    fn tolerance_boundaries() {
        assert!(check_tolerance(100, 400, 300).is_ok());
        assert!(check_tolerance(700, 400, 300).is_ok());
        assert!(check_tolerance(99, 400, 300).is_err());
        assert!(check_tolerance(701, 400, 300).is_err());
        assert!(check_tolerance(i64::MIN, i64::MAX, i64::MAX).is_err());
        assert!(check_tolerance(5, 5, -10).is_ok());
        assert!(check_tolerance(6, 5, -10).is_err());
    }

    #[test]
    fn whsec_decoding() {
        assert_eq!(
            decode_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(|k| k.as_slice().len()),
            Some(24)
        );
        assert!(decode_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_some());
        assert!(decode_whsec("whsec_").is_none());
        assert!(decode_whsec("").is_none());
        assert!(decode_whsec("whsec_!!!").is_none());
        assert!(decode_whsec("whpk_AAAA").is_none());
        // unpadded is accepted
        assert_eq!(
            decode_whsec("whsec_YWI").map(|k| k.as_slice().to_vec()),
            Some(b"ab".to_vec())
        );
        // large secrets fall back to the heap
        let big = format!("whsec_{}", B64.encode([7u8; 300]));
        assert_eq!(decode_whsec(&big).map(|k| k.as_slice().len()), Some(300));
    }
}
