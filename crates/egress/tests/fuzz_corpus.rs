//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) and every saved regression
//! (`fuzz/regressions/<target>/`) through the same property checks the fuzz targets run, on the
//! stable toolchain, as ordinary tests. See docs/fuzzing.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

mod fuzz_props;

#[path = "../../../fuzz-support/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn proxy_request() {
    replay("proxy_request", fuzz_props::proxy_request::check);
}

#[test]
fn connect_reply() {
    replay("connect_reply", fuzz_props::connect_reply::check);
}

#[test]
fn proxy_config() {
    replay("proxy_config", fuzz_props::proxy_config::check);
}
