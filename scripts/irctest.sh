#!/usr/bin/env bash
# The upstream irctest suite against echoport (chat mode) and the chat peers, its RFC 1459 and
# RFC 2812 server tests, with a count of passed, failed and skipped tests per server.
#
#   scripts/irctest.sh
#   SERVERS="echoport" scripts/irctest.sh
#
# irctest is the release on PyPI (0.1.2, 2017: the newer suite is not published there), unpacked
# into target/ and run from a venv under target/ with its two dependencies; the controllers that
# start each server are ours (scripts/irctest/servers.py). The same tests run against every
# server, bugs included: two INVITE tests send their parameters in the wrong order, so no server
# passes them. Ergo is not in Debian (its "ergo" package is a chemistry program), so it is not
# compared. Not part of CI (a comparison with other servers, not a check of ours; 1-3 minutes):
# tests/chat_conformance.rs is the CI suite.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${SERVERS:-"echoport ngircd inspircd"}
OUT=${OUT:-target/irctest/$(date +%Y%m%d-%H%M%S)}
VENV=target/irctest-venv
SRC=target/irctest-0.1.2
URL=https://files.pythonhosted.org/packages/9d/83/d42dc6490c06ca31a20b443633e71833bcc86f909999ef1bd213231f21d1/irctest-0.1.2.tar.gz
SHA256=bc37d4e9e0ad926be039431d029e23b1d93813d75df8ed49be144a639c8dfd37
mkdir -p "$OUT"

need=()
for s in $SERVERS; do
  case $s in ngircd|inspircd) command -v "$s" >/dev/null || need+=("$s") ;; esac
done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing ${need[*]}: apt-get install ${need[*]}" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -d "$SRC" ]; then
  curl -fsSL -o "$SRC.tar.gz" "$URL"
  echo "$SHA256  $SRC.tar.gz" | sha256sum -c --quiet
  tar -xzf "$SRC.tar.gz" -C target
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q psutil==7.2.2 limnoria==2026.10.4
fi
cargo build --release --quiet --bin echoport

printf '%-10s %6s %6s %6s %6s\n' server passed failed errors skipped | tee "$OUT/summary.txt"
for s in $SERVERS; do
  log=$OUT/$s.log
  IRCTEST_SERVER=$s ECHOPORT_BIN=$PWD/target/release/echoport PYTHONPATH=$SRC:scripts/irctest \
    timeout 900 "$VENV/bin/python" -m irctest servers -s RFC1459 -s RFC2812 >"$log" 2>&1 || true
  ran=$(sed -n 's/^Ran \([0-9]*\) test.*/\1/p' "$log")
  [ -n "$ran" ] || { echo "$s: irctest did not finish (log: $log)" >&2; continue; }
  count() { grep -E '^(OK|FAILED) \(' "$log" | grep -oE "$1=[0-9]+" | cut -d= -f2 || true; }
  failed=$(count failures) errors=$(count errors) skipped=$(count skipped)
  failed=${failed:-0} errors=${errors:-0} skipped=${skipped:-0}
  printf '%-10s %6d %6d %6d %6d\n' "$s" $((ran - failed - errors - skipped)) "$failed" "$errors" "$skipped" \
    | tee -a "$OUT/summary.txt"
  grep -E '^(FAIL|ERROR): ' "$log" | sed "s/^/    $s /" | tee -a "$OUT/summary.txt"
done
echo "# logs in $OUT" >&2
