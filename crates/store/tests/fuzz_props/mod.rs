//! The properties the fuzz targets in `fuzz/` check, shared with the stable replay test
//! (`tests/fuzz_corpus.rs`). Each fuzz target includes its module with `#[path]`.

#[path = "../../../../fuzz-support/input.rs"]
pub(crate) mod input;
pub(crate) mod payload_filter;
