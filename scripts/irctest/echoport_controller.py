"""irctest controller for echoport in chat mode (pytest --controller echoport_controller).

echoport takes everything on its command line, so there is no config file (with ssl, only
irctest's certificate in a temporary directory): the name and the operator irctest's tests expect
(My.Little.Server, operuser/operpassword), flood control off as upstream configures every server,
the password when a test asks for one, and with ssl the test's port as a TLS listener.

What irctest may assume of the server is declared below and nowhere else (chathistory, UTF8ONLY and
one account are switched on with their flags, as upstream's Ergo config switches them on). Each declaration turns
the skips of its tests into failures when the server does not deliver, so declare a feature only
once it works: a capability in `capabilities` (irctest.specifications.Capabilities), a SASL
mechanism in `supported_sasl_mechanisms`, an ISUPPORT token in `isupport` (checked by
server_tests/isupport.py), an optional behaviour in `optional_behaviors`. The mute extban's tests
run only when `extban_mute_char` names its letter.
"""
import functools
import os
from pathlib import Path
import shutil
import subprocess
from typing import Dict, FrozenSet, Optional, Set, Type, Union

from irctest import patma
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

from common import Loopback, Reaper

# scripts/irctest.sh sets it; the default is the release build of this checkout.
BINARY = os.environ.get(
    "IRCTEST_ECHOPORT_BIN",
    str(Path(__file__).resolve().parents[2] / "target" / "release" / "echoport"),
)


@functools.lru_cache(maxsize=None)
def account_hash() -> str:
    """An argon2 hash for the one account the server is given, made once by the binary itself.

    irctest registers accounts through services (its registerUser), which echoport does not
    have: its accounts come from the config. One account makes the server offer `sasl`, as a
    deployment with accounts does; tests that need their own accounts are services tests.
    """
    out = subprocess.run(
        [BINARY, "hash-password"], input=b"irctest-unused\n", capture_output=True, check=True, timeout=60
    )
    return out.stdout.decode().strip()


class EchoportController(Loopback, Reaper, BaseServerController, DirectoryBasedController):
    software_name = "echoport"
    supports_sts = False
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    capabilities: FrozenSet[Capabilities] = frozenset(
        {
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.EXTENDED_MONITOR,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_REDACTION,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTI_PREFIX,
            Capabilities.READ_MARKER,
            Capabilities.SERVER_TIME,
            Capabilities.SETNAME,
        }
    )
    optional_behaviors: FrozenSet[OptionalBehaviors] = frozenset(
        {
            OptionalBehaviors.BAN_EXCEPTION_MODE,
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.INVITE_EXCEPTION_MODE,
            OptionalBehaviors.INVITE_LIST,
            OptionalBehaviors.INVITE_OVERRIDES_LIMIT,
            OptionalBehaviors.NO_CTCP,
        }
    )
    # What 005 says with the flags below (isupport.py testValues checks each).
    isupport: Dict[str, Union[str, patma.Operator, None]] = {
        "BOT": "B",
        "CASEMAPPING": "rfc1459",
        "CHANMODES": "beI,k,l,Cimnst",
        "CHATHISTORY": patma.ANYSTR,
        "ELIST": "CMNTU",
        "EXCEPTS": "e",
        "INVEX": "I",
        "MONITOR": patma.ANYSTR,
        "MSGREFTYPES": "msgid,timestamp",
        "PREFIX": "(ov)@+",
        "STATUSMSG": "@+",
        "TARGMAX": patma.ANYSTR,
        "UTF8ONLY": None,
        "WHOX": None,
    }
    extban_mute_char: Optional[str] = "m"

    def gen_ssl(self) -> None:
        """irctest's certificate, made X.509 v3. Upstream's (`openssl x509 -req` with no extensions)
        is v1, which rustls refuses to serve (webpki: UnsupportedCertVersion) while GnuTLS and
        OpenSSL servers take it; the key, the paths and dh.pem stay upstream's."""
        super().gen_ssl()
        subprocess.run(
            [self.openssl_bin, "req", "-x509", "-new", "-key", self.key_path, "-out", self.pem_path,
             "-days", "2", "-batch", "-subj", "/CN=My.Little.Server"],
            capture_output=True, check=True, timeout=60,
        )

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str] = None,
        websocket_hostname: Optional[str] = None,
        websocket_port: Optional[int] = None,
    ) -> None:
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if run_services:
            raise NotImplementedByController("services")
        assert self.proc is None
        self.hostname = hostname
        self.port = port
        if ssl:
            # The test's port speaks TLS, as for upstream's Ergo and ngIRCd controllers; the plain
            # listener goes on a port nobody connects to.
            self.create_config()
            self.gen_ssl()
            _, plain_port = self.get_hostname_and_port()
            listeners = [
                "--listen", f"{hostname}:{plain_port}",
                "--tls-listen", f"{hostname}:{port}",
                "--tls-cert", str(self.pem_path),
                "--tls-key", str(self.key_path),
            ]
        else:
            listeners = ["--listen", f"{hostname}:{port}"]
        command = [
            BINARY,
            "--mode", "chat",
            *listeners,
            "--server-name", "My.Little.Server",
            "--server-info", "test server",
            "--flood-rate", "0",
            "--oper", "operuser:operpassword",
            "--stats-interval", "0",
            # Off by default; on here as Ergo's irctest config has them: history for
            # draft/chathistory, UTF8ONLY, and an account so that sasl is offered.
            "--history", "1000",
            "--utf8-only",
            "--account", f"irctest-unused:{account_hash()}",
        ]
        if password is not None:
            command += ["--password", password]
        # As upstream's controllers do: faketime speeds the server's clock up for the tests that
        # wait minutes (LIST C</T< filters) and is skipped where it is not installed.
        if faketime and shutil.which("faketime"):
            command = ["faketime", "-f", faketime, *command]
            self.faketime_enabled = True
        # Every flag has an ECHOPORT_* variable, and the flags above win over them, but one set
        # in the caller's shell for another purpose (say ECHOPORT_CONFIG) would still leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOPORT_")}
        self.proc = self.execute(command, env=env)
        # Ready once it answers a registration-less QUIT on the port (upstream's helper), so a
        # server that dies at startup fails here with its exit status, not in a test's client.
        self.wait_for_port()


def get_irctest_controller_class() -> Type[EchoportController]:
    return EchoportController
