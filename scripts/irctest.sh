#!/usr/bin/env bash
# The current upstream irctest (github.com/progval/irctest, pinned below) against echoport (chat
# mode) and three peers, InspIRCd 3 and ngIRCd (Debian packages) and Ergo v2.11.1 (built from its
# sources), in one run, with the same two test selections for every server:
#   rfc  RFC 1459/2812: tests marked RFC1459 or RFC2812, and none of services,
#        implementation-specific, deprecated, strict, IRCv3;
#   all  the whole server suite but services, implementation-specific, deprecated and strict;
#   tls  the rfc selection with every test client over TLS to the test's port (IRCTEST_TLS=1,
#        scripts/irctest/common.py): irctest itself has no server test that uses TLS. Not in the
#        default SELECTION.
# It prints one table, server x selection, passed / failed / skipped, and keeps under
# target/irctest/<stamp>/ each run's log and junit file, failed.txt (each failed test with its
# reason) and skipped.txt (skips grouped by reason).
#
#   scripts/irctest.sh
#   SERVERS="echoport ergo" SELECTION=rfc scripts/irctest.sh
#   SERVERS=echoport SELECTION=tls scripts/irctest.sh
#
# Every server gets the settings upstream's controllers give: the name My.Little.Server, the
# operator operuser/operpassword, and here flood control off and listening on 127.0.0.1 only.
# echoport's controller is ours (scripts/irctest/echoport_controller.py, which also declares
# what echoport supports); the peers' are upstream's with the few changes the Debian builds and
# this comparison need (scripts/irctest/*_controller.py say which).
#
# Setup, on first use, all under target/: irctest cloned from IRCTEST_GIT at IRCTEST_COMMIT, a
# venv with its requirements (scripts/irctest/requirements.txt), Ergo cloned from ERGO_GIT at
# ERGO_TAG and built when no `ergo` is on PATH and Go (>= 1.19; Debian: golang-1.19-go) is
# there, else Ergo is skipped; the Debian packages inspircd, ngircd and faketime (irctest uses it
# to speed up the tests that wait minutes) installed when missing and running as root.
#
# Not part of CI: a comparison with other servers, not a check of ours (tests/chat_conformance.rs
# is the CI suite). It takes about 25 minutes for the four servers and both selections on two
# cores, InspIRCd half of it; each server run is bounded by TIMEOUT seconds (SIGINT, so pytest stops the servers).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
IRCTEST_GIT=${IRCTEST_GIT:-https://github.com/progval/irctest}
IRCTEST_COMMIT=${IRCTEST_COMMIT:-b00c039766f5c497920dd787f7cb0e0005bd5ce0} # master, 2026-07-21
ERGO_GIT=${ERGO_GIT:-https://github.com/ergochat/ergo}
ERGO_TAG=v2.11.1
SERVERS=${SERVERS:-"echoport inspircd ngircd ergo"}
SELECTION=${SELECTION:-"rfc all"}
TIMEOUT=${TIMEOUT:-1800}
OUT=${OUT:-target/irctest/$(date -u +%Y%m%d-%H%M%S)}
SRC=target/irctest-src
VENV=target/irctest-venv
ERGO_SRC=target/ergo-src
ERGO_BIN=target/ergo-bin
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

base='not services and not implementation-specific and not deprecated and not strict'
markers() {
  case $1 in
    rfc|tls) echo "(RFC1459 or RFC2812) and $base and not IRCv3" ;;
    all) echo "$base" ;;
    *) echo "unknown selection $1 (rfc, all, tls)" >&2; exit 2 ;;
  esac
}
label() { case $1 in rfc) echo "RFC 1459/2812" ;; all) echo "whole suite" ;; tls) echo "RFC 1459/2812 over TLS" ;; esac; }
for sel in $SELECTION; do markers "$sel" >/dev/null; done

# irctest and its venv.
if [ "$(git -C "$SRC" rev-parse HEAD 2>/dev/null)" != "$IRCTEST_COMMIT" ]; then
  rm -rf "$SRC"
  git clone -q "$IRCTEST_GIT" "$SRC"
  git -C "$SRC" -c advice.detachedHead=false checkout -q "$IRCTEST_COMMIT"
fi
if ! cmp -s scripts/irctest/requirements.txt "$VENV/requirements.txt"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r scripts/irctest/requirements.txt
  cp scripts/irctest/requirements.txt "$VENV/requirements.txt"
fi

# The peers: packages, and Ergo from source.
want=(faketime)
for s in $SERVERS; do case $s in inspircd|ngircd) want+=("$s") ;; esac; done
need=()
for p in "${want[@]}"; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=$ROOT/$ERGO_BIN:$PATH
if [[ " $SERVERS " == *" ergo "* ]] && ! command -v ergo >/dev/null; then
  go=$(command -v go || true)
  if [ -z "$go" ]; then
    # Debian's golang-1.NN-go packages do not put go on PATH; the last in glob order is the
    # newest (1.19 sorts before 1.21).
    for g in /usr/lib/go-1.*/bin/go; do if [ -x "$g" ]; then go=$g; fi; done
  fi
  if [ -n "$go" ]; then
    src=$ERGO_GIT
    [ ! -d "$src" ] || src=file://$(cd "$src" && pwd) # a local clone ignores --depth otherwise
    # Offline, from the sources vendored in the tag; a failure only leaves Ergo out.
    { [ -d "$ERGO_SRC" ] ||
      git -c advice.detachedHead=false clone -q --depth 1 --branch "$ERGO_TAG" "$src" "$ERGO_SRC"; } &&
      (cd "$ERGO_SRC" && GOFLAGS=-mod=vendor GOPROXY=off GOPATH=$ROOT/target/go \
        GOCACHE=$ROOT/target/go-cache "$go" build -o "$ROOT/$ERGO_BIN/ergo" \
        -ldflags "-X main.version=$ERGO_TAG -X main.commit=$(git rev-parse HEAD)" .) ||
      echo "ergo: could not clone or build $ERGO_TAG from $ERGO_GIT" >&2
  fi
fi

cargo build --release --quiet --bin echoport
export IRCTEST_ECHOPORT_BIN=$CARGO_TARGET_DIR/release/echoport

controller() {
  case $1 in
    echoport) echo echoport_controller ;;
    inspircd) echo inspircd_controller ;;
    ngircd) echo ngircd_controller ;;
    ergo) echo ergo_controller ;;
    *) echo "unknown server $1 (echoport, inspircd, ngircd, ergo)" >&2; exit 2 ;;
  esac
}
version() {
  case $1 in
    echoport) echo "echoport $(git rev-parse --short HEAD)" ;;
    inspircd) inspircd --version | sed -n '1s/^InspIRCd-\([0-9.]*\).*/InspIRCd \1/p' ;;
    ngircd) ngircd --version | sed -n '1s/^ngIRCd \([0-9.]*\).*/ngIRCd \1/p' ;;
    ergo) ergo --version | sed 's/^ergo-v/Ergo /' ;;
  esac
}

servers=() selections=()
for sel in $SELECTION; do selections+=("$sel=$(label "$sel")"); done
for s in $SERVERS; do
  ctl=$(controller "$s")
  bin=$s
  [ "$s" = echoport ] && bin=$IRCTEST_ECHOPORT_BIN
  if ! command -v "$bin" >/dev/null; then
    case $s in
      ergo) echo "ergo: skipped, no ergo on PATH and none built (needs Go >= 1.19 and $ERGO_GIT)" >&2 ;;
      *) echo "$s: skipped, not installed (apt-get install $s; as root this script does it)" >&2 ;;
    esac
    continue
  fi
  servers+=("$s=$(version "$s")")
  for sel in $SELECTION; do
    echo "# $s, $sel" >&2
    # TMPDIR: the servers' config dirs and logs and irctest's file of ports in use stay in this
    # run's directory, apart from any other irctest run on the machine (irctest locks that file
    # only under pytest-xdist). No .pytest_cache in the irctest checkout, no __pycache__ here.
    # The junit file carries the results, without each test's output (that is in the log).
    tmp=$OUT/$s-$sel.tmp
    mkdir -p "$tmp"
    tls=0; [ "$sel" = tls ] && tls=1
    (cd "$SRC" && IRCTEST_TLS=$tls TMPDIR=$tmp PYTHONPATH=$ROOT/scripts/irctest PYTHONDONTWRITEBYTECODE=1 \
      timeout -s INT -k 60 "$TIMEOUT" "$ROOT/$VENV/bin/python" \
      -m pytest irctest/server_tests --controller "$ctl" -m "$(markers "$sel")" -rfEs \
      -p no:cacheprovider -o junit_logging=no --junitxml="$OUT/$s-$sel.xml") \
      >"$OUT/$s-$sel.log" 2>&1 || true
    tail -1 "$OUT/$s-$sel.log" >&2
  done
done

"$VENV/bin/python" scripts/irctest/summarise.py "$OUT" "$IRCTEST_COMMIT" "${servers[@]}" \
  -- "${selections[@]}" | tee "$OUT/summary.txt"
echo "# logs, failed.txt, skipped.txt in $OUT" >&2
