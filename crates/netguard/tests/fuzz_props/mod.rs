//! The properties the fuzz targets in `fuzz/` check, shared with the stable replay test
//! (`tests/fuzz_corpus.rs`). Each fuzz target includes its module with `#[path]`.

pub mod cidr;
pub mod classify;
pub mod client_ip;
#[path = "../../../../fuzz-support/input.rs"]
pub mod input;
pub mod url_policy;
