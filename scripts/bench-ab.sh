#!/usr/bin/env bash
# A/B of two echo servers, paired: both run at once (pinned to CPU 0, the client to CPU 1; PIN=0
# leaves all of them to the scheduler, as an unpinned bench.sh run does), and
# short load runs alternate between them (A B, B A, ...), so each pair of runs sees the same
# state of the machine. Prints the medians of the per-pair ratios B/A of round trips/s and of
# server CPU per round trip. On this box the same server moves 20-30 % between runs of a few
# seconds (the host's load comes and goes); a pair's ratio moves a few percent, which is what
# lets a 2-4 % change be seen at all. Run A against itself first: the spread of that A/A run is the
# noise floor of the day (on a noisy day even paired ratios move 10 %). Server CPU is also split
# into user time (the server's own code, where servers differ most) and system time.
#
#   scripts/bench-ab.sh A B             A, B: an echoport binary, or c-epoll / uring / tokio (the peers)
#   A_ARGS="--io epoll" B_ARGS="--io uring" scripts/bench-ab.sh target/release/echoport target/release/echoport
#
# Knobs: PAIRS=10 SECS=3 CONNS=50 SIZE=64 PIN=1; A_ARGS/B_ARGS (echoport flags, default --io uring).
# The peers and their client are built into /tmp/echoport-peers as ../shared/peers/bench.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { sed -n '2,16p' "$0"; exit 2; }
PAIRS=${PAIRS:-10} SECS=${SECS:-3} CONNS=${CONNS:-50} SIZE=${SIZE:-64}
PEERS=${PEERS:-../shared/peers}
BUILD=${PEERS_TARGET:-/tmp/echoport-peers}
if [ ! -x "$BUILD/release/echo-load" ] || [ ! -x "$BUILD/c-epoll-echo" ]; then
  cargo build -q --release --manifest-path "$PEERS/Cargo.toml" --target-dir "$BUILD"
  gcc -O2 -pthread -o "$BUILD/c-epoll-echo" "$PEERS/c-epoll-echo/echo.c"
fi
ulimit -n "$(ulimit -Hn)"
export ECHO_NODELAY=1 # the peers set TCP_NODELAY on accepted sockets, as echoport does
last=$(( $(nproc) - 1 ))
SRV=(taskset -c 0) CLI=(taskset -c "1-$last")
[ "${PIN:-1}" = 0 ] && SRV=() CLI=()
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap stop_all EXIT
start() { # server, port, echoport flags
  # `exec`, so that $! is the server itself (its CPU time is measured, and it is what gets stopped).
  # shellcheck disable=SC2086 # the flags are a list
  case $1 in
    c-epoll) exec "${SRV[@]}" "$BUILD/c-epoll-echo" "$2" ;;
    uring) exec "${SRV[@]}" "$BUILD/release/uring-echo" "$2" ;;
    tokio) exec "${SRV[@]}" "$BUILD/release/tokio-echo" "127.0.0.1:$2" ;;
    *) exec "${SRV[@]}" "$1" --listen "127.0.0.1:$2" --stats-interval 0 $3 ;;
  esac >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0; sleep 0.1; done
  echo "server $1 did not come up on port $2" >&2; exit 1
}
start "$1" 7210 "${A_ARGS:---io uring}"; pa=${PIDS[-1]}
start "$2" 7211 "${B_ARGS:---io uring}"; pb=${PIDS[-1]}
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user, system
run() { # pid, port -> "round-trips/s server-user-ticks server-system-ticks"
  local u0 s0 u1 s1 out rps
  read -r u0 s0 < <(ticks "$1")
  out=$("${CLI[@]}" "$BUILD/release/echo-load" -a "127.0.0.1:$2" -c "$CONNS" -l "$SIZE" -d "$SECS" -w 0.5 | grep '^RESULT')
  rps=${out##* rps=}
  read -r u1 s1 < <(ticks "$1")
  echo "${rps%% *} $((u1 - u0)) $((s1 - s0))"
}
for i in $(seq "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then a=$(run "$pa" 7210); b=$(run "$pb" 7211); else b=$(run "$pb" 7211); a=$(run "$pa" 7210); fi
  echo "$a $b"
done | python3 -c '
import statistics as st, sys
rows = [list(map(float, l.split())) for l in sys.stdin if len(l.split()) == 6]
rt = [b / a for a, _, _, b, _, _ in rows]
# The same load runs for the same time against each, so ticks / round trips compare directly.
# User time is the server code itself; system time is mostly the TCP work both sides share.
def ratio(ta, tb):
    return [(tb(r) / r[3]) / (ta(r) / r[0]) for r in rows if r[0] and r[3] and ta(r)]
cpu = ratio(lambda r: r[1] + r[2], lambda r: r[4] + r[5])
user = ratio(lambda r: r[1], lambda r: r[4])
system = ratio(lambda r: r[2], lambda r: r[5])
print("pairs: %d; A round trips/s: %s" % (len(rows), " ".join("%.0f" % r[0] for r in rows)))
for name, v in [("round trips/s", rt), ("server CPU per rt", cpu), ("  user CPU per rt", user), ("  system CPU per rt", system)]:
    if v:
        print("B/A %-23s median %.3f (%.3f-%.3f)" % (name + ":", st.median(v), min(v), max(v)))
'
