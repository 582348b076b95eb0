//! Minimal URL and form helpers for Twilio (no dependency, no allocation beyond what
//! the results need, never panics).

/// Most form parameters read from one body.
pub(crate) const MAX_FORM_PARAMS: usize = 4096;

/// The two spellings of `url` Twilio may have signed: without the port and with the
/// (default) port. `None` when `url` is not an absolute http(s) URL.
pub(crate) fn port_variants(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(auth_end)?;
    if authority.is_empty() {
        return None;
    }
    // Host (with optional userinfo) and optional port.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let hostport = authority.get(host_start..)?;
    let port_sep = if hostport.starts_with('[') {
        let close = hostport.find(']')?;
        match hostport.get(close + 1..)? {
            "" => None,
            p if p.starts_with(':') => Some(host_start + close + 1),
            _ => return None,
        }
    } else {
        hostport.rfind(':').map(|i| host_start + i)
    };
    let (without, with) = match port_sep {
        Some(i) => {
            let port = authority.get(i + 1..)?;
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let host = authority.get(..i)?;
            (format!("{scheme}://{host}{tail}"), url.to_owned())
        }
        None => (
            url.to_owned(),
            format!("{scheme}://{authority}:{default_port}{tail}"),
        ),
    };
    Some((without, with))
}

/// The query string of `url` (between `?` and `#`), if any.
pub(crate) fn query(url: &str) -> Option<&str> {
    let q = url.split_once('?')?.1;
    Some(q.split_once('#').map_or(q, |(q, _)| q))
}

/// The first value of `name` in a query string, form-decoded.
pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    query(url)?
        .split('&')
        .take(MAX_FORM_PARAMS)
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k.as_bytes()) == name).then(|| form_decode(v.as_bytes()))
        })
        .next()
}

/// `application/x-www-form-urlencoded` pairs; `None` when there are more than
/// [`MAX_FORM_PARAMS`].
pub(crate) fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        if out.len() >= MAX_FORM_PARAMS {
            return None;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i)?, pair.get(i + 1..)?),
            None => (pair, &b""[..]),
        };
        out.push((form_decode(k), form_decode(v)));
    }
    Some(out)
}

/// Percent-decoding with `+` as space; invalid escapes are kept literally and invalid
/// UTF-8 is replaced (as Python's `parse_qs` does).
pub(crate) fn form_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = s.get(i + 1).and_then(|c| char::from(*c).to_digit(16));
                let lo = s.get(i + 2).and_then(|c| char::from(*c).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants_match_twilio_libraries() {
        let v = |u| port_variants(u).unwrap();
        assert_eq!(
            v("https://example.com/sms?x=1"),
            (
                "https://example.com/sms?x=1".to_owned(),
                "https://example.com:443/sms?x=1".to_owned()
            )
        );
        assert_eq!(
            v("https://example.com:8443/sms"),
            (
                "https://example.com/sms".to_owned(),
                "https://example.com:8443/sms".to_owned()
            )
        );
        assert_eq!(
            v("http://u:p@example.com"),
            (
                "http://u:p@example.com".to_owned(),
                "http://u:p@example.com:80".to_owned()
            )
        );
        assert_eq!(
            v("http://[::1]:8080/a"),
            (
                "http://[::1]/a".to_owned(),
                "http://[::1]:8080/a".to_owned()
            )
        );
        for bad in [
            "",
            "example.com/x",
            "ftp://x/",
            "https:///x",
            "https://h:x/",
            "https://[::1/",
        ] {
            assert!(port_variants(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode(b"a+b%20c%2"), "a b c%2");
        assert_eq!(form_decode(b"%E2%9C%93"), "✓");
        assert_eq!(form_decode(b"%ff"), "\u{fffd}");
        assert_eq!(
            form_pairs(b"b=2&a=1&&c&d=").unwrap(),
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
                ("c".into(), "".into()),
                ("d".into(), "".into())
            ]
        );
        let many = "a=1&".repeat(MAX_FORM_PARAMS + 1);
        assert!(form_pairs(many.as_bytes()).is_none());
        assert_eq!(
            query_param("https://x/y?a=1&bodySHA256=ab%63#frag", "bodySHA256").as_deref(),
            Some("abc")
        );
        assert_eq!(query_param("https://x/y", "bodySHA256"), None);
    }
}
