#!/usr/bin/env python3
"""Regenerate config/seccomp-io-uring.json: Docker's default seccomp profile plus io_uring.

Docker's default profile stopped allowing io_uring_setup, io_uring_enter and io_uring_register
in moby PR 46762. This adds exactly those three back, where and how the old default listed them:
in the unconditional SCMP_ACT_ALLOW names list, right after io_submit. Nothing else changes, and
the output keeps the source's formatting (tab indent, no final newline), so a plain `diff` of the
source and the output shows exactly three added lines. docs/docker.md records the source.

    scripts/seccomp-io-uring.py DEFAULT_JSON > config/seccomp-io-uring.json

DEFAULT_JSON is moby/profiles' seccomp/default.json (also vendored in moby/moby); its SHA-256 is
printed to stderr for docs/docker.md. Python 3 standard library only.
"""

import hashlib
import json
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]
# The name the old default listed them after; if upstream drops it, they go at the end.
ANCHOR = "io_submit"


def unconditional(rule):
    """A rule that allows its names whatever the arguments, architecture or capabilities."""
    return rule.get("action") == "SCMP_ACT_ALLOW" and not any(
        rule.get(key) for key in ("args", "includes", "excludes")
    )


def add_io_uring(profile):
    rules = profile.get("syscalls") or []
    # Any rule naming them (an allow, or a new explicit deny) means upstream changed its mind:
    # a human should look before this profile is refreshed, or dropped.
    named = [n for rule in rules for n in rule.get("names", []) if n in IO_URING]
    if named:
        sys.exit(f"error: the source already names {', '.join(sorted(set(named)))}; look at it first")
    target = next((rule for rule in rules if unconditional(rule)), None)
    if target is None:
        sys.exit("error: the source has no unconditional SCMP_ACT_ALLOW rule to add io_uring to")
    names = target["names"]
    at = names.index(ANCHOR) + 1 if ANCHOR in names else len(names)
    names[at:at] = IO_URING


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DEFAULT_JSON > config/seccomp-io-uring.json")
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    print(f"source sha256: {hashlib.sha256(raw).hexdigest()}", file=sys.stderr)
    profile = json.loads(raw)
    add_io_uring(profile)
    # indent="\t" with the default separators is moby's own formatting of default.json.
    sys.stdout.write(json.dumps(profile, indent="\t"))


if __name__ == "__main__":
    main()
