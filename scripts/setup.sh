#!/usr/bin/env bash
# Prepare a Debian or Ubuntu machine: system libraries for Qt, OpenGL (Mesa)
# and Xvfb, then a virtual environment in .venv with the plugin installed.
# Usage: scripts/setup.sh [EXTRA]   (EXTRA is a pip extra, "all" by default)
set -euo pipefail

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-all}"

system_packages=(
    xvfb xauth
    libgl1 libegl1 libgl1-mesa-dri libglx-mesa0
    libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
    libxcb-xinerama0 libxcb-xfixes0 libxcb-xkb1
    libdbus-1-3 libfontconfig1 libxrender1 libxi6
)

missing_packages=()
for package in "${system_packages[@]}"; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        missing_packages+=("$package")
    fi
done
# Ubuntu 24.04 renamed libglib2.0-0 to libglib2.0-0t64; either one will do.
if ! dpkg -s libglib2.0-0 >/dev/null 2>&1 && ! dpkg -s libglib2.0-0t64 >/dev/null 2>&1; then
    missing_packages+=("libglib2.0-0")
fi
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    missing_packages+=("python3-venv")
fi

if ((${#missing_packages[@]})); then
    echo "Installing system packages: ${missing_packages[*]}"
    sudo_command=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo_command=(sudo)
    fi
    "${sudo_command[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_command[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing_packages[@]}"
fi

if [[ ! -x "$repository_root/.venv/bin/python" ]]; then
    python3 -m venv "$repository_root/.venv"
fi
"$repository_root/.venv/bin/python" -m pip install --quiet --upgrade pip
"$repository_root/.venv/bin/python" -m pip install --quiet --editable "$repository_root[$extra]"
