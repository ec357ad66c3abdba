#!/usr/bin/env bash
# Set up everything, then open napari on a sample photo with the widget and
# compare k = 10, 8, 6, 4, 2 side by side. With no display, run on a virtual
# screen and save screenshots/compare.png instead of opening a window.
# Usage: scripts/demo.sh [IMAGE.png]
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repository_root/scripts/setup.sh" all

cd "$repository_root"
if [[ -n "${DISPLAY:-}" ]]; then
    exec .venv/bin/python scripts/demo.py "$@"
fi
exec xvfb-run --auto-servernum --server-args="-screen 0 1600x1000x24" \
    .venv/bin/python scripts/demo.py --screenshot screenshots/compare.png "$@"
