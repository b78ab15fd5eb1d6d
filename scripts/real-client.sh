#!/usr/bin/env bash
# A real IRC client against echoport: two irssi instances, each in its own tmux session, connect
# to a chat server on loopback, negotiate IRCv3 capabilities, join one channel and talk to each
# other. The script reads their screens (tmux capture-pane) and fails unless each screen shows
# the other's message and alice's shows the server acknowledged irssi's capabilities (server-time
# among them). Screens and the server log
# stay in target/real-client/.
#
#   scripts/real-client.sh           # about 10 s; installs irssi and tmux (apt) when root
#
# Not part of CI: a terminal program's screen is not a stable interface, so this is a check to
# run by hand after changing the chat protocol. tests/chat_conformance.rs covers the same
# protocol over raw sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/real-client
rm -rf "$OUT" && mkdir -p "$OUT"

need=()
for p in irssi tmux; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "missing ${need[*]}: apt-get install ${need[*]}" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin echoport

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/echoport --mode chat --listen "127.0.0.1:$port" --server-name irc.test >"$OUT/server.log" 2>&1 &
server=$!
sessions=()
cleanup() {
  for s in "${sessions[@]}"; do tmux kill-session -t "$s" 2>/dev/null || true; done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

start_client() { # nick
  local s="echoport-$1-$$"
  sessions+=("$s")
  mkdir -p "$OUT/$1"
  tmux new-session -d -s "$s" -x 160 -y 40 \
    "irssi --home=$OUT/$1 --connect=127.0.0.1 --port=$port --nick=$1"
}
screen() { tmux capture-pane -p -t "echoport-$1-$$"; }
# Waits up to 10 s for the text on a client's screen; the screen is saved either way.
wait_for() { # nick text
  for _ in $(seq 100); do
    if screen "$1" | grep -qF -- "$2"; then screen "$1" >"$OUT/$1.screen"; return 0; fi
    sleep 0.1
  done
  screen "$1" >"$OUT/$1.screen"
  echo "FAIL: $1's screen never showed \"$2\" (saved in $OUT/$1.screen):" >&2
  cat "$OUT/$1.screen" >&2
  exit 1
}
say() { tmux send-keys -t "echoport-$1-$$" -l "$2"; tmux send-keys -t "echoport-$1-$$" Enter; }

start_client alice
start_client bob
wait_for alice "Welcome to the echoport IRC Network"
wait_for bob "Welcome to the echoport IRC Network"
# irssi asks for what it knows (server-time, multi-prefix, extended-join, ...) and shows the ACK.
wait_for alice "Capabilities acknowledged"
caps=$(grep -F "Capabilities acknowledged" "$OUT/alice.screen" | sed 's/^[0-9:]* *-!- //')
case $caps in *server-time*) ;; *) echo "FAIL: irssi did not get server-time: $caps" >&2; exit 1 ;; esac
say alice "/join #demo"
wait_for alice "alice ["
say bob "/join #demo"
wait_for alice "bob ["
say alice "hello bob, from irssi"
wait_for bob "hello bob, from irssi"
say bob "hi alice"
wait_for alice "hi alice"
echo "ok: two irssi clients negotiated capabilities, joined #demo and talked; screens in $OUT/"
echo "alice's screen: $caps"
