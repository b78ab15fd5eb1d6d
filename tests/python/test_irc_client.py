#!/usr/bin/env python3
"""A real IRC client library (the `irc` package from PyPI, jaraco/irc) against echoport's chat mode.

Usage: test_irc_client.py PORT   (echoport --mode chat listening on 127.0.0.1:PORT)

Two `irc.client` connections register, join a channel, exchange a channel message and a private
message, and one quits. Exits 0 only if every expected event arrived, each within a bounded wait;
otherwise prints what was missing and every event seen, and exits 1. Driven by tests/chat_pyclient.rs,
which installs the package into target/pyenv.
"""

import sys
import time

STEP_TIMEOUT = 20.0  # seconds for each expected event (CI is a loaded 2-core box)
CHANNEL = "#pytest"


def main() -> int:
    import irc.client  # imported here so that merely collecting this file needs no package

    port = int(sys.argv[1])
    reactor = irc.client.Reactor()
    seen = []  # (connection name, event type, source nick, target, arguments)

    alice = reactor.server()
    bob = reactor.server()
    names = {id(alice): "alice", id(bob): "bob"}

    def record(connection, event):
        source = event.source.nick if event.source and hasattr(event.source, "nick") else event.source
        seen.append((names.get(id(connection), "?"), event.type, source, event.target, list(event.arguments)))

    reactor.add_global_handler("all_events", record, -20)

    def wait_for(what, pred):
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            for entry in seen:
                if pred(*entry):
                    return entry
            reactor.process_once(0.05)
        print(f"FAIL: no {what} within {STEP_TIMEOUT}s; events seen:", flush=True)
        for entry in seen:
            print(f"    {entry}", flush=True)
        sys.exit(1)

    def ok(what):
        print(f"ok: {what}", flush=True)

    alice.connect("127.0.0.1", port, "pyalice", username="alice", ircname="Py Alice")
    bob.connect("127.0.0.1", port, "pybob", username="bob", ircname="Py Bob")

    wait_for("welcome for alice", lambda c, t, s, tg, a: c == "alice" and t == "welcome")
    wait_for("welcome for bob", lambda c, t, s, tg, a: c == "bob" and t == "welcome")
    ok("both registered (001)")

    alice.join(CHANNEL)
    wait_for("alice's JOIN", lambda c, t, s, tg, a: c == "alice" and t == "join" and s == "pyalice")
    wait_for("alice's end of NAMES", lambda c, t, s, tg, a: c == "alice" and t == "endofnames")
    bob.join(CHANNEL)
    wait_for("bob's JOIN", lambda c, t, s, tg, a: c == "bob" and t == "join" and s == "pybob")
    names_reply = wait_for("bob's NAMES reply", lambda c, t, s, tg, a: c == "bob" and t == "namreply")
    members = sorted(names_reply[4][-1].split())
    if members != ["@pyalice", "pybob"]:
        print(f"FAIL: NAMES on join listed {members}, expected ['@pyalice', 'pybob']", flush=True)
        return 1
    wait_for("bob's JOIN seen by alice", lambda c, t, s, tg, a: c == "alice" and t == "join" and s == "pybob")
    ok("both joined; each saw the other's JOIN; NAMES lists both")

    alice.privmsg(CHANNEL, "hello from alice")
    wait_for(
        "alice's channel message at bob",
        lambda c, t, s, tg, a: c == "bob" and t == "pubmsg" and s == "pyalice" and tg == CHANNEL
        and a == ["hello from alice"],
    )
    ok("channel message delivered")

    bob.privmsg("pyalice", "psst, alice")
    wait_for(
        "bob's private message at alice",
        lambda c, t, s, tg, a: c == "alice" and t == "privmsg" and s == "pybob" and tg == "pyalice"
        and a == ["psst, alice"],
    )
    ok("private message delivered")

    bob.quit("bye now")
    quit_event = wait_for("bob's QUIT at alice", lambda c, t, s, tg, a: c == "alice" and t == "quit" and s == "pybob")
    if not quit_event[4] or "bye now" not in quit_event[4][0]:
        print(f"FAIL: QUIT without its reason: {quit_event}", flush=True)
        return 1
    wait_for("bob's disconnect", lambda c, t, s, tg, a: c == "bob" and t == "disconnect")
    ok("quit broadcast with its reason; bob disconnected")

    # Nothing arrived twice: one channel message and one private message.
    pubmsgs = [e for e in seen if e[0] == "bob" and e[1] == "pubmsg"]
    privmsgs = [e for e in seen if e[0] == "alice" and e[1] == "privmsg"]
    echoed = [e for e in seen if e[0] == "alice" and e[1] == "pubmsg"]
    if len(pubmsgs) != 1 or len(privmsgs) != 1 or echoed:
        print(f"FAIL: duplicates or echo: pubmsg at bob {pubmsgs}, privmsg at alice {privmsgs}, "
              f"echo at alice {echoed}", flush=True)
        return 1

    alice.quit("done")
    wait_for("alice's disconnect", lambda c, t, s, tg, a: c == "alice" and t == "disconnect")
    # The only ERROR lines expected are the servers' acknowledgements of the two QUITs.
    errors = [e for e in seen if e[1] == "error" and "Closing Link" not in " ".join([str(e[3])] + e[4])]
    if errors:
        print(f"FAIL: unexpected ERROR events: {errors}", flush=True)
        return 1
    ok(f"all {len(seen)} events as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
