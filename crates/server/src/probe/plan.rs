//! The cases of a probe, and each request as it is sent (pure: no I/O, no clock, randomness
//! passed in). Every forged request carries the headers of one scheme only, so a receiver that
//! verifies another of the endpoint's schemes cannot make a forgery look refused or accepted.
//! Nothing on the wire says which case a request is: the body and headers of every case have
//! the same shape, and the server keeps the mapping.

use super::report::CaseKind;
use hookwarden_signatures::{Outbound, Scheme, SignError, headers as h, sign};
use serde::Serialize;

/// Seconds a stale or early timestamp is off by (twice the usual 5-minute tolerance).
pub const SKEW_SECS: i64 = 600;

/// One case of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub kind: CaseKind,
    /// The scheme whose headers the request carries alone (`None`: every configured scheme, or
    /// none at all for [`CaseKind::NoSignature`]).
    pub scheme: Option<Scheme>,
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The Standard Webhooks message id (unique per request, except the replay).
    pub msg_id: String,
    pub body: Vec<u8>,
    /// Signature headers (lower-case names).
    pub signature: Vec<(&'static str, String)>,
}

/// A case that does not apply to this endpoint, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NotApplicable {
    /// The case (see the report's `cases`).
    pub case: CaseKind,
    /// The scheme it would have been sent with, when it is per scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub reason: String,
}

/// What the probe signs with (no `Debug`: it holds opened secrets).
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    /// The active HMAC secrets, newest first.
    pub active: &'a [String],
    /// The HMAC secret retired last, whose grace has ended.
    pub retired: Option<&'a str>,
    /// The active ed25519 keys (`whsk_`), newest first.
    pub active_ed25519: &'a [String],
    /// The ed25519 key retired last.
    pub retired_ed25519: Option<&'a str>,
}

impl Keys<'_> {
    fn active_for(&self, scheme: Scheme) -> Vec<&str> {
        let keys = if scheme.is_asymmetric() {
            self.active_ed25519
        } else {
            self.active
        };
        keys.iter().map(String::as_str).collect()
    }

    fn retired_for(&self, scheme: Scheme) -> Option<&str> {
        if scheme.is_asymmetric() {
            self.retired_ed25519
        } else {
            self.retired
        }
    }
}

/// Random input (the CSPRNG in production, fixed in tests).
pub trait Random {
    /// `n` random bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8>;
}

/// The operating system's CSPRNG.
pub struct OsRandom;

impl Random for OsRandom {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        #[expect(
            clippy::expect_used,
            reason = "the OS CSPRNG failing is not recoverable: refusing to run beats predictable forgeries"
        )]
        getrandom::fill(&mut v).expect("the operating system's random number generator failed");
        v
    }
}

/// The cases of a probe in report order (`valid`, `replay`, `no_signature`, the per-scheme
/// cases scheme by scheme, `no_client_certificate`), and those that do not apply.
pub fn cases(
    schemes: &[Scheme],
    keys: &Keys<'_>,
    mutual_tls: bool,
) -> (Vec<Case>, Vec<NotApplicable>) {
    let mut out = vec![Case {
        kind: CaseKind::Valid,
        scheme: None,
    }];
    let mut na = Vec::new();
    if schemes
        .iter()
        .any(|s| matches!(s, Scheme::StandardWebhooks | Scheme::StandardWebhooksV1a))
    {
        out.push(Case {
            kind: CaseKind::Replay,
            scheme: None,
        });
    } else {
        na.push(NotApplicable {
            case: CaseKind::Replay,
            scheme: None,
            reason: "no configured scheme signs a message id (standard-webhooks does)".into(),
        });
    }
    out.push(Case {
        kind: CaseKind::NoSignature,
        scheme: None,
    });
    for &scheme in schemes {
        for kind in CaseKind::PER_SCHEME {
            match not_applicable(kind, scheme, keys) {
                Some(reason) => na.push(NotApplicable {
                    case: kind,
                    scheme: Some(scheme.as_str().to_owned()),
                    reason: reason.to_owned(),
                }),
                None => out.push(Case {
                    kind,
                    scheme: Some(scheme),
                }),
            }
        }
    }
    if mutual_tls {
        out.push(Case {
            kind: CaseKind::NoClientCertificate,
            scheme: None,
        });
    } else {
        na.push(NotApplicable {
            case: CaseKind::NoClientCertificate,
            scheme: None,
            reason: "the endpoint has no client certificate (mTLS)".into(),
        });
    }
    (out, na)
}

/// The order to send `cases` in (indices): the valid request, its replay at once (so that no
/// timestamp tolerance can hide a missing replay cache), then the rest shuffled.
pub fn send_order(cases: &[Case], rnd: &mut dyn Random) -> Vec<usize> {
    let (mut first, mut rest): (Vec<usize>, Vec<usize>) = (0..cases.len())
        .partition(|&i| matches!(cases[i].kind, CaseKind::Valid | CaseKind::Replay));
    // Fisher-Yates with 32 random bits per step (the modulo bias is irrelevant here).
    for i in (1..rest.len()).rev() {
        let b = rnd.bytes(4);
        let r = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize % (i + 1);
        rest.swap(i, r);
    }
    first.append(&mut rest);
    first
}

/// Builds the request of `case` (not the replay: that is the valid request again), signed at
/// `now` (unix seconds). `seq` makes the message id unique within the probe.
pub fn build(
    case: &Case,
    probe_id: &str,
    seq: usize,
    schemes: &[Scheme],
    keys: &Keys<'_>,
    now: i64,
    rnd: &mut dyn Random,
) -> Result<Built, SignError> {
    let id = format!("msg_{probe_id}_{seq}");
    let ts = match case.kind {
        CaseKind::StaleTimestamp => now - SKEW_SECS,
        CaseKind::FutureTimestamp => now + SKEW_SECS,
        _ => now,
    };
    let body = probe_body(&id, probe_id, ts, false);
    let mut signature = Vec::new();
    let Some(scheme) = case.scheme else {
        // Every scheme with every active key (valid, no certificate), or nothing.
        if case.kind != CaseKind::NoSignature {
            for &s in schemes {
                let msg = Outbound {
                    msg_id: &id,
                    timestamp: ts,
                    body: &body,
                };
                signature.extend(sign(s, &keys.active_for(s), &msg)?);
            }
        }
        return Ok(Built {
            msg_id: id,
            body,
            signature,
        });
    };
    let signed_body = if case.kind == CaseKind::OtherBody {
        probe_body(&id, probe_id, ts, true)
    } else {
        body.clone()
    };
    let msg = Outbound {
        msg_id: &id,
        timestamp: ts,
        body: &signed_body,
    };
    let wrong;
    let with: Vec<&str> = match case.kind {
        CaseKind::WrongSecret => {
            wrong = random_secret(scheme, rnd);
            vec![wrong.as_str()]
        }
        CaseKind::RetiredSecret => keys.retired_for(scheme).into_iter().collect(),
        // Authentic variants carry every active key's signature, as a delivery does, so a
        // receiver still on the previous secret during a rotation's grace judges them as it
        // judged the valid request.
        _ => keys.active_for(scheme),
    };
    signature = sign(scheme, &with, &msg)?;
    let header = signature_header(scheme);
    if let Some((_, value)) = signature.iter_mut().find(|(n, _)| *n == header) {
        *value = mutate(case.kind, scheme, value, rnd);
    }
    Ok(Built {
        msg_id: id,
        body,
        signature,
    })
}

fn not_applicable(kind: CaseKind, scheme: Scheme, keys: &Keys<'_>) -> Option<&'static str> {
    match kind {
        CaseKind::OtherBody if !scheme.signs_body() => {
            Some("this scheme signs the date, not the body")
        }
        CaseKind::StaleTimestamp | CaseKind::FutureTimestamp
            if !matches!(
                scheme,
                Scheme::StandardWebhooks | Scheme::StandardWebhooksV1a | Scheme::DateSha1
            ) =>
        {
            Some("this scheme signs no timestamp")
        }
        CaseKind::RetiredSecret if keys.retired_for(scheme).is_none() => {
            Some("no secret was retired (a rotation whose grace has ended) in the kept period")
        }
        _ => None,
    }
}

/// The header holding the signature of `scheme`.
pub fn signature_header(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::StandardWebhooks | Scheme::StandardWebhooksV1a => h::WEBHOOK_SIGNATURE,
        Scheme::GithubSha256 => h::X_HUB_SIGNATURE_256,
        Scheme::HubSha1 => h::X_HUB_SIGNATURE,
        Scheme::DateSha1 => h::X_HOOKWARDEN_AUTH_SIGNATURE,
    }
}

/// The prefix of one signature of `scheme`.
fn prefix(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::StandardWebhooks => "v1,",
        Scheme::StandardWebhooksV1a => "v1a,",
        Scheme::GithubSha256 => "sha256=",
        Scheme::HubSha1 | Scheme::DateSha1 => "sha1=",
    }
}

/// A secret of the same form as the endpoint's, that is not it.
fn random_secret(scheme: Scheme, rnd: &mut dyn Random) -> String {
    use base64::Engine as _;
    let b = rnd.bytes(32);
    match scheme {
        Scheme::StandardWebhooks => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b)
        ),
        Scheme::StandardWebhooksV1a => {
            let mut seed = [0u8; 32];
            seed.copy_from_slice(&b);
            hookwarden_signatures::ed25519_private_key(seed)
        }
        _ => hex::encode(b),
    }
}

/// The signature value changed as `kind` says, entry by entry (several entries during a
/// rotation's grace).
fn mutate(kind: CaseKind, scheme: Scheme, value: &str, rnd: &mut dyn Random) -> String {
    let prefix = prefix(scheme);
    match kind {
        CaseKind::EmptySignatureList => return String::new(),
        CaseKind::EmptySignature => return prefix.to_owned(),
        _ => {}
    }
    let entries: Vec<String> = value
        .split(' ')
        .map(|entry| {
            let sig = entry.strip_prefix(prefix).unwrap_or(entry);
            let half = sig.len() / 2;
            match kind {
                CaseKind::GarbageSignature => format!("{prefix}{}", garbage_like(scheme, sig, rnd)),
                CaseKind::TruncatedSignature => format!("{prefix}{}", &sig[..half]),
                CaseKind::HalfGarbageSignature => {
                    let g = garbage_like(scheme, sig, rnd);
                    format!("{prefix}{}{}", &sig[..half], &g[half..])
                }
                _ => entry.to_owned(),
            }
        })
        .collect();
    entries.join(" ")
}

/// Random bytes encoded as `sig` is (base64 or hex), of its length, differing from it in its
/// second half (a few tries; equal 32-byte draws mean a broken random source).
fn garbage_like(scheme: Scheme, sig: &str, rnd: &mut dyn Random) -> String {
    use base64::Engine as _;
    let mut g = String::new();
    for _ in 0..8 {
        g = match scheme {
            Scheme::StandardWebhooks | Scheme::StandardWebhooksV1a => {
                let n = (sig.len() / 4 * 3)
                    .saturating_sub(sig.bytes().rev().take_while(|b| *b == b'=').count());
                base64::engine::general_purpose::STANDARD.encode(rnd.bytes(n))
            }
            _ => hex::encode(rnd.bytes(sig.len() / 2)),
        };
        if g.len() == sig.len() && g.get(sig.len() / 2..) != sig.get(sig.len() / 2..) {
            break;
        }
    }
    g
}

/// A harmless event that says it is a probe. `altered` changes one field, for the signature of
/// another body (the body sent always has `false`).
pub fn probe_body(msg_id: &str, probe_id: &str, ts: i64, altered: bool) -> Vec<u8> {
    let v = serde_json::json!({
        "id": msg_id,
        "type": "hookwarden.probe",
        "timestamp": crate::times::rfc3339(ts.saturating_mul(1000)),
        "data": {
            "probe_id": probe_id,
            "altered": altered,
            "note": "A security probe from Hookwarden, sent on behalf of the sender of your webhooks: \
                     it is not a real event. Refuse it unless its signature verifies; see the \
                     sender's probe report for what your receiver did.",
        }
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    struct Counter(u8);
    impl Random for Counter {
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n)
                .map(|_| {
                    self.0 = self.0.wrapping_mul(31).wrapping_add(7);
                    self.0
                })
                .collect()
        }
    }

    /// The headers as the sender puts them (v1 and v1a entries in one `webhook-signature`).
    fn headers(b: &Built) -> HeaderMap {
        let mut m = HeaderMap::new();
        crate::dispatch::add_signature_headers(&mut m, b.signature.clone()).unwrap();
        m
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const PREVIOUS: &str = "whsec_cHJldmlvdXMtc2VjcmV0LWluLWdyYWNl";
    const OLD: &str = "whsec_C2FtcGxlLXNlY3JldC1mb3ItdGVzdGluZw==";
    const NOW: i64 = 1_800_000_000;

    fn ed(n: u8) -> String {
        hookwarden_signatures::ed25519_private_key([n; 32])
    }

    /// Verifies with Hookwarden's own verifier: HMAC secrets for the HMAC schemes, the public
    /// keys of `ed` for v1a.
    fn verifies(scheme: Scheme, hmac: &[&str], ed: &[String], b: &Built, tolerance: i64) -> bool {
        let public: Vec<String> = ed
            .iter()
            .map(|k| hookwarden_signatures::ed25519_public_key(k).unwrap())
            .collect();
        let keys: Vec<&str> = if scheme.is_asymmetric() {
            public.iter().map(String::as_str).collect()
        } else {
            hmac.to_vec()
        };
        hookwarden_signatures::verify(scheme, &keys, &headers(b), &b.body, NOW, tolerance).is_ok()
    }

    /// Each request verifies with the endpoint's keys exactly when it should, for every scheme,
    /// also during a rotation's grace (two active secrets) and with an asymmetric scheme.
    #[test]
    fn only_the_authentic_requests_verify() {
        let active = vec![SECRET.to_owned(), PREVIOUS.to_owned()];
        let active_ed = vec![ed(1)];
        let retired_ed = ed(9);
        let keys = Keys {
            active: &active,
            retired: Some(OLD),
            active_ed25519: &active_ed,
            retired_ed25519: Some(retired_ed.as_str()),
        };
        let (cases, na) = cases(&Scheme::ALL, &keys, true);
        assert!(cases.len() <= super::super::MAX_REQUESTS, "{}", cases.len());
        assert_eq!(cases[0].kind, CaseKind::Valid);
        assert_eq!(cases[1].kind, CaseKind::Replay);
        // other_body for date-sha1, timestamps for the two body-only schemes.
        assert_eq!(na.len(), 5, "{na:?}");
        let mut ids = Vec::new();
        for (seq, case) in cases.iter().enumerate() {
            if case.kind == CaseKind::Replay {
                continue;
            }
            let b = build(
                case,
                "prb_x",
                seq,
                &Scheme::ALL,
                &keys,
                NOW,
                &mut Counter(seq as u8),
            )
            .unwrap();
            ids.push(b.msg_id.clone());
            for scheme in Scheme::ALL {
                let carries = case.scheme.is_none_or(|s| s == scheme);
                let authentic =
                    matches!(case.kind, CaseKind::Valid | CaseKind::NoClientCertificate);
                // Either secret of the grace verifies an authentic request on its own (the
                // single-signature schemes sign with the newest only, as deliveries do).
                let grace: &[&str] = if scheme == Scheme::StandardWebhooks {
                    &[SECRET, PREVIOUS]
                } else {
                    &[SECRET]
                };
                for &one in grace {
                    assert_eq!(
                        verifies(scheme, &[one], &active_ed, &b, 300),
                        carries && authentic && case.kind != CaseKind::NoSignature,
                        "{:?} {:?} with {scheme}",
                        case.kind,
                        case.scheme
                    );
                }
                if case.scheme == Some(scheme) {
                    match case.kind {
                        CaseKind::RetiredSecret => {
                            assert!(verifies(
                                scheme,
                                &[OLD],
                                std::slice::from_ref(&retired_ed),
                                &b,
                                300
                            ));
                        }
                        CaseKind::StaleTimestamp | CaseKind::FutureTimestamp => {
                            // Authentic, only out of tolerance.
                            assert!(verifies(scheme, &[SECRET], &active_ed, &b, 700));
                        }
                        _ => {}
                    }
                }
            }
            // Nothing in a request names its case.
            let text = format!("{}{:?}", String::from_utf8_lossy(&b.body), b.signature);
            assert!(
                !text.contains(case.kind.as_str()) || case.kind == CaseKind::Valid,
                "{text}"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), cases.len() - 1, "unique message ids");
        assert!(ids.iter().all(|i| i.starts_with("msg_prb_x_")));
    }

    #[test]
    fn malformed_signatures_have_the_shapes_they_claim() {
        let active = vec![SECRET.to_owned()];
        let active_ed = vec![ed(3)];
        let keys = Keys {
            active: &active,
            retired: None,
            active_ed25519: &active_ed,
            retired_ed25519: None,
        };
        let schemes = [
            Scheme::StandardWebhooks,
            Scheme::StandardWebhooksV1a,
            Scheme::GithubSha256,
        ];
        let (cases, na) = cases(&schemes, &keys, false);
        let build_kind = |k: CaseKind, s: Scheme, seq: usize| {
            let c = cases
                .iter()
                .find(|c| c.kind == k && c.scheme == Some(s))
                .unwrap();
            build(
                c,
                "prb_y",
                seq,
                &schemes,
                &keys,
                NOW,
                &mut Counter(seq as u8),
            )
            .unwrap()
        };
        let sig_of = |b: &Built, s: Scheme| {
            b.signature
                .iter()
                .find(|(n, _)| *n == signature_header(s))
                .map(|(_, v)| v.clone())
        };
        for scheme in schemes {
            let valid_of = |b: &Built| {
                let msg = Outbound {
                    msg_id: &b.msg_id,
                    timestamp: NOW,
                    body: &b.body,
                };
                let with = keys.active_for(scheme);
                sign(scheme, &with, &msg)
                    .unwrap()
                    .into_iter()
                    .find(|(n, _)| *n == signature_header(scheme))
                    .unwrap()
                    .1
            };
            let t = build_kind(CaseKind::TruncatedSignature, scheme, 10);
            let (trunc, full) = (sig_of(&t, scheme).unwrap(), valid_of(&t));
            assert!(
                full.starts_with(&trunc) && trunc.len() < full.len(),
                "{trunc} {full}"
            );
            let hg = build_kind(CaseKind::HalfGarbageSignature, scheme, 11);
            let (hgs, full) = (sig_of(&hg, scheme).unwrap(), valid_of(&hg));
            assert_eq!(hgs.len(), full.len());
            assert_ne!(hgs, full);
            let half = prefix(scheme).len() + (full.len() - prefix(scheme).len()) / 2;
            assert_eq!(&hgs[..half], &full[..half]);
            let g = build_kind(CaseKind::GarbageSignature, scheme, 12);
            assert_eq!(sig_of(&g, scheme).unwrap().len(), valid_of(&g).len());
            assert_eq!(
                sig_of(
                    &build_kind(CaseKind::EmptySignatureList, scheme, 13),
                    scheme
                )
                .unwrap(),
                ""
            );
            assert_eq!(
                sig_of(&build_kind(CaseKind::EmptySignature, scheme, 14), scheme).unwrap(),
                prefix(scheme)
            );
            // Per-scheme requests carry that scheme's signature only.
            let w = build_kind(CaseKind::WrongSecret, scheme, 15);
            let names: Vec<&str> = w.signature.iter().map(|(n, _)| *n).collect();
            assert!(names.contains(&signature_header(scheme)));
            for other in schemes {
                if signature_header(other) != signature_header(scheme) {
                    assert!(sig_of(&w, other).is_none());
                }
            }
        }
        // The valid request carries v1 and v1a entries in one header.
        let v = build(&cases[0], "prb_y", 0, &schemes, &keys, NOW, &mut Counter(1)).unwrap();
        let sig = sig_of(&v, Scheme::StandardWebhooks).unwrap();
        let _ = sig; // headers are merged by the sender (see dispatch::add_signature_headers)
        assert!(na.iter().any(|n| n.case == CaseKind::RetiredSecret));
        assert!(na.iter().any(|n| n.case == CaseKind::NoClientCertificate));
        let body: serde_json::Value = serde_json::from_slice(&v.body).unwrap();
        assert_eq!(body["type"], "hookwarden.probe");
        assert_eq!(body["data"]["probe_id"], "prb_y");
        assert!(body["data"].get("case").is_none());
    }

    #[test]
    fn the_replay_follows_the_valid_request_and_the_rest_is_shuffled() {
        let active = vec![SECRET.to_owned()];
        let keys = Keys {
            active: &active,
            retired: None,
            active_ed25519: &[],
            retired_ed25519: None,
        };
        let (cases, _) = cases(&[Scheme::StandardWebhooks, Scheme::HubSha1], &keys, false);
        let a = send_order(&cases, &mut Counter(1));
        let b = send_order(&cases, &mut Counter(2));
        assert_eq!(&a[..2], &[0, 1]);
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..cases.len()).collect::<Vec<_>>());
    }
}
