//! What a probe found: each case's verdict, the grade, and the advice that fixes a failure.

use super::plan::NotApplicable;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A probe case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// Correctly signed with every configured scheme: must be accepted.
    Valid,
    /// No signature headers at all.
    NoSignature,
    /// Signed with a secret that is not the endpoint's.
    WrongSecret,
    /// A signature of the right length made of random bytes.
    GarbageSignature,
    /// A valid signature of another body (the body changed after signing).
    OtherBody,
    /// The signature header present and empty (no signature in the list).
    EmptySignatureList,
    /// The scheme's prefix with nothing after it (`v1,`, `sha256=`).
    EmptySignature,
    /// The valid signature cut to half its length (catches prefix and length-blind compares).
    TruncatedSignature,
    /// The valid signature's first half followed by garbage (catches prefix compares).
    HalfGarbageSignature,
    /// Correctly signed over a timestamp 10 minutes old.
    StaleTimestamp,
    /// Correctly signed over a timestamp 10 minutes ahead.
    FutureTimestamp,
    /// The valid request sent again, same message id.
    Replay,
    /// Signed with the secret retired by a rotation whose grace has ended.
    RetiredSecret,
    /// Correctly signed, without the client certificate (mTLS).
    NoClientCertificate,
}

/// How bad accepting a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Authentic messages accepted again (replay, retired secret).
    Reuse,
    /// Authentic messages accepted outside their time window.
    Time,
    /// Forged messages accepted.
    Forgery,
}

impl CaseKind {
    /// The cases sent once per configured scheme, in sending order.
    pub const PER_SCHEME: [CaseKind; 10] = [
        CaseKind::WrongSecret,
        CaseKind::GarbageSignature,
        CaseKind::OtherBody,
        CaseKind::EmptySignatureList,
        CaseKind::EmptySignature,
        CaseKind::TruncatedSignature,
        CaseKind::HalfGarbageSignature,
        CaseKind::StaleTimestamp,
        CaseKind::FutureTimestamp,
        CaseKind::RetiredSecret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseKind::Valid => "valid",
            CaseKind::NoSignature => "no_signature",
            CaseKind::WrongSecret => "wrong_secret",
            CaseKind::GarbageSignature => "garbage_signature",
            CaseKind::OtherBody => "other_body",
            CaseKind::EmptySignatureList => "empty_signature_list",
            CaseKind::EmptySignature => "empty_signature",
            CaseKind::TruncatedSignature => "truncated_signature",
            CaseKind::HalfGarbageSignature => "half_garbage_signature",
            CaseKind::StaleTimestamp => "stale_timestamp",
            CaseKind::FutureTimestamp => "future_timestamp",
            CaseKind::Replay => "replay",
            CaseKind::RetiredSecret => "retired_secret",
            CaseKind::NoClientCertificate => "no_client_certificate",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            CaseKind::Replay | CaseKind::RetiredSecret => Severity::Reuse,
            CaseKind::StaleTimestamp | CaseKind::FutureTimestamp => Severity::Time,
            _ => Severity::Forgery,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            CaseKind::Valid => "a correctly signed request (every configured scheme)",
            CaseKind::NoSignature => "no signature headers at all",
            CaseKind::WrongSecret => "signed with a secret that is not the endpoint's",
            CaseKind::GarbageSignature => "a signature of the right length made of random bytes",
            CaseKind::OtherBody => "a valid signature of another body (changed after signing)",
            CaseKind::EmptySignatureList => "the signature header present but empty",
            CaseKind::EmptySignature => "the signature's prefix with no signature after it",
            CaseKind::TruncatedSignature => "the valid signature cut to half its length",
            CaseKind::HalfGarbageSignature => {
                "the valid signature's first half followed by garbage"
            }
            CaseKind::StaleTimestamp => "correctly signed over a timestamp 10 minutes old",
            CaseKind::FutureTimestamp => "correctly signed over a timestamp 10 minutes ahead",
            CaseKind::Replay => "the valid request sent again (same message id)",
            CaseKind::RetiredSecret => {
                "signed with the secret retired by a rotation whose grace has ended"
            }
            CaseKind::NoClientCertificate => "correctly signed, without the client certificate",
        }
    }

    /// What to change when the receiver accepted this case, for `scheme` (`None`: the
    /// endpoint's schemes in general).
    pub fn advice(self, scheme: Option<&str>) -> String {
        let header = match scheme {
            Some("standard-webhooks") | None => "`webhook-signature`",
            Some("github-sha256") => "`x-hub-signature-256`",
            Some("hub-sha1") => "`x-hub-signature`",
            Some("date-sha1") => "`x-hookwarden-auth-signature`",
            Some(_) => "the signature header",
        };
        match self {
            CaseKind::Valid => "Your receiver refused a correctly signed request, so the other \
                answers mean nothing. Check that it verifies with the endpoint's current secret \
                (after a rotation: the new one), over the raw body bytes as received, and that \
                it answers 2xx when the signature verifies."
                .into(),
            CaseKind::NoSignature => format!(
                "Your receiver accepts requests without a signature. Refuse (401) any request \
                 whose {header} header is missing, before doing anything with the body."
            ),
            CaseKind::WrongSecret | CaseKind::GarbageSignature | CaseKind::OtherBody => format!(
                "Your receiver accepts a signature that does not verify. Compute the HMAC of the \
                 exact bytes received with your secret, compare it with {header} in constant time \
                 (hmac.compare_digest, crypto.timingSafeEqual, hmac.Equal, \
                 MessageDigest.isEqual, Rack::Utils.secure_compare, hash_equals), and refuse \
                 (401) when it differs."
            ),
            CaseKind::EmptySignatureList | CaseKind::EmptySignature => format!(
                "Your receiver accepts an empty signature. Refuse a {header} header that is \
                 empty or holds no signature after its prefix; an empty value must never match."
            ),
            CaseKind::TruncatedSignature | CaseKind::HalfGarbageSignature => format!(
                "Your receiver compares only part of the signature. Compare the whole decoded \
                 signature (it must have the full length: 32 bytes for SHA-256, 20 for SHA-1) \
                 with the expected one in constant time; never compare a prefix or only as \
                 many characters as were sent in {header}."
            ),
            CaseKind::StaleTimestamp | CaseKind::FutureTimestamp => {
                let ts = match scheme {
                    Some("date-sha1") => "`x-hookwarden-auth-date`",
                    _ => "`webhook-timestamp`",
                };
                format!(
                    "Your receiver accepts signed messages far from the current time. After the \
                     signature verifies, refuse a {ts} more than 5 minutes from your clock, in \
                     either direction: this bounds how long a captured request can be replayed."
                )
            }
            CaseKind::Replay => "Your receiver accepts the same message twice. Keep the \
                `webhook-id` of each accepted message for at least the timestamp tolerance \
                (10 minutes is safe) and refuse or ignore a message whose id you have seen: \
                retries carry the same id, so answer 2xx without processing it again."
                .into(),
            CaseKind::RetiredSecret => "Your receiver still accepts the secret that a rotation \
                retired. Once the grace period has ended, remove the previous secret from your \
                receiver's configuration."
                .into(),
            CaseKind::NoClientCertificate => "Your receiver accepts connections without \
                Hookwarden's client certificate. Require a client certificate on the TLS \
                listener (nginx `ssl_verify_client on`, a load balancer's mTLS setting) and pin \
                the thumbprints published at /api/v1/security/client-certificates."
                .into(),
        }
    }
}

/// What the receiver should do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Accept,
    Refuse,
}

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The receiver did what it should.
    Pass,
    /// It did not.
    Fail,
    /// Its answer does not tell (a timeout, rate limiting, unreachable, not sent).
    Inconclusive,
}

/// The overall grade. `A`: every case passed. `B`: only authentic messages accepted again
/// (replay, retired secret). `C`: authentic messages accepted outside their time window. `F`:
/// a forged request accepted. `inconclusive`: the valid request was refused, every request was
/// accepted (the receiver may verify after answering), or some answers did not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Grade {
    A,
    B,
    C,
    F,
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Grade {
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::F => "F",
            Grade::Inconclusive => "inconclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Grade> {
        [Grade::A, Grade::B, Grade::C, Grade::F, Grade::Inconclusive]
            .into_iter()
            .find(|g| g.as_str() == s)
    }

    /// Higher is better; `None` for inconclusive (not comparable).
    pub fn rank(self) -> Option<u8> {
        match self {
            Grade::A => Some(4),
            Grade::B => Some(3),
            Grade::C => Some(2),
            Grade::F => Some(1),
            Grade::Inconclusive => None,
        }
    }

    /// Whether going from `previous` to `self` is a drop.
    pub fn dropped_from(self, previous: Grade) -> bool {
        matches!((self.rank(), previous.rank()), (Some(now), Some(before)) if now < before)
    }
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Observed {
    /// The HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The error code when no answer came (`CONNECTION_CLOSED`, `TLS_CLIENT_CERT_REJECTED`,
    /// `REQUEST_TIMEOUT`, …; `NOT_SENT` when the probe stopped first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first bytes of the response body (as text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_excerpt: Option<String>,
    pub duration_ms: u64,
}

impl Observed {
    /// A short text: `HTTP 401`, `connection closed (CONNECTION_CLOSED)`.
    pub fn summary(&self) -> String {
        match (self.status, &self.error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => format!("no answer ({e})"),
            (None, None) => "nothing".into(),
        }
    }
}

/// One case of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseResult {
    pub case: CaseKind,
    /// The scheme the request was signed with alone; absent for the cases sent with every
    /// configured scheme (or none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub description: String,
    pub expected: Expect,
    pub observed: Observed,
    pub verdict: Verdict,
    /// Why the verdict, in a sentence.
    pub reason: String,
    /// What fixes a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// A probe's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub grade: Grade,
    /// The grade in a sentence.
    pub summary: String,
    /// The receiver accepted every request, forged ones included (graded `inconclusive`: it may
    /// verify after answering; a drop to this from a comparable grade raises the drop alert).
    #[serde(default)]
    pub accepts_everything: bool,
    /// The URL probed.
    pub url: String,
    /// The schemes probed.
    pub schemes: Vec<String>,
    /// Requests sent (at most a fixed number).
    pub requests_sent: u32,
    pub duration_ms: u64,
    pub cases: Vec<CaseResult>,
    /// Cases that do not apply to this endpoint.
    pub not_applicable: Vec<NotApplicable>,
}

/// How an answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx.
    Accepted,
    /// A status that refuses the request (3xx, 4xx but 408 and 429, 500, 501), or a connection
    /// closed after the request was read, or a refused handshake without the certificate.
    Refused,
    /// 429 or 503: says nothing, and the rest is not sent.
    SlowDown,
    /// Says nothing about the request (timeout, unreachable, a gateway's 502/504, not sent).
    Unknown(&'static str),
}

/// How an HTTP status answers a probe request.
pub fn status_answer(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Accepted,
        429 | 503 => Answer::SlowDown,
        408 | 502 | 504 => {
            Answer::Unknown("a timeout or gateway answer, which says nothing about the request")
        }
        _ => Answer::Refused,
    }
}

/// The verdict of a case and its reason.
pub fn judge(kind: CaseKind, answer: Answer, observed: &Observed) -> (Verdict, String) {
    let seen = observed.summary();
    match (kind, answer) {
        (_, Answer::Unknown(why)) => (Verdict::Inconclusive, format!("{seen}: {why}")),
        (_, Answer::SlowDown) => (
            Verdict::Inconclusive,
            format!(
                "{seen}: the receiver asked to slow down or was unavailable; the rest was not sent"
            ),
        ),
        (CaseKind::Valid, Answer::Accepted) => (Verdict::Pass, format!("accepted ({seen})")),
        (CaseKind::Valid, Answer::Refused) => (
            Verdict::Fail,
            format!("refused a correctly signed request ({seen})"),
        ),
        (_, Answer::Accepted) => (Verdict::Fail, format!("accepted ({seen})")),
        (_, Answer::Refused) => (Verdict::Pass, format!("refused ({seen})")),
    }
}

/// Whether the receiver accepted the valid request and every signature case (the request
/// without the client certificate aside: a TLS listener refuses it before any code runs).
pub fn accepts_everything(cases: &[CaseResult]) -> bool {
    let valid_ok = cases
        .iter()
        .any(|c| c.case == CaseKind::Valid && c.verdict == Verdict::Pass);
    let mut signature_cases = cases
        .iter()
        .filter(|c| c.expected == Expect::Refuse && c.case != CaseKind::NoClientCertificate)
        .peekable();
    valid_ok
        && signature_cases.peek().is_some()
        && signature_cases.all(|c| c.verdict == Verdict::Fail)
}

/// The grade and its sentence, from the judged cases.
pub fn grade(cases: &[CaseResult]) -> (Grade, String) {
    let valid_ok = cases
        .iter()
        .any(|c| c.case == CaseKind::Valid && c.verdict == Verdict::Pass);
    if !valid_ok {
        return (
            Grade::Inconclusive,
            "the receiver did not accept the correctly signed request, so the other answers mean \
             nothing: fix that first"
                .into(),
        );
    }
    let negatives: Vec<&CaseResult> = cases
        .iter()
        .filter(|c| c.expected == Expect::Refuse)
        .collect();
    if accepts_everything(cases) {
        return (
            Grade::Inconclusive,
            "accepts every request; if it verifies asynchronously, confirm in its logs that the \
             forged requests were refused (each carries x-hookwarden-probe-id)"
                .into(),
        );
    }
    let worst = negatives
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.case.severity())
        .max();
    let failed = negatives
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    match worst {
        Some(Severity::Forgery) => (
            Grade::F,
            format!(
                "accepts forged requests ({failed} of {} refusals missing)",
                negatives.len()
            ),
        ),
        Some(Severity::Time) => (
            Grade::C,
            "verifies signatures but accepts messages outside the timestamp tolerance".into(),
        ),
        Some(Severity::Reuse) => (
            Grade::B,
            "verifies signatures and timestamps but accepts authentic messages again (replay or \
             a retired secret)"
                .into(),
        ),
        None if negatives.iter().any(|c| c.verdict == Verdict::Inconclusive) => (
            Grade::Inconclusive,
            "refused every forged request it answered, but some answers did not tell".into(),
        ),
        None => (
            Grade::A,
            "refused every forged, stale and replayed request and accepted the valid one".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(kind: CaseKind, verdict: Verdict) -> CaseResult {
        CaseResult {
            case: kind,
            scheme: None,
            description: kind.description().into(),
            expected: if kind == CaseKind::Valid {
                Expect::Accept
            } else {
                Expect::Refuse
            },
            observed: Observed::default(),
            verdict,
            reason: String::new(),
            advice: None,
        }
    }

    #[test]
    fn grades() {
        use CaseKind::*;
        use Verdict::*;
        let g = |cs: &[(CaseKind, Verdict)]| {
            grade(&cs.iter().map(|(k, v)| case(*k, *v)).collect::<Vec<_>>()).0
        };
        assert_eq!(
            g(&[(Valid, Pass), (NoSignature, Pass), (Replay, Pass)]),
            Grade::A
        );
        assert_eq!(
            g(&[(Valid, Pass), (NoSignature, Pass), (Replay, Fail)]),
            Grade::B
        );
        assert_eq!(
            g(&[
                (Valid, Pass),
                (StaleTimestamp, Fail),
                (Replay, Fail),
                (NoSignature, Pass)
            ]),
            Grade::C
        );
        assert_eq!(
            g(&[
                (Valid, Pass),
                (TruncatedSignature, Fail),
                (NoSignature, Pass)
            ]),
            Grade::F
        );
        // Accepting everything: inconclusive (it may verify after answering).
        assert_eq!(
            g(&[(Valid, Pass), (NoSignature, Fail), (Replay, Fail)]),
            Grade::Inconclusive
        );
        // …even when TLS refuses a connection without the certificate.
        assert_eq!(
            g(&[
                (Valid, Pass),
                (NoSignature, Fail),
                (NoClientCertificate, Pass)
            ]),
            Grade::Inconclusive
        );
        assert_eq!(
            g(&[(Valid, Fail), (NoSignature, Pass)]),
            Grade::Inconclusive
        );
        assert_eq!(
            g(&[(Valid, Pass), (NoSignature, Pass), (Replay, Inconclusive)]),
            Grade::Inconclusive
        );
        assert!(Grade::C.dropped_from(Grade::A));
        assert!(!Grade::A.dropped_from(Grade::C));
        assert!(!Grade::Inconclusive.dropped_from(Grade::A));
        assert!(!Grade::F.dropped_from(Grade::Inconclusive));
        for gr in [Grade::A, Grade::B, Grade::C, Grade::F, Grade::Inconclusive] {
            assert_eq!(Grade::parse(gr.as_str()), Some(gr));
            assert_eq!(serde_json::to_value(gr).unwrap(), gr.as_str());
        }
    }
}
