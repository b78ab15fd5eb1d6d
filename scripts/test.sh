#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, then unit and integration tests
# (which start real echoport processes on 127.0.0.1 ephemeral ports).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
