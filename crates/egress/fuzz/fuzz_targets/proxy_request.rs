#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../../../fuzz-support/input.rs"]
mod input;
#[path = "../../tests/fuzz_props/proxy_request.rs"]
mod props;

fuzz_target!(|data: &[u8]| props::check(data));
