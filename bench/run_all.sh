#!/usr/bin/env sh
# Run every benchmark in bench/ one after the other, passing the arguments on:
#   bench/run_all.sh            full runs
#   bench/run_all.sh --quick    smoke runs
# Files starting with "_" are helpers, not benchmarks. PYTHON picks the interpreter.
# pipelines.py needs Ray for its scaling rows (pip install -e '.[ray]'); without it they are skipped.
# features.py installs Feast into bench/.venvs/feast on its first run (GYRE_BENCH_FEAST_PYTHON overrides).
# monitoring.py installs Evidently into bench/.venvs/evidently on its first run (GYRE_BENCH_EVIDENTLY_PYTHON overrides).
# serving.py needs wrk (Debian package) as its load generator; it starts granian and MLflow servers too.
set -u
cd "$(dirname "$0")/.." || exit 2
status=0
for bench in bench/[!_]*.py; do
    echo "== $bench $*" >&2
    "${PYTHON:-python}" "$bench" "$@" || status=1
done
exit "$status"
