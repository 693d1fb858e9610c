#!/usr/bin/env bash
# CI step for the Nextflow modules under nextflow/: validates meta.yml and environment.yml against
# the nf-core schemas kept in nextflow/schemas/, then runs `nf-core modules lint` (nf-core 4.2.1)
# offline and fails on any warning or failure except the checks that cannot pass on a machine
# without Nextflow (see .ci/nextflow/lint.py). Installs go to .ci-cache/ (created when absent,
# reused when present). Prints a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/../.."
NFCORE_VERSION=4.2.1
VENV=.ci-cache/nf-core-venv
if [ "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('nf-core'))" 2>/dev/null)" != "$NFCORE_VERSION" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "nf-core==$NFCORE_VERSION"
fi
exec "$VENV/bin/python" .ci/nextflow/lint.py "$@"
