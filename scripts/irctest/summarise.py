"""Summarise one scripts/irctest.sh run from pytest's junit XML files.

    summarise.py OUT_DIR IRCTEST_COMMIT SERVER=LABEL... -- SELECTION=LABEL...

Reads OUT_DIR/<server>-<selection>.xml and prints one table, server x selection, of passed /
failed / skipped; writes OUT_DIR/failed.txt (each failed test with the first line of its reason)
and OUT_DIR/skipped.txt (skips grouped by reason, with counts and the tests). A failure and an
error (a test whose setup broke) both count as failed; an expected failure (irctest's
xfailIfSoftware: a known quirk of that server) counts as skipped, with its reason, as pytest's own
junit file files it.
"""
from collections import Counter, defaultdict
import os
import sys
import xml.etree.ElementTree as ET


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:200]
    return "(no message)"


def results(path):
    """[(test id, outcome, reason)] of one junit file; outcome is passed, failed or skipped.

    A test that failed and then broke in teardown has two testcase elements; it counts once, as
    failed with the first reason."""
    out = {}
    for case in ET.parse(path).iter("testcase"):
        test = "{}::{}".format(case.get("classname", "").replace("irctest.server_tests.", ""),
                               case.get("name"))
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            result = ("failed", first_line(bad.get("message") or bad.text))
        elif skip is not None:
            reason = first_line(skip.get("message"))
            if skip.get("type") == "pytest.xfail":
                reason = "xfail: " + reason
            result = ("skipped", reason)
        else:
            result = ("passed", "")
        if out.get(test, ("",))[0] != "failed":
            out[test] = result
    return [(test, outcome, reason) for test, (outcome, reason) in out.items()]


def main(argv):
    out_dir, commit = argv[0], argv[1]
    split = argv.index("--")
    servers = [a.split("=", 1) for a in argv[2:split]]
    selections = [a.split("=", 1) for a in argv[split + 1:]]
    cells, failed, skipped = {}, [], []
    for server, _ in servers:
        for sel, _ in selections:
            path = os.path.join(out_dir, f"{server}-{sel}.xml")
            if not os.path.exists(path):
                continue
            res = results(path)
            n = Counter(outcome for _, outcome, _ in res)
            cells[server, sel] = (len(res), n["passed"], n["failed"], n["skipped"])
            failed += [f"{server} {sel} {t}: {r}" for t, o, r in res if o == "failed"]
            by_reason = defaultdict(list)
            for t, o, r in res:
                if o == "skipped":
                    by_reason[r].append(t)
            skipped.append(f"== {server} {sel}: {n['skipped']} skipped")
            for reason, tests in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                skipped.append(f"{len(tests):4d}  {reason}")
                skipped += [f"        {t}" for t in tests]

    if not servers:
        print("no server ran")
        return
    print(f"irctest {commit[:12]}: passed / failed / skipped")
    print("| selection | " + " | ".join(label for _, label in servers) + " |")
    print("|---" * (len(servers) + 1) + "|")
    for sel, label in selections:
        totals = {cells[s, sel][0] for s, _ in servers if (s, sel) in cells}
        row = [f"{label} ({'/'.join(map(str, sorted(totals))) or '?'} tests)"]
        for server, _ in servers:
            cell = cells.get((server, sel))
            row.append("{} / {} / {}".format(*cell[1:]) if cell else "did not run (see log)")
        print("| " + " | ".join(row) + " |")
    with open(os.path.join(out_dir, "failed.txt"), "w") as f:
        f.write("".join(line + "\n" for line in failed))
    with open(os.path.join(out_dir, "skipped.txt"), "w") as f:
        f.write("".join(line + "\n" for line in skipped))


if __name__ == "__main__":
    main(sys.argv[1:])
