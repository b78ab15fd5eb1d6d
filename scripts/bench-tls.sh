#!/usr/bin/env bash
# TLS side by side: echoport --mode chat (--tls-listen) against ngIRCd and InspIRCd (Debian
# packages, both on GnuTLS), one certificate for all three, one client (echoport-load --tls
# --tls-insecure), in one run:
#   idle        server memory (VmRSS) per idle TLS connection with HOLD connections open, each
#               server freshly started (echoport-load idle --tls --server-pid)
#   handshakes  full TLS handshakes/s and the server's CPU per handshake
#               (echoport-load connect --tls --handshake-only, CONNECTORS at once)
#   fanout      chat fan-out deliveries/s over TLS (echoport-load chat --tls: CLIENTS clients in one
#               channel, SENDERS of them sending)
# handshakes and fanout repeat REPS times, interleaved (A B C A B C); the table gives medians
# (min-max) and the ratios echoport/peer. Peer configs (flood limits relaxed as in
# ../shared/peers/chat/) are templates in scripts/tls-peers/; the certificate is made at run time.
#
#   scripts/bench-tls.sh
#   REPS=3 DURATION=10 CLIENTS=1000 SENDERS=10 HOLD=10000 CONNECTORS=8 KEY=ec scripts/bench-tls.sh
#   SERVERS="echoport ngircd" PHASES="handshakes" KEY=rsa scripts/bench-tls.sh
#   ECHOPORT_ARGS="--io epoll" scripts/bench-tls.sh       # echoport's flags (default: --io auto)
#
# KEY: ec = ECDSA P-256 (certbot's default), rsa = RSA 2048; the key type sets most of a
# handshake's cost. HOLD=0 skips the idle phase. Client and servers share this machine's cores,
# and a client handshake costs about what a server one does: only ratios from one run mean
# anything, and the server CPU column is the fairer handshake figure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3} DURATION=${DURATION:-10} CLIENTS=${CLIENTS:-1000} SENDERS=${SENDERS:-10}
HOLD=${HOLD:-10000} CONNECTORS=${CONNECTORS:-8} KEY=${KEY:-ec}
SERVERS=${SERVERS:-"echoport ngircd inspircd"}
PHASES=${PHASES:-"idle handshakes fanout"}
OUT=${OUT:-target/bench-tls/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd) # the peers' configs name files in it; they run from elsewhere
ulimit -n "$(ulimit -Hn)"
# InspIRCd 3.15 with ssl_gnutls crashes while unloading its modules on SIGTERM (after the runs,
# nothing is lost); no core file in the checkout for it.
ulimit -c 0
cargo build --release --quiet --bins
load=target/release/echoport-load

# One self-signed certificate for every server, with the SANs a verifying client would check.
case $KEY in
  ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  rsa) newkey=(-newkey rsa:2048) ;;
  *) echo "error: KEY must be ec or rsa, not '$KEY'" >&2; exit 2 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

# Plain ports (for readiness checks, so the TLS listeners see no aborted handshakes) and TLS
# ports, none shared with scripts/bench-chat.sh; the peers' configs get theirs from here.
declare -A PLAIN=([echoport]=16800 [ngircd]=16767 [inspircd]=16768)
declare -A TLS=([echoport]=16801 [ngircd]=16797 [inspircd]=16798) PID=()
for p in ngircd inspircd; do
  sed -e "s|@CERT@|$OUT/cert.pem|; s|@KEY@|$OUT/key.pem|; s|@OUT@|$OUT|g" \
    -e "s|@PLAIN@|${PLAIN[$p]}|; s|@TLS@|${TLS[$p]}|" "scripts/tls-peers/$p-tls-bench.conf" >"$OUT/$p.conf"
done
read -ra EXTRA <<< "${ECHOPORT_ARGS:-}"
start() { # name
  # `exec`, so that $! is the server itself (its CPU time and memory are measured).
  case $1 in
    echoport) exec target/release/echoport --mode chat --listen "127.0.0.1:${PLAIN[$1]}" \
                --tls-listen "127.0.0.1:${TLS[$1]}" --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" \
                --flood-rate 0 --stats-interval 0 "${EXTRA[@]}" ;;
    ngircd)   exec ngircd --nodaemon --config "$OUT/ngircd.conf" ;;
    inspircd) # InspIRCd resolves example includes relative to /etc/inspircd/examples.
              [ -e /etc/inspircd/examples ] || ln -s /usr/share/doc/inspircd/examples /etc/inspircd/examples
              exec inspircd --nofork --runasroot --config "$OUT/inspircd.conf" ;;
    *) echo "unknown server $1 (echoport, ngircd, inspircd)" >&2; exit 1 ;;
  esac >>"$OUT/$1.log" 2>&1 &
  PID[$1]=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${PLAIN[$1]}") 2>/dev/null && return 0; sleep 0.1; done
  echo "error: $1 did not come up (see $OUT/$1.log)" >&2; return 1
}
stop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
stop_all() { for n in "${!PID[@]}"; do stop "$n"; done; }
trap stop_all EXIT
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # name, file stem, echoport-load arguments... (bounded: no phase waits forever on a server)
  local n=$1 stem=$2; shift 2
  local t0; t0=$(cpu_ticks "${PID[$n]}")
  timeout -k 10 $((DURATION * 3 + 300)) "$load" "$@" --quiet --json "$OUT/$stem.json" >"$OUT/$stem.txt" 2>&1 \
    || echo "   $stem reported errors (see $OUT/$stem.txt)" >&2
  echo "$(( $(cpu_ticks "${PID[$n]}") - t0 ))" >"$OUT/$stem.cpu"
}
has() { [[ " $PHASES " == *" $1 "* ]]; }

# Memory first, one server at a time and each freshly started, so that no earlier phase's pools
# or caches are in its "before" reading.
# IRC servers echo nothing: each connection is proven by its handshake alone (--handshake-only).
# A small open window, as ngIRCd listens with a backlog of 10 (a SYN beyond it waits a second for
# its retry), and a connect timeout that covers HOLD handshakes on a shared two-core box.
if has idle && [ "$HOLD" -gt 0 ]; then for n in $SERVERS; do
  start "$n" || continue
  echo "## idle $HOLD  $n" >&2
  run "$n" "idle-$n" idle --tls --tls-insecure --handshake-only --target "127.0.0.1:${TLS[$n]}" \
    --conns "$HOLD" --hold 3 --server-pid "${PID[$n]}" --open-window 8 --connect-timeout 120
  stop "$n"
done; fi

for n in $SERVERS; do start "$n" || unset "PID[$n]"; done
for r in $(seq "$REPS"); do for n in $SERVERS; do
  [ -n "${PID[$n]:-}" ] || continue
  if has handshakes; then
    echo "## handshakes $n rep $r" >&2
    run "$n" "handshakes-$n-$r" connect --tls --tls-insecure --handshake-only \
      --target "127.0.0.1:${TLS[$n]}" --conns "$CONNECTORS" --duration "$DURATION"
  fi
  if has fanout; then
    echo "## fanout $n rep $r" >&2
    # InspIRCd finishes registrations on its once-a-second timer: let many register at once.
    batch=8; [ "$n" = inspircd ] && batch=256
    run "$n" "fanout-$n-$r" chat --tls --tls-insecure --target "127.0.0.1:${TLS[$n]}" \
      --clients "$CLIENTS" --senders "$SENDERS" --connect-batch "$batch" --duration "$DURATION" --rate 0
  fi
done; done

# shellcheck disable=SC2086 # one argument per server
python3 - "$OUT" "$(getconf CLK_TCK)" "$KEY" $SERVERS <<'EOF' | tee "$OUT/report.md"
import json, pathlib, statistics as st, sys
out, tck, key, servers = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(glob):
    runs = []
    for p in sorted(out.glob(glob)):
        try:
            runs.append(json.loads(p.read_text()) | {"cpu": int(p.with_suffix(".cpu").read_text())})
        except (ValueError, OSError):
            pass  # a run that wrote no report: its .txt says why
    return runs
def span(v, fmt="{:.0f}"):
    v = sorted(v)
    return fmt.format(st.median(v)) + (f" ({fmt.format(v[0])}-{fmt.format(v[-1])})" if len(v) > 1 else "")
def ratio(med, s):
    return f"{med['echoport'] / med[s]:.2f}x" if "echoport" in med and s != "echoport" and med[s] else ""
def ms(runs, key, q):
    v = [r[key][q] for r in runs if isinstance(r.get(key), dict) and q in r[key]]
    return f"{st.median(v) / 1000:.1f}" if v else ""
print(f"TLS, {key} certificate: medians of the repetitions (min-max); ratio = echoport / server")
print("| test | server | median (min-max) | p50 ms | p99 ms | server CPU us per op | errors | ratio |")
print("|---|---|---|---|---|---|---|---|")
med = {}
for s in servers:
    if runs := load(f"idle-{s}.json"):
        r = runs[0]
        med[s] = r.get("rss_per_conn_kib") or 0
        print(f"| idle RSS KiB per TLS conn at {r.get('held')} conns (lower is better) | {s} | {med[s]:.2f} | | | | {r.get('errors', 0)} | {ratio(med, s)} |")
for test, glob, lat in (("full TLS handshakes/s", "handshakes", "handshake"), ("TLS fan-out deliveries/s", "fanout", "latency_us")):
    med = {}
    for s in servers:
        if not (runs := load(f"{glob}-{s}-*.json")):
            continue
        med[s] = st.median(r["per_sec"] for r in runs)
        # The CPU reading spans the whole run, warm-up included: so does "attempts" (the
        # handshake count and per_sec are the measured part only).
        ops = [r.get("attempts", 0) for r in runs]
        cpu = [r["cpu"] / tck / o * 1e6 for r, o in zip(runs, ops) if o] if glob == "handshakes" else []
        errors = sum(r.get("errors", 0) + r.get("lost", 0) for r in runs)
        print(f"| {test} | {s} | {span([r['per_sec'] for r in runs])} | {ms(runs, lat, 'p50')} | {ms(runs, lat, 'p99')} "
              f"| {span(cpu, '{:.0f}') if cpu else ''} | {errors} | {ratio(med, s)} |")
EOF
