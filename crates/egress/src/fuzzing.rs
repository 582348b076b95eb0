//! Entry points for the fuzz targets (`fuzz/`) and their stable replay test
//! (`tests/fuzz_corpus.rs`): the parsers that read attacker-controlled bytes, callable without a
//! socket or a hyper body. Hidden from the documentation and not part of the supported API.

use std::io;

use http::{HeaderValue, Method, Uri};

pub use crate::proxy::normalize_host;
pub use crate::proxy::policy::{Decision, HostRefusal, Policy};

/// The proxy's reading of a request target: `(host, port)`, or the refusal code.
pub fn target_of(method: &Method, uri: &Uri) -> Result<(String, u16), &'static str> {
    crate::proxy::server::target_of(method, uri)
        .map(|t| (t.host, t.port))
        .map_err(|r| r.code)
}

/// `Proxy-Authorization: Basic …` → `(user, password)`.
pub fn parse_proxy_authorization(value: &HeaderValue) -> Option<(String, String)> {
    crate::proxy::auth::parse_basic(value)
}

/// A `CONNECT` reply head (without the final blank line) → `(status, headers)`, header names
/// lowercased.
pub fn parse_connect_reply(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    crate::client::proxy::Reply::parse(head).map(|r| (r.status, r.headers))
}

/// The value the client takes for header `name` (lowercase) of a `CONNECT` reply head.
pub fn connect_reply_header(head: &[u8], name: &str) -> Option<String> {
    crate::client::proxy::Reply::parse(head)?
        .header(name)
        .map(str::to_owned)
}

/// Read a `CONNECT` reply head from `reader` the way the client does.
pub async fn read_connect_reply_head<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> io::Result<Vec<u8>> {
    crate::client::proxy::read_head(reader).await
}
