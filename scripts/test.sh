#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Nothing outside cargo is needed yet: the core and the simulator are pure Rust, the
# plot font ships in sim/assets. Live-mode tests (Docker, sshd) will add their setup here.
cargo fmt --all -- --check
cargo test --workspace --all-targets --locked
# The benchmarks must keep compiling (they are run by hand, see README.md).
cargo bench --no-run --locked >/dev/null
