"""What our controllers add to upstream's, the same for every server.

- Loopback: irctest picks a free port by binding to all interfaces and hands the server the
  address it got, 0.0.0.0, and upstream's InspIRCd and ngIRCd configs listen on it. Nothing here
  listens beyond loopback (house rule), so the controllers report 127.0.0.1 instead; the test
  clients connect there too, so nothing else changes.
- Reaper: a test whose setUp skips after the server started (server_tests/bot_mode.py, on every
  server without BOT mode) never reaches tearDown, and its server would outlive the run; the
  reaper stops those when pytest exits.
- patch(): the way our controllers change one of upstream's config templates.
"""
import atexit
from typing import Any, List, Tuple

_started: List[Any] = []


class Loopback:
    def get_hostname_and_port(self) -> Tuple[str, int]:
        _, port = super().get_hostname_and_port()  # type: ignore[misc]
        return ("127.0.0.1", port)


class Reaper:
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        proc = super().execute(*args, **kwargs)  # type: ignore[misc]
        _started.append(self)
        return proc


@atexit.register
def _reap() -> None:
    for controller in _started:
        if controller.proc is not None:
            controller.kill()


def patch(template: str, old: str, new: str) -> str:
    """Replace `old` in one of upstream's config templates, failing loudly if upstream changed it
    (the irctest commit is pinned, so this only fires when someone moves the pin)."""
    assert old in template, f"upstream template no longer contains {old!r}"
    return template.replace(old, new, 1)
