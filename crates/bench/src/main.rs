#![forbid(unsafe_code)]
//! `hookwarden-bench <scenario> [options]`: measures a scenario and, in the same run, a baseline,
//! and prints one JSON object per line with their ratio. Figures are ratios first: the machine
//! is noisy, the comparison within one run is not.

mod delivery;
mod egress;
mod harness;
mod ingest;
mod instructions;
mod relay;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hookwarden-bench",
    about = "Hookwarden benchmarks, each against a same-run baseline"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Signed, durable outbound deliveries through `serve` vs a bare HTTP client loop.
    Delivery(delivery::Args),
    /// Signed, allow-listed, durable inbound webhooks through `serve` vs a bare axum handler.
    Ingest(ingest::Args),
    /// Keep-alive HTTP requests through a CONNECT tunnel of `egress-proxy` vs direct (and
    /// through tinyproxy when installed).
    Egress(egress::Args),
    /// The minimal CONNECT relay the `egress` scenario runs as a reference (loopback only).
    #[command(hide = true)]
    BareRelay(relay::Args),
    /// The bare handler the `ingest` scenario runs as a second baseline (loopback only).
    #[command(hide = true)]
    BareIngest(ingest::BareArgs),
    /// The durable floor the `ingest` scenario runs as a reference, in a process of its own
    /// (loopback only; `--instructions`).
    #[command(hide = true)]
    BareDurable(ingest::FloorArgs),
    /// The bare client loop the `delivery` scenario runs as a baseline, in a process of its own
    /// (loopback only; `--instructions`).
    #[command(hide = true)]
    BareClient(delivery::BareClientArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.scenario {
            Scenario::Delivery(args) => delivery::run(args).await,
            Scenario::Ingest(args) => ingest::run(args).await,
            Scenario::Egress(args) => egress::run(args).await,
            Scenario::BareRelay(args) => relay::run(args).await,
            Scenario::BareIngest(args) => ingest::serve_bare(args).await,
            Scenario::BareDurable(args) => ingest::serve_floor(args).await,
            Scenario::BareClient(args) => delivery::serve_bare_client(args).await,
        }
    })
}
