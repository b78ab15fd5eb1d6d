"""What our controllers add to upstream's, the same for every server.

- Loopback: irctest picks a free port by binding to all interfaces and hands the server the
  address it got, 0.0.0.0, and upstream's InspIRCd and ngIRCd configs listen on it. Nothing here
  listens beyond loopback (house rule), so the controllers report 127.0.0.1 instead; the test
  clients connect there too, so nothing else changes.
- Reaper: a test whose setUp skips after the server started (server_tests/bot_mode.py, on every
  server without BOT mode) never reaches tearDown, and its server would outlive the run; the
  reaper stops those when pytest exits.
- patch(): the way our controllers change one of upstream's config templates.
- TLS: with IRCTEST_TLS=1 (scripts/irctest.sh's `tls` selection) every test runs over TLS. The
  pinned irctest has no server test of its own that does (BaseServerTestCase.ssl is False and no
  test overrides it; its STARTTLS test went in 2019, irctest/client_tests/tls.py tests clients), so
  this switches its `ssl` on for every test: the controllers are run with ssl=True, which makes
  the test's port a TLS listener (upstream's Ergo controller does it; ours for echoport, ngIRCd and
  InspIRCd, with irctest's self-signed certificate from BaseController.gen_ssl), and every test
  client does a TLS handshake right after connecting, trusting any certificate.
"""
import atexit
import os
import ssl
from typing import Any, List, Tuple

from irctest import cases, client_mock

TLS = os.environ.get("IRCTEST_TLS") == "1"

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


if TLS:
    cases.BaseServerTestCase.ssl = True
    _plain_connect = client_mock.ClientMock.connect

    class _Socket(ssl.SSLSocket):
        """Says "the server closed" (with close_notify or without) as a plain socket does, which
        is what irctest's client takes for a disconnect: no bytes from recv, BrokenPipeError
        from send."""

        def recv(self, bufsize: int = 1024, flags: int = 0) -> bytes:
            try:
                return super().recv(bufsize, flags)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

        def send(self, data: Any, flags: int = 0) -> int:
            try:
                return super().send(data, flags)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError) as e:
                raise BrokenPipeError(str(e)) from e

    # The test's certificate is made per server start; identity is not what these tests check.
    _context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _context.sslsocket_class = _Socket
    _context.check_hostname = False
    _context.verify_mode = ssl.CERT_NONE

    def _tls_connect(self: client_mock.ClientMock, hostname: str, port: int) -> None:
        _plain_connect(self, hostname, port)
        # The handshake runs here, under the client's 1-second socket timeout.
        self.conn = _context.wrap_socket(self.conn)
        self.ssl = True

    client_mock.ClientMock.connect = _tls_connect  # type: ignore[method-assign]
