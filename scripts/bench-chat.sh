#!/usr/bin/env bash
# Chat fan-out side by side: echoport --mode chat against ngIRCd and InspIRCd (Debian packages),
# the same load (echoport-load chat: N clients in one channel, K senders), interleaved repetitions,
# medians and ratios. Peer configs (flood limits relaxed) come from ../shared/peers/chat/.
#
#   scripts/bench-chat.sh
#   CLIENTS=1000 SENDERS=10 DURATION=10 REPS=3 RATE=0 SERVERS="echoport ngircd inspircd" scripts/bench-chat.sh
#   ECHOPORT_ARGS="--io epoll" scripts/bench-chat.sh      # echoport's flags (default: --io auto)
#   CAPS="server-time message-tags" scripts/bench-chat.sh  # echoport's clients negotiate these
#
# CAPS applies to echoport's clients only: the peers' bench configs load no IRCv3 modules, so they
# are measured without tags, the cheaper case for them.
#
# RATE=0 is unlimited (each sender keeps a bounded window in flight); RATE=N is N messages/s in all.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1000} SENDERS=${SENDERS:-10} DURATION=${DURATION:-10} REPS=${REPS:-3} RATE=${RATE:-0}
SERVERS=${SERVERS:-"echoport ngircd inspircd"}
CAPS=${CAPS:-}
PEERS=${PEERS:-../shared/peers/chat}
OUT=${OUT:-target/bench-chat/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bins

read -ra EXTRA <<< "${ECHOPORT_ARGS:-}"
declare -A PORT=([echoport]=16700 [ngircd]=16667 [inspircd]=16668) PID=()
start() { # name
  case $1 in
    echoport) target/release/echoport --mode chat --listen 127.0.0.1:16700 --flood-rate 0 --stats-interval 0 \
                "${EXTRA[@]}" >"$OUT/echoport.log" 2>&1 & ;;
    ngircd)   ngircd --nodaemon --config "$PEERS/ngircd-bench.conf" >"$OUT/ngircd.log" 2>&1 & ;;
    inspircd) # InspIRCd resolves example includes relative to /etc/inspircd/examples.
              [ -e /etc/inspircd/examples ] || ln -s /usr/share/doc/inspircd/examples /etc/inspircd/examples
              inspircd --nofork --runasroot --config "$PEERS/inspircd-bench.conf" >"$OUT/inspircd.log" 2>&1 & ;;
  esac
  PID[$1]=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$1]}") 2>/dev/null && return 0; sleep 0.1; done
  echo "error: $1 did not come up (see $OUT/$1.log)" >&2; return 1
}
stop_all() { for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done; }
trap stop_all EXIT

# A peer that is not installed is a setup error, not a missing row in the report.
for n in $SERVERS; do
  [ "$n" = echoport ] || command -v "$n" >/dev/null \
    || { echo "error: $n is not installed (apt-get install $n), or leave it out of SERVERS" >&2; exit 1; }
done
for n in $SERVERS; do start "$n" || unset "PID[$n]"; done
for r in $(seq "$REPS"); do for n in $SERVERS; do
  [ -n "${PID[$n]:-}" ] || continue
  echo "## $n rep $r" >&2
  # InspIRCd finishes registrations on its once-a-second timer: let many register at once.
  batch=8; [ "$n" = inspircd ] && batch=256
  caps=(); [ "$n" = echoport ] && [ -n "$CAPS" ] && caps=(--caps "$CAPS")
  target/release/echoport-load chat --target "127.0.0.1:${PORT[$n]}" --clients "$CLIENTS" --senders "$SENDERS" \
    --connect-batch "$batch" "${caps[@]}" \
    --duration "$DURATION" --rate "$RATE" --quiet --json "$OUT/$n-$r.json" >"$OUT/$n-$r.txt" 2>&1 \
    || echo "   $n rep $r reported errors (see $OUT/$n-$r.txt)" >&2
done; done

# shellcheck disable=SC2086 # one argument per server
python3 - "$OUT" $SERVERS <<'EOF' | tee "$OUT/report.txt"
import json, pathlib, statistics as st, sys
out, servers = pathlib.Path(sys.argv[1]), sys.argv[2:]
rows = {}
for s in servers:
    runs = [json.loads(f.read_text()) for f in sorted(out.glob(f"{s}-*.json"))]
    if runs:
        rows[s] = runs
print("deliveries/s and delivery latency (median of reps; min-max)")
print(f"{'server':10} {'deliveries/s':>28} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'errors':>6}")
med = {}
for s, runs in rows.items():
    rates = sorted(r["per_sec"] for r in runs)
    med[s] = st.median(rates)
    p50 = st.median(r["latency_us"]["p50"] for r in runs) / 1000
    p99 = st.median(r["latency_us"]["p99"] for r in runs) / 1000
    lost = sum(r.get("lost", 0) for r in runs)
    errors = sum(r.get("errors", 0) for r in runs)
    print(f"{s:10} {med[s]:>12.0f} ({rates[0]:.0f}-{rates[-1]:.0f}) {p50:>8.1f} {p99:>8.1f} {lost:>6} {errors:>6}")
if "echoport" in med:
    for s, m in med.items():
        if s != "echoport" and m:
            print(f"ratio echoport/{s}: {med['echoport'] / m:.2f}x deliveries/s")
EOF
