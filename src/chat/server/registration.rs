//! A connection's own lifecycle: PASS, NICK and USER (CAP is in caps.rs) until registration, the welcome burst
//! (with LUSERS and MOTD, which are also commands), nick changes, PING and QUIT.

use std::time::Instant;

use echoport_irc::{LineBuilder, Message, fold, truncate_utf8};

use super::state::make_prefix;
use super::{ChatServer, ClientId, Effects, NICKLEN, QUITLEN, REALLEN, USERLEN, VERSION};

impl ChatServer {
    pub(super) fn cmd_pass(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if self.clients[&id].registered {
            self.reply(fx, id, "462", &[], "You may not reregister");
            return;
        }
        let Some(pass) = msg.param(0) else {
            self.reply(fx, id, "461", &[b"PASS"], "Not enough parameters");
            return;
        };
        self.clients.get_mut(&id).unwrap().pass = Some(pass.to_vec());
    }

    pub(super) fn cmd_user(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        if self.clients[&id].registered {
            self.reply(fx, id, "462", &[], "You may not reregister");
            return;
        }
        let (Some(user), Some(real)) = (msg.nonempty(0), msg.nonempty(3)) else {
            self.reply(fx, id, "461", &[b"USER"], "Not enough parameters");
            return;
        };
        // user = 1*( %x01-09 / %x0B-0C / %x0E-1F / %x21-3F / %x41-FF ); kept to printable
        // ASCII without '@' and '!' so the prefix nick!user@host stays unambiguous.
        let mut user: Vec<u8> =
            user.iter().copied().filter(|&b| b.is_ascii_graphic() && b != b'@' && b != b'!').take(USERLEN).collect();
        if user.is_empty() {
            user = b"user".to_vec();
        }
        let c = self.clients.get_mut(&id).unwrap();
        c.user = Some(user);
        c.realname = truncate_utf8(real, REALLEN).to_vec();
        self.try_register(id, now, fx);
    }

    pub(super) fn cmd_nick(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(new) = msg.nonempty(0) else {
            self.reply(fx, id, "431", &[], "No nickname given");
            return;
        };
        if !valid_nick(new) {
            self.reply(fx, id, "432", &[new], "Erroneous nickname");
            return;
        }
        let key = fold(new);
        if let Some(&owner) = self.nicks.get(&key)
            && owner != id
        {
            self.reply(fx, id, "433", &[new], "Nickname is already in use");
            return;
        }
        let c = self.clients.get_mut(&id).unwrap();
        if c.nick.as_deref() == Some(new) {
            return;
        }
        if let Some(old) = &c.nick {
            let old_key = fold(old);
            if old_key != key {
                self.nicks.remove(&old_key);
            }
        }
        self.nicks.insert(key, id);
        self.remember_nick(id);
        let nick_ts = self.unix_ms(now);
        let c = self.clients.get_mut(&id).unwrap();
        c.nick = Some(new.to_vec());
        c.nick_ts = nick_ts;
        if !c.registered {
            self.try_register(id, now, fx);
            return;
        }
        let old_prefix = std::mem::take(&mut c.prefix);
        c.prefix = make_prefix(new, c.user.as_deref().unwrap_or(b""), &c.host);
        let line = LineBuilder::new(&old_prefix, b"NICK").middle(new).finish();
        fx.send(id, line.clone());
        for p in self.peers(id) {
            fx.send(p, line.clone());
        }
        self.monitor_renamed(id, &old_prefix, fx);
    }

    pub(super) fn try_register(&mut self, id: ClientId, now: Instant, fx: &mut Effects) {
        let c = &self.clients[&id];
        if c.registered || c.cap_negotiating || c.nick.is_none() || c.user.is_none() {
            return;
        }
        self.sasl_abort_on_registration(id, fx);
        let c = &self.clients[&id];
        if let Some(password) = &self.config.password
            && c.pass.as_deref() != Some(password.as_bytes())
        {
            self.reply(fx, id, "464", &[], "Password incorrect");
            self.send_error(fx, id, b"Bad password");
            self.remove_client(id, b"Bad password", fx);
            fx.close.push(id);
            return;
        }
        let unix = self.unix(now);
        let c = self.clients.get_mut(&id).unwrap();
        c.registered = true;
        c.signon = unix;
        c.last_message = now;
        let nick = c.nick.clone().unwrap_or_default();
        c.prefix = make_prefix(&nick, c.user.as_deref().unwrap_or(b""), &c.host);
        let prefix = c.prefix.clone();
        self.registered += 1;
        self.max_registered = self.max_registered.max(self.registered);

        let mut welcome = format!("Welcome to the {} IRC Network ", self.config.network).into_bytes();
        welcome.extend_from_slice(&prefix);
        self.reply_bytes(fx, id, "001", &[], &welcome);
        let server = self.config.server_name.clone();
        self.reply(fx, id, "002", &[], &format!("Your host is {server}, running version {VERSION}"));
        self.reply(fx, id, "003", &[], &format!("This server was created {}", self.created));
        let line = self
            .numeric(id, "004")
            .middle(server.as_bytes())
            .middle(VERSION.as_bytes())
            .middle(b"Biow")
            .middle(b"CIbeiklmnostv")
            .middle(b"Ibeklov")
            .finish();
        fx.send(id, line);
        for tokens in self.isupport.chunks(13) {
            let mut b = self.numeric(id, "005");
            for t in tokens {
                b = b.middle(t);
            }
            fx.send(id, b.trailing(b"are supported by this server"));
        }
        self.send_lusers(id, fx);
        self.send_motd(id, fx);
        self.monitor_signon(id, fx);
    }

    pub(super) fn send_motd(&self, id: ClientId, fx: &mut Effects) {
        let Some(motd) = &self.config.motd else {
            self.reply(fx, id, "422", &[], "MOTD File is missing");
            return;
        };
        let server = &self.config.server_name;
        self.reply(fx, id, "375", &[], &format!("- {server} Message of the day - "));
        for line in motd {
            self.reply(fx, id, "372", &[], &format!("- {line}"));
        }
        self.reply(fx, id, "376", &[], "End of MOTD command");
    }

    pub(super) fn cmd_ping(&self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(token) = msg.param(0) else {
            self.reply(fx, id, "409", &[], "No origin specified");
            return;
        };
        let line = LineBuilder::new(self.server(), b"PONG").middle(self.server()).trailing(token);
        fx.send(id, line);
    }

    pub(super) fn cmd_quit(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let reason = match msg.nonempty(0) {
            Some(r) => [&b"Quit: "[..], truncate_utf8(r, QUITLEN)].concat(),
            None => b"Client Quit".to_vec(),
        };
        self.send_error(fx, id, &reason);
        self.remove_client(id, &reason, fx);
        fx.close.push(id);
    }
}

/// RFC 2812 nickname = ( letter / special ) *( letter / digit / special / "-" ), at most
/// [`NICKLEN`] bytes; special = `[ ] \ ` _ ^ { | }`.
pub fn valid_nick(nick: &[u8]) -> bool {
    let special = |b: u8| matches!(b, b'['..=b'`' | b'{'..=b'}');
    let Some((&first, rest)) = nick.split_first() else {
        return false;
    };
    nick.len() <= NICKLEN
        && (first.is_ascii_alphabetic() || special(first))
        && rest.iter().all(|&b| b.is_ascii_alphanumeric() || special(b) || b == b'-')
}
