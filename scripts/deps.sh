#!/usr/bin/env bash
# Installs what the compat suite, the real-client tests and the benchmarks need, only when it is
# missing, so a second run is a few checks and no network. Runs as root on a fresh CI machine.
#   - qemu-system-x86_64 (Debian's qemu-system-x86, QEMU 7.2 on Debian 12) and socat, via apt;
#   - the Python package qemu.qmp (QMPClient, the legacy client, qmp-shell), pinned, via pip.
set -euo pipefail

QEMU_QMP_VERSION="0.0.6"
PYTHON="${PYTHON:-python3}"

apt_updated=0
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "deps: $* missing and not root: install it by hand" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    echo "deps: installing qemu-system-x86"
    apt_install qemu-system-x86
fi
if ! command -v socat >/dev/null 2>&1; then
    echo "deps: installing socat"
    apt_install socat
fi

have_qemu_qmp() {
    "$PYTHON" - "$QEMU_QMP_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("qemu.qmp") == sys.argv[1] else 1)
EOF
}
if ! have_qemu_qmp; then
    echo "deps: installing qemu.qmp==$QEMU_QMP_VERSION"
    # --root-user-action: CI runs as root on a throwaway machine (no venv by design).
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        "qemu.qmp==$QEMU_QMP_VERSION"
fi
