#!/usr/bin/env sh
# Run every benchmark in bench/ one after the other, passing the arguments on:
#   bench/run_all.sh            full runs
#   bench/run_all.sh --quick    smoke runs
# Files starting with "_" are helpers, not benchmarks. PYTHON picks the interpreter.
# features.py installs Feast into bench/.venvs/feast on its first run (GYRE_BENCH_FEAST_PYTHON overrides).
set -u
cd "$(dirname "$0")/.." || exit 2
status=0
for bench in bench/[!_]*.py; do
    echo "== $bench $*" >&2
    "${PYTHON:-python}" "$bench" "$@" || status=1
done
exit "$status"
