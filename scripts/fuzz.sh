#!/usr/bin/env bash
# Run the fuzz targets (cargo-fuzz, nightly), each for a bounded time and number of executions,
# print per target the executions, coverage (cov/ft) and any crash, and merge new interesting
# inputs into the committed corpus (crates/<crate>/fuzz/corpus/<target>/, only inputs that add
# coverage). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [-t SECONDS] [-r RUNS] [-n] [-c] [TARGET ...]
#
#   -t SECONDS  time per target (default 60)
#   -r RUNS     most executions per target (default 10000000)
#   -n          do not merge new inputs into the committed corpus
#   -c          afterwards, minimise the committed corpus (keep the fewest inputs that reach
#               every edge; `-t 0 -c` only minimises)
#   TARGET      a target name (`cidr`) or crate/target (`netguard/cidr`); default: every target
#
# Exit status: 0 when every target ran clean, 1 when any crashed or failed a property, 2 when
# the tools are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECONDS_PER_TARGET=60
RUNS=10000000
MERGE=1
MINIMIZE=0
while getopts "t:r:nch" opt; do
  case "$opt" in
    t) SECONDS_PER_TARGET=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    n) MERGE=0 ;;
    c) MINIMIZE=1 ;;
    h) sed -n '2,18p' "$0"; exit 0 ;;
    *) sed -n '2,18p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -eq 1 && $1 =~ ^[0-9]+$ ]]; then
  # `scripts/fuzz.sh 600` is the same as `-t 600`.
  SECONDS_PER_TARGET=$1
  shift
fi

die() { echo "fuzz.sh: $*" >&2; exit 2; }
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
cargo +nightly --version >/dev/null 2>&1 \
  || die "the nightly toolchain is missing: rustup toolchain install nightly"
cargo +nightly fuzz --version >/dev/null 2>&1 \
  || die "cargo-fuzz is missing: cargo install cargo-fuzz"

CRATES=(netguard signatures egress store)
# One target dir for every fuzz crate, so shared dependencies build once.
export CARGO_TARGET_DIR="$ROOT/target/fuzz"

# Longest input per target (libFuzzer -max_len); the rest use the default.
max_len_for() {
  case "$1" in
    proxy_config) echo 16384 ;;
    url_policy | connect_reply | proxy_request) echo 2048 ;;
    classify) echo 64 ;;
    *) echo 4096 ;;
  esac
}

# Every crate/target pair, filtered by the arguments.
selected=()
for crate in "${CRATES[@]}"; do
  dir="crates/$crate/fuzz"
  [[ -f $dir/Cargo.toml ]] || continue
  while read -r target; do
    [[ -n $target ]] || continue
    if [[ $# -eq 0 ]]; then
      selected+=("$crate/$target")
    else
      for want in "$@"; do
        if [[ $want == "$target" || $want == "$crate/$target" ]]; then
          selected+=("$crate/$target")
        fi
      done
    fi
  done < <(cd "$dir" && cargo +nightly fuzz list)
done
[[ ${#selected[@]} -gt 0 ]] || die "no fuzz target matches: $*"

failed=0
summary=()
for pair in "${selected[@]}"; do
  crate=${pair%%/*}
  target=${pair#*/}
  dir="$ROOT/crates/$crate/fuzz"
  corpus="$dir/corpus/$target"
  mkdir -p "$corpus" "$dir/artifacts/$target"
  fresh=$(mktemp -d)
  log=$(mktemp)
  max_len=$(max_len_for "$target")
  echo "== $pair: up to ${SECONDS_PER_TARGET}s / $RUNS runs, max_len $max_len"
  status=0
  if [[ $SECONDS_PER_TARGET -gt 0 ]]; then
    (cd "$dir" && cargo +nightly fuzz run -O "$target" "$fresh" "$corpus" -- \
      -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -rss_limit_mb=2048 \
      -max_len="$max_len" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$dir/artifacts/$target/") >"$log" 2>&1 || status=$?
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  covline=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$covline" | grep -o '[0-9]*$' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$covline" | grep -o '[0-9]*$' || true)
  if [[ $status -ne 0 ]]; then
    failed=1
    echo "!! $pair FAILED (exit $status)"
    grep -E "panicked at|^thread '|Test unit written to|ERROR: libFuzzer|SUMMARY" "$log" | head -20
    echo "   full log: $log"
    echo "   reproduce: (cd crates/$crate/fuzz && cargo +nightly fuzz run -O $target <artifact>)"
    summary+=("$pair: CRASH execs=${execs:-?} cov=${cov:-?} ft=${ft:-?}")
  else
    new=$(find "$fresh" -type f | wc -l)
    merged=0
    if [[ $MERGE -eq 1 && $new -gt 0 ]]; then
      before=$(find "$corpus" -type f | wc -l)
      (cd "$dir" && cargo +nightly fuzz run -O "$target" "$corpus" "$fresh" -- \
        -merge=1 -rss_limit_mb=2048 -max_len="$max_len" -timeout=10) >"$log.merge" 2>&1 \
        || { failed=1; echo "!! $pair: merge failed, see $log.merge"; }
      merged=$(($(find "$corpus" -type f | wc -l) - before))
    fi
    if [[ $MINIMIZE -eq 1 ]]; then
      # Edge coverage only (no hit counters), so the kept set stays small.
      small=$(mktemp -d)
      (cd "$dir" && cargo +nightly fuzz run -O "$target" "$small" "$corpus" -- \
        -merge=1 -use_counters=0 -rss_limit_mb=2048 -max_len="$max_len" -timeout=10) \
        >"$log.min" 2>&1 || { failed=1; echo "!! $pair: minimisation failed, see $log.min"; }
      if [[ $(find "$small" -type f | wc -l) -gt 0 ]]; then
        find "$corpus" -type f -delete
        cp "$small"/* "$corpus"/
      fi
      rm -rf "$small" "$log.min"
    fi
    files=$(find "$corpus" -type f | wc -l)
    echo "   execs=${execs:-?} exec/s=${secs:-?} cov=${cov:-?} ft=${ft:-?} new=$new merged=$merged corpus=$files"
    summary+=("$pair: ok execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=$files")
    rm -f "$log" "$log.merge"
  fi
  rm -rf "$fresh"
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
