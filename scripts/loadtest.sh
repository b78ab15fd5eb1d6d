#!/usr/bin/env bash
# Load-test an RFC 862 echo server with echoport-load: a standard scenario matrix, written to a
# report folder (summary.md, one JSON per scenario, one SVG plot per scenario).
#
#   scripts/loadtest.sh                          # builds release, starts a local echoport, tests it
#   scripts/loadtest.sh --target 127.0.0.1:7007  # tests a server that is already running
#   scripts/loadtest.sh --duration 10 --out /tmp/report
#
# Exits non-zero when any scenario reported an error or a byte mismatch.
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
target="" duration=5 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=${2:?--target needs HOST:PORT}; shift 2 ;;
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "error: unknown argument '$1'" >&2; usage 2 ;;
  esac
done

cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
load=target/release/echoport-load
out=${out:-target/loadtest/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

server_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap stop_server EXIT
if [ -z "$target" ]; then
  # Our own server on a free port; its startup line says which (a readiness signal, not a sleep).
  ulimit -n "$(ulimit -Hn)"
  target/release/echoport --listen 127.0.0.1:0 --stats-interval 0 2>"$out/server.log" &
  server_pid=$!
  for _ in $(seq 100); do
    target=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$out/server.log" | head -n1)
    [ -n "$target" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$target" ] || { echo "error: echoport did not start (see $out/server.log)" >&2; exit 1; }
fi
echo "# load-testing $target for ${duration}s per scenario; report in $out" >&2

failed=0
run() { # name, then echoport-load arguments
  local name=$1; shift
  echo "## $name" >&2
  if ! "$load" "$@" --target "$target" --quiet --json "$out/$name.json" --plot "$out/$name.svg" >"$out/$name.txt" 2>&1; then
    echo "   FAILED (see $out/$name.txt)" >&2
    failed=1
  fi
}
run echo-64B-50c     echo --conns 50  --size 64    --duration "$duration"
run echo-1KiB-50c    echo --conns 50  --size 1024  --duration "$duration"
run echo-64B-500c    echo --conns 500 --size 64    --duration "$duration"
run echo-open-20k    echo --conns 50  --size 64    --duration "$duration" --rate 20000
run stream-16KiB     stream --conns 4 --size 16384 --duration "$duration"
run connect          connect --conns 4 --duration "$duration"
run idle-2000        idle --conns 2000 --hold 2 ${server_pid:+--server-pid "$server_pid"}

python3 - "$out" "$target" >"$out/summary.md" <<'EOF'
import json, pathlib, sys
out, target = pathlib.Path(sys.argv[1]), sys.argv[2]
print(f"# echoport-load report\n\ntarget `{target}`\n")
print("| scenario | conns | size | per second | MB/s out | p50 us | p99 us | p99.9 us | max us | errors | mismatches |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(out.glob("*.json")):
    r = json.loads(f.read_text())
    lat = r.get("latency_us") or {}
    cell = lambda v, fmt="{:.0f}": "" if v is None else fmt.format(v)
    print(f"| {f.stem} | {r.get('conns')} | {r.get('size')} | {cell(r.get('per_sec'))} | {cell(r.get('mbps_out'), '{:.1f}')} "
          f"| {cell(lat.get('p50'))} | {cell(lat.get('p99'))} | {cell(lat.get('p999'))} | {cell(lat.get('max'))} "
          f"| {r.get('errors')} | {r.get('mismatches')} |")
print("\nPlots: " + ", ".join(f"[{p.name}]({p.name})" for p in sorted(out.glob("*.svg"))))
EOF
cat "$out/summary.md"
exit "$failed"
