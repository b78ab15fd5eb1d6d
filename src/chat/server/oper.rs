//! IRC operators: OPER, KILL and CHGHOST.

use std::sync::Arc;

use echoport_irc::{LineBuilder, Message, truncate_utf8};

use super::accounts::Purpose;
use super::caps::Caps;
use super::state::make_prefix;
use super::{ChatServer, ClientId, Effects, HOSTLEN, QUITLEN, USERLEN};
use crate::chat::passwords;

impl ChatServer {
    /// A plain-text operator password is compared here; a hashed one is checked by the engine
    /// off the state lock, and the answer comes back through `verified` (see `accounts.rs`).
    pub(super) fn cmd_oper(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let (Some(name), Some(pass)) = (msg.param(0), msg.param(1)) else {
            self.reply(fx, id, "461", &[b"OPER"], "Not enough parameters");
            return;
        };
        let entries = self.config.opers.iter().filter(|(n, _)| n.as_bytes() == name);
        let (hashed, plain): (Vec<_>, Vec<_>) = entries.map(|(_, p)| p).partition(|p| passwords::is_hash(p));
        if plain.iter().any(|p| p.as_bytes() == pass) {
            self.become_oper(id, fx);
        } else if let Some(hash) = hashed.first() {
            let hash = Arc::from(hash.as_str());
            self.start_check(id, Purpose::Oper, hash, pass.to_vec(), fx);
        } else {
            self.reply(fx, id, "464", &[], "Password incorrect");
            self.auth_failed(id, fx);
        }
    }

    /// 381, and `MODE +o` unless the client was an operator already.
    pub(super) fn become_oper(&mut self, id: ClientId, fx: &mut Effects) {
        self.reply(fx, id, "381", &[], "You are now an IRC operator");
        let c = self.clients.get_mut(&id).unwrap();
        if c.oper {
            return;
        }
        c.oper = true;
        self.opers += 1;
        let nick = c.nick_or_star().to_vec();
        let line = LineBuilder::new(&c.prefix, b"MODE").middle(&nick).middle(b"+o").finish();
        fx.send(id, line);
    }

    /// `CHGHOST <nick> <user> <host>`: a new user name and host for a user (a cloak, say). Peers
    /// that enabled chghost see `CHGHOST`; the others see nothing (their next line from the
    /// user simply shows the new prefix).
    pub(super) fn cmd_chghost(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if !self.clients[&id].oper {
            self.reply(fx, id, "481", &[], "Permission Denied- You're not an IRC operator");
            return;
        }
        let (Some(nick), Some(user), Some(host)) = (msg.nonempty(0), msg.nonempty(1), msg.nonempty(2)) else {
            self.reply(fx, id, "461", &[b"CHGHOST"], "Not enough parameters");
            return;
        };
        let Some(t) = self.find_nick(nick) else {
            self.reply(fx, id, "401", &[nick], "No such nick/channel");
            return;
        };
        let word = |w: &[u8], max: usize| {
            w.len() <= max && !w.starts_with(b":") && w.iter().all(|&b| b.is_ascii_graphic() && b != b'@' && b != b'!')
        };
        if !word(user, USERLEN) || !word(host, HOSTLEN) {
            self.fail(fx, id, b"CHGHOST", b"INVALID_PARAMS", &[], "Invalid user name or host");
            return;
        }
        let c = self.clients.get_mut(&t).unwrap();
        let old = std::mem::take(&mut c.prefix);
        c.user = Some(user.to_vec());
        c.host = String::from_utf8_lossy(host).into_owned();
        c.prefix = make_prefix(c.nick_or_star(), user, &c.host);
        let line = LineBuilder::new(&old, b"CHGHOST").middle(user).middle(host).finish();
        self.notify_peers(fx, t, &line, Caps::CHGHOST, true);
    }

    pub(super) fn cmd_kill(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if !self.clients[&id].oper {
            self.reply(fx, id, "481", &[], "Permission Denied- You're not an IRC operator");
            return;
        }
        let (Some(nick), Some(comment)) = (msg.nonempty(0), msg.nonempty(1)) else {
            self.reply(fx, id, "461", &[b"KILL"], "Not enough parameters");
            return;
        };
        let Some(t) = self.find_nick(nick) else {
            self.reply(fx, id, "401", &[nick], "No such nick/channel");
            return;
        };
        let killer = self.nick_of(id);
        let target_nick = self.nick_of(t);
        let line = LineBuilder::new(&self.clients[&id].prefix, b"KILL").middle(&target_nick).trailing(comment);
        fx.send(t, line);
        let reason = [&b"Killed ("[..], &killer, b" (", truncate_utf8(comment, QUITLEN), b"))"].concat();
        self.send_error(fx, t, &reason);
        self.remove_client(t, &reason, fx);
        fx.close.push(t);
    }
}
