#!/usr/bin/env bash
# Build the portable binary (every x86 CPU variant of llama.cpp) and run the binary's tests against it.
# Not part of CI: compiling 13 CPU variants takes about half an hour on 2 cores (README, "The single binary").
# Usage: packaging/check_portable.sh   (after python3 scripts/install.py, which the tests need)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 packaging/build_binary.py --portable --dist build/portable/dist
for binary in build/portable/dist/edgellm build/portable/dist/edgellm-dir/edgellm; do
    EDGELLM_BINARY="$binary" .venv/bin/python -m pytest tests/integration/test_binary.py -q
done
