//! The metrics recorder folds histogram samples into their buckets on its own, not only when
//! `/metrics` is scraped: a server nobody scrapes must not keep every latency sample it ever
//! recorded. A test binary of its own, so that the resident memory it reads is its own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test reports a failure by panicking, its helpers included"
)]

use metrics::{Key, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Duration;

const CHUNKS: usize = 40;
const PER_CHUNK: usize = 200_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// How much resident memory grows while `recorder` records 8,000,000 latency samples in 40
/// bursts, 20 ms apart (as a busy server would, without a scrape in between).
fn growth(recorder: &impl Recorder) -> u64 {
    let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
    let h =
        recorder.register_histogram(&Key::from_name("hookwarden_inbound_latency_seconds"), &meta);
    let before = resident_bytes();
    let mut peak = before;
    for chunk in 0..CHUNKS {
        for i in 0..PER_CHUNK {
            h.record(((chunk * PER_CHUNK + i) % 1000) as f64 / 100_000.0);
        }
        std::thread::sleep(Duration::from_millis(20));
        peak = peak.max(resident_bytes());
    }
    peak - before
}

#[test]
fn histogram_samples_are_folded_without_a_scrape() {
    // `serve`'s recorder, with the upkeep thread `serve` starts for it (every second there).
    let (recorder, handle) = hookwarden_server::metrics::build().expect("recorder");
    let interval = Duration::from_millis(5);
    hookwarden_egress::proxy::spawn_metrics_upkeep(handle.clone(), interval);
    let started = std::time::Instant::now();
    let with_upkeep = growth(&recorder);
    // Upkeep passes that can have run while the samples were recorded (+1 under way at the end).
    let passes = (started.elapsed().as_millis() / interval.as_millis()) as u64 + 1;

    // The same load on a recorder without the upkeep thread, to show the measurement can see
    // the samples pile up (about 16 bytes each: some 130 MB in all).
    let bare = PrometheusBuilder::new().build_recorder();
    let without = growth(&bare);
    eprintln!("resident growth: {with_upkeep} bytes with upkeep, {without} without");

    assert!(
        without > 40 << 20,
        "the control should have kept the samples: grew {without} bytes"
    );
    assert!(
        with_upkeep < 16 << 20,
        "resident memory grew by {with_upkeep} bytes with the upkeep thread (without: {without})"
    );
    // The samples are in the exposition. Not always every one: a sample recorded into the
    // block a pass has just detached and read is lost (metrics-util's design; a scrape drains
    // the same way) — at most one per pass for this one recording thread. Before the patch in
    // vendor/metrics-util, a pass could lose whole chains of blocks (161,793 samples once in
    // CI); tests/metrics_bucket.rs holds that on its own.
    let text = handle.render();
    let count = text
        .lines()
        .find(|l| l.starts_with("hookwarden_inbound_latency_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count in {text}"));
    let recorded = (CHUNKS * PER_CHUNK) as u64;
    eprintln!("{count} of {recorded} samples in the exposition");
    assert!(
        count <= recorded && recorded - count <= passes,
        "{count} of {recorded} samples in the exposition ({passes} upkeep passes at most)"
    );
}
