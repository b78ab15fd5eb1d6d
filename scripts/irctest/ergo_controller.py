"""Upstream's Ergo controller as it is, with what every server gets here (common.py).

Upstream's config already has what the comparison needs: the name My.Little.Server, no fake lag,
localhost exempt from the connection limits, the listener on 127.0.0.1.
"""
from typing import Type

from irctest.controllers import ergo

from common import Loopback, Reaper


class ErgoController(Loopback, Reaper, ergo.ErgoController):
    pass


def get_irctest_controller_class() -> Type[ErgoController]:
    return ErgoController
