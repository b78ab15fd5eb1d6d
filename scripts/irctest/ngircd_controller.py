"""Upstream's ngIRCd controller for the Debian package (ngIRCd 26.1), with its limits off.

ngIRCd reads a section named twice as one, so the additions go in sections appended to upstream's
template, which stays as it is:
- Listen: upstream's "Bind" is not an ngIRCd option (ngIRCd ignores it and listens on every
  interface); 127.0.0.1 as for every server here (common.py);
- no flood control (MaxPenaltyTime 0) and no per-address connection or join caps, as the other
  servers are configured by upstream (Ergo exempts localhost, InspIRCd allows 1000 per address);
- with IRCTEST_TLS=1 (common.py), an [SSL] section: upstream's run() moves the plain port aside and
  passes the test's port as tls_port with irctest's certificate, but its template never uses them,
  so nothing would listen on the test's port. (No DHFile: upstream passes none to the template;
  ngIRCd then makes its own DH parameters at start, about a second.)
"""
from typing import Type

from irctest.controllers import ngircd

from common import TLS, Loopback, Reaper, patch

ngircd.TEMPLATE_CONFIG = patch(
    ngircd.TEMPLATE_CONFIG,
    "[Limits]\n",
    """[Global]
    Listen = {hostname}

[Limits]
    MaxPenaltyTime = 0
    MaxConnectionsIP = 0
    MaxJoins = 0

[Limits]
""",
)

if TLS:
    ngircd.TEMPLATE_CONFIG += """
[SSL]
    CertFile = {pem_path}
    KeyFile = {key_path}
    Ports = {tls_port}
"""


class NgircdController(Loopback, Reaper, ngircd.NgircdController):
    pass


def get_irctest_controller_class() -> Type[NgircdController]:
    return NgircdController
