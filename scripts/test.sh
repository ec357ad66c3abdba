#!/usr/bin/env bash
# Set up everything the tests need, then run the whole test suite.
# GUI tests open real napari viewers on a virtual screen that pytest-xvfb starts.
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repository_root/scripts/setup.sh" testing

cd "$repository_root"
exec .venv/bin/python -m pytest "$@"
