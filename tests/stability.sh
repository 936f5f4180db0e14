#!/usr/bin/env bash
# Run the README's test command under three loads, ROUNDS times each, and say whether any run failed:
#   idle    nothing else runs
#   pinned  the whole suite pinned to one core (taskset -c 0)
#   busy    beside two processes that keep both cores busy
# A test that passes only on a machine of some speed fails one of these. Not run by the test suite.
#
# Usage: bash tests/stability.sh [ROUNDS] [LOADS...]     e.g. bash tests/stability.sh 3 pinned busy
# Each run's output goes to test-results/stability/LOAD-N.log; the summary to stdout and summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
shift || true
loads=("$@")
[ ${#loads[@]} -gt 0 ] || loads=(idle pinned busy)

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' || exit 1
fi
command -v taskset >/dev/null || { echo "stability: taskset is missing (util-linux)" >&2; exit 1; }

out=test-results/stability
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
failed=0
hogs=()
stop_hogs() { [ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null; hogs=(); }
trap stop_hogs EXIT

for load in "${loads[@]}"; do
  for n in $(seq 1 "$rounds"); do
    log="$out/$load-$n.log"
    prefix=()
    case "$load" in
      idle) ;;
      pinned) prefix=(taskset -c 0) ;;
      busy)
        for _ in 1 2; do python3 -c 'while True: pass' & hogs+=($!); done ;;
      *) echo "stability: unknown load '$load' (idle, pinned or busy)" >&2; exit 2 ;;
    esac
    echo "stability: $load run $n of $rounds ..." >&2
    start=$(date +%s)
    "${prefix[@]}" .venv/bin/python -m pytest -q >"$log" 2>&1
    rc=$?
    stop_hogs
    took=$(( $(date +%s) - start ))
    result=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -n 1)
    line="$load $n: rc $rc in ${took}s: ${result:-no summary line}"
    echo "$line" | tee -a "$summary"
    if [ $rc -ne 0 ]; then
      failed=$((failed + 1))
      grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' | tee -a "$summary"
    fi
  done
done

total=$(( rounds * ${#loads[@]} ))
echo "stability: $failed of $total runs failed" | tee -a "$summary"
[ $failed -eq 0 ]
