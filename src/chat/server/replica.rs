//! What a network of instances (src/cluster/) needs from the state machine. Each instance holds a
//! replica of the whole network's state and applies every instance's events in one order, so
//! replicas stay equal without being compared. Here is the rest: the state as bytes (a joining
//! instance starts from a member's [`snapshot`](ChatServer::snapshot)), dropping another
//! instance's clients (it died, or this one split from the network), and [`merge`](ChatServer::merge)
//! for an instance coming back with the clients it kept serving while split.
//!
//! Merge rules (docs/cluster.md): a nick held on both sides stays with the client that took it
//! first (then the lower id); the other is renamed `Guest<digits>`. A channel on both sides keeps
//! the network's topic, modes and lists, and the members of both with their status; each side is
//! shown the other's members joining.

use std::collections::HashMap;

use echoport_irc::{LineBuilder, Message, fold};
use serde::{Deserialize, Serialize};

use super::clock::with_clock;
use super::idhash::IdMap;
use super::monitor::Monitors;
use super::state::{Channel, Client, Key, make_prefix};
use super::whowas::WhoWas;
use super::{ChatServer, ClientId, Effects};

/// The replicated state, borrowed, as it is written.
#[derive(Serialize)]
struct StateRef<'a> {
    clients: &'a IdMap<ClientId, Client>,
    channels: &'a HashMap<Key, Channel>,
    monitors: &'a Monitors,
    whowas: &'a WhoWas,
    next_seq: u64,
    max_registered: usize,
    next_token: u64,
    msgid: (u64, u64),
    latest_ms: u64,
}

/// The same, owned, as it is read (field for field: the format is not self-describing).
#[derive(Deserialize)]
struct State {
    clients: IdMap<ClientId, Client>,
    channels: HashMap<Key, Channel>,
    monitors: Monitors,
    whowas: WhoWas,
    next_seq: u64,
    max_registered: usize,
    next_token: u64,
    msgid: (u64, u64),
    latest_ms: u64,
}

/// Whether `home` = `(mask, value)` picks client `id` (`id & mask == value`): the clients of
/// one instance of a network.
pub fn homed(home: (ClientId, ClientId), id: ClientId) -> bool {
    let (mask, value) = home;
    id & mask == value
}

impl ChatServer {
    /// Makes this a replica: `home` = `(mask, value)` says which clients are this instance's own
    /// (`id & mask == value`). Its timers then act on those only, and a client they expire is
    /// handed back in [`Effects::depart`] to be removed through the network. `None`: a server on
    /// its own again (split from the network), which removes expired clients itself.
    pub fn replicate(&mut self, home: Option<(ClientId, ClientId)>) {
        self.home = home;
    }

    pub(super) fn is_home(&self, id: ClientId) -> bool {
        self.home.is_none_or(|home| homed(home, id))
    }

    /// The whole state as bytes, for an instance joining the network.
    pub fn snapshot(&self) -> Vec<u8> {
        let state = StateRef {
            clients: &self.clients,
            channels: &self.channels,
            monitors: &self.monitors,
            whowas: &self.whowas,
            next_seq: self.next_seq,
            max_registered: self.max_registered,
            next_token: self.accounts.next_token(),
            msgid: self.tagger.msgid_state(),
            latest_ms: self.unix_ms(self.latest),
        };
        // Serializing plain data into a Vec cannot fail; an empty snapshot would be refused.
        with_clock(self.clock, || postcard::to_allocvec(&state)).unwrap_or_default()
    }

    fn read(&self, bytes: &[u8]) -> Result<State, String> {
        with_clock(self.clock, || postcard::from_bytes::<State>(bytes)).map_err(|e| format!("bad state: {e}"))
    }

    /// Replaces the whole state with a member's [`snapshot`](Self::snapshot).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let s = self.read(bytes)?;
        self.clients = s.clients;
        self.channels = s.channels;
        self.monitors = s.monitors;
        self.whowas = s.whowas;
        self.next_seq = s.next_seq;
        self.max_registered = s.max_registered;
        self.accounts.set_next_token(s.next_token);
        self.tagger.set_msgid_state(s.msgid);
        self.latest = self.instant_of(s.latest_ms);
        self.reindex();
        Ok(())
    }

    /// Rebuilds what is derived from the clients and channels: the nick index, the invitation
    /// index, the counters and the history's size.
    fn reindex(&mut self) {
        self.nicks.clear();
        self.invites.clear();
        (self.registered, self.opers, self.invisible) = (0, 0, 0);
        for (&id, c) in &self.clients {
            if let Some(nick) = &c.nick {
                self.nicks.insert(fold(nick), id);
            }
            self.registered += usize::from(c.registered);
            self.invisible += usize::from(c.registered && c.invisible);
            self.opers += usize::from(c.oper);
        }
        self.history_bytes = 0;
        for (key, ch) in &self.channels {
            for &invitee in &ch.invited {
                self.invites.entry(invitee).or_default().insert(key.clone());
            }
            self.history_bytes += ch.history.iter().map(|e| e.bytes()).sum::<usize>();
        }
        self.max_registered = self.max_registered.max(self.registered);
    }

    /// Removes every client `gone` picks, as if each had quit with `reason` (a netsplit: each
    /// side loses the other's clients). In id order, so every replica does it alike.
    pub fn drop_clients(&mut self, gone: impl Fn(ClientId) -> bool, reason: &str, fx: &mut Effects) {
        let mut ids: Vec<ClientId> = self.clients.keys().copied().filter(|&id| gone(id)).collect();
        ids.sort_unstable();
        for id in ids {
            self.disconnect(id, reason, fx);
        }
    }

    /// Says which network event (instance tag, sequence number) the calls until the next such
    /// call apply: msgids then depend on it, not on what this replica has built before.
    pub fn begin_event(&mut self, origin: Option<(u32, u64)>) {
        self.tagger.set_origin(origin);
    }

    /// Numbers the next msgids from `base` (a split instance and the network it left both go
    /// on tagging messages; each side from a base of its own).
    pub fn renumber_msgids(&mut self, base: u64) {
        self.tagger.set_msgid_state((base, 0));
    }

    /// A NOTICE from the server to every registered client `to` picks.
    pub fn notice_all(&self, to: impl Fn(ClientId) -> bool, text: &str, fx: &mut Effects) {
        let source = self.config.server_name.as_bytes();
        let mut ids: Vec<(&ClientId, &Client)> =
            self.clients.iter().filter(|(id, c)| c.registered && to(**id)).collect();
        ids.sort_unstable_by_key(|(id, _)| **id);
        for (&id, c) in ids {
            fx.send(id, LineBuilder::new(source, b"NOTICE").middle(c.nick_or_star()).trailing(text.as_bytes()));
        }
    }

    /// Adds the clients and channels of an instance rejoining the network (its
    /// [`snapshot`](Self::snapshot): while split it held only its own clients). Every replica,
    /// the rejoining one included, merges the same bytes at the same point of the network's
    /// order and so ends equal. Clients already known are left as they are.
    pub fn merge(&mut self, bytes: &[u8], fx: &mut Effects) -> Result<(), String> {
        let part = self.read(bytes)?;
        let now = self.latest;
        let start = fx.sends.len();
        let mut clients: Vec<(ClientId, Client)> =
            part.clients.into_iter().filter(|(id, _)| !self.clients.contains_key(id)).collect();
        clients.sort_unstable_by_key(|(id, _)| *id);
        let mut channels: Vec<(Key, Channel)> = part.channels.into_iter().collect();
        channels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let arriving: std::collections::HashSet<ClientId> = clients.iter().map(|(id, _)| *id).collect();

        // Nicks first: a collision renames a network client before the arriving one takes its
        // nick, or renames the arriving one before anyone is told about it.
        let mut renamed = Vec::new();
        for (id, c) in &mut clients {
            let Some(nick) = c.nick.clone() else { continue };
            let Some(&holder) = self.nicks.get(&fold(&nick)) else { continue };
            let Some(h) = self.clients.get(&holder) else { continue };
            if (c.nick_ts, *id) < (h.nick_ts, holder) {
                let guest = self.guest_nick(holder);
                self.force_nick(holder, &guest, now, fx);
            } else {
                let guest = self.guest_nick(*id);
                let old =
                    std::mem::replace(&mut c.prefix, make_prefix(&guest, c.user.as_deref().unwrap_or(b""), &c.host));
                c.nick = Some(guest.clone());
                renamed.push((*id, old, guest));
            }
        }
        for (id, c) in clients {
            if let Some(nick) = &c.nick {
                self.nicks.insert(fold(nick), id);
            }
            self.registered += usize::from(c.registered);
            self.invisible += usize::from(c.registered && c.invisible);
            self.opers += usize::from(c.oper);
            self.clients.insert(id, c);
        }
        self.max_registered = self.max_registered.max(self.registered);
        // A renamed arriving client and the members of its own side learn its new nick.
        for (id, old, guest) in renamed {
            let line = LineBuilder::new(&old, b"NICK").middle(&guest).finish();
            let mut told = vec![id];
            for (_, ch) in &channels {
                if ch.members.contains_key(&id) {
                    told.extend(ch.members.keys().copied().filter(|m| *m != id && arriving.contains(m)));
                }
            }
            told.sort_unstable();
            told.dedup();
            for to in told {
                fx.send(to, line.clone());
            }
        }
        for (key, mut ch) in channels {
            ch.members.retain(|m, _| arriving.contains(m));
            ch.invited.retain(|m| arriving.contains(m));
            match self.channels.get_mut(&key) {
                None => {
                    ch.seq = self.next_seq;
                    self.next_seq += 1;
                    self.history_bytes += ch.history.iter().map(|e| e.bytes()).sum::<usize>();
                    for &invitee in &ch.invited {
                        self.invites.entry(invitee).or_default().insert(key.clone());
                    }
                    self.channels.insert(key, ch);
                }
                Some(net) => {
                    let old: Vec<ClientId> = net.members.keys().copied().collect();
                    let new: Vec<ClientId> =
                        ch.members.keys().copied().filter(|m| !net.members.contains_key(m)).collect();
                    for &m in &new {
                        net.members.insert(m, ch.members[&m]);
                    }
                    self.show_joins(&key, &new, &old, fx);
                    self.show_joins(&key, &old, &new, fx);
                }
            }
        }
        for (id, nicks) in part.monitors.by_client {
            if arriving.contains(&id) {
                for nick in nicks {
                    self.monitors.add(id, &nick);
                }
            }
        }
        self.tag_event(fx, start, now, &Default::default(), None);
        Ok(())
    }

    /// `Guest` and the id's digits: unique while the id is, short enough for NICKLEN.
    fn guest_nick(&self, id: ClientId) -> Vec<u8> {
        let mut n = id as u64;
        loop {
            let nick = format!("Guest{n}").into_bytes();
            if !self.nicks.contains_key(&fold(&nick)) {
                return nick;
            }
            n = n.wrapping_add(1);
        }
    }

    /// Renames `id` as if it had sent `NICK new` (the nick is known to be free).
    fn force_nick(&mut self, id: ClientId, new: &[u8], now: std::time::Instant, fx: &mut Effects) {
        let line = [b"NICK ", new].concat();
        if let Some(msg) = Message::parse(&line) {
            self.cmd_nick(id, &msg, now, fx);
        }
    }

    /// Tells each of `to` (members of channel `key`) that each of `joined` joins it, with its
    /// channel status as a server MODE.
    fn show_joins(&self, key: &[u8], joined: &[ClientId], to: &[ClientId], fx: &mut Effects) {
        let Some(ch) = self.channels.get(key) else { return };
        for &j in joined {
            let (Some(c), Some(m)) = (self.clients.get(&j), ch.members.get(&j)) else { continue };
            let join = LineBuilder::new(&c.prefix, b"JOIN").middle(&ch.name).finish();
            let nick = c.nick_or_star();
            let modes = [(m.op, "+o"), (m.voice, "+v")];
            let mode = |flag: &str| {
                LineBuilder::new(self.config.server_name.as_bytes(), b"MODE")
                    .middle(&ch.name)
                    .middle(flag.as_bytes())
                    .middle(nick)
                    .finish()
            };
            let modes: Vec<_> = modes.iter().filter(|(on, _)| *on).map(|(_, f)| mode(f)).collect();
            for &t in to {
                fx.send(t, join.clone());
                for line in &modes {
                    fx.send(t, line.clone());
                }
            }
        }
    }
}
