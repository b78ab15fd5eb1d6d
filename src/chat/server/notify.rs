//! Telling the people who share a channel with a client (or MONITOR it, with extended-monitor)
//! about it, in the form each asked for: extended-join, away-notify, setname (with the SETNAME
//! command), account-notify and invite-notify. A peer without the capability hears nothing new (or, for JOIN, the plain
//! line).

use std::collections::HashSet;
use std::sync::Arc;

use echoport_irc::{LineBuilder, Message, truncate_utf8};

use super::caps::Caps;
use super::{ChatServer, ClientId, Effects, REALLEN};

impl ChatServer {
    /// Sends `line` to every peer of `id` that enabled `need`, to the clients that MONITOR it
    /// and enabled extended-monitor and `need`, and to `id` itself if it enabled `need` and
    /// `to_self`.
    pub(super) fn notify_peers(&self, fx: &mut Effects, id: ClientId, line: &Arc<[u8]>, need: Caps, to_self: bool) {
        let peers = self.peers(id);
        for &p in &peers {
            if self.caps_of(p).has(need) {
                fx.send(p, line.clone());
            }
        }
        let watchers = self.watchers_of(id);
        if !watchers.is_empty() {
            let peers: HashSet<ClientId> = peers.into_iter().collect();
            for w in watchers {
                let caps = self.caps_of(w);
                if w != id && caps.has(Caps::EXTENDED_MONITOR) && caps.has(need) && !peers.contains(&w) {
                    fx.send(w, line.clone());
                }
            }
        }
        if to_self && self.caps_of(id).has(need) {
            fx.send(id, line.clone());
        }
    }

    /// `id` joined channel `key`: the JOIN to every member (extended-join's form to those that
    /// enabled it), and the joiner's away message to members with away-notify.
    pub(super) fn announce_join(&self, fx: &mut Effects, id: ClientId, key: &[u8]) {
        let (Some(c), Some(ch)) = (self.clients.get(&id), self.channels.get(key)) else { return };
        let plain = LineBuilder::new(&c.prefix, b"JOIN").middle(&ch.name).finish();
        let mut extended: Option<Arc<[u8]>> = None;
        let away = c.away.as_ref().map(|text| LineBuilder::new(&c.prefix, b"AWAY").trailing(text));
        fx.sends.reserve(ch.members.len());
        for &m in ch.members.keys() {
            let caps = self.caps_of(m);
            if caps.has(Caps::EXTENDED_JOIN) {
                let line = extended.get_or_insert_with(|| {
                    LineBuilder::new(&c.prefix, b"JOIN")
                        .middle(&ch.name)
                        .middle(c.account.as_deref().unwrap_or(b"*"))
                        .trailing(&c.realname)
                });
                fx.send(m, line.clone());
            } else {
                fx.send(m, plain.clone());
            }
            if m != id
                && caps.has(Caps::AWAY_NOTIFY)
                && let Some(away) = &away
            {
                fx.send(m, away.clone());
            }
        }
    }

    /// `id` set or cleared its away message (away-notify).
    pub(super) fn announce_away(&self, fx: &mut Effects, id: ClientId) {
        let Some(c) = self.clients.get(&id) else { return };
        let b = LineBuilder::new(&c.prefix, b"AWAY");
        let line = match &c.away {
            Some(text) => b.trailing(text),
            None => b.finish(),
        };
        self.notify_peers(fx, id, &line, Caps::AWAY_NOTIFY, false);
    }

    /// `inviter` invited `target` to channel `key`: the other members that enabled
    /// invite-notify hear of it (only its operators, when the channel is invite-only, as only
    /// they could have invited).
    pub(super) fn announce_invite(&self, fx: &mut Effects, inviter: ClientId, target: ClientId, key: &[u8]) {
        let (Some(c), Some(t), Some(ch)) =
            (self.clients.get(&inviter), self.clients.get(&target), self.channels.get(key))
        else {
            return;
        };
        let line = LineBuilder::new(&c.prefix, b"INVITE").middle(t.nick_or_star()).middle(&ch.name).finish();
        for (&m, status) in &ch.members {
            if m != inviter
                && m != target
                && self.caps_of(m).has(Caps::INVITE_NOTIFY)
                && (status.op || !ch.modes.invite_only)
            {
                fx.send(m, line.clone());
            }
        }
    }

    /// `SETNAME :<realname>` (the setname capability): a new real name, told to the client and
    /// its peers that enabled setname.
    pub(super) fn cmd_setname(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(name) = msg.nonempty(0) else {
            self.fail(fx, id, b"SETNAME", b"INVALID_REALNAME", &[], "Realname is not valid");
            return;
        };
        if truncate_utf8(name, REALLEN).len() != name.len() {
            self.fail(fx, id, b"SETNAME", b"INVALID_REALNAME", &[], "Realname is too long");
            return;
        }
        let c = self.clients.get_mut(&id).unwrap();
        c.realname = name.to_vec();
        let line = LineBuilder::new(&c.prefix, b"SETNAME").trailing(name);
        self.notify_peers(fx, id, &line, Caps::SETNAME, true);
    }

    /// A standard reply (<https://ircv3.net/specs/extensions/standard-replies>):
    /// `FAIL <command> <code> [context...] :<description>`.
    pub(super) fn fail(
        &self,
        fx: &mut Effects,
        id: ClientId,
        command: &[u8],
        code: &[u8],
        context: &[&[u8]],
        text: &str,
    ) {
        let mut b = LineBuilder::new(self.server(), b"FAIL").middle(command).middle(code);
        for c in context {
            b = b.middle(c);
        }
        fx.send(id, b.trailing(text.as_bytes()));
    }
}
