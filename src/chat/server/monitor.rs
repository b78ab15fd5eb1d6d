//! MONITOR (IRCv3 monitor): a client subscribes to nicks and hears when each comes online (730
//! RPL_MONONLINE) or goes offline (731 RPL_MONOFFLINE): on registration, QUIT or disconnection,
//! and nick changes (the old nick goes offline, the new one online; a change of case is neither).
//!
//! Memory is bounded: each client watches at most [`MONITOR_LIMIT`] nicks (734 past that), and a
//! reverse index (folded nick -> watchers) makes a sign-on, sign-off or nick change cost its
//! watchers, never a scan of all clients. Only nicks can be watched, never masks (the spec's
//! privacy point): anything that is not a valid nick is ignored.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

use echoport_irc::{Message, eq_fold, fold};

use super::registration::valid_nick;
use super::state::Key;
use super::{ChatServer, ClientId, Effects};

/// Most nicks one client may watch (ISUPPORT MONITOR=100).
pub const MONITOR_LIMIT: usize = 100;

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Monitors {
    /// Folded nick -> the clients watching it. No empty sets.
    pub(super) by_nick: HashMap<Key, HashSet<ClientId>>,
    /// Client -> the nicks it watches, as it spelled them (for MONITOR L); at most
    /// [`MONITOR_LIMIT`]. Clients watching nothing have no entry.
    pub(super) by_client: HashMap<ClientId, Vec<Box<[u8]>>>,
}

impl Monitors {
    /// Starts `id` watching `nick`; false if its list is full (watching it already is fine).
    pub(super) fn add(&mut self, id: ClientId, nick: &[u8]) -> bool {
        let list = self.by_client.entry(id).or_default();
        if list.iter().any(|n| eq_fold(n, nick)) {
            return true;
        }
        if list.len() >= MONITOR_LIMIT {
            return false;
        }
        list.push(nick.into());
        self.by_nick.entry(fold(nick)).or_default().insert(id);
        true
    }

    fn remove(&mut self, id: ClientId, nick: &[u8]) {
        let Some(list) = self.by_client.get_mut(&id) else {
            return;
        };
        let Some(i) = list.iter().position(|n| eq_fold(n, nick)) else {
            return;
        };
        list.swap_remove(i);
        if list.is_empty() {
            self.by_client.remove(&id);
        }
        self.unwatch(id, &fold(nick));
    }

    fn clear(&mut self, id: ClientId) {
        for nick in self.by_client.remove(&id).unwrap_or_default() {
            self.unwatch(id, &fold(&nick));
        }
    }

    fn unwatch(&mut self, id: ClientId, key: &[u8]) {
        if let Some(set) = self.by_nick.get_mut(key) {
            set.remove(&id);
            if set.is_empty() {
                self.by_nick.remove(key);
            }
        }
    }

    /// The clients watching `nick`, in id order (deterministic output).
    fn watchers(&self, nick: &[u8]) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self.by_nick.get(&*fold(nick)).into_iter().flatten().copied().collect();
        ids.sort_unstable();
        ids
    }
}

impl ChatServer {
    pub(super) fn cmd_monitor(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(sub) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"MONITOR"], "Not enough parameters");
            return;
        };
        let targets =
            || msg.param(1).unwrap_or(b"").split(|&b| b == b',').filter(|t| valid_nick(t)).collect::<Vec<&[u8]>>();
        match sub.to_ascii_uppercase().as_slice() {
            b"+" | b"-" if msg.nonempty(1).is_none() => {
                self.reply(fx, id, "461", &[b"MONITOR"], "Not enough parameters");
            }
            b"+" => {
                let targets = targets();
                let mut added = Vec::new();
                for (i, &t) in targets.iter().enumerate() {
                    if !self.monitors.add(id, t) {
                        let rest = targets[i..].join(&b","[..]);
                        let limit = MONITOR_LIMIT.to_string();
                        self.reply(fx, id, "734", &[limit.as_bytes(), &rest], "Monitor list is full");
                        break;
                    }
                    added.push(t);
                }
                self.send_status(id, added.into_iter(), fx);
            }
            b"-" => {
                for t in targets() {
                    self.monitors.remove(id, t);
                }
            }
            b"C" => self.monitors.clear(id),
            b"L" => {
                let list = self.monitors.by_client.get(&id).map_or(&[][..], |l| &l[..]);
                self.send_nicks(id, "732", list.iter().map(|n| n.to_vec()), fx);
                self.reply(fx, id, "733", &[], "End of MONITOR list");
            }
            b"S" => {
                let list = self.monitors.by_client.get(&id).map_or(&[][..], |l| &l[..]);
                self.send_status(id, list.iter().map(|n| &n[..]), fx);
            }
            _ => {}
        }
    }

    /// The clients watching `id`'s current nick (extended-monitor sends them what a channel peer
    /// would get: AWAY, SETNAME, ACCOUNT...). Empty for an unregistered client.
    pub(super) fn watchers_of(&self, id: ClientId) -> Vec<ClientId> {
        match self.clients.get(&id) {
            Some(c) if c.registered => c.nick.as_deref().map(|n| self.monitors.watchers(n)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// `id` just registered: 730 to those watching its nick.
    pub(super) fn monitor_signon(&self, id: ClientId, fx: &mut Effects) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        for w in self.watchers_of(id) {
            self.reply_bytes(fx, w, "730", &[], &c.prefix);
        }
    }

    /// Client `id` is gone (its record already removed): its own list goes, and if it was online
    /// as `nick`, 731 to those watching that nick.
    pub(super) fn monitor_signoff(&mut self, id: ClientId, nick: Option<&[u8]>, fx: &mut Effects) {
        self.monitors.clear(id);
        if let Some(nick) = nick {
            for w in self.monitors.watchers(nick) {
                self.reply_bytes(fx, w, "731", &[], nick);
            }
        }
    }

    /// Registered client `id` changed nick from the one in `old_prefix`: 731 (the old spelling)
    /// to the old nick's watchers and 730 to the new one's; nothing for a change of case.
    pub(super) fn monitor_renamed(&self, id: ClientId, old_prefix: &[u8], fx: &mut Effects) {
        let old = old_prefix.split(|&b| b == b'!').next().unwrap_or(b"");
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if eq_fold(old, c.nick_or_star()) {
            return;
        }
        for w in self.monitors.watchers(old) {
            self.reply_bytes(fx, w, "731", &[], old);
        }
        self.monitor_signon(id, fx);
    }

    /// 730 for the online ones among `nicks` (with their prefixes), 731 for the others.
    fn send_status<'a>(&self, id: ClientId, nicks: impl Iterator<Item = &'a [u8]>, fx: &mut Effects) {
        let (mut online, mut offline) = (Vec::new(), Vec::new());
        for n in nicks {
            match self.find_nick(n) {
                Some(t) => online.push(self.clients[&t].prefix.clone()),
                None => offline.push(n.to_vec()),
            }
        }
        self.send_nicks(id, "730", online.into_iter(), fx);
        self.send_nicks(id, "731", offline.into_iter(), fx);
    }

    /// `code` numerics to `id` listing `items` comma-separated, as many lines as they need.
    fn send_nicks(&self, id: ClientId, code: &str, items: impl Iterator<Item = Vec<u8>>, fx: &mut Effects) {
        let head = self.numeric(id, code);
        let room = head.trailing_room();
        let mut list: Vec<u8> = Vec::new();
        for item in items {
            if !list.is_empty() && list.len() + 1 + item.len() > room {
                fx.send(id, head.clone().trailing(&list));
                list.clear();
            }
            if !list.is_empty() {
                list.push(b',');
            }
            list.extend_from_slice(&item);
        }
        if !list.is_empty() {
            fx.send(id, head.trailing(&list));
        }
    }
}
