//! `--instructions`: instructions per request, counted by valgrind's callgrind, which does not
//! depend on the machine's load the way wall-clock figures do.
//!
//! Each measured process (`serve`, `egress-proxy`, and the baselines, each a process of its own)
//! runs under `valgrind --tool=callgrind`. The bench drives a warm-up, zeroes the counters
//! (`callgrind_control -z`), drives a fixed number of requests one after another (sequential, so
//! that batching cannot make two runs differ), and dumps the counters (`callgrind_control -d`).
//! The figure is the dump's total divided by the requests: every thread of the process, the work
//! of background tasks during the phase included. Valgrind hides SHA-NI and AES-NI from the
//! program, so crypto runs its portable code under it: the crypto share is larger here than on
//! the real CPU, and is not something to optimise for.
//!
//! With `--budgets FILE` (only with `--quick`, the run CI makes) every count that has a budget
//! is compared with it, and the run fails when one exceeds its budget by more than
//! `--tolerance-pct`.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The options every scenario takes for its instruction-count mode.
#[derive(clap::Args, Clone)]
pub(crate) struct Options {
    /// Count instructions per request under valgrind's callgrind (sequential requests after a
    /// warm-up) instead of measuring throughput.
    #[arg(long)]
    pub instructions: bool,
    /// With --instructions --quick: the committed budgets (JSON); the run fails when a count is
    /// more than --tolerance-pct over its budget.
    #[arg(long, requires = "instructions")]
    pub budgets: Option<PathBuf>,
    /// How far over its budget a count may be, in percent.
    #[arg(long, default_value_t = 5.0, requires = "budgets")]
    pub tolerance_pct: f64,
    /// With --instructions: how many functions to show by inclusive cost (callgrind_annotate).
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// The valgrind binary.
    #[arg(long, default_value = "valgrind")]
    pub valgrind: String,
    /// With --instructions: keep each count's callgrind dump in this directory
    /// (`<scenario>-<count>.callgrind.out`, for `callgrind_annotate` or KCachegrind).
    #[arg(long, requires = "instructions")]
    pub keep_dumps: Option<PathBuf>,
}

/// How many requests a count covers.
#[derive(Clone, Copy)]
pub(crate) struct Sizes {
    pub warmup: usize,
    pub measured: usize,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                warmup: 100,
                measured: 400,
            }
        } else {
            Sizes {
                warmup: 300,
                measured: 2_000,
            }
        }
    }
}

/// Runs programs under callgrind, one output directory for the whole run.
pub(crate) struct Callgrind {
    valgrind: String,
    dir: tempfile::TempDir,
    scenario: &'static str,
    keep: Option<PathBuf>,
    top: usize,
}

impl Callgrind {
    pub(crate) fn new(opts: &Options, scenario: &'static str, quick: bool) -> Result<Callgrind> {
        if opts.budgets.is_some() && !quick {
            bail!("budgets are for the --quick runs (the counts CI makes): add --quick");
        }
        for tool in [
            opts.valgrind.as_str(),
            "callgrind_control",
            "callgrind_annotate",
        ] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                bail!("{tool} not found: --instructions needs valgrind (apt-get install valgrind)");
            }
        }
        if let Some(keep) = &opts.keep_dumps {
            std::fs::create_dir_all(keep)
                .with_context(|| format!("creating {}", keep.display()))?;
        }
        Ok(Callgrind {
            valgrind: opts.valgrind.clone(),
            dir: tempfile::tempdir()?,
            scenario,
            keep: opts.keep_dumps.clone(),
            top: opts.top,
        })
    }

    /// `program` under callgrind; the caller adds the program's own arguments.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.valgrind);
        cmd.arg("--tool=callgrind")
            .arg(format!(
                "--callgrind-out-file={}/callgrind.out.%p",
                self.dir.path().display()
            ))
            .arg(format!(
                "--log-file={}/valgrind.%p.log",
                self.dir.path().display()
            ))
            .arg(program);
        cmd
    }

    /// Zeroes the counters of process `pid` (a program started by [`Callgrind::command`]).
    fn zero(&self, pid: u32) -> Result<()> {
        control(pid, "-z")
    }

    /// Dumps the counters of process `pid`: the dump file and its total instruction count.
    fn dump(&self, pid: u32) -> Result<(PathBuf, u64)> {
        let before = self.dumps(pid)?;
        control(pid, "-d")?;
        // The dump is written by the process itself: wait for the new file, bounded.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.dumps(pid)?;
            if let Some(path) = now.into_iter().find(|p| !before.contains(p)) {
                // Complete once its totals line is there.
                if let Some(total) = std::fs::read_to_string(&path).ok().and_then(|t| totals(&t)) {
                    return Ok((path, total));
                }
            }
            if Instant::now() > deadline {
                bail!("callgrind wrote no dump for process {pid}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dumps(&self, pid: u32) -> Result<Vec<PathBuf>> {
        let prefix = format!("callgrind.out.{pid}.");
        Ok(std::fs::read_dir(self.dir.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect())
    }
}

fn control(pid: u32, flag: &str) -> Result<()> {
    let out = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .output()
        .context("running callgrind_control")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("OK") {
        bail!(
            "callgrind_control {flag} {pid} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The total instruction count of a callgrind dump (`totals:`, else `summary:`).
fn totals(dump: &str) -> Option<u64> {
    let line = |key: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

/// The `n` functions with the largest inclusive cost in a dump, as `(share %, name)`.
pub(crate) fn top_functions(dump: &Path, n: usize) -> Vec<(f64, String)> {
    let Ok(out) = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100", "--auto=no"])
        .arg(dump)
        .output()
    else {
        return Vec::new();
    };
    parse_annotate(&String::from_utf8_lossy(&out.stdout), n)
}

/// Frames every thread or task runs under (thread start, the runtime's scheduler, future
/// combinators, the HTTP connection loop): their inclusive cost is everything, so they say
/// nothing about where the work goes.
const PLUMBING: &[&str] = &[
    "tokio::runtime::",
    "std::sys::",
    "std::thread::local::",
    "std::panic",
    "core::ops::function::",
    "core::future::",
    "futures_util::future::",
    "hyper::proto::h1::dispatch::",
    "hyper::server::conn::",
    "hyper_util::server::",
    "tower::util::",
    "axum::serve::",
    "tracing::instrument::",
];

/// Rows of `callgrind_annotate` output (`1,234 (12.5%)  file:function [object]`) as
/// `(share %, function)`: the first `n` distinct functions that are not plumbing.
fn parse_annotate(text: &str, n: usize) -> Vec<(f64, String)> {
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (count, rest) = l.split_once(' ')?;
            if count.is_empty() || !count.chars().all(|c| c.is_ascii_digit() || c == ',') {
                return None;
            }
            let rest = rest.trim_start();
            let (share, name) = rest.strip_prefix('(')?.split_once("%)")?;
            let share: f64 = share.trim().parse().ok()?;
            let name = name.trim();
            // `file:function [object]`: the function is what a reader wants.
            let name = name.split(" [").next().unwrap_or(name);
            let name = match name.split_once(':') {
                Some((file, func)) if file.contains('/') || file.contains('.') || file == "???" => {
                    func
                }
                _ => name,
            };
            let name: String = name.chars().take(140).collect();
            Some((share, name))
        })
        .filter(|(_, name)| {
            !(name == "clone"
                || name == "start_thread"
                || name == "PROGRAM TOTALS"
                || name.starts_with("0x")
                || PLUMBING.iter().any(|p| name.contains(p)))
        })
        .filter(|(_, name)| seen.insert(name.clone()))
        .take(n)
        .collect()
}

/// One process measured: instructions per request (or per `unit`: event, tunnel) over
/// `requests`, and where they went.
pub(crate) struct Count {
    pub name: &'static str,
    pub unit: &'static str,
    pub per_request: u64,
    pub requests: usize,
    pub top: Vec<(f64, String)>,
}

impl Callgrind {
    /// One count of process `pid`: zero, run `phase` (which sends `requests` requests, or events
    /// or tunnels as `unit` says, and waits for their work to be done), dump.
    pub(crate) async fn count<F, Fut>(
        &self,
        pid: u32,
        (name, unit): (&'static str, &'static str),
        requests: usize,
        phase: F,
    ) -> Result<Count>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        self.zero(pid)?;
        phase().await?;
        let (dump, total) = self.dump(pid)?;
        if let Some(keep) = &self.keep {
            let to = keep.join(format!("{}-{name}.callgrind.out", self.scenario));
            std::fs::copy(&dump, &to).with_context(|| format!("keeping {}", to.display()))?;
        }
        Ok(Count {
            name,
            unit,
            per_request: total / requests.max(1) as u64,
            requests,
            top: top_functions(&dump, self.top),
        })
    }
}

/// Count `a` over count `b`, to two decimals.
pub(crate) fn ratio(counts: &[Count], a: usize, b: usize) -> f64 {
    let per = |i: usize| counts.get(i).map_or(0, |c| c.per_request) as f64;
    (per(a) / per(b).max(1.0) * 100.0).round() / 100.0
}

/// Prints the scenario's JSON line (and the top functions, readable, on stderr), then checks the
/// budgets when asked.
pub(crate) fn report(
    scenario: &str,
    quick: bool,
    opts: &Options,
    counts: &[Count],
    extra: Value,
) -> Result<()> {
    let mut out = json!({
        "scenario": scenario,
        "mode": "instructions",
        "quick": quick,
        "note": "callgrind instruction counts per request, all threads, background work \
                 included; valgrind hides SHA-NI/AES-NI, so crypto runs its portable code here",
    });
    for c in counts {
        out[format!("{}_instructions_per_{}", c.name, c.unit)] = json!(c.per_request);
        out[format!("{}_{}s", c.name, c.unit)] = json!(c.requests);
        out[format!("{}_top", c.name)] = json!(
            c.top
                .iter()
                .map(|(share, f)| json!({"inclusive_pct": share, "function": f}))
                .collect::<Vec<_>>()
        );
    }
    if let (Some(obj), Value::Object(more)) = (out.as_object_mut(), extra) {
        obj.extend(more);
    }
    for c in counts {
        eprintln!(
            "\n{scenario} / {}: {} instructions per {}; top functions by inclusive cost:",
            c.name,
            group(c.per_request),
            c.unit
        );
        for (share, f) in &c.top {
            eprintln!("  {share:>6.2} %  {f}");
        }
    }
    println!("{out}");
    let Some(path) = &opts.budgets else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the budgets {}", path.display()))?;
    let budgets: BTreeMap<String, Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    let measured: BTreeMap<&str, u64> = counts.iter().map(|c| (c.name, c.per_request)).collect();
    let over = check_budgets(scenario, &budgets, &measured, opts.tolerance_pct)?;
    if !over.is_empty() {
        bail!("over budget ({}): {}", path.display(), over.join("; "));
    }
    Ok(())
}

/// Compares `measured` with the budgets of `scenario` (`{"<scenario>": {"<name>": N}}`), prints
/// one line per budget, and returns the counts over budget by more than `tolerance_pct`. A
/// scenario without budgets, or a budget without a count, is an error: a renamed count must not
/// silently go unchecked.
fn check_budgets(
    scenario: &str,
    budgets: &BTreeMap<String, Value>,
    measured: &BTreeMap<&str, u64>,
    tolerance_pct: f64,
) -> Result<Vec<String>> {
    let Some(Value::Object(mine)) = budgets.get(scenario) else {
        bail!("the budgets have no entry for {scenario:?}");
    };
    let mut over = Vec::new();
    for (name, budget) in mine {
        let budget = budget
            .as_u64()
            .with_context(|| format!("budget {scenario}.{name} is not a whole number"))?;
        let Some(&count) = measured.get(name.as_str()) else {
            bail!("budget {scenario}.{name} names no count of this scenario");
        };
        let pct = (count as f64 / budget.max(1) as f64 - 1.0) * 100.0;
        let limit = budget as f64 * (100.0 + tolerance_pct) / 100.0;
        let verdict = if count as f64 > limit {
            over.push(format!(
                "{scenario}.{name} {count} is {pct:+.1} % against {budget}"
            ));
            "OVER BUDGET"
        } else if pct < -10.0 {
            "under budget by more than 10 %: lower the budget to keep the gain"
        } else {
            "ok"
        };
        eprintln!(
            "budget {scenario}.{name}: {} against {} ({pct:+.1} %): {verdict}",
            group(count),
            group(budget)
        );
    }
    Ok(over)
}

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_of_a_dump() {
        let dump = "version: 1\nevents: Ir\nsummary: 1200\nfn=main\n1 5\ntotals: 1234\n";
        assert_eq!(totals(dump), Some(1234));
        assert_eq!(totals("events: Ir\nsummary: 99\n"), Some(99));
        assert_eq!(totals("events: Ir\n"), None);
        assert_eq!(totals("totals: x\n"), None);
    }

    #[test]
    fn annotate_rows_are_parsed() {
        let text = "\
--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
2,000,000 (100.0%)  ???:0x0000000000001234 [/usr/lib/ld.so]
1,500,000 (75.00%)  src/main.rs:app::handle [/tmp/app]
  250,000 (12.50%)  ???:sqlite3_step [/tmp/app]
   10,000 ( 0.50%)  /rustc/x/library/core/src/ptr/mod.rs:<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop [/tmp/app]
";
        let rows = parse_annotate(text, 10);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0], (75.0, "app::handle".to_owned()));
        assert_eq!(rows[1], (12.5, "sqlite3_step".to_owned()));
        assert_eq!(rows[2].0, 0.5);
        assert!(rows[2].1.ends_with("Drop>::drop"), "{}", rows[2].1);
        assert_eq!(parse_annotate(text, 1).len(), 1);
        // Plumbing frames and a function listed twice (inlined into two files) are left out.
        let text = "\
9,000 (90.00%)  ./nptl/pthread_create.c:start_thread [/lib/libc.so.6]
8,000 (80.00%)  /x/tokio/src/runtime/task/raw.rs:tokio::runtime::task::raw::poll [/tmp/app]
7,000 (70.00%)  /x/std/thread/lifecycle.rs:core::ops::function::FnOnce::call_once{{vtable.shim}}
3,000 (30.00%)  /x/sha2/src/sha256/x86.rs:sha2::sha256::compress256
2,900 (29.00%)  /x/core/src/sync/atomic.rs:sha2::sha256::compress256 [/tmp/app]
1,000 (10.00%)  /w/crates/server/src/inbound/ingest.rs:hookwarden_server::inbound::ingest::observe
";
        let rows = parse_annotate(text, 10);
        let names: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            names,
            [
                "sha2::sha256::compress256",
                "hookwarden_server::inbound::ingest::observe"
            ]
        );
    }

    #[test]
    fn budgets_pass_fail_and_must_match() {
        let budgets: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"ingest": {"serve": 100000}}"#).unwrap();
        let at = |n: u64| BTreeMap::from([("serve", n), ("bare", 1)]);
        assert!(
            check_budgets("ingest", &budgets, &at(105_000), 5.0)
                .unwrap()
                .is_empty()
        );
        assert!(
            check_budgets("ingest", &budgets, &at(50_000), 5.0)
                .unwrap()
                .is_empty()
        );
        let over = check_budgets("ingest", &budgets, &at(105_001), 5.0).unwrap();
        assert_eq!(over.len(), 1, "{over:?}");
        assert!(over[0].contains("ingest.serve 105001"), "{over:?}");
        // No budget for the scenario, or a budget that names no count: refused, not skipped.
        assert!(check_budgets("egress", &budgets, &at(1), 5.0).is_err());
        let renamed = BTreeMap::from([("server", 1u64)]);
        assert!(check_budgets("ingest", &budgets, &renamed, 5.0).is_err());
        let bad: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"ingest": {"serve": "many"}}"#).unwrap();
        assert!(check_budgets("ingest", &bad, &at(1), 5.0).is_err());
    }

    #[test]
    fn groups_of_three() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
