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
fn payload_filter() {
    replay("payload_filter", fuzz_props::payload_filter::check);
}
