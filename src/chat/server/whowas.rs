//! WHOWAS: who used a nick before. A bounded history of the nicks registered clients gave up (by
//! leaving or by changing nick), newest first per nick.
//!
//! Memory is bounded whatever clients do: at most [`HISTORY`] entries in all, and a nick keeps
//! only its last [`PER_NICK`] (so one client cycling nicks cannot push everyone else out faster
//! than [`HISTORY`] departures). Recording is O(1): entries live in one ring in departure order,
//! numbered by a running sequence; each nick keeps the sequence numbers of its entries. When the
//! ring is full the oldest entry goes, and it can only be the oldest of its nick's numbers.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

use echoport_irc::{Message, fold};

use super::clock::format_time;
use super::state::Key;
use super::{ChatServer, ClientId, Effects, MAX_TARGETS};

/// Most entries kept in all.
const HISTORY: usize = 1000;
/// Most entries kept for one nick.
const PER_NICK: usize = 8;

#[derive(Serialize, Deserialize)]
struct Entry {
    nick: Box<[u8]>,
    user: Box<[u8]>,
    host: Box<[u8]>,
    realname: Box<[u8]>,
    /// When the nick was given up (the last time the client was heard from), Unix seconds.
    time: u64,
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct WhoWas {
    /// Oldest first; `ring[i]` has sequence number `first + i`. An entry dropped from its nick's
    /// list (past [`PER_NICK`]) stays here as dead weight until it ages out: still bounded.
    ring: VecDeque<Entry>,
    first: u64,
    /// Folded nick -> sequence numbers of its entries in `ring`, oldest first.
    by_nick: HashMap<Key, VecDeque<u64>>,
}

impl WhoWas {
    fn record(&mut self, entry: Entry) {
        if self.ring.len() == HISTORY
            && let Some(old) = self.ring.pop_front()
        {
            let key = fold(&old.nick);
            if let Some(seqs) = self.by_nick.get_mut(&key) {
                if seqs.front() == Some(&self.first) {
                    seqs.pop_front();
                }
                if seqs.is_empty() {
                    self.by_nick.remove(&key);
                }
            }
            self.first += 1;
        }
        let seq = self.first + self.ring.len() as u64;
        let seqs = self.by_nick.entry(fold(&entry.nick)).or_default();
        seqs.push_back(seq);
        if seqs.len() > PER_NICK {
            seqs.pop_front();
        }
        self.ring.push_back(entry);
    }

    /// The entries for `nick`, newest first.
    fn find<'a>(&'a self, nick: &[u8]) -> impl Iterator<Item = &'a Entry> + 'a {
        let seqs = self.by_nick.get(&*fold(nick));
        seqs.into_iter()
            .flat_map(|s| s.iter().rev())
            .filter_map(|&seq| self.ring.get(seq.checked_sub(self.first)? as usize))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.ring.len(), self.by_nick.values().map(VecDeque::len).sum())
    }
}

impl ChatServer {
    /// Remembers `id`'s current nick for WHOWAS, if it is registered: called as it leaves or
    /// changes nick.
    pub(super) fn remember_nick(&mut self, id: ClientId) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let (true, Some(nick)) = (c.registered, &c.nick) else {
            return;
        };
        let entry = Entry {
            nick: nick.as_slice().into(),
            user: c.user.as_deref().unwrap_or(b"*").into(),
            host: c.host.as_bytes().into(),
            realname: c.realname.as_slice().into(),
            time: self.unix(c.last_active),
        };
        self.whowas.record(entry);
    }

    /// `WHOWAS <nick>{,<nick>} [<count>]`: 314 and 312 per entry, newest first (at most `count`
    /// per nick when it is positive), 406 for a nick with none, then one 369. Nicks past the
    /// first [`MAX_TARGETS`] are not looked up. No wildcards:
    /// RFC 2812 allows them but Modern dropped them, and a mask would need a scan of the history.
    pub(super) fn cmd_whowas(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(arg) = msg.nonempty(0) else {
            self.reply(fx, id, "431", &[], "No nickname given");
            return;
        };
        let count = match msg.param(1).and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok()) {
            Some(n) if n > 0 => n as usize,
            _ => usize::MAX,
        };
        let server = self.server().to_vec();
        // At most MAX_TARGETS nicks: a 510-byte line of short nicks would otherwise ask for
        // thousands of lines.
        for nick in arg.split(|&b| b == b',').filter(|n| !n.is_empty()).take(MAX_TARGETS) {
            let mut found = false;
            for e in self.whowas.find(nick).take(count) {
                found = true;
                let line = self
                    .numeric(id, "314")
                    .middle(&e.nick)
                    .middle(&e.user)
                    .middle(&e.host)
                    .middle(b"*")
                    .trailing(&e.realname);
                fx.send(id, line);
                self.reply(fx, id, "312", &[&e.nick, &server], &format_time(e.time));
            }
            if !found {
                self.reply(fx, id, "406", &[nick], "There was no such nickname");
            }
        }
        self.reply(fx, id, "369", &[arg], "End of WHOWAS");
    }
}
