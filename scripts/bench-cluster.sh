#!/usr/bin/env bash
# Chat across a network of echoport instances (--cluster over Redis) next to one instance alone:
# the same load (echoport-load chat: N clients in one channel, K senders; on the network the
# clients are spread round-robin over the instances, so with 3 of them two thirds of every
# message's deliveries are made by another instance than its sender's, after the trip through Redis),
# interleaved repetitions, medians, and the ratio network/single. Its own redis-server on a
# loopback port (no persistence); every process it starts is stopped by PID at the end.
#
#   scripts/bench-cluster.sh
#   CLIENTS=1000 SENDERS=10 DURATION=10 REPS=3 RATE=0 NODES=3 scripts/bench-cluster.sh
#   ECHOPORT_ARGS="--io epoll" scripts/bench-cluster.sh   # flags for every instance
#   SETUPS=single scripts/bench-cluster.sh                # one half only (single or cluster)
#   ECHOPORT=path/to/echoport scripts/bench-cluster.sh     # another server binary (default: built here)
#   PUBLISH=400000 scripts/bench-cluster.sh               # first, Redis's own pub/sub ceiling (below)
#
# PUBLISH=N measures the network's limit on this machine before the chat runs: redis-benchmark
# PUBLISHes N 150-byte messages (4 connections, 16 pipelined) to a channel of its own on the
# script's Redis, with NODES subscribers reading them as instances would (a Python reader that
# counts; redis-cli is too slow and gets dropped by Redis's output-buffer limit). It reports
# publishes/s and how many messages each subscriber got.
#
# RATE=0 is unlimited (each sender keeps a bounded window in flight); RATE=N is N messages/s in all.
# On one machine the instances and Redis share its cores with each other and with the load tool:
# the network does the single instance's work plus applying every event on every instance plus
# Redis, so this measures the cost of the network, not how it scales (docs/cluster.md).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1000} SENDERS=${SENDERS:-10} DURATION=${DURATION:-10} REPS=${REPS:-3} RATE=${RATE:-0}
NODES=${NODES:-3} PUBLISH=${PUBLISH:-0} SETUPS=${SETUPS:-"single cluster"} ECHOPORT=${ECHOPORT:-target/release/echoport}
OUT=${OUT:-target/bench-cluster/$(date +%Y%m%d-%H%M%S)}
has() { [[ " $SETUPS " == *" $1 "* ]]; }
for s in $SETUPS; do
  [[ $s == single || $s == cluster ]] || { echo "error: SETUPS: '$s' is not single or cluster" >&2; exit 2; }
done
if has cluster || [ "$PUBLISH" -gt 0 ]; then
  command -v redis-server >/dev/null || { echo "error: redis-server is needed (apt-get install redis-server)" >&2; exit 2; }
fi
command -v python3 >/dev/null || { echo "error: python3 is needed for the report" >&2; exit 2; }
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bins

read -ra EXTRA <<< "${ECHOPORT_ARGS:-}"
declare -A PID=() ADDR=()
stop_all() { for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done; }
trap stop_all EXIT

# Wait (bounded) until `log` has a line matching `pattern`; fail if `name`'s process died.
wait_log() { # name log pattern what
  for _ in $(seq 200); do
    grep -q -- "$3" "$2" 2>/dev/null && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "error: $1 did not $4 (see $2)" >&2; return 1
}

# name, then echoport's extra flags. The address is read from the start-up line, up to ` mode=`.
start() {
  local name=$1; shift
  "$ECHOPORT" --mode chat --listen 127.0.0.1:0 --flood-rate 0 --stats-interval 0 \
    "$@" "${EXTRA[@]}" >"$OUT/$name.log" 2>&1 &
  PID[$name]=$!
  wait_log "$name" "$OUT/$name.log" "listening on " "start"
  ADDR[$name]=$(sed -n 's/.*listening on \([^ ]*\) mode=.*/\1/p' "$OUT/$name.log" | head -n 1)
}
if has single; then start single; fi
CLUSTER_PIDS=() TARGETS=()
if has cluster || [ "$PUBLISH" -gt 0 ]; then
  # A free loopback port for Redis (the instances take theirs from the kernel); no persistence.
  REDIS_PORT=${REDIS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
  PID[redis]=$!
  wait_log redis "$OUT/redis.log" "Ready to accept connections" "come up"
fi
if [ "$PUBLISH" -gt 0 ]; then
  cat >"$OUT/subscriber.py" <<'PY'
# Subscribe, read as fast as possible, count the messages (all of one size), print the count.
# Bounded: stops after N messages, or 20 s without data.
import socket, sys
port, chan, size, want = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
frame = len(b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n" % (len(chan), chan, size)) + size + 2
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"SUBSCRIBE %s\r\n" % chan)
got = -len(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(chan), chan))
try:
    while got < want * frame:
        b = s.recv(1 << 20)
        if not b:
            break
        got += len(b)
except socket.timeout:
    pass
print(max(got, 0) // frame)
PY
  subs=()
  for i in $(seq "$NODES"); do
    python3 "$OUT/subscriber.py" "$REDIS_PORT" publish-bench 150 "$PUBLISH" >"$OUT/sub$i.count" &
    subs+=($!)
  done
  # Every subscriber must be in before the first PUBLISH, or it misses the start (bounded wait).
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$REDIS_PORT" pubsub numsub publish-bench | tail -n 1)" = "$NODES" ] && break
    sleep 0.1
  done
  payload=$(head -c 150 /dev/zero | tr '\0' x)
  echo "## Redis PUBLISH, $NODES subscribers" >&2
  redis-benchmark -p "$REDIS_PORT" -c 4 -P 16 -n "$PUBLISH" -q PUBLISH publish-bench "$payload" \
    | tr '\r' '\n' | tail -n 1 | sed "s/$payload/<150 B>/" >"$OUT/publish.txt"
  for p in "${subs[@]}"; do wait "$p"; done
  echo "received by each subscriber: $(cat "$OUT"/sub*.count | tr '\n' ' ')(of $PUBLISH)" >>"$OUT/publish.txt"
fi
if has cluster; then
  CLUSTER=redis://127.0.0.1:$REDIS_PORT/0
  for i in $(seq "$NODES"); do
    start "n$i" --cluster "$CLUSTER" --node-name "n$i" --server-name "n$i.bench"
  done
  for i in $(seq "$NODES"); do wait_log "n$i" "$OUT/n$i.log" "cluster: joined the network" "join the network"; done
  # Instances that join at once may each have seen only some of the others so far; give every
  # one a few seconds to see them all (nodes=N on a cluster line), and say so if it does not
  # (messages go through Redis either way; the run shows what happens).
  for i in $(seq "$NODES"); do
    wait_log "n$i" "$OUT/n$i.log" "cluster: .*nodes=$NODES\b" "see all $NODES nodes" 2>/dev/null \
      || echo "warning: n$i does not see all $NODES nodes (see $OUT/n$i.log)" >&2
  done
  CLUSTER_PIDS=("${PID[redis]}")
  for i in $(seq "$NODES"); do CLUSTER_PIDS+=("${PID[n$i]}"); TARGETS+=(--target "${ADDR[n$i]}"); done
fi

# CPU seconds (user + system) of the given PIDs so far: /proc/PID/stat fields 14 and 15, counted
# after the ")" that ends the command name (which may contain spaces).
cpu() { local p; for p in "$@"; do cat "/proc/$p/stat"; done \
        | awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); t += $12 + $13 } END { printf "%.2f\n", t / hz }'; }

for r in $(seq "$REPS"); do for setup in $SETUPS; do
  echo "## $setup rep $r" >&2
  if [ "$setup" = single ]; then pids=("${PID[single]}"); targets=(--target "${ADDR[single]}")
  else pids=("${CLUSTER_PIDS[@]}"); targets=("${TARGETS[@]}"); fi
  before=$(cpu "${pids[@]}")
  target/release/echoport-load chat "${targets[@]}" --clients "$CLIENTS" --senders "$SENDERS" \
    --duration "$DURATION" --rate "$RATE" --quiet --json "$OUT/$setup-$r.json" >"$OUT/$setup-$r.txt" 2>&1 \
    || echo "   $setup rep $r reported errors (see $OUT/$setup-$r.txt)" >&2
  awk -v a="$before" -v b="$(cpu "${pids[@]}")" 'BEGIN { printf "%.2f\n", b - a }' >"$OUT/$setup-$r.cpu"
done; done
for n in "${!PID[@]}"; do kill -0 "${PID[$n]}" 2>/dev/null || echo "warning: $n died during the runs (see $OUT/$n.log)" >&2; done

# shellcheck disable=SC2086 # one argument per setup
python3 - "$OUT" "$NODES" $SETUPS <<'EOF' | tee "$OUT/report.txt"
import json, pathlib, statistics as st, sys
out, nodes, setups = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
names = {"single": "1 instance", "cluster": f"{nodes} + Redis"}
print("deliveries/s and delivery latency (median of reps; min-max); lost, dup/reord: sums over reps;")
print("server CPU: seconds of user+system time per run (cluster: the instances and Redis), median")
print(f"{'setup':12} {'deliveries/s':>28} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'dup/reord':>10} {'errors':>6} {'CPU s':>6}")
med = {}
for s in setups:
    runs = [json.loads(f.read_text()) for f in sorted(out.glob(f"{s}-*.json"))]
    if not runs:
        print(f"{names[s]:12} no report (see {out}/{s}-*.txt)")
        continue
    rates = sorted(r["per_sec"] for r in runs)
    med[s] = st.median(rates)
    p50 = st.median(r["latency_us"]["p50"] for r in runs) / 1000
    p99 = st.median(r["latency_us"]["p99"] for r in runs) / 1000
    lost = sum(r.get("lost", 0) for r in runs)
    dups = sum(r.get("duplicates", 0) + r.get("reordered", 0) for r in runs)
    errors = sum(r.get("errors", 0) for r in runs)
    cpu = st.median(float(f.read_text()) for f in sorted(out.glob(f"{s}-*.cpu")))
    print(f"{names[s]:12} {med[s]:>12.0f} ({rates[0]:.0f}-{rates[-1]:.0f}) {p50:>8.1f} {p99:>8.1f} "
          f"{lost:>6} {dups:>10} {errors:>6} {cpu:>6.1f}")
if med.get("single") and "cluster" in med:
    # Also per repetition: each pair ran back to back, so drift in the machine's load (other
    # processes) affects both sides of a pair alike.
    pairs = []
    for f in sorted(out.glob("cluster-*.json")):
        single = out / f.name.replace("cluster", "single")
        if single.exists() and json.loads(single.read_text())["per_sec"]:
            pairs.append(json.loads(f.read_text())["per_sec"] / json.loads(single.read_text())["per_sec"])
    each = " ".join(f"{x:.2f}" for x in pairs)
    print(f"ratio cluster/single: {med['cluster'] / med['single']:.2f}x deliveries/s "
          f"(per rep: {each}; median {st.median(pairs):.2f}x)")
EOF
if [ -s "$OUT/publish.txt" ]; then
  { echo "Redis pub/sub alone (PUBLISH=$PUBLISH, $NODES subscribers):"; sed 's/^/  /' "$OUT/publish.txt"; } | tee -a "$OUT/report.txt"
fi
