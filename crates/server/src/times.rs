//! Times as the API, the delivery body and the operational events write and read them: unix
//! milliseconds in the store, RFC 3339 UTC with millisecond precision on the wire.

use hookwarden_store::Millis;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::error::{ApiError, ApiResult};

/// The earliest and latest instants RFC 3339 can write (years 0000 to 9999), in unix ms.
const MIN_MS: Millis = -62_167_219_200_000;
const MAX_MS: Millis = 253_402_300_799_999;

/// Renders unix milliseconds as RFC 3339 UTC with millisecond precision. A value beyond the
/// years 0000–9999 (which RFC 3339 cannot write) is clamped to the nearest one it can, so a
/// far-future expiry reads as far future, never as 1970.
pub fn rfc3339(ms: Millis) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let ms = ms.clamp(MIN_MS, MAX_MS);
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
    {
        Some(s) => s,
        // Unreachable within the clamped range; still no 1970.
        None if ms < 0 => "0000-01-01T00:00:00.000Z".into(),
        None => "9999-12-31T23:59:59.999Z".into(),
    }
}

/// [`rfc3339`] of an optional time.
pub fn rfc3339_opt(ms: Option<Millis>) -> Option<String> {
    ms.map(rfc3339)
}

/// Unix milliseconds as a `SystemTime` (for HTTP dates); `None` before 1970.
pub fn system_time(ms: Millis) -> Option<std::time::SystemTime> {
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).ok()?))
}

/// A query or body time: unix milliseconds or RFC 3339 (any offset). `name` is the parameter's
/// name, for the `INVALID_QUERY` refusal.
pub fn parse_time(name: &str, v: &str) -> ApiResult<Millis> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_QUERY",
                format!("{name} must be an RFC 3339 time or unix milliseconds"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_renders_millis_and_clamps_instead_of_1970() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(MAX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(MIN_MS), "0000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn times_parse_as_millis_or_rfc3339_and_round_trip() {
        assert_eq!(parse_time("t", "1700000000123").unwrap(), 1_700_000_000_123);
        let t = parse_time("t", "2023-11-14T23:13:20.123+01:00").unwrap();
        assert_eq!(t, 1_700_000_000_123);
        assert_eq!(parse_time("t", &rfc3339(t)).unwrap(), t);
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "99999999999999999999",
        ] {
            let e = parse_time("since", bad).unwrap_err();
            assert_eq!(e.code, "INVALID_QUERY", "{bad}");
        }
    }
}
