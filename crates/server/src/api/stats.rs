//! Time series for the console's charts: `/api/v1/stats/deliveries` (deliveries succeeded and
//! failed per time bucket) and `/api/v1/stats/ingest` / `/api/v1/sources/{id}/stats` (inbound
//! requests per bucket by outcome). Bounded: at most [`StatsRange::MAX_BUCKETS`] buckets and
//! [`MAX_RANGE_DAYS`] days per query; every bucket of the range is returned, empty ones as 0.

use super::extract::{ApiPath, ApiQuery, Id};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::times::parse_time;
use crate::times::rfc3339;
use axum::Json;
use axum::extract::State;
use hookwarden_store::{Millis, StatsRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The longest range one query may cover.
pub(super) const MAX_RANGE_DAYS: i64 = 90;
const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize, Default, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// RFC 3339 or unix milliseconds; default: 24 buckets before `until`.
    since: Option<String>,
    /// RFC 3339 or unix milliseconds (exclusive); default: now.
    until: Option<String>,
    /// Bucket width: seconds (`300`) or with a unit (`30s`, `5m`, `1h`, `1d`); default `1h`.
    bucket: Option<String>,
    /// `/stats/deliveries`: one endpoint's deliveries.
    endpoint_id: Option<String>,
    /// `/stats/ingest`: one source's requests.
    source_id: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_QUERY", msg)
}

/// Parses a bucket width into milliseconds (1 second to 1 day).
pub(super) fn parse_bucket(v: &str) -> ApiResult<i64> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return Err(bad("bucket is seconds or a number with s, m, h or d")),
    };
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| (1..=86_400).contains(n))
        .ok_or_else(|| bad("bucket is seconds or a number with s, m, h or d"))?;
    let ms = n.saturating_mul(mult);
    if !(1_000..=DAY_MS).contains(&ms) {
        return Err(bad("bucket must be between 1 second and 1 day"));
    }
    Ok(ms)
}

fn valid_id(name: &str, v: &Option<String>) -> ApiResult<()> {
    if let Some(s) = v
        && (s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return Err(bad(format!("{name} is not a valid id")));
    }
    Ok(())
}

/// The range a query asks for: buckets aligned to multiples of their width (so charts of
/// different queries line up), bounded in length and in bucket count.
pub(super) fn stats_range(q: &StatsQuery, now: Millis) -> ApiResult<StatsRange> {
    let bucket_ms = match &q.bucket {
        Some(b) => parse_bucket(b)?,
        None => 3_600_000,
    };
    let until = match &q.until {
        Some(u) => parse_time("until", u)?,
        None => now,
    };
    let since = match &q.since {
        Some(s) => parse_time("since", s)?,
        None => until.saturating_sub(bucket_ms.saturating_mul(24)),
    };
    if since < 0 || until <= since {
        return Err(bad("since must be before until (and not before 1970)"));
    }
    if until - since > MAX_RANGE_DAYS * DAY_MS {
        return Err(bad(format!("a range covers at most {MAX_RANGE_DAYS} days")));
    }
    let since = since - since.rem_euclid(bucket_ms);
    let until = match until.rem_euclid(bucket_ms) {
        0 => until,
        r => until.saturating_add(bucket_ms - r),
    };
    let range = StatsRange {
        since,
        until,
        bucket_ms,
    };
    if !range.is_valid() {
        return Err(bad(format!(
            "at most {} buckets per query: widen the bucket or shorten the range",
            StatsRange::MAX_BUCKETS
        )));
    }
    Ok(range)
}

fn bucket_starts(r: &StatsRange) -> impl Iterator<Item = Millis> + '_ {
    (0..StatsRange::MAX_BUCKETS)
        .map(move |i| r.since + i * r.bucket_ms)
        .take_while(move |t| *t < r.until)
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeliveryBucket {
    start: String,
    succeeded: i64,
    failed: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeliveryStats {
    since: String,
    until: String,
    bucket_secs: i64,
    endpoint_id: Option<String>,
    succeeded: i64,
    failed: i64,
    buckets: Vec<DeliveryBucket>,
}

/// `GET /api/v1/stats/deliveries?endpoint_id=&since=&until=&bucket=`: deliveries that finished
/// (succeeded, or failed for good) per bucket of completion time.
#[utoipa::path(
    get,
    path = "/stats/deliveries",
    tag = "stats",
    params(StatsQuery),
    responses((status = 200, description = "Finished deliveries per time bucket", body = DeliveryStats))
)]
pub(super) async fn deliveries(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<DeliveryStats>> {
    if q.source_id.is_some() {
        return Err(bad("source_id belongs to /api/v1/stats/ingest"));
    }
    valid_id("endpoint_id", &q.endpoint_id)?;
    let range = stats_range(&q, state.clock.now_millis())?;
    let rows = state
        .store
        .delivery_stats(q.endpoint_id.as_deref(), range)
        .await?;
    let found: BTreeMap<Millis, (i64, i64)> = rows
        .into_iter()
        .map(|b| (b.bucket_start, (b.succeeded, b.failed)))
        .collect();
    let buckets: Vec<DeliveryBucket> = bucket_starts(&range)
        .map(|t| {
            let (succeeded, failed) = found.get(&t).copied().unwrap_or_default();
            DeliveryBucket {
                start: rfc3339(t),
                succeeded,
                failed,
            }
        })
        .collect();
    Ok(Json(DeliveryStats {
        since: rfc3339(range.since),
        until: rfc3339(range.until),
        bucket_secs: range.bucket_ms / 1000,
        endpoint_id: q.endpoint_id,
        succeeded: buckets.iter().map(|b| b.succeeded).sum(),
        failed: buckets.iter().map(|b| b.failed).sum(),
        buckets,
    }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct IngestBucket {
    start: String,
    accepted: i64,
    refused: i64,
    /// Requests by outcome code (`ACCEPTED`, `HANDSHAKE`, `IP_NOT_ALLOWED`, …).
    outcomes: BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct IngestStats {
    since: String,
    until: String,
    bucket_secs: i64,
    source_id: Option<String>,
    accepted: i64,
    refused: i64,
    /// Totals by outcome code over the range.
    outcomes: BTreeMap<String, i64>,
    buckets: Vec<IngestBucket>,
}

/// Accepted means the request was taken in (`ACCEPTED`, or a provider `HANDSHAKE`).
fn is_accepted(outcome: &str) -> bool {
    matches!(outcome, "ACCEPTED" | "HANDSHAKE")
}

async fn ingest(
    state: &AppState,
    source_id: Option<String>,
    q: &StatsQuery,
) -> ApiResult<Json<IngestStats>> {
    if q.endpoint_id.is_some() {
        return Err(bad("endpoint_id belongs to /api/v1/stats/deliveries"));
    }
    valid_id("source_id", &source_id)?;
    let range = stats_range(q, state.clock.now_millis())?;
    let rows = state
        .inbound
        .store
        .ingest_stats(source_id.as_deref(), range)
        .await?;
    let mut by_bucket: BTreeMap<Millis, BTreeMap<String, i64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows {
        *totals.entry(r.outcome.clone()).or_default() += r.requests;
        *by_bucket
            .entry(r.bucket_start)
            .or_default()
            .entry(r.outcome)
            .or_default() += r.requests;
    }
    let split = |m: &BTreeMap<String, i64>| {
        m.iter().fold((0, 0), |(a, f), (o, n)| {
            if is_accepted(o) {
                (a + n, f)
            } else {
                (a, f + n)
            }
        })
    };
    let buckets = bucket_starts(&range)
        .map(|t| {
            let outcomes = by_bucket.remove(&t).unwrap_or_default();
            let (accepted, refused) = split(&outcomes);
            IngestBucket {
                start: rfc3339(t),
                accepted,
                refused,
                outcomes,
            }
        })
        .collect();
    let (accepted, refused) = split(&totals);
    Ok(Json(IngestStats {
        since: rfc3339(range.since),
        until: rfc3339(range.until),
        bucket_secs: range.bucket_ms / 1000,
        source_id,
        accepted,
        refused,
        outcomes: totals,
        buckets,
    }))
}

/// `GET /api/v1/stats/ingest?source_id=&since=&until=&bucket=`: inbound requests per bucket by
/// outcome, every source's (and unknown tokens') unless `source_id` is given.
#[utoipa::path(
    get,
    path = "/stats/ingest",
    tag = "stats",
    params(StatsQuery),
    responses((status = 200, description = "Inbound requests per time bucket by outcome", body = IngestStats))
)]
pub(super) async fn ingest_all(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<IngestStats>> {
    let source_id = q.source_id.clone();
    ingest(&state, source_id, &q).await
}

/// `GET /api/v1/sources/{id}/stats?since=&until=&bucket=` (also for a deleted source, until
/// retention removes its audit entries).
#[utoipa::path(
    get,
    path = "/sources/{id}/stats",
    tag = "sources",
    params(("id" = String, Path, description = "Source id (`src_…`)"), StatsQuery),
    responses((status = 200, description = "The source's requests per time bucket by outcome", body = IngestStats))
)]
pub(super) async fn source(
    State(state): State<Arc<AppState>>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<IngestStats>> {
    if q.source_id.is_some() {
        return Err(bad("the source is in the path"));
    }
    ingest(&state, Some(id), &q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(since: Option<&str>, until: Option<&str>, bucket: Option<&str>) -> StatsQuery {
        StatsQuery {
            since: since.map(Into::into),
            until: until.map(Into::into),
            bucket: bucket.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn buckets_parse_with_units_and_bounds() {
        assert_eq!(parse_bucket("300").unwrap(), 300_000);
        assert_eq!(parse_bucket("5m").unwrap(), 300_000);
        assert_eq!(parse_bucket("1h").unwrap(), 3_600_000);
        assert_eq!(parse_bucket("1d").unwrap(), 86_400_000);
        for bad in [
            "",
            "0",
            "2d",
            "5x",
            "-1",
            "1.5h",
            "99999999999999999999",
            "h",
        ] {
            assert!(parse_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_default_align_and_are_bounded() {
        let now = 1_700_000_123_456;
        let r = stats_range(&q(None, None, None), now).unwrap();
        assert_eq!(r.bucket_ms, 3_600_000);
        assert_eq!(r.since % r.bucket_ms, 0);
        assert_eq!(r.until % r.bucket_ms, 0);
        assert!(r.until >= now && r.until - now < r.bucket_ms);
        assert_eq!(bucket_starts(&r).count(), 25);

        let r = stats_range(&q(Some("1000"), Some("61000"), Some("1m")), now).unwrap();
        assert_eq!((r.since, r.until), (0, 120_000));

        // Too long, too many buckets, backwards, unparsable.
        assert!(stats_range(&q(Some("0"), Some("8640000000"), Some("1d")), now).is_err());
        assert!(stats_range(&q(Some("0"), Some("86400000"), Some("1m")), now).is_err());
        assert!(stats_range(&q(Some("5000"), Some("1000"), None), now).is_err());
        assert!(stats_range(&q(Some("yesterday"), None, None), now).is_err());
        assert!(stats_range(&q(Some("-100000"), Some("0"), None), now).is_err());
        assert!(
            stats_range(
                &q(
                    Some("2024-01-01T00:00:00Z"),
                    Some("2024-01-02T00:00:00Z"),
                    Some("1h")
                ),
                now
            )
            .is_ok()
        );
    }
}
