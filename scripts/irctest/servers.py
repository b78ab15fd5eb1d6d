"""irctest server controllers for echoport and the chat peers (ngIRCd, InspIRCd 3).

irctest imports a controller module and asks it for a class; scripts/irctest.sh picks the server
with IRCTEST_SERVER. Every server gets what irctest's own controllers give theirs: the name
My.Little.Server, the password irctest asks for, flood control off, no DNS or ident lookups.
"""
import os
import subprocess

from irctest.basecontrollers import BaseServerController, DirectoryBasedController, NotImplementedByController

NAME = 'My.Little.Server'

NGIRCD = """[Global]
    Name = {name}
    Info = irctest
    Listen = {host}
    Ports = {port}
    MotdPhrase = irctest
    {password}
[Limits]
    MaxConnectionsIP = 0
    MaxJoins = 0
    MaxPenaltyTime = 0
[Options]
    PAM = no
    DNS = no
    Ident = no
"""

INSPIRCD = """<server name="{name}" description="irctest" network="irctest">
<admin name="irctest" nick="irctest" email="irctest@localhost">
<bind address="{host}" port="{port}" type="clients">
<pid file="{dir}/inspircd.pid">
<performance clonesonconnect="no">
<connect allow="*" resolvehostnames="no" useident="no" localmax="1000" globalmax="1000"
         threshold="100000" commandrate="10000000" fakelag="no" {password}>
<log method="file" type="*" level="default" target="{dir}/inspircd.log">
"""


class Controller(BaseServerController, DirectoryBasedController):
    supported_sasl_mechanisms = set()

    def run(self, hostname, port, password=None, ssl=False, restricted_metadata_keys=None,
            valid_metadata_keys=None, invalid_metadata_keys=None):
        assert self.proc is None
        if ssl:
            # The one TLS test carries no RFC tag but runs anyway; none of the servers is given TLS.
            raise NotImplementedByController('TLS')
        self.port = port
        self.create_config()
        self.proc = subprocess.Popen(self.command(hostname, port, password),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def write(self, name, text):
        with self.open_file(name, 'w') as f:
            f.write(text)
        return os.path.join(self.directory, name)


class Echoport(Controller):
    software_name = 'echoport'

    def command(self, host, port, password):
        args = [os.environ['ECHOPORT_BIN'], '--mode', 'chat', '--listen', '{}:{}'.format(host, port),
                '--server-name', NAME, '--flood-rate', '0', '--stats-interval', '0']
        return args + (['--password', password] if password else [])


class Ngircd(Controller):
    software_name = 'ngIRCd'

    def command(self, host, port, password):
        conf = NGIRCD.format(name=NAME, host=host, port=port,
                             password='Password = {}'.format(password) if password else '')
        return ['ngircd', '--nodaemon', '--config', self.write('ngircd.conf', conf)]


class Inspircd(Controller):
    software_name = 'InspIRCd'

    def command(self, host, port, password):
        conf = INSPIRCD.format(name=NAME, host=host, port=port, dir=self.directory,
                               password='password="{}"'.format(password) if password else '')
        return ['inspircd', '--nofork', '--runasroot', '--config', self.write('inspircd.conf', conf)]


def get_irctest_controller_class():
    return {'echoport': Echoport, 'ngircd': Ngircd, 'inspircd': Inspircd}[os.environ['IRCTEST_SERVER']]
