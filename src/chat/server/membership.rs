//! Who is whom and who is where: nick lookups, the peers of a client, and the bookkeeping that
//! keeps both sides of every membership and invitation in step as clients join, leave and go.
//! Each step is O(1) (amortised) per membership touched, whatever the size of the channel: a
//! 20,000-member channel emptying costs its fan-out, not a scan per departure.

use echoport_irc::{LineBuilder, fold};

use super::idhash::IdSet;
use super::state::{Key, Member};
use super::{ChatServer, ClientId, Effects};

impl ChatServer {
    /// A registered client by nick (folded lookup).
    pub(super) fn find_nick(&self, nick: &[u8]) -> Option<ClientId> {
        let id = *self.nicks.get(&*fold(nick))?;
        self.clients.get(&id).is_some_and(|c| c.registered).then_some(id)
    }

    pub(super) fn nick_of(&self, id: ClientId) -> Vec<u8> {
        self.clients.get(&id).map(|c| c.nick_or_star().to_vec()).unwrap_or_else(|| b"*".to_vec())
    }

    /// Everyone sharing a channel with `id`, each once, without `id`. Linear in the members of
    /// its channels: the largest channel's members are taken as they are and only the others
    /// are checked against it (and each other), so a QUIT from one big channel costs its fan-out
    /// rather than a sort of it.
    pub(super) fn peers(&self, id: ClientId) -> Vec<ClientId> {
        let Some(c) = self.clients.get(&id) else {
            return Vec::new();
        };
        let mut chans: Vec<_> = c.channels.iter().filter_map(|k| self.channels.get(k)).collect();
        let Some(big) = chans.iter().enumerate().max_by_key(|(_, ch)| ch.members.len()).map(|(i, _)| i) else {
            return Vec::new();
        };
        let big = chans.swap_remove(big);
        let mut peers: Vec<ClientId> = big.members.keys().copied().filter(|&m| m != id).collect();
        let mut seen = IdSet::default();
        for ch in chans {
            for &m in ch.members.keys() {
                if m != id && !big.has(m) && seen.insert(m) {
                    peers.push(m);
                }
            }
        }
        peers
    }

    /// Makes `id` a member of the existing channel `key` with status `member`, using up any
    /// invitation it had there. The caller has checked the channel's modes and limits.
    pub(super) fn add_member(&mut self, id: ClientId, key: Key, member: Member) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.members.insert(id, member);
        if ch.invited.remove(&id) {
            self.forget_invite(id, &key);
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.channels.push(key);
        }
    }

    /// Records that `id` is invited to channel `key` (both sides; again is a no-op).
    pub(super) fn add_invite(&mut self, id: ClientId, key: Key) {
        if let Some(ch) = self.channels.get_mut(&key)
            && ch.invited.insert(id)
        {
            self.invites.entry(id).or_default().insert(key);
        }
    }

    /// Drops channel `key` from `id`'s invitations (the channel side is the caller's).
    fn forget_invite(&mut self, id: ClientId, key: &[u8]) {
        if let Some(keys) = self.invites.get_mut(&id) {
            keys.remove(key);
            if keys.is_empty() {
                self.invites.remove(&id);
            }
        }
    }

    /// Removes `id` from channel `key` (deleting the channel when it empties).
    pub(super) fn leave_channel(&mut self, id: ClientId, key: &[u8]) {
        self.drop_membership(id, key);
        if let Some(c) = self.clients.get_mut(&id)
            && let Some(i) = c.channels.iter().position(|k| &**k == key)
        {
            // `remove`, not `swap_remove`: the list keeps joining order for WHOIS and JOIN 0.
            c.channels.remove(i);
        }
    }

    /// The channel side of leaving: `id` out of `key`'s members, and the channel gone (with
    /// its invitations) once nobody is left in it.
    fn drop_membership(&mut self, id: ClientId, key: &[u8]) {
        let Some(ch) = self.channels.get_mut(key) else {
            return;
        };
        ch.members.swap_remove(&id);
        if !ch.members.is_empty() {
            return;
        }
        if let Some(ch) = self.channels.remove(key) {
            self.forget_history(&ch.history);
            for invitee in ch.invited {
                self.forget_invite(invitee, key);
            }
        }
    }

    pub(super) fn remove_client(&mut self, id: ClientId, reason: &[u8], fx: &mut Effects) {
        if !self.clients.contains_key(&id) {
            return;
        }
        self.remember_nick(id);
        let peers = self.peers(id);
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        if c.registered && !peers.is_empty() {
            let line = LineBuilder::new(&c.prefix, b"QUIT").trailing(reason);
            fx.sends.reserve(peers.len());
            for p in peers {
                fx.send(p, line.clone());
            }
        }
        for key in &c.channels {
            self.drop_membership(id, key);
        }
        for key in self.invites.remove(&id).unwrap_or_default() {
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.invited.remove(&id);
            }
        }
        if let Some(nick) = &c.nick {
            let key = fold(nick);
            if self.nicks.get(&key) == Some(&id) {
                self.nicks.remove(&key);
            }
        }
        self.monitor_signoff(id, c.nick.as_deref().filter(|_| c.registered), fx);
        if c.registered {
            self.registered -= 1;
            self.invisible -= usize::from(c.invisible);
        }
        if c.oper {
            self.opers -= 1;
        }
    }
}
