"""Upstream's InspIRCd controller for the Debian package (InspIRCd 3.15), with flood control off.

Upstream's controller handles InspIRCd 3 and 4; these differ here, and only these:
- flood control off, as for every server in the comparison (upstream leaves InspIRCd's fake lag
  and command rate at their defaults);
- --runasroot when running as root: InspIRCd refuses to start as root without it;
- the listener on 127.0.0.1 (common.py);
- its debug log, one file per test, in the temporary directory ($TMPDIR: scripts/irctest.sh
  gives each run its own) rather than in /tmp itself, where each run would leave 400 files;
- with IRCTEST_TLS=1 (common.py), TLS on the test's port: upstream loads ssl_openssl, which the
  Debian package does not ship (it has ssl_gnutls only), and its <bind> names no TLS profile, so
  its ssl=True still listens in plain text.
"""
import os
import tempfile
from typing import Any, Type

from irctest.controllers import inspircd

from common import TLS, Loopback, Reaper, patch

# The module's template is patched in place: it is read by upstream's run(), and one pytest
# process runs one controller.
inspircd.TEMPLATE_CONFIG = patch(
    inspircd.TEMPLATE_CONFIG,
    '<connect allow="*"',
    '<connect allow="*" fakelag="no" commandrate="10000000" threshold="100000"',
)
inspircd.TEMPLATE_CONFIG = patch(
    inspircd.TEMPLATE_CONFIG,
    'target="/tmp/ircd-{port}.log"',
    'target="{}/ircd-{{port}}.log"'.format(tempfile.gettempdir()),
)

if TLS:
    inspircd.TEMPLATE_CONFIG = patch(
        inspircd.TEMPLATE_CONFIG,
        '<bind address="{hostname}" port="{port}" type="clients">',
        '<bind address="{hostname}" port="{port}" type="clients" sslprofile="irctest">',
    )
    inspircd.TEMPLATE_SSL_CONFIG = """
<module name="ssl_gnutls">
<sslprofile name="irctest" provider="gnutls" certfile="{pem_path}" keyfile="{key_path}" dhfile="{dh_path}" requestclientcert="no">
"""


class InspircdController(Loopback, Reaper, inspircd.InspircdController):
    def execute(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if os.geteuid() == 0:
            command = [*command, "--runasroot"]
        return super().execute(command, *args, **kwargs)


def get_irctest_controller_class() -> Type[InspircdController]:
    return InspircdController
