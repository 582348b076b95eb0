//! The properties the fuzz targets in `fuzz/` check, shared with the stable replay test
//! (`tests/fuzz_corpus.rs`). Each fuzz target includes its module with `#[path]`.

pub mod connect_reply;
#[path = "../../../../fuzz-support/input.rs"]
pub mod input;
pub mod proxy_config;
pub mod proxy_request;
