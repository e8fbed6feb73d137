#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine. Installs what the tests need first:
# busybox-static, openssh-server/-client, python3-venv and hcloud-cli (apt), the test image
# conductor-test-mc:latest (docker import), one sshd per simulated node on 127.0.0.2-6,
# Hetzner's official Python client in a venv (for the emulator fidelity test), and promtool
# (taken from Debian's prometheus package without installing the service) for the metrics lint.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
bash scripts/prepare-live-tests.sh
venv="${CONDUCTOR_TEST_DIR:-/tmp/conductor-live-test}/venv"
if ! "$venv/bin/python" -c "import hcloud" 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q hcloud
fi
export HCLOUD_PYTHON="$venv/bin/python"
if ! command -v promtool >/dev/null; then
  deb=$(mktemp -d)
  (cd "$deb" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; }) \
    || { echo "test.sh: cannot download Debian's prometheus package (for promtool)" >&2; exit 1; }
  dpkg-deb -x "$deb"/prometheus_*.deb "$deb/root"
  install -m 755 "$deb/root/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$deb"
fi
export CONDUCTOR_REQUIRE_PROMTOOL=1
cargo fmt --all -- --check
# --all-targets builds (and briefly runs) the benchmarks too, so they keep compiling without
# a second, release build of the workspace.
cargo test --workspace --all-targets --locked
