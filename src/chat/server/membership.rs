//! Who is whom and who is where: nick lookups, the peers of a client, and the bookkeeping that
//! keeps both sides of every membership in step when a client leaves a channel or the server.

use echoport_irc::{LineBuilder, fold};

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

    /// Everyone sharing a channel with `id`, each once, without `id`.
    pub(super) fn peers(&self, id: ClientId) -> Vec<ClientId> {
        let Some(c) = self.clients.get(&id) else {
            return Vec::new();
        };
        let mut peers: Vec<ClientId> = c
            .channels
            .iter()
            .filter_map(|k| self.channels.get(k))
            .flat_map(|ch| ch.members.iter().copied())
            .filter(|&m| m != id)
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// Removes `id` from channel `key` (deleting the channel when it empties).
    pub(super) fn leave_channel(&mut self, id: ClientId, key: &[u8]) {
        if let Some(ch) = self.channels.get_mut(key) {
            ch.members.retain(|&m| m != id);
            ch.flags.remove(&id);
            if ch.members.is_empty() {
                self.channels.remove(key);
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.channels.retain(|k| &**k != key);
        }
    }

    pub(super) fn remove_client(&mut self, id: ClientId, reason: &[u8], fx: &mut Effects) {
        if !self.clients.contains_key(&id) {
            return;
        }
        let peers = self.peers(id);
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        if c.registered && !peers.is_empty() {
            let line = LineBuilder::new(&c.prefix, b"QUIT").trailing(reason);
            for p in peers {
                fx.send(p, line.clone());
            }
        }
        for key in &c.channels {
            if let Some(ch) = self.channels.get_mut(key) {
                ch.members.retain(|&m| m != id);
                ch.flags.remove(&id);
                if ch.members.is_empty() {
                    self.channels.remove(key);
                }
            }
        }
        for key in &c.invited_to {
            if let Some(ch) = self.channels.get_mut(key) {
                ch.invited.remove(&id);
            }
        }
        if let Some(nick) = &c.nick {
            let key = fold(nick);
            if self.nicks.get(&key) == Some(&id) {
                self.nicks.remove(&key);
            }
        }
        if c.registered {
            self.registered -= 1;
        }
        if c.oper {
            self.opers -= 1;
        }
    }
}
