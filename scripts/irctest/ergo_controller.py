"""Upstream's Ergo controller as it is, with what every server gets here (common.py).

Upstream's config already has what the comparison needs: the name My.Little.Server, no fake lag,
localhost exempt from the connection limits, the listener on 127.0.0.1. One fix: with ssl=True
(IRCTEST_TLS=1, common.py) upstream puts the certificate's paths into the config as Path objects,
which its json.dump cannot write, so every test errors in setup; they are written as strings here.
"""
import json
from typing import Type

from irctest.controllers import ergo

from common import Loopback, Reaper


class ErgoController(Loopback, Reaper, ergo.ErgoController):
    def _write_config(self) -> None:
        with open(self._config_path, "w") as fd:
            json.dump(self._config, fd, default=str)


def get_irctest_controller_class() -> Type[ErgoController]:
    return ErgoController
