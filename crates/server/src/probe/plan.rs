//! The requests of a probe, decided before any is sent (pure: no I/O, no clock, randomness
//! passed in). Every forged request carries the headers of one scheme only, so a receiver that
//! verifies another of the endpoint's schemes cannot make a forgery look refused or accepted.

use super::report::CaseKind;
use hookwarden_signatures::{Outbound, Scheme, SignError, headers as h, sign};
use serde::Serialize;

/// Seconds a stale or early timestamp is off by (twice the usual 5-minute tolerance).
pub const SKEW_SECS: i64 = 600;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: CaseKind,
    /// The scheme whose headers the request carries alone (`None`: every configured scheme, or
    /// none at all for [`CaseKind::NoSignature`]).
    pub scheme: Option<Scheme>,
    /// The Standard Webhooks message id (unique per request, except the replay).
    pub msg_id: String,
    pub body: Vec<u8>,
    /// Signature headers (lower-case names).
    pub signature: Vec<(&'static str, String)>,
    /// Present the endpoint's client certificate (false only for the no-certificate case).
    pub with_identity: bool,
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

/// What the probe signs with.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    /// The active secrets, newest first (the valid request is signed as a delivery would be).
    pub active: &'a [String],
    /// The secret retired last, whose grace has ended.
    pub retired: Option<&'a str>,
}

/// Random input of a plan (from the CSPRNG in production, fixed in tests).
pub trait Random {
    /// `n` random bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8>;
}

/// The operating system's CSPRNG.
pub struct OsRandom;

impl Random for OsRandom {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        // A failing CSPRNG leaves zeros: a garbage signature of zeros is still garbage.
        let _ = getrandom::fill(&mut v);
        v
    }
}

/// The probe's requests and the cases that do not apply. `now`: unix seconds.
pub fn plan(
    probe_id: &str,
    schemes: &[Scheme],
    keys: &Keys<'_>,
    mutual_tls: bool,
    now: i64,
    rnd: &mut dyn Random,
) -> Result<(Vec<Planned>, Vec<NotApplicable>), SignError> {
    let newest = keys
        .active
        .first()
        .map(String::as_str)
        .ok_or(SignError::NoSecrets)?;
    let all: Vec<&str> = keys.active.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let mut na = Vec::new();
    let mut seq = 0u32;
    let mut next_id = |rnd: &mut dyn Random| {
        seq += 1;
        format!("msg_probe_{}_{seq}", hex::encode(rnd.bytes(8)))
    };

    // 1. Correctly signed with every scheme (every active secret, as a delivery).
    let id = next_id(rnd);
    let body = probe_body(&id, probe_id, CaseKind::Valid, now, false);
    let mut signature = Vec::new();
    for s in schemes {
        signature.extend(sign(
            *s,
            &all,
            &Outbound {
                msg_id: &id,
                timestamp: now,
                body: &body,
            },
        )?);
    }
    let valid = Planned {
        kind: CaseKind::Valid,
        scheme: None,
        msg_id: id,
        body,
        signature,
        with_identity: true,
    };
    out.push(valid.clone());

    // 2. No signature at all.
    let id = next_id(rnd);
    out.push(Planned {
        kind: CaseKind::NoSignature,
        scheme: None,
        body: probe_body(&id, probe_id, CaseKind::NoSignature, now, false),
        msg_id: id,
        signature: Vec::new(),
        with_identity: true,
    });

    // 3, 4 and 6, per scheme.
    for &scheme in schemes {
        for kind in CaseKind::PER_SCHEME {
            if let Some(reason) = not_applicable(kind, scheme, keys) {
                na.push(NotApplicable {
                    case: kind,
                    scheme: Some(scheme.as_str().to_owned()),
                    reason: reason.to_owned(),
                });
                continue;
            }
            let id = next_id(rnd);
            let ts = match kind {
                CaseKind::StaleTimestamp => now - SKEW_SECS,
                CaseKind::FutureTimestamp => now + SKEW_SECS,
                _ => now,
            };
            let sent = probe_body(&id, probe_id, kind, ts, false);
            let signed_body = if kind == CaseKind::OtherBody {
                probe_body(&id, probe_id, kind, ts, true)
            } else {
                sent.clone()
            };
            let key: String = match kind {
                CaseKind::WrongSecret => random_secret(scheme, rnd),
                CaseKind::RetiredSecret => keys.retired.unwrap_or(newest).to_owned(),
                _ => newest.to_owned(),
            };
            let msg = Outbound {
                msg_id: &id,
                timestamp: ts,
                body: &signed_body,
            };
            let mut signature = sign(scheme, &[key.as_str()], &msg)?;
            let sig_header = signature_header(scheme);
            if let Some((_, value)) = signature.iter_mut().find(|(n, _)| *n == sig_header) {
                *value = mutate(kind, scheme, value, rnd);
            }
            out.push(Planned {
                kind,
                scheme: Some(scheme),
                msg_id: id,
                body: sent,
                signature,
                with_identity: true,
            });
        }
    }

    // 5. The valid request again, as it was.
    if schemes.contains(&Scheme::StandardWebhooks) {
        out.push(Planned {
            kind: CaseKind::Replay,
            ..valid.clone()
        });
    } else {
        na.push(NotApplicable {
            case: CaseKind::Replay,
            scheme: None,
            reason: "no configured scheme signs a message id (standard-webhooks does)".into(),
        });
    }

    // 7. Valid, without the client certificate.
    if mutual_tls {
        let id = next_id(rnd);
        let body = probe_body(&id, probe_id, CaseKind::NoClientCertificate, now, false);
        let mut signature = Vec::new();
        for s in schemes {
            signature.extend(sign(
                *s,
                &[newest],
                &Outbound {
                    msg_id: &id,
                    timestamp: now,
                    body: &body,
                },
            )?);
        }
        out.push(Planned {
            kind: CaseKind::NoClientCertificate,
            scheme: None,
            msg_id: id,
            body,
            signature,
            with_identity: false,
        });
    } else {
        na.push(NotApplicable {
            case: CaseKind::NoClientCertificate,
            scheme: None,
            reason: "the endpoint has no client certificate (mTLS)".into(),
        });
    }
    Ok((out, na))
}

fn not_applicable(kind: CaseKind, scheme: Scheme, keys: &Keys<'_>) -> Option<&'static str> {
    match kind {
        CaseKind::OtherBody if !scheme.signs_body() => {
            Some("this scheme signs the date, not the body")
        }
        CaseKind::StaleTimestamp | CaseKind::FutureTimestamp
            if !matches!(scheme, Scheme::StandardWebhooks | Scheme::DateSha1) =>
        {
            Some("this scheme signs no timestamp")
        }
        CaseKind::RetiredSecret if keys.retired.is_none() => {
            Some("no secret was retired (a rotation whose grace has ended) in the kept period")
        }
        _ => None,
    }
}

/// The header holding the signature of `scheme`.
pub fn signature_header(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::StandardWebhooks => h::WEBHOOK_SIGNATURE,
        Scheme::GithubSha256 => h::X_HUB_SIGNATURE_256,
        Scheme::HubSha1 => h::X_HUB_SIGNATURE,
        Scheme::DateSha1 => h::X_HOOKWARDEN_AUTH_SIGNATURE,
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
        _ => hex::encode(b),
    }
}

/// The signature value (one entry: it was signed with one secret) changed as `kind` says.
fn mutate(kind: CaseKind, scheme: Scheme, value: &str, rnd: &mut dyn Random) -> String {
    let prefix = match scheme {
        Scheme::StandardWebhooks => "v1,",
        Scheme::GithubSha256 => "sha256=",
        Scheme::HubSha1 | Scheme::DateSha1 => "sha1=",
    };
    let sig = value.strip_prefix(prefix).unwrap_or(value);
    let half = sig.len() / 2;
    match kind {
        CaseKind::GarbageSignature => format!("{prefix}{}", garbage_like(scheme, sig, rnd)),
        CaseKind::EmptySignatureList => String::new(),
        CaseKind::EmptySignature => prefix.to_owned(),
        CaseKind::TruncatedSignature => format!("{prefix}{}", &sig[..half]),
        CaseKind::HalfGarbageSignature => {
            let g = garbage_like(scheme, sig, rnd);
            format!("{prefix}{}{}", &sig[..half], &g[half..])
        }
        _ => value.to_owned(),
    }
}

/// Random bytes encoded as `sig` is (base64 or hex), of its length, never equal to it.
fn garbage_like(scheme: Scheme, sig: &str, rnd: &mut dyn Random) -> String {
    use base64::Engine as _;
    loop {
        let g = match scheme {
            Scheme::StandardWebhooks => {
                let n = sig.len() / 4 * 3 - sig.bytes().rev().take_while(|b| *b == b'=').count();
                base64::engine::general_purpose::STANDARD.encode(rnd.bytes(n))
            }
            _ => hex::encode(rnd.bytes(sig.len() / 2)),
        };
        // Different in the second half too, so the half-garbage case differs from the valid one.
        if g.len() == sig.len() && g.get(sig.len() / 2..) != sig.get(sig.len() / 2..) {
            return g;
        }
    }
}

/// A harmless event that says it is a probe. `altered` changes one field, for the signature of
/// another body.
pub fn probe_body(msg_id: &str, probe_id: &str, kind: CaseKind, ts: i64, altered: bool) -> Vec<u8> {
    let v = serde_json::json!({
        "id": msg_id,
        "type": "hookwarden.probe",
        "timestamp": crate::times::rfc3339(ts.saturating_mul(1000)),
        "data": {
            "probe_id": probe_id,
            "case": kind.as_str(),
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
    use http::{HeaderMap, HeaderName, HeaderValue};

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

    fn headers(p: &Planned) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in &p.signature {
            m.insert(
                HeaderName::from_static(n),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_C2FtcGxlLXNlY3JldC1mb3ItdGVzdGluZw==";

    /// Each planned request verifies with the endpoint's secret exactly when it should, with
    /// Hookwarden's own verifier for every scheme.
    #[test]
    fn only_the_valid_requests_verify() {
        let active = vec![SECRET.to_owned()];
        let keys = Keys {
            active: &active,
            retired: Some(OLD),
        };
        let now = 1_800_000_000;
        let (planned, na) = plan("prb_x", &Scheme::ALL, &keys, true, now, &mut Counter(1)).unwrap();
        let kinds: Vec<_> = planned.iter().map(|p| p.kind).collect();
        assert_eq!(kinds[0], CaseKind::Valid);
        assert_eq!(kinds[1], CaseKind::NoSignature);
        assert_eq!(*kinds.last().unwrap(), CaseKind::NoClientCertificate);
        assert!(
            planned.len() <= super::super::MAX_REQUESTS,
            "{}",
            planned.len()
        );
        // other_body for date-sha1, timestamps for the two body-only schemes.
        assert_eq!(na.len(), 5, "{na:?}");
        for p in &planned {
            let hm = headers(p);
            for scheme in Scheme::ALL {
                let carries = p.scheme.is_none_or(|s| s == scheme);
                let ok = hookwarden_signatures::verify(scheme, &[SECRET], &hm, &p.body, now, 300)
                    .is_ok();
                let should = carries
                    && matches!(
                        p.kind,
                        CaseKind::Valid | CaseKind::Replay | CaseKind::NoClientCertificate
                    );
                assert_eq!(
                    ok, should,
                    "{:?} {:?} verified with {scheme}",
                    p.kind, p.scheme
                );
                if p.kind == CaseKind::RetiredSecret && p.scheme == Some(scheme) {
                    // …but it does with the retired secret.
                    hookwarden_signatures::verify(scheme, &[OLD], &hm, &p.body, now, 300).unwrap();
                }
                if matches!(p.kind, CaseKind::StaleTimestamp | CaseKind::FutureTimestamp)
                    && p.scheme == Some(scheme)
                {
                    // Authentic, only out of tolerance.
                    hookwarden_signatures::verify(scheme, &[SECRET], &hm, &p.body, now, 700)
                        .unwrap();
                }
            }
        }
        // Unique message ids, except the replay which is the valid request byte for byte.
        let replay = planned.iter().find(|p| p.kind == CaseKind::Replay).unwrap();
        assert_eq!(replay.msg_id, planned[0].msg_id);
        assert_eq!(replay.body, planned[0].body);
        assert_eq!(replay.signature, planned[0].signature);
        let mut ids: Vec<_> = planned.iter().map(|p| &p.msg_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), planned.len() - 1);
    }

    #[test]
    fn malformed_signatures_have_the_shapes_they_claim() {
        let active = vec![SECRET.to_owned()];
        let keys = Keys {
            active: &active,
            retired: None,
        };
        let now = 1_800_000_000;
        let (planned, na) = plan(
            "prb_x",
            &[Scheme::StandardWebhooks, Scheme::GithubSha256],
            &keys,
            false,
            now,
            &mut Counter(9),
        )
        .unwrap();
        let valid = &planned[0];
        let sig_of = |p: &Planned, s: Scheme| {
            p.signature
                .iter()
                .find(|(n, _)| *n == signature_header(s))
                .map(|(_, v)| v.clone())
        };
        for scheme in [Scheme::StandardWebhooks, Scheme::GithubSha256] {
            let by = |k: CaseKind| {
                planned
                    .iter()
                    .find(|p| p.kind == k && p.scheme == Some(scheme))
                    .unwrap()
            };
            // The valid signature of the same message, to compare with.
            let msg_valid = {
                let p = by(CaseKind::TruncatedSignature);
                let signed = sign(
                    scheme,
                    &[SECRET],
                    &Outbound {
                        msg_id: &p.msg_id,
                        timestamp: now,
                        body: &p.body,
                    },
                )
                .unwrap();
                signed
                    .into_iter()
                    .find(|(n, _)| *n == signature_header(scheme))
                    .unwrap()
                    .1
            };
            let trunc = sig_of(by(CaseKind::TruncatedSignature), scheme).unwrap();
            assert!(msg_valid.starts_with(&trunc) && trunc.len() < msg_valid.len());
            let hg = sig_of(by(CaseKind::HalfGarbageSignature), scheme).unwrap();
            assert_eq!(hg.len(), msg_valid.len());
            let half_prefix = &trunc;
            let p2 = by(CaseKind::HalfGarbageSignature);
            let signed2 = sign(
                scheme,
                &[SECRET],
                &Outbound {
                    msg_id: &p2.msg_id,
                    timestamp: now,
                    body: &p2.body,
                },
            )
            .unwrap();
            let valid2 = signed2
                .into_iter()
                .find(|(n, _)| *n == signature_header(scheme))
                .unwrap()
                .1;
            assert_ne!(hg, valid2);
            assert_eq!(&hg[..half_prefix.len()], &valid2[..half_prefix.len()]);
            let garbage = sig_of(by(CaseKind::GarbageSignature), scheme).unwrap();
            assert_eq!(garbage.len(), msg_valid.len());
            assert_eq!(
                sig_of(by(CaseKind::EmptySignatureList), scheme).unwrap(),
                ""
            );
            let empty = sig_of(by(CaseKind::EmptySignature), scheme).unwrap();
            assert!(empty == "v1," || empty == "sha256=", "{empty}");
            // Per-scheme requests carry that scheme's headers only.
            for p in planned.iter().filter(|p| p.scheme == Some(scheme)) {
                for other in [Scheme::StandardWebhooks, Scheme::GithubSha256] {
                    if other != scheme {
                        assert!(sig_of(p, other).is_none());
                    }
                }
            }
        }
        assert!(sig_of(valid, Scheme::StandardWebhooks).is_some());
        assert!(sig_of(valid, Scheme::GithubSha256).is_some());
        assert!(na.iter().any(|n| n.case == CaseKind::RetiredSecret));
        assert!(na.iter().any(|n| n.case == CaseKind::NoClientCertificate));
        // The body says what it is.
        let v: serde_json::Value = serde_json::from_slice(&valid.body).unwrap();
        assert_eq!(v["type"], "hookwarden.probe");
        assert_eq!(v["data"]["probe_id"], "prb_x");
    }
}
