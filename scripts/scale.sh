#!/usr/bin/env bash
# Scale test: as many concurrent connections on ONE echoport server as its open-file limit allows,
# opened by several echoport-load `idle` processes from different 127.0.0.x source addresses.
# Each connection is proven by a 1-byte round trip and held; while all are held the script reads
# the server's memory. Reports connections held, time to open them all, server RSS before and
# holding, RSS per connection, and fails (non-zero exit) on any failed or dropped connection.
#
#   scripts/scale.sh                       # target: hard RLIMIT_NOFILE minus --margin
#   scripts/scale.sh --conns 50000 --per-client 10000 --out /tmp/scale
#
# Flags (defaults in brackets):
#   --conns N        connections to hold [ulimit -Hn minus --margin]
#   --margin N       descriptors left to the server for listeners, pollers, stdio [64]
#   --per-client N   connections per echoport-load process [5000]
#   --hold SECS      how long each client holds once it has opened its share [15 + conns/5000]
#   --out DIR        report directory [target/scale/DATE]
#   --dry-run        print the plan (processes, shares, source addresses) and stop; a --conns
#                    beyond this box's limit is planned as if the limit allowed it
# Exit status: 0 pass, 1 fail, 2 bad arguments or a limit that cannot fit. See docs/soak-and-scale.md.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
conns="" margin=64 per_client=5000 hold="" out="" dry_run=0
while [ $# -gt 0 ]; do
  case $1 in
    --conns) conns=${2:?--conns needs a number}; shift 2 ;;
    --margin) margin=${2:?--margin needs a number}; shift 2 ;;
    --per-client) per_client=${2:?--per-client needs a number}; shift 2 ;;
    --hold) hold=${2:?--hold needs seconds}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "error: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
for v in margin per_client ${conns:+conns} ${hold:+hold}; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
    echo "error: --${v//_/-} must be a positive whole number, not '${!v}'" >&2; exit 2
  fi
done

cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "error: python3 is needed for the report" >&2; exit 2; }
command -v curl >/dev/null || { echo "error: curl is needed to read the server's metrics" >&2; exit 2; }

# The server holds every connection, so its open-file limit is the ceiling. Children inherit the
# raised soft limit (echoport-load raises its own too).
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$(cat /proc/sys/fs/nr_open)
ulimit -n "$hard"
if [ -z "$conns" ]; then
  conns=$((hard - margin))
  # Both ends of every connection are files: stay inside the system-wide limit too.
  read -r allocated _ file_max </proc/sys/fs/file-nr
  room=$(((file_max - allocated) / 2 - 10000))
  if [ "$room" -lt "$conns" ]; then
    echo "# fs.file-max leaves room for about $room connection pairs: aiming for that" >&2
    conns=$room
  fi
fi
if [ "$dry_run" = 1 ] && [ $((conns + margin)) -gt "$hard" ]; then
  echo "# dry run: planning as if the hard open-file limit were $((conns + margin)) (it is $hard)" >&2
  hard=$((conns + margin))
fi
if [ $((conns + margin)) -gt "$hard" ]; then
  echo "error: --conns $conns plus a margin of $margin descriptors exceeds the hard open-file limit $hard" >&2
  exit 2
fi
[ "$conns" -ge 1 ] || { echo "error: no room for any connection (hard limit $hard)" >&2; exit 2; }

# Clients: each process must fit under the same limit (echoport-load keeps 64 descriptors of slack).
[ "$per_client" -gt $((hard - 100)) ] && per_client=$((hard - 100))
clients=$(((conns + per_client - 1) / per_client))
# Source addresses: one address reaches one target port from the ephemeral range only; keep 10%
# of it for other users and for ports still in TIME_WAIT from earlier runs.
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
per_ip=$(((port_hi - port_lo + 1) * 9 / 10))
# Backlog: enough for every client's open window at once (the kernel caps it at somaxconn).
somaxconn=$(cat /proc/sys/net/core/somaxconn)
backlog=65535
window=$((somaxconn / clients))
[ "$window" -gt 256 ] && window=256
[ "$window" -lt 16 ] && window=16
hold=${hold:-$((15 + conns / 5000))}
connect_timeout=$((30 + conns / 2000))
ip_of() { echo "127.0.$(($1 / 250)).$(($1 % 250 + 2))"; } # 127.0.0.2, .3, ... (never 127.0.0.1)
# plan: one line per client process, "conns source-ips" (an even share, enough addresses each).
plan() {
  local k share n_ips ips j next_ip=0
  for k in $(seq 0 $((clients - 1))); do
    share=$((conns / clients + (k < conns % clients ? 1 : 0)))
    n_ips=$(((share + per_ip - 1) / per_ip))
    ips=$(ip_of "$next_ip")
    for j in $(seq 1 $((n_ips - 1))); do ips+=",$(ip_of $((next_ip + j)))"; done
    next_ip=$((next_ip + n_ips))
    echo "$share $ips"
  done
}
if [ "$dry_run" = 1 ]; then
  echo "$conns connections, $clients processes (window $window, hold ${hold}s, connect timeout ${connect_timeout}s," \
    "$per_ip ports per source address):"
  plan | awk '{ printf "  client %d: %s connections from %s\n", NR - 1, $1, $2 }'
  exit 0
fi

cargo build --release --locked --quiet --bins
bin=target/release
out=${out:-target/scale/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

started=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { local t=$EPOCHREALTIME; echo "${t/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
metric() { # name: one value from the server's Prometheus endpoint (-1 when unreachable)
  local body
  body=$(curl -s --max-time 2 "http://$metrics/metrics") || { echo -1; return; }
  awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }' <<<"$body"
}
# The server: no connection limit, a generous backlog, metrics for the readiness check, and its
# idle timeout (on by default) longer than the longest a connection can be held here.
"$bin/echoport" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --max-conns 0 --backlog "$backlog" \
  --idle-timeout "$((connect_timeout + hold + 120))s" --stats-interval 0 2>"$out/server.log" &
server=$!
started+=("$server")
addr="" metrics=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$out/server.log" | head -n1)
  metrics=$(sed -n 's/.*metrics on http:\/\/\([0-9.:]*\)\/.*/\1/p' "$out/server.log" | head -n1)
  [ -n "$addr" ] && [ -n "$metrics" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$addr" ] || [ -z "$metrics" ]; then
  echo "error: echoport did not start (see $out/server.log)" >&2; exit 1
fi
sleep 0.5 # let the fresh process settle before the baseline
rss_before=$(rss_kib "$server")
echo "# $conns connections to $addr from $clients echoport-load processes (hard limit $hard," \
  "window $window each, hold ${hold}s); report in $out" >&2

# Clients: share the target evenly; each gets enough source addresses of its own.
t0=$(now)
client_pids=()
k=0
while read -r share ips; do
  timeout $((connect_timeout + hold + 120)) "$bin/echoport-load" idle --target "$addr" --conns "$share" \
    --source-ips "$ips" --hold "$hold" --open-window "$window" --connect-timeout "$connect_timeout" \
    --quiet --json "$out/client-$k.json" </dev/null >"$out/client-$k.txt" 2>&1 &
  client_pids+=("$!")
  started+=("$!")
  k=$((k + 1))
done < <(plan)

# Readiness: the server itself counts every connection open. Bounded by the clients' connect
# timeout; it stops early when a client exits (gave up, or its hold ended before the rest opened).
open_secs="" seen=0 peak=0
for _ in $(seq $(((connect_timeout + 10) * 10))); do
  seen=$(metric echoport_connections_open)
  [ "$seen" -gt "$peak" ] && peak=$seen
  if [ "$seen" -ge "$conns" ]; then open_secs=$(since "$t0"); break; fi
  gone=0
  for p in "${client_pids[@]}"; do kill -0 "$p" 2>/dev/null || gone=$((gone + 1)); done
  [ "$gone" -eq 0 ] || break
  sleep 0.1
done

# Holding: three samples half a second apart, every connection still open in each; the last one
# is the figure (the 1-byte proofs' buffers have gone back by then).
rss_holding="" holding_ok=0
if [ -n "$open_secs" ]; then
  echo "# all $conns open after ${open_secs}s; measuring the server while they are held" >&2
  holding_ok=1
  for _ in 1 2 3; do
    sleep 0.5
    rss_holding=$(rss_kib "$server")
    seen=$(metric echoport_connections_open) # -1: no answer in time, which proves nothing
    if [ "$seen" -ge 0 ] && [ "$seen" -lt "$conns" ]; then holding_ok=0; fi
  done
  printf 'rss_kib %s\n' "$rss_holding" >"$out/holding.txt"
  curl -s --max-time 2 "http://$metrics/metrics" >>"$out/holding.txt" || true
else
  echo "# only $peak of $conns connections were open at once" >&2
fi

rcs=()
for p in "${client_pids[@]}"; do rc=0; wait "$p" || rc=$?; rcs+=("$rc"); done
curl -s --max-time 2 "http://$metrics/metrics" >"$out/server-metrics.txt" || true
kill -TERM "$server" 2>/dev/null || true
for _ in $(seq 200); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
server_rc=0
if kill -0 "$server" 2>/dev/null; then server_rc=hung; else wait "$server" || server_rc=$?; fi

cat >"$out/params.json" <<EOF
{"conns": $conns, "hard_limit": $hard, "margin": $margin, "clients": $clients, "per_client": $per_client,
 "hold": $hold, "window": $window, "open_secs": ${open_secs:-null}, "peak_open": $peak,
 "holding_ok": $holding_ok, "rss_before_kib": $rss_before, "rss_holding_kib": ${rss_holding:-null},
 "client_rcs": [$(IFS=,; echo "${rcs[*]}")], "server_rc": "$server_rc"}
EOF

status=0
python3 - "$out" >"$out/summary.md" <<'PY' || status=$?
import json, pathlib, sys

out = pathlib.Path(sys.argv[1])
P = json.loads((out / "params.json").read_text())
fails = []
print("# scale report\n")
print(f"target {P['conns']} connections on one server (hard open-file limit {P['hard_limit']}, margin {P['margin']}), "
      f"{P['clients']} echoport-load idle processes, open window {P['window']} each, hold {P['hold']} s\n")
print("| client | source ips | conns | held | failed | dropped | errors | mismatches | open s | exit |")
print("|---|---|---|---|---|---|---|---|---|---|")
tot = {"held": 0, "failed": 0, "dropped": 0, "errors": 0, "mismatches": 0}
for k, rc in enumerate(P["client_rcs"]):
    try:
        r = json.loads((out / f"client-{k}.json").read_text())
    except (OSError, ValueError):
        print(f"| {k} | | | | | | | | | {rc} |")
        fails.append(f"client {k} wrote no report (exit {rc}; see client-{k}.txt)")
        continue
    for f in tot:
        tot[f] += r.get(f, 0)
    print(f"| {k} | {','.join(r['source_ips'])} | {r['conns']} | {r['held']} | {r['failed']} | {r['dropped']} "
          f"| {r['errors']} | {r['mismatches']} | {r['open_secs']} | {rc} |")
    if rc != 0:
        fails.append(f"client {k} exited {rc}" + (" (killed by the time limit)" if rc == 124 else ""))
print(f"| all | | {P['conns']} | {tot['held']} | {tot['failed']} | {tot['dropped']} | {tot['errors']} "
      f"| {tot['mismatches']} | | |\n")

if tot["held"] != P["conns"]:
    fails.append(f"{tot['held']} of {P['conns']} connections held")
for f in ("failed", "dropped", "errors", "mismatches"):
    if tot[f]:
        fails.append(f"{tot[f]} {f}")

print(f"- connections held at once (server's echoport_connections_open): "
      f"{P['conns'] if P['open_secs'] is not None else P['peak_open']}")
if P["open_secs"] is None:
    fails.append(f"the server never had all {P['conns']} open at once (peak {P['peak_open']}); "
                 "if clients finished holding before the rest had opened, raise --hold")
else:
    print(f"- time to open them all (clients started -> server counts all open): {P['open_secs']:.2f} s")
    if not P["holding_ok"]:
        fails.append("connections closed while the server's memory was being read")
before, holding = P["rss_before_kib"], P["rss_holding_kib"]
print(f"- server RSS before: {before / 1024:.1f} MiB")
if holding is not None:
    per = (holding - before) / P["conns"]
    print(f"- server RSS holding: {holding / 1024:.1f} MiB")
    print(f"- server RSS per connection: {per:.2f} KiB ({per * 1024:.0f} bytes)")
print(f"- server stopped on SIGTERM with exit status {P['server_rc']}")
if P["server_rc"] != "0":
    fails.append(f"server exit status {P['server_rc']} on SIGTERM")
try:
    m = {}
    for line in (out / "server-metrics.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            m[k] = float(v)
    refused = m.get("echoport_connections_refused_total", 0)
    accepted = m.get("echoport_connections_accepted_total", 0)
    io = m.get('echoport_errors_total{kind="io"}', 0)
    print(f"- server counters: accepted {accepted:.0f}, refused {refused:.0f}, io errors {io:.0f}")
    if refused:
        fails.append(f"server refused {refused:.0f} connections")
except (OSError, ValueError):
    fails.append("could not read the server's metrics at the end")

print("\n## verdict\n")
print("PASS" if not fails else "FAIL\n\n" + "\n".join(f"- {f}" for f in fails))
sys.exit(1 if fails else 0)
PY
cat "$out/summary.md"
exit "$status"
