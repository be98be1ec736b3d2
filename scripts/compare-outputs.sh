#!/usr/bin/env bash
# Byte-for-byte comparison of the batch commands' outputs between two
# revisions: check, report, hist, export, dump and whatif over every bundled
# trace (rl-user/tests/data) and over simulated traces (made once, by the
# base revision, so both sides read the same files).
#
#   scripts/compare-outputs.sh [BASE_REV] [NEW_REV]   (defaults: main~ and the work tree)
#
# Prints the differing files and exits 1 when any output differs.
set -euo pipefail
top=$(git rev-parse --show-toplevel)
base=${1:-HEAD}
new=${2:-}
work=$(mktemp -d /tmp/rltop-compare.XXXXXX)
trap 'git -C "$top" worktree remove --force "$work/base-src" >/dev/null 2>&1 || true; git -C "$top" worktree remove --force "$work/new-src" >/dev/null 2>&1 || true' EXIT

build() { # REV DIR -> path of rltop
  local rev=$1 dir=$2
  if [ -z "$rev" ]; then
    (cd "$top" && AYA_BUILD_SKIP=1 cargo build -q --release -p rl-user --bin rltop)
    echo "$top/target/release/rltop"
  else
    git -C "$top" worktree add -q --detach "$dir" "$rev"
    (cd "$dir" && AYA_BUILD_SKIP=1 CARGO_TARGET_DIR="$top/target/compare" cargo build -q --release -p rl-user --bin rltop)
    cp "$top/target/compare/release/rltop" "$dir.rltop"
    echo "$dir.rltop"
  fi
}

b=$(build "$base" "$work/base-src")
n=$(build "$new" "$work/new-src")

mkdir -p "$work/traces"
find "$top/rl-user/tests/data" -name '*.jsonl' | sort | while read -r f; do
  rel=${f#"$top/rl-user/tests/data/"}
  "$b" import "$f" -o "$work/traces/${rel//\//_}.rlt" 2>/dev/null || true
done
for s in mixed inversion overlap unlocked-page unlock-unheld unfair lost-wakeup deadlock leak; do
  "$b" simulate --scenario "$s" --seed 7 --events 20000 -o "$work/traces/sim-$s.rlt" >/dev/null
done

run_all() { # BIN OUTDIR
  local bin=$1 out=$2
  mkdir -p "$out"
  for t in "$work"/traces/*.rlt; do
    local name; name=$(basename "$t" .rlt)
    local o="$out/$name"
    {
      "$bin" check "$t"; echo "exit $?"
      "$bin" check --format json "$t"; echo "exit $?"
      "$bin" check --by-test "$t"; echo "exit $?"
      "$bin" check --format junit "$t"; echo "exit $?"
    } >"$o.check" 2>&1 || true
    {
      "$bin" report "$t"; echo "exit $?"
      "$bin" report --format json "$t"; echo "exit $?"
      "$bin" report --by-test "$t"; echo "exit $?"
    } >"$o.report" 2>&1 || true
    {
      for m in wait hold; do for by in op tree task test; do for f in text json csv prom hdr; do
        "$bin" hist "$t" --metric $m --by $by --format $f; echo "exit $?"
      done; done; done
    } >"$o.hist" 2>&1 || true
    ( "$bin" --force export "$t" --perfetto "$o.pftrace" --chrome "$o.chrome.json"; echo "exit $?" ) >"$o.export" 2>&1 || true
    {
      for f in jsonl text count; do "$bin" dump --format $f "$t"; echo "exit $?"; done
    } >"$o.dump" 2>&1 || true
    {
      "$bin" whatif "$t"; echo "exit $?"
      "$bin" whatif --format json "$t"; echo "exit $?"
    } >"$o.whatif" 2>&1 || true
  done
}

run_all "$b" "$work/out-base"
run_all "$n" "$work/out-new"
# Paths of the temporary traces appear in some outputs; they are the same on both sides.
if diff -rq "$work/out-base" "$work/out-new"; then
  echo "identical: $(ls "$work/out-base" | wc -l) outputs over $(ls "$work/traces" | wc -l) traces"
else
  echo "outputs differ (kept in $work)"; trap - EXIT; exit 1
fi
