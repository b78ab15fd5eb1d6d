#!/usr/bin/env bash
# The ceilings of the completion port's shared pieces (benches/ceilings.rs), no sockets: the buffer
# pool, the socket table's lock, epoll's reactor turn, user completions and wake-up hand-offs per
# backend, with 1, 2, 4 and 8 threads. About 15 s a repetition, plus the release build. Prints the
# table; with REPS > 1, each row's median and min-max. What the rows mean: docs/scaling.md.
#
#   scripts/bench-ceilings.sh
#   REPS=3 scripts/bench-ceilings.sh
#   ONLY=uring scripts/bench-ceilings.sh      # the rows whose piece or backend contains the word
#
# Knobs: REPS=1 ONLY="" OUT=target/bench-ceilings/<time>
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-1} ONLY=${ONLY:-}
OUT=${OUT:-target/bench-ceilings/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

cargo bench --quiet --bench ceilings --no-run
echo "# $(nproc) cores, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/report.txt"
for r in $(seq "$REPS"); do
  echo "## rep $r" >&2
  # Bounded: a row that stalls ends after 5 s on its own; this bounds the whole run too.
  timeout 120 cargo bench --quiet --bench ceilings -- "$ONLY" >"$OUT/rep-$r.txt"
done
if [ "$REPS" = 1 ]; then
  tee -a "$OUT/report.txt" <"$OUT/rep-1.txt"
  exit 0
fi

python3 - "$OUT" <<'EOF' | tee -a "$OUT/report.txt"
import pathlib, re, statistics as st, sys
rows, header = {}, []
for f in sorted(pathlib.Path(sys.argv[1]).glob("rep-*.txt")):
    for line in f.read_text().splitlines():
        m = re.match(r"(.{36}) (\S+) +(\d+) +([\d.]+) +\d+$", line)
        if m:
            rows.setdefault(m.group(1, 2, 3), []).append(float(m.group(4)))
        elif line.startswith("#") and line not in header:
            header.append(line)
print("\n".join(header))
print(f"{'piece':<36} {'backend':<7} {'threads':>7} {'Mops/s':>9} {'ns/op':>9}  Mops/s min-max")
for (piece, backend, threads), v in rows.items():
    m = st.median(v)
    print(f"{piece} {backend:<7} {threads:>7} {m:>9.2f} {1e3 / m:>9.0f}  {min(v):.2f}-{max(v):.2f}")
EOF
