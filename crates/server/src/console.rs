//! The web console: a few static files (HTML, CSS, JavaScript modules, an icon) compiled into
//! the binary and served at `/console`. No build step and nothing fetched from the network: the
//! pages talk to `/api/v1` with the admin key the operator types in, kept in the tab's
//! `sessionStorage` and sent as `Authorization: Bearer` (no cookie, so the API stays CSRF-safe).
//!
//! Every response carries a strict Content-Security-Policy (no inline script or style, nothing
//! from another origin, no framing). Assets are revalidated on each load (`no-cache` + a
//! content-hash `ETag`), so an upgrade is picked up at once and an unchanged file costs a 304.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy on every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The asset served as `/console/assets/<name>`: the file `console/<name>` beside `src/`.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../console/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("console.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("views.js", JS),
    asset!("icon.svg", SVG),
];

const INDEX: &[u8] = include_bytes!("../console/index.html");

/// Strong ETags of the index and each asset, computed once.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        std::iter::once(INDEX)
            .chain(ASSETS.iter().map(|a| a.body))
            .map(|b| format!("\"{}\"", &hex::encode(Sha256::digest(b))[..32]))
            .collect()
    })
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/assets/{name}", get(asset))
        .route("/console/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(console_headers))
}

/// Security headers of every console response (pages, assets, 304s and 404s alike).
async fn console_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    resp
}

fn serve(req: &HeaderMap, etag: &str, content_type: &'static str, body: &'static [u8]) -> Response {
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
    ];
    let matches = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve(&headers, &etags()[0], "text/html; charset=utf-8", INDEX)
}

async fn asset(headers: HeaderMap, Path(name): Path<String>) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => {
            let a = &ASSETS[i];
            serve(&headers, &etags()[i + 1], a.content_type, a.body)
        }
        None => not_found().await.into_response(),
    }
}

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such console page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_tagged() {
        assert_eq!(etags().len(), ASSETS.len() + 1);
        let mut tags = etags().clone();
        tags.sort();
        tags.dedup();
        assert_eq!(
            tags.len(),
            ASSETS.len() + 1,
            "distinct contents, distinct tags"
        );
        let index = std::str::from_utf8(INDEX).unwrap();
        // Everything the page loads is local and listed.
        assert!(index.contains("/console/assets/app.js"));
        assert!(!index.contains("<script>") && !index.contains("style="));
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let src = std::str::from_utf8(a.body).unwrap();
            // DOM is built with textContent; innerHTML/outerHTML/insertAdjacentHTML/eval
            // are never used.
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "document.write",
                "localStorage",
                "document.cookie",
                "//cdn",
            ] {
                assert!(!src.contains(banned), "{} uses {banned}", a.name);
            }
            // Modules import only their siblings, and fetch only the API.
            for line in src.lines().filter(|l| l.starts_with("import ")) {
                assert!(line.contains("from \"./"), "{}: {line}", a.name);
            }
            assert!(!src.contains("fetch(\"http") && !src.contains("fetch(`http"));
        }
    }
}
