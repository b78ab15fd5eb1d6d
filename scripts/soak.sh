#!/usr/bin/env bash
# Soak test: 10,000 connections doing echo and chat at once for a long time, every byte verified
# by echoport-load, both servers' memory (VmRSS) sampled all along. Fails on any error, mismatch or
# lost chat delivery, or when a server's RSS at the end has grown beyond noise since the warm start.
#
#   scripts/soak.sh                    # 10 minutes: 9,000 echo connections + 1,000 chat clients
#   scripts/soak.sh --duration 60      # what CI runs (scripts/test.sh)
#   scripts/soak.sh --duration 300 --echo-conns 9000 --echo-rate 9000 --chat-clients 1000 \
#                   --chat-senders 20 --chat-rate 20 --out /tmp/soak
#
# Flags (defaults in brackets): --duration SECS [600]  --warmup SECS [5]
#   --echo-conns N [9000]  --echo-rate MSGS_PER_SEC [9000]  --echo-size BYTES [64]
#   --chat-clients N [1000]  --chat-senders N [20]  --chat-rate MSGS_PER_SEC [20]  --chat-size BYTES [64]
#   --sample SECS [duration/20, 2..30]   RSS sampling period
#   --interval SECS [10, or 60 beyond 300 s]   throughput summary interval
#   --rss-pct P [10]  --rss-mib M [8]    fail when end RSS > warm-start RSS x (1 + P/100) + M MiB
#   --out DIR [target/soak/DATE]         report directory (summary.md, JSON, logs, rss.tsv)
# Exit status: 0 pass, 1 fail, 2 bad arguments. See docs/soak-and-scale.md.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
duration=600 warmup=5 echo_conns=9000 echo_rate=9000 echo_size=64
chat_clients=1000 chat_senders=20 chat_rate=20 chat_size=64
sample="" interval="" rss_pct=10 rss_mib=8 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs seconds}; shift 2 ;;
    --echo-conns) echo_conns=${2:?--echo-conns needs a number}; shift 2 ;;
    --echo-rate) echo_rate=${2:?--echo-rate needs messages per second}; shift 2 ;;
    --echo-size) echo_size=${2:?--echo-size needs bytes}; shift 2 ;;
    --chat-clients) chat_clients=${2:?--chat-clients needs a number}; shift 2 ;;
    --chat-senders) chat_senders=${2:?--chat-senders needs a number}; shift 2 ;;
    --chat-rate) chat_rate=${2:?--chat-rate needs messages per second}; shift 2 ;;
    --chat-size) chat_size=${2:?--chat-size needs bytes}; shift 2 ;;
    --sample) sample=${2:?--sample needs seconds}; shift 2 ;;
    --interval) interval=${2:?--interval needs seconds}; shift 2 ;;
    --rss-pct) rss_pct=${2:?--rss-pct needs a percentage}; shift 2 ;;
    --rss-mib) rss_mib=${2:?--rss-mib needs MiB}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "error: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
# Whole positive numbers only: they size loops and go into arithmetic.
for v in duration warmup echo_conns echo_rate echo_size chat_clients chat_senders chat_rate chat_size rss_pct rss_mib \
         ${sample:+sample} ${interval:+interval}; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "error: --${v//_/-} must be a whole number, not '${!v}'" >&2; exit 2; }
done
[ "$duration" -ge 10 ] || { echo "error: --duration must be at least 10 s" >&2; exit 2; }
if [ "$chat_senders" -lt 1 ] || [ "$chat_senders" -ge "$chat_clients" ]; then
  echo "error: --chat-senders must be from 1 to --chat-clients - 1" >&2; exit 2
fi
if [ "$echo_conns" -lt 1 ] || [ "$echo_rate" -lt 1 ] || [ "$chat_rate" -lt 1 ]; then
  echo "error: --echo-conns, --echo-rate and --chat-rate must be at least 1" >&2; exit 2
fi
if [ -z "$sample" ]; then sample=$((duration / 20)); [ "$sample" -lt 2 ] && sample=2; [ "$sample" -gt 30 ] && sample=30; fi
if [ -z "$interval" ]; then interval=10; [ "$duration" -gt 300 ] && interval=60; fi
if [ "$sample" -lt 1 ] || [ "$interval" -lt 1 ]; then
  echo "error: --sample and --interval must be at least 1" >&2; exit 2
fi

cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "error: python3 is needed for the report" >&2; exit 2; }
command -v curl >/dev/null || { echo "error: curl is needed to read the servers' metrics" >&2; exit 2; }

# Every process holds its connections' descriptors: the echo server and its client the most.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard"
biggest=$((echo_conns > chat_clients ? echo_conns : chat_clients))
if [ $((biggest + 100)) -gt "$hard" ]; then
  echo "error: $biggest connections in one process need about $((biggest + 100)) open files; the hard limit is $hard" >&2
  exit 2
fi

cargo build --release --locked --quiet --bins
bin=target/release
out=${out:-target/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# Everything this script starts, stopped by the EXIT trap (only these PIDs, never by name).
started=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  touch "$out/.stop" 2>/dev/null || true
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$out/.stop"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { local t=$EPOCHREALTIME; echo "${t/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# One value from a server's Prometheus endpoint (0 when absent or unreachable: a busy box may
# time the request out, which must not end the run).
metric() { # metrics-address name
  local body
  body=$(curl -s --max-time 2 "http://$1/metrics") || body=""
  awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }' <<<"$body"
}

# start_server NAME ARGS...: sets PID[NAME], ADDR[NAME], METRICS[NAME] once the log shows both.
declare -A PID=() ADDR=() METRICS=() SERVER_RC=()
start_server() {
  local name=$1 addr="" maddr="" pid; shift
  "$bin/echoport" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --max-conns 0 --backlog 4096 \
    --stats-interval 60s "$@" 2>"$out/$name-server.log" &
  pid=$!
  started+=("$pid")
  for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$out/$name-server.log" | head -n1)
    maddr=$(sed -n 's/.*metrics on http:\/\/\([0-9.:]*\)\/.*/\1/p' "$out/$name-server.log" | head -n1)
    [ -n "$addr" ] && [ -n "$maddr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ] || [ -z "$maddr" ]; then
    echo "error: the $name server did not start (see $out/$name-server.log)" >&2
    exit 1
  fi
  PID[$name]=$pid ADDR[$name]=$addr METRICS[$name]=$maddr
}

# Echo: the default idle timeout (300 s) stays on; every connection sends about once a second.
start_server echo
# Chat: default flood control (the senders stay far below it) and PINGs after 20 s of silence,
# so even a short run has the server PING every silent receiver, which must answer in time.
start_server chat --mode chat --ping-interval 20s
echo_pid=${PID[echo]} chat_pid=${PID[chat]}
echo_addr=${ADDR[echo]} chat_addr=${ADDR[chat]}
echo_metrics=${METRICS[echo]} chat_metrics=${METRICS[chat]}
rss_empty_echo=$(rss_kib "$echo_pid") rss_empty_chat=$(rss_kib "$chat_pid")

cat >&2 <<EOF
# soak for ${duration}s (+${warmup}s warm-up): echo $echo_addr ($echo_conns conns, $echo_rate msg/s of $echo_size B),
#   chat $chat_addr ($chat_clients clients, $chat_senders senders, $chat_rate msg/s); report in $out
EOF

# Sampler: every $sample s one line of rss.tsv. It stops when told (.stop) or after its bound.
sampler() {
  local t0=$1 next=0 t el
  local max_iter=$(((duration + warmup + 600) * 5))
  printf 't\techo_rss_kib\techo_open\techo_cpu_ticks\tchat_rss_kib\tchat_open\tchat_cpu_ticks\tloadavg\n'
  for _ in $(seq "$max_iter"); do
    [ -e "$out/.stop" ] && break
    t=$(now)
    el=$(awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.1f", b - a }')
    if awk -v e="$el" -v n="$next" 'BEGIN { exit !(e >= n) }'; then
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$el" \
        "$(rss_kib "$echo_pid")" "$(metric "$echo_metrics" echoport_connections_open)" "$(cpu_ticks "$echo_pid")" \
        "$(rss_kib "$chat_pid")" "$(metric "$chat_metrics" echoport_chat_clients)" "$(cpu_ticks "$chat_pid")" \
        "$(cut -d' ' -f1 /proc/loadavg)"
      next=$((next + sample))
    fi
    sleep 0.2
  done
}

# The clients run under timeout(1) as a last resort: echoport-load bounds all its phases itself.
limit=$((duration + warmup + 300))
t0=$(now)
sampler "$t0" >"$out/rss.tsv" &
started+=("$!")
sampler_pid=$!
timeout "$limit" "$bin/echoport-load" chat --target "$chat_addr" --clients "$chat_clients" \
  --senders "$chat_senders" --rate "$chat_rate" --size "$chat_size" --duration "$duration" --warmup "$warmup" \
  --quiet --json "$out/chat.json" >"$out/chat.txt" 2>&1 &
chat_client=$!
started+=("$chat_client")
timeout "$limit" "$bin/echoport-load" echo --target "$echo_addr" --conns "$echo_conns" --rate "$echo_rate" \
  --size "$echo_size" --duration "$duration" --warmup "$warmup" --connect-timeout 60 --drain-timeout 10 \
  --quiet --json "$out/echo.json" >"$out/echo.txt" 2>&1 &
echo_client=$!
started+=("$echo_client")

# Readiness: both servers report every connection open (bounded: chat setup is quadratic).
full=""
for _ in $(seq 1800); do
  eo=$(metric "$echo_metrics" echoport_connections_open)
  co=$(metric "$chat_metrics" echoport_chat_clients)
  if [ "$eo" -ge "$echo_conns" ] && [ "$co" -ge "$chat_clients" ]; then full=$(since "$t0"); break; fi
  if ! kill -0 "$echo_client" 2>/dev/null || ! kill -0 "$chat_client" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -n "$full" ]; then
  echo "# all $((echo_conns + chat_clients)) connections open after ${full}s; holding for ${duration}s" >&2
else
  echo "# not every connection opened (echo $eo of $echo_conns, chat $co of $chat_clients)" >&2
  full=-1
fi

echo_rc=0 chat_rc=0
wait "$echo_client" || echo_rc=$?
wait "$chat_client" || chat_rc=$?
touch "$out/.stop"
wait "$sampler_pid" || true

# The servers' own view at the end, then a graceful stop: each must exit 0 by itself.
for s in echo chat; do
  curl -s --max-time 2 "http://${METRICS[$s]}/metrics" >"$out/$s-metrics.txt" || true
done
stop_server() { # NAME: SIGTERM, wait up to 20 s, set SERVER_RC[NAME] to its exit status (or "hung")
  local pid=${PID[$1]} rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then rc=hung; else wait "$pid" || rc=$?; fi
  SERVER_RC[$1]=$rc
}
stop_server echo
stop_server chat

# Everything the report needs, in one file next to the results.
cat >"$out/params.json" <<EOF
{"duration": $duration, "warmup": $warmup, "interval": $interval, "sample": $sample, "full": $full,
 "rss_pct": $rss_pct, "rss_mib": $rss_mib,
 "echo_conns": $echo_conns, "echo_rate": $echo_rate, "echo_size": $echo_size,
 "chat_clients": $chat_clients, "chat_senders": $chat_senders, "chat_rate": $chat_rate, "chat_size": $chat_size,
 "echo_client_rc": $echo_rc, "chat_client_rc": $chat_rc,
 "echo_server_rc": "${SERVER_RC[echo]}", "chat_server_rc": "${SERVER_RC[chat]}",
 "echo_rss_empty_kib": $rss_empty_echo, "chat_rss_empty_kib": $rss_empty_chat,
 "clk_tck": $(getconf CLK_TCK)}
EOF

status=0
python3 - "$out" >"$out/summary.md" <<'PY' || status=$?
import json, pathlib, sys

out = pathlib.Path(sys.argv[1])
P = json.loads((out / "params.json").read_text())
duration, warmup, interval, full = P["duration"], P["warmup"], P["interval"], P["full"]
expect = {"echo": P["echo_conns"], "chat": P["chat_clients"]}
fails = []


def load(name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        fails.append(f"{name} client wrote no report (see {name}.txt)")
        return None


echo, chat = load("echo"), load("chat")
print("# soak report\n")
print(f"{duration} s measured (+{warmup} s warm-up) on two servers at once, every byte verified by echoport-load:\n")
print(f"- echo: {expect['echo']} connections, open loop, {P['echo_rate']} msg/s of {P['echo_size']} B in all")
print(f"- chat: {expect['chat']} clients in one channel, {P['chat_senders']} senders, {P['chat_rate']} msg/s "
      f"of {P['chat_size']} B in all, each delivered to {expect['chat'] - 1} clients")
if full >= 0:
    print(f"- all {sum(expect.values())} connections open {full:.1f} s after the clients started")
else:
    print("- NOT every connection opened")
    fails.append("not every connection opened")

# Throughput per interval, from the per-second timelines (t = seconds after that client's warm-up).
print(f"\n## throughput per {interval} s (t = seconds after each client's warm-up)\n")
print("| interval | echo round trips/s | echo slowest 1 s | echo worst 1-s p99 ms | chat deliveries/s | chat slowest 1 s |")
print("|---|---|---|---|---|---|")


def buckets(r):
    # Deliveries completed while draining count in the last second (the chat timeline may list
    # them as one more second after the run).
    secs = {}
    for p in (r or {}).get("timeline", []):
        t = min(int(p["t"]), duration - 1)
        q = secs.setdefault(t, {"messages": 0, "p99_us": None})
        q["messages"] += p["messages"]
        if p.get("p99_us") is not None:
            q["p99_us"] = max(q["p99_us"] or 0, p["p99_us"])
    b = {}
    for t, q in sorted(secs.items()):
        b.setdefault(t // interval, []).append(q)
    return b


def mean(ps):
    return f"{sum(p['messages'] for p in ps) / len(ps):.0f}" if ps else ""


def low(ps):
    return f"{min(p['messages'] for p in ps)}" if ps else ""


eb, cb = buckets(echo), buckets(chat)
for k in sorted(set(eb) | set(cb)):
    e, c = eb.get(k, []), cb.get(k, [])
    p99 = [p["p99_us"] for p in e if p.get("p99_us") is not None]
    worst = f"{max(p99) / 1000:.1f}" if p99 else ""
    print(f"| {k * interval}-{(k + 1) * interval} s | {mean(e)} | {low(e)} | {worst} | {mean(c)} | {low(c)} |")

print("\n## errors\n")
print("| client | messages | per second | errors | mismatches | lost | p50 ms | p99 ms | max ms | exit |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, r in (("echo", echo), ("chat", chat)):
    rc = P[f"{name}_client_rc"]
    if rc != 0:
        fails.append(f"{name} client exited {rc}" + (" (killed by the time limit)" if rc == 124 else ""))
    if r is None:
        print(f"| {name} | | | | | | | | | {rc} |")
        continue
    lat = r.get("latency_us") or {}
    lost = r.get("lost", r.get("unanswered", 0))
    ms = [f"{(lat.get(k) or 0) / 1000:.1f}" for k in ("p50", "p99", "max")]
    print(f"| {name} | {r['messages']} | {r['per_sec']:.0f} | {r['errors']} | {r['mismatches']} | {lost} "
          f"| {' | '.join(ms)} | {rc} |")
    if r["errors"] or r["mismatches"] or lost:
        fails.append(f"{name}: {r['errors']} errors, {r['mismatches']} mismatches, {lost} lost (see {name}.txt)")
    if r.get("sent", 0) < P[f"{name}_rate"] * duration * 0.95:
        fails.append(f"{name}: only {r.get('sent')} messages sent in {duration} s, behind the rate asked for")


def metrics(name):
    m = {}
    try:
        for line in (out / f"{name}-metrics.txt").read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                m[k] = float(v)
    except (OSError, ValueError):
        pass
    return m


# The servers' own counters at the end (before shutdown): none of these may have happened.
em, cm = metrics("echo"), metrics("chat")
io = 'echoport_errors_total{kind="io"}'
# Every limit (refusals, timeouts, SendQ, flood, ...) has a series; a soak must hit none.
prefix = 'echoport_limit_hits_total{limit="'
bad = {f"{name} {k[len(prefix):-2]} limit hits": v
       for name, m in (("echo", em), ("chat", cm)) for k, v in m.items() if k.startswith(prefix)}
if not any(k.startswith(prefix) for k in em) or not any(k.startswith(prefix) for k in cm):
    fails.append("a server's metrics have no echoport_limit_hits_total series")
info = {"echo io errors": em.get(io, 0), "chat io errors": cm.get(io, 0),
        "echo accepted": em.get("echoport_connections_accepted_total", 0),
        "chat accepted": cm.get("echoport_connections_accepted_total", 0)}
hits = ", ".join(f"{k} {v:.0f}" for k, v in bad.items() if v) or "none"
print("\nserver counters at the end: " + ", ".join(f"{k} {v:.0f}" for k, v in info.items()) + f"; limit hits: {hits}")
if not em or not cm:
    fails.append("could not read a server's metrics at the end")
fails += [f"server: {k} = {v:.0f}" for k, v in bad.items() if v]
for name in ("echo", "chat"):
    rc = P[f"{name}_server_rc"]
    print(f"\n{name} server stopped on SIGTERM with exit status {rc}", end="")
    if rc != "0":
        fails.append(f"{name} server: exit status {rc} on SIGTERM")
print()

# RSS: warm start = first sample once every connection has been open for the warm-up; end = the
# last sample with every connection still open.
rows = []
for line in (out / "rss.tsv").read_text().splitlines()[1:]:
    f = line.split("\t")
    if len(f) == 8:
        rows.append([float(f[0])] + [int(float(x)) for x in f[1:7]] + [float(f[7])])
print(f"\n## server memory (VmRSS every {P['sample']} s; t = seconds after the clients started)\n")
print(f"empty servers: echo {P['echo_rss_empty_kib'] / 1024:.1f} MiB, chat {P['chat_rss_empty_kib'] / 1024:.1f} MiB\n")
print("CPU % is of one core, between samples; load is the box's 1-minute load average (all users).\n")
print("| t s | echo conns | echo RSS MiB | echo CPU % | chat clients | chat RSS MiB | chat CPU % | load | |")
print("|---|---|---|---|---|---|---|---|---|")
held = [r for r in rows if r[2] >= expect["echo"] and r[5] >= expect["chat"]]
warm = next((r for r in held if full >= 0 and r[0] >= full + warmup), None)
end = held[-1] if held else None
prev = None
for r in rows:
    mark = "warm start" if r is warm else ("end" if r is end else "")
    cpu = ["", ""]
    if prev and r[0] > prev[0]:
        cpu = [f"{100 * (r[i] - prev[i]) / P['clk_tck'] / (r[0] - prev[0]):.0f}" for i in (3, 6)]
    print(f"| {r[0]:.0f} | {r[2]} | {r[1] / 1024:.1f} | {cpu[0]} | {r[5]} | {r[4] / 1024:.1f} | {cpu[1]} | {r[7]:.1f} | {mark} |")
    prev = r
if warm is None or end is None or end[0] - warm[0] < duration / 2:
    fails.append("too few RSS samples with every connection open to judge memory")
else:
    pct, mib = P["rss_pct"], P["rss_mib"]
    print(f"\nRSS check over {end[0] - warm[0]:.0f} s: end <= warm start x {1 + pct / 100:.2f} + {mib} MiB\n")
    for name, i in (("echo", 1), ("chat", 4)):
        start, last, peak = warm[i], end[i], max(r[i] for r in held)
        limit = start * (1 + pct / 100) + mib * 1024
        verdict = "ok" if last <= limit else "GROWN"
        print(f"- {name}: warm start {start / 1024:.1f} MiB, end {last / 1024:.1f} MiB ({(last - start) / 1024:+.1f}), "
              f"peak {peak / 1024:.1f} MiB, limit {limit / 1024:.1f} MiB: {verdict}")
        if last > limit:
            fails.append(f"{name} server RSS grew from {start} KiB to {last} KiB (limit {limit:.0f} KiB)")

print("\n## verdict\n")
print("PASS" if not fails else "FAIL\n\n" + "\n".join(f"- {f}" for f in fails))
sys.exit(1 if fails else 0)
PY
cat "$out/summary.md"
exit "$status"
