//! Replays a fuzz target's committed corpus (`fuzz/corpus/<target>/`) and saved regressions
//! (`fuzz/regressions/<target>/`) of the crate that includes this file (its `tests/fuzz_corpus.rs`)
//! through the target's property check, on the stable toolchain. See docs/fuzzing.md.

use std::path::Path;

/// Feed every file of the target's corpus and regressions to `check`; a failure names the file.
pub(crate) fn replay(target: &str, check: fn(&[u8])) {
    // The including crate's manifest directory: each crate replays its own corpora.
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
