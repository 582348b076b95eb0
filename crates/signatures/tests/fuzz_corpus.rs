//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) and every saved regression
//! (`fuzz/regressions/<target>/`) through the same property checks the fuzz targets run, on the
//! stable toolchain, as ordinary tests. See docs/fuzzing.md.

mod fuzz_props;

use std::path::Path;

/// Feed every file of the target's corpus and regressions to `check`; a failure names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = 0usize;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.expect("corpus entry").path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).expect("corpus file");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("fuzz input {} fails its properties", path.display());
            }
            files += 1;
        }
    }
    assert!(files > 0, "no corpus committed for fuzz target {target}");
}

#[test]
fn outbound() {
    replay("outbound", fuzz_props::outbound::check);
}

#[test]
fn inbound() {
    replay("inbound", fuzz_props::inbound::check);
}
