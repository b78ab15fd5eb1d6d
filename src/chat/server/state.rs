//! The server's records: clients, channels, their members, topics and modes, with the small
//! helpers that read them.

use std::collections::VecDeque;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::ClientId;
use super::accounts::Auth;
use super::caps::Caps;
use super::clock::as_unix_ms;
use super::history::Entry;
use super::idhash::{IdIndexMap, IdSet};
use super::lists::ChanLists;

/// rfc1459-folded nick or channel name.
pub(super) type Key = Box<[u8]>;

#[derive(Serialize, Deserialize)]
pub(super) struct Client {
    /// The IP address as text: the host part of the client's prefix.
    pub(super) host: String,
    /// As the client spelled it; valid per the nick grammar.
    pub(super) nick: Option<Vec<u8>>,
    /// When the nick was taken, Unix milliseconds: after a netsplit, the older claim keeps it.
    pub(super) nick_ts: u64,
    pub(super) user: Option<Vec<u8>>,
    pub(super) realname: Vec<u8>,
    pub(super) pass: Option<Vec<u8>>,
    /// CAP LS/REQ seen and no CAP END yet: registration waits.
    pub(super) cap_negotiating: bool,
    /// IRCv3 capabilities enabled (CAP REQ).
    pub(super) caps: Caps,
    /// Sent `CAP LS 302` (or later): capability values and multi-line lists.
    pub(super) cap_302: bool,
    /// The account logged in as with SASL, as configured (its spelling).
    pub(super) account: Option<Vec<u8>>,
    pub(super) registered: bool,
    /// `nick!user@host`, kept current once registered.
    pub(super) prefix: Vec<u8>,
    /// Channels this client is in, folded, in joining order (WHOIS and `JOIN 0` follow it). A
    /// list, not a set: it holds at most [`MAX_CHANNELS`](super::MAX_CHANNELS), and membership
    /// questions go to the channel's map, so only leaving searches it.
    pub(super) channels: Vec<Key>,
    pub(super) away: Option<Vec<u8>>,
    pub(super) invisible: bool,
    pub(super) oper: bool,
    /// User mode +B (IRCv3 bot-mode): shown in WHO (flag B) and WHOIS (335), and the `bot` tag
    /// on its messages.
    pub(super) bot: bool,
    /// Connected over TLS.
    pub(super) secure: bool,
    /// The server it is connected to, when that is another instance of the network.
    pub(super) server: Option<Box<[u8]>>,
    /// User mode +w: receives WALLOPS.
    pub(super) wallops: bool,
    #[serde(with = "as_unix_ms")]
    pub(super) connected: Instant,
    pub(super) signon: u64,
    #[serde(with = "as_unix_ms")]
    pub(super) last_active: Instant,
    /// The last PRIVMSG/NOTICE sent, for WHOIS idle time.
    #[serde(with = "as_unix_ms")]
    pub(super) last_message: Instant,
    #[serde(with = "as_unix_ms::option")]
    pub(super) ping_sent: Option<Instant>,
    /// draft/read-marker: targets (folded) and the time read up to, oldest set first; at most
    /// [`MAX_MARKERS`](super::markread::MAX_MARKERS).
    pub(super) read_markers: Vec<(Key, u64)>,
    /// SASL or OPER authentication under way, and the wrong passwords so far.
    pub(super) auth: Auth,
}

impl Client {
    pub(super) fn nick_or_star(&self) -> &[u8] {
        self.nick.as_deref().unwrap_or(b"*")
    }
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Member {
    pub(super) op: bool,
    pub(super) voice: bool,
}

impl Member {
    /// The status prefixes, highest first: all of them (multi-prefix) or only the highest.
    pub(super) fn prefixes(self, all: bool) -> &'static [u8] {
        if all && self.op && self.voice { b"@+" } else { self.prefix() }
    }

    pub(super) fn prefix(self) -> &'static [u8] {
        if self.op {
            b"@"
        } else if self.voice {
            b"+"
        } else {
            b""
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Topic {
    pub(super) text: Vec<u8>,
    pub(super) setter: Vec<u8>,
    pub(super) time: u64,
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Modes {
    pub(super) invite_only: bool,
    pub(super) moderated: bool,
    pub(super) no_external: bool,
    pub(super) secret: bool,
    pub(super) topic_lock: bool,
    /// +C: no CTCP to the channel but ACTION (/me).
    pub(super) no_ctcp: bool,
    pub(super) key: Option<Vec<u8>>,
    pub(super) limit: Option<usize>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Channel {
    pub(super) name: Vec<u8>,
    /// Creation order, for listing channels deterministically.
    pub(super) seq: u64,
    pub(super) created: u64,
    /// Members and their status, in fan-out order: one map so joining, leaving and "is X a
    /// member" are O(1) and a broadcast walks one dense array. The order is joining order until
    /// someone leaves: the member listed last then takes the leaver's place (`swap_remove`;
    /// never `shift_remove`, which is O(n) per leave). NAMES and `WHO #chan` follow this order.
    pub(super) members: IdIndexMap<ClientId, Member>,
    pub(super) topic: Option<Topic>,
    pub(super) modes: Modes,
    /// Invited and not joined yet; mirrored by [`ChatServer::invites`](super::ChatServer).
    pub(super) invited: IdSet<ClientId>,
    /// The +b, +e and +I masks.
    pub(super) lists: ChanLists,
    /// The latest messages, oldest first (history.rs).
    pub(super) history: VecDeque<Entry>,
}

impl Channel {
    pub(super) fn is_op(&self, id: ClientId) -> bool {
        self.members.get(&id).is_some_and(|m| m.op)
    }

    pub(super) fn has(&self, id: ClientId) -> bool {
        self.members.contains_key(&id)
    }

    pub(super) fn symbol(&self) -> &'static [u8] {
        if self.modes.secret { b"@" } else { b"=" }
    }

    pub(super) fn mode_string(&self, show_key: bool) -> Vec<Vec<u8>> {
        let m = &self.modes;
        let mut flags = b"+".to_vec();
        for (on, c) in [
            (m.invite_only, b'i'),
            (m.moderated, b'm'),
            (m.no_external, b'n'),
            (m.secret, b's'),
            (m.topic_lock, b't'),
            (m.no_ctcp, b'C'),
            (m.key.is_some(), b'k'),
            (m.limit.is_some(), b'l'),
        ] {
            if on {
                flags.push(c);
            }
        }
        let mut out = vec![flags];
        if let Some(key) = &m.key {
            out.push(if show_key { key.clone() } else { b"*".to_vec() });
        }
        if let Some(limit) = m.limit {
            out.push(limit.to_string().into_bytes());
        }
        out
    }
}

/// `nick!user@host`.
pub(super) fn make_prefix(nick: &[u8], user: &[u8], host: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(nick.len() + user.len() + host.len() + 2);
    p.extend_from_slice(nick);
    p.push(b'!');
    p.extend_from_slice(user);
    p.push(b'@');
    p.extend_from_slice(host.as_bytes());
    p
}
