//! Listings bounded in rows and in bytes.
//!
//! A page holds at most [`Page::limit`] rows and, past its first row, at most
//! [`Page::max_bytes`] of stored row data: a row larger than the bound alone is still listed,
//! alone on its page, so that paging never stalls. Both backends build a page in two steps (one
//! rule, [`cut`], decides for both): first the candidates' keys and stored sizes, newest first —
//! sizes come from `octet_length`, which neither SQLite nor PostgreSQL answers by reading a
//! large value — then the full rows of the candidates that fit, and only those. Rows past the
//! cut are never read, so a listing over megabyte payloads costs the bound, not the limit times
//! the payload.

use std::ops::Deref;

/// One page of a listing: its rows, in the listing's order, and whether more rows follow (the
/// next page starts after the last row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    pub rows: Vec<T>,
    /// True when rows were left out: the row limit was reached or the byte bound cut the page.
    pub more: bool,
}

impl<T> Listed<T> {
    pub fn new(rows: Vec<T>, more: bool) -> Listed<T> {
        Listed { rows, more }
    }

    /// The page made of `rows` read with a limit of `limit + 1`: the first `limit` of them,
    /// and whether there were more.
    pub(crate) fn of_one_more(mut rows: Vec<T>, limit: i64) -> Listed<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        Listed { rows, more }
    }

    /// The rows, without the flag.
    pub fn into_rows(self) -> Vec<T> {
        self.rows
    }
}

impl<T> Deref for Listed<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.rows
    }
}

impl<T> IntoIterator for Listed<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.into_iter()
    }
}

/// Which candidates make the page. `sized` holds the keys and stored sizes of up to `limit + 1`
/// candidate rows in page order; the page takes them in order while it has fewer than `limit`
/// rows and the next one keeps its total within `max_bytes` (the first row is always taken).
/// Returns the keys taken and whether rows were left out.
pub(crate) fn cut<K>(sized: Vec<(K, i64)>, limit: usize, max_bytes: usize) -> (Vec<K>, bool) {
    let available = sized.len();
    let mut keys = Vec::with_capacity(available.min(limit));
    let mut total: u64 = 0;
    for (key, size) in sized {
        let size = u64::try_from(size).unwrap_or(0);
        if keys.len() >= limit
            || (!keys.is_empty() && total.saturating_add(size) > max_bytes as u64)
        {
            break;
        }
        total = total.saturating_add(size);
        keys.push(key);
    }
    let more = keys.len() < available;
    (keys, more)
}

/// SQL for a row's stored size, the same in both dialects: a fixed allowance for the row's
/// small columns and field names plus the byte length of each variable one. `octet_length` of a
/// column reads neither SQLite's overflow pages nor PostgreSQL's TOAST.
pub(crate) fn size_sql(overhead: u32, cols: &[&str]) -> String {
    let mut s = format!("(CAST({overhead} AS BIGINT)");
    for c in cols {
        s.push_str(&format!(" + COALESCE(octet_length({c}), 0)"));
    }
    s.push(')');
    s
}

/// Stored size of an event (its payload is most of it).
pub(crate) fn event_size() -> String {
    size_sql(
        96,
        &[
            "id",
            "event_type",
            "payload",
            "idempotency_key",
            "source_id",
        ],
    )
}

pub(crate) fn delivery_size() -> String {
    size_sql(256, &["id", "event_id", "endpoint_id", "last_error"])
}

pub(crate) fn endpoint_size() -> String {
    size_sql(
        512,
        &[
            "id",
            "url",
            "description",
            "event_types",
            "headers",
            "developer_payload",
            "signature_schemes",
            "disabled_reason",
            "client_certificate_id",
            "filter",
            "transformation",
        ],
    )
}

pub(crate) fn attempt_size() -> String {
    size_sql(
        256,
        &[
            "response_body",
            "error_class",
            "error_message",
            "local_addr",
            "remote_addr",
            "outcome",
            "request_headers",
        ],
    )
}

pub(crate) fn certificate_size() -> String {
    size_sql(
        256,
        &[
            "id",
            "name",
            "certificate_pem",
            "private_key",
            "subject",
            "issuer",
            "serial",
            "sha256",
            "sha1",
        ],
    )
}

/// A source with an allowance for each of its tokens (listed with it, at most 100).
pub(crate) fn source_size() -> String {
    format!(
        "({} + 160 * (SELECT count(*) FROM source_tokens t WHERE t.source_id = sources.id))",
        size_sql(
            512,
            &[
                "id",
                "name",
                "verification",
                "secrets",
                "allowed_cidrs",
                "forward_to",
                "event_type",
            ],
        )
    )
}

/// An audit entry; `payload` is the SQL of its logged payload's byte length, counted at 4/3
/// (the API shows a payload that is not text in base64).
pub(crate) fn audit_size(payload: &str) -> String {
    format!(
        "({} + COALESCE({payload}, 0) * 4 / 3)",
        size_sql(
            320,
            &[
                "id",
                "source_id",
                "token_prefix",
                "client_ip",
                "peer_addr",
                "user_agent",
                "outcome",
                "reason",
                "event_id",
                "message_id",
            ],
        )
    )
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn pages_are_cut_by_rows_and_by_bytes() {
        let sized =
            |sizes: &[i64]| -> Vec<(usize, i64)> { sizes.iter().copied().enumerate().collect() };
        // By rows: `limit` rows and more when a further candidate exists.
        assert_eq!(cut(sized(&[1, 1, 1]), 2, 100), (vec![0, 1], true));
        assert_eq!(cut(sized(&[1, 1]), 2, 100), (vec![0, 1], false));
        assert_eq!(cut(sized(&[]), 2, 100), (vec![], false));
        // By bytes: stops before the row that would go over, which stays for the next page.
        assert_eq!(cut(sized(&[40, 40, 40]), 10, 100), (vec![0, 1], true));
        assert_eq!(cut(sized(&[40, 60, 1]), 10, 100), (vec![0, 1], true));
        assert_eq!(cut(sized(&[40, 60]), 10, 100), (vec![0, 1], false));
        // A row over the bound is listed alone, whatever follows.
        assert_eq!(cut(sized(&[500, 1]), 10, 100), (vec![0], true));
        assert_eq!(cut(sized(&[500]), 10, 100), (vec![0], false));
        assert_eq!(cut(sized(&[1, 500]), 10, 100), (vec![0], true));
        // Nonsense sizes count as nothing.
        assert_eq!(cut(sized(&[-5, 100]), 10, 100), (vec![0, 1], false));
    }

    /// Paging with the cut returns every row exactly once, in order, for any sizes, limit and
    /// bound (the first page is never empty while rows remain).
    #[test]
    fn paging_with_the_cut_returns_every_row_once() {
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let n = (next() % 40) as usize;
            let rows: Vec<i64> = (0..n).map(|_| (next() % 300) as i64).collect();
            let limit = 1 + (next() % 12) as usize;
            let max = (next() % 400) as usize;
            let mut start = 0;
            let mut seen = Vec::new();
            loop {
                let cand: Vec<(usize, i64)> = (start..rows.len().min(start + limit + 1))
                    .map(|i| (i, rows[i]))
                    .collect();
                let (keys, more) = cut(cand, limit, max);
                assert!(!keys.is_empty() || start == rows.len());
                let total: i64 = keys.iter().map(|&i| rows[i]).sum();
                assert!(keys.len() <= 1 || total <= max as i64);
                seen.extend(keys.iter().copied());
                match keys.last() {
                    Some(&last) if more => start = last + 1,
                    _ => break,
                }
            }
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
