#!/usr/bin/env python3
"""Python's own ssl module (OpenSSL, no PyPI package) against echoport's chat mode over TLS.

Usage: test_tls_chat.py CAFILE PORT   (echoport --mode chat with a TLS listener on 127.0.0.1:PORT
whose certificate is CAFILE, made for the name localhost)

Two TLS clients verify the server's certificate against CAFILE alone, register, join a channel,
exchange a channel message and a private message, see each other in WHOIS as secure (671), and one
quits. Exits 0 only if every expected line arrived, each within a bounded wait; otherwise prints
what was missing and every line seen, and exits 1. Driven by tests/tls.rs.
"""

import socket
import ssl
import sys
import time

STEP_TIMEOUT = 20.0  # seconds for each expected line (CI is a loaded 2-core box)
CHANNEL = "#pytls"


def parse(line):
    """(source nick, COMMAND, params) of one IRC line; tags are dropped."""
    if line.startswith("@"):
        line = line.partition(" ")[2]
    nick = ""
    if line.startswith(":"):
        source, _, line = line.partition(" ")
        nick = source[1:].split("!")[0].split("@")[0]
    head, colon, trailing = line.partition(" :")
    words = head.split()
    params = words[1:] + ([trailing] if colon else [])
    return nick, (words[0].upper() if words else ""), params


class Conn:
    def __init__(self, name, context, port):
        self.name = name
        raw = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.seen = []

    def send(self, line):
        self.seen.append(f"-> {line}")
        self.sock.sendall(line.encode() + b"\r\n")

    def fail(self, what):
        print(f"FAIL: {self.name}: {what}; lines seen:", flush=True)
        for line in self.seen:
            print(f"    {line}", flush=True)
        sys.exit(1)

    def expect(self, what, pred):
        """The first line (nick, command, params) satisfying pred; earlier lines are consumed."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                self.seen.append(line)
                nick, command, params = parse(line)
                if command == "PING":
                    self.send("PONG :" + (params[-1] if params else ""))
                elif pred(nick, command, params):
                    return nick, command, params
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no {what} within {STEP_TIMEOUT}s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            if not data:
                self.fail(f"connection closed before {what}")
            self.buf += data

    def register(self, nick):
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :Py TLS {nick}")
        self.expect("001", lambda n, c, p: c == "001")
        self.expect("end of MOTD", lambda n, c, p: c in ("376", "422"))


def ok(what):
    print(f"ok: {what}", flush=True)


def main():
    cafile, port = sys.argv[1], int(sys.argv[2])
    # Certificate and host name checked; the test's certificate is the only trust anchor.
    context = ssl.create_default_context(cafile=cafile)
    alice = Conn("alice", context, port)
    bob = Conn("bob", context, port)
    for c in (alice, bob):
        if c.sock.version() not in ("TLSv1.2", "TLSv1.3"):
            c.fail(f"negotiated {c.sock.version()}")
    ok(f"both handshakes verified ({alice.sock.version()}, {alice.sock.cipher()[0]})")

    alice.register("pyalice")
    bob.register("pybob")
    ok("both registered (001)")

    alice.send(f"JOIN {CHANNEL}")
    alice.expect("alice's end of NAMES", lambda n, c, p: c == "366")
    bob.send(f"JOIN {CHANNEL}")
    names = bob.expect("bob's NAMES reply", lambda n, c, p: c == "353")
    if sorted(names[2][-1].split()) != ["@pyalice", "pybob"]:
        bob.fail(f"NAMES listed {names[2][-1]!r}")
    alice.expect("bob's JOIN", lambda n, c, p: c == "JOIN" and n == "pybob")
    ok("both joined; NAMES lists both")

    alice.send(f"PRIVMSG {CHANNEL} :hello over TLS")
    bob.expect("alice's channel message", lambda n, c, p: c == "PRIVMSG" and n == "pyalice" and p == [CHANNEL, "hello over TLS"])
    bob.send("PRIVMSG pyalice :psst, encrypted")
    alice.expect("bob's private message", lambda n, c, p: c == "PRIVMSG" and n == "pybob" and p[-1] == "psst, encrypted")
    ok("channel and private messages delivered")

    alice.send("WHOIS pybob")
    alice.expect("671 for bob", lambda n, c, p: c == "671" and len(p) > 1 and p[1] == "pybob")
    alice.expect("end of WHOIS", lambda n, c, p: c == "318")
    ok("WHOIS says bob is using a secure connection")

    alice.send("QUIT :done")
    bob.expect("alice's QUIT", lambda n, c, p: c == "QUIT" and n == "pyalice")
    alice.expect("ERROR after QUIT", lambda n, c, p: c == "ERROR")
    ok("quit seen by the other client")
    ok("all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
