#!/usr/bin/env bash
# Set up everything NovelGen needs on a fresh Debian machine with Python 3.11, idempotently:
# Debian packages (as root, through apt-get; with --tests also Chromium and Node.js),
# a virtual environment in .venv, and the project installed in it with its test and dev tools.
# Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "setup: NovelGen needs Python 3.11 or newer as '$PYTHON' (set PYTHON=...)" >&2
    exit 1
fi

apt_install() {
    if [ "$(id -u)" != "0" ]; then
        echo "setup: missing Debian packages: $*; run as root or: sudo apt-get install -y $*" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Debian's python3 ships venv/ensurepip separately.
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-venv" || apt_install python3-venv
fi

# The libraries Qt's xcb platform plugin loads: without them a real window (not offscreen)
# cannot open. The window itself needs only these; the tests also need an X server.
QT_XCB_LIBS=(libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-image0
    libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-xkb1 libegl1
    libgl1 libfontconfig1 libdbus-1-3)

# With --tests: what the extension's tests need, Debian's Chromium (never a browser downloaded
# by a test tool) and Node's built-in test runner; for the window's tests and screenshots an
# X server (Xvfb), a tray host (trayer) and Qt's xcb libraries; for the app bundle's test the
# .desktop file checker (desktop-file-utils). The demo needs none of them.
if [ "${1:-}" = "--tests" ]; then
    need=()
    command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
    command -v trayer >/dev/null 2>&1 || need+=(trayer)
    command -v desktop-file-validate >/dev/null 2>&1 || need+=(desktop-file-utils)
    for lib in "${QT_XCB_LIBS[@]}"; do
        dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "ok installed" || need+=("$lib")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt_install "${need[@]}"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.novelgen-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$want" > "$stamp"
fi
