#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../../../fuzz-support/input.rs"]
mod input;
#[path = "../../tests/fuzz_props/payload_filter.rs"]
mod props;

fuzz_target!(|data: &[u8]| props::check(data));
