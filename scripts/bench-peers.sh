#!/usr/bin/env bash
# echoport against the reference echo servers of ../shared/peers/, side by side in one run,
# interleaved (A B C A B C), with echoport-load as the client for every server. Prints medians,
# min-max and ratios (echoport / peer): echo round trips/s and p99 at 64 B and 1 KiB over 1, 50
# and 500 connections, 16 KiB streaming MB/s, and idle server memory per connection.
#
#   scripts/bench-peers.sh
#   REPS=5 DURATION=10 SERVERS="echoport tokio c-epoll" scripts/bench-peers.sh
#
# Knobs: REPS=3 DURATION=5 SIZES="64 1024" CONNS="1 50 500" STREAM=16384 HOLD=10000 (0 skips)
#        SERVERS="echoport tokio c-epoll uring mio" ECHOPORT_ARGS="" OUT=target/bench-peers/<time>
# Client and server share this machine's cores: only ratios from the same run mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3} DURATION=${DURATION:-5} SIZES=${SIZES:-"64 1024"} CONNS=${CONNS:-"1 50 500"}
STREAM=${STREAM:-16384} HOLD=${HOLD:-10000}
SERVERS=${SERVERS:-"echoport tokio c-epoll uring mio"}
PEERS=${PEERS:-../shared/peers}
BUILD=${PEERS_TARGET:-/tmp/echoport-peers}
OUT=${OUT:-target/bench-peers/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bins
if [ ! -x "$BUILD/release/tokio-echo" ] || [ ! -x "$BUILD/c-epoll-echo" ]; then
  echo "# building the peers into $BUILD" >&2
  cargo build -q --release --manifest-path "$PEERS/Cargo.toml" --target-dir "$BUILD"
  gcc -O2 -pthread -o "$BUILD/c-epoll-echo" "$PEERS/c-epoll-echo/echo.c"
fi
load=target/release/echoport-load

declare -A PORT=([echoport]=7100 [tokio]=7101 [c-epoll]=7102 [uring]=7103 [mio]=7104) PID=()
export ECHO_NODELAY=1 # the peers set TCP_NODELAY on accepted sockets, as echoport does
start() { # name
  local p=${PORT[$1]}
  # `exec`, so that $! is the server itself (its CPU time and memory are measured).
  # shellcheck disable=SC2086 # ECHOPORT_ARGS is a list of flags
  case $1 in
    echoport) exec target/release/echoport --listen "127.0.0.1:$p" --stats-interval 0 ${ECHOPORT_ARGS:-} ;;
    tokio)    exec "$BUILD/release/tokio-echo" "127.0.0.1:$p" ;;
    c-epoll)  exec "$BUILD/c-epoll-echo" "$p" ;;
    uring)    exec "$BUILD/release/uring-echo" "$p" ;;
    mio)      exec "$BUILD/release/mio-echo" "127.0.0.1:$p" ;;
    *) echo "unknown server $1" >&2; exit 1 ;;
  esac >"$OUT/$1.log" 2>&1 &
  PID[$1]=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0; sleep 0.1; done
  echo "server $1 did not come up (see $OUT/$1.log)" >&2; return 1
}
stop_all() { for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done; }
trap stop_all EXIT
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

for n in $SERVERS; do start "$n" || unset "PID[$n]"; done
run() { # name, file stem, echoport-load arguments...
  local n=$1 stem=$2; shift 2
  local t0; t0=$(cpu_ticks "${PID[$n]}")
  "$load" "$@" --target "127.0.0.1:${PORT[$n]}" --quiet --json "$OUT/$stem.json" >"$OUT/$stem.txt" 2>&1 \
    || echo "   $stem reported errors (see $OUT/$stem.txt)" >&2
  echo "$(( $(cpu_ticks "${PID[$n]}") - t0 ))" >"$OUT/$stem.cpu"
}
for r in $(seq "$REPS"); do
  for s in $SIZES; do for c in $CONNS; do for n in $SERVERS; do
    [ -n "${PID[$n]:-}" ] || continue
    echo "## echo ${s}B x $c  $n  rep $r" >&2
    run "$n" "echo-$s-$c-$n-$r" echo --conns "$c" --size "$s" --duration "$DURATION"
  done; done; done
  for n in $SERVERS; do
    [ -n "${PID[$n]:-}" ] || continue
    echo "## stream ${STREAM}B  $n  rep $r" >&2
    run "$n" "stream-$n-$r" stream --conns 4 --size "$STREAM" --duration "$DURATION"
  done
done
if [ "$HOLD" -gt 0 ]; then for n in $SERVERS; do
  [ -n "${PID[$n]:-}" ] || continue
  echo "## idle $HOLD  $n" >&2
  run "$n" "idle-$n" idle --conns "$HOLD" --hold 2 --server-pid "${PID[$n]}"
done; fi

# shellcheck disable=SC2086 # one argument per server
python3 - "$OUT" "$(getconf CLK_TCK)" "$DURATION" $SERVERS <<'EOF' | tee "$OUT/report.md"
import json, pathlib, statistics as st, sys
out, tck, secs, servers = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
def load(glob):
    return [json.loads(p.read_text()) | {"cpu": int(p.with_suffix(".cpu").read_text())} for p in sorted(out.glob(glob))]
def span(v, fmt="{:.0f}"):
    v = sorted(v)
    return fmt.format(st.median(v)) + (f" ({fmt.format(v[0])}-{fmt.format(v[-1])})" if len(v) > 1 else "")
print("| test | server | per second (median, min-max) | p99 us | server CPU us per op | ratio echoport/server |")
print("|---|---|---|---|---|---|")
points = sorted({tuple(p.stem.split("-")[1:3]) for p in out.glob("echo-*.json")}, key=lambda k: (int(k[0]), int(k[1])))
for size, conns in points:
    med = {}
    for s in servers:
        runs = load(f"echo-{size}-{conns}-{s}-*.json")
        if not runs:
            continue
        rate = st.median(r["per_sec"] for r in runs)
        p99 = st.median(r["latency_us"]["p99"] for r in runs)
        cpu = st.median(r["cpu"] / tck / (r["per_sec"] * (r["duration_secs"] + r["warmup_secs"])) * 1e6 for r in runs if r["per_sec"])
        med[s] = rate
        ratio = f"{med['echoport'] / rate:.2f}x" if "echoport" in med and s != "echoport" and rate else ""
        print(f"| echo {size} B x {conns} | {s} | {span([r['per_sec'] for r in runs])} | {p99:.0f} | {cpu:.2f} | {ratio} |")
med = {}
for s in servers:
    runs = load(f"stream-{s}-*.json")
    if runs:
        med[s] = st.median(r["mbps_in"] for r in runs)
        ratio = f"{med['echoport'] / med[s]:.2f}x" if "echoport" in med and s != "echoport" and med[s] else ""
        print(f"| stream 16 KiB x 4 (MB/s echoed) | {s} | {span([r['mbps_in'] for r in runs], '{:.1f}')} | | | {ratio} |")
for s in servers:
    for r in load(f"idle-{s}.json"):
        print(f"| idle RSS per connection at {r.get('held')} conns | {s} | {r.get('rss_per_conn_kib', 0):.2f} KiB | | | |")
EOF
