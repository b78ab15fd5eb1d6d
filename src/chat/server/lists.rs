//! Channel lists: bans (+b), ban exceptions (+e) and invite exceptions (+I), each a list of
//! `nick!user@host` masks, plus the `m:<mask>` mute extban (in +b: may join, may not speak; in
//! +e: exempt from mutes only). Here are the checks JOIN and PRIVMSG/NOTICE ask before letting a
//! client in or through, and the list half of MODE (queries, additions, removals).
//!
//! A check walks the lists once (O(entries), each a bounded wildcard match against the client's
//! current prefix); a channel with empty lists costs nothing. Speaking is checked at send time
//! against the sender's current prefix, so a member who changes nick (or is banned after joining)
//! is judged as it is now. All three lists together hold at most [`MAXLIST`] entries (ISUPPORT
//! `MAXLIST=beI:100`), each mask at most [`MASKLEN`] bytes: a channel's lists stay under ~25 KiB.

use serde::{Deserialize, Serialize};
use std::time::Instant;

use echoport_irc::{eq_fold, wildcard_match};

use super::state::Channel;
use super::{ChatServer, ClientId, Effects};

/// Most entries in a channel's +b, +e and +I lists together (ISUPPORT MAXLIST=beI:100).
pub const MAXLIST: usize = 100;
/// Longest mask kept, after normalisation (`m:` included).
pub const MASKLEN: usize = 100;

/// The extban prefix of a mute (ISUPPORT EXTBAN=,m).
const MUTE: &[u8] = b"m:";

#[derive(Serialize, Deserialize)]
pub(super) struct ListEntry {
    /// Normalised (`nick!user@host`, or `m:nick!user@host`), spelled as the operator did.
    pub(super) mask: Box<[u8]>,
    /// Prefix of the operator who set it.
    setter: Box<[u8]>,
    /// Unix time it was set.
    time: u64,
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct ChanLists {
    bans: Vec<ListEntry>,
    excepts: Vec<ListEntry>,
    invex: Vec<ListEntry>,
}

impl ChanLists {
    fn list(&self, mode: u8) -> &[ListEntry] {
        match mode {
            b'b' => &self.bans,
            b'e' => &self.excepts,
            _ => &self.invex,
        }
    }

    fn list_mut(&mut self, mode: u8) -> &mut Vec<ListEntry> {
        match mode {
            b'b' => &mut self.bans,
            b'e' => &mut self.excepts,
            _ => &mut self.invex,
        }
    }

    fn len(&self) -> usize {
        self.bans.len() + self.excepts.len() + self.invex.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of `list` that apply to `prefix`: plain masks, or (with `mute`) also `m:` ones.
    fn any_match(list: &[ListEntry], prefix: &[u8], plain: bool, mute: bool) -> bool {
        list.iter().any(|e| match e.mask.strip_prefix(MUTE) {
            Some(mask) => mute && wildcard_match(mask, prefix),
            None => plain && wildcard_match(&e.mask, prefix),
        })
    }

    /// Matches a plain +b and no plain +e: may neither join nor speak.
    pub(super) fn banned(&self, prefix: &[u8]) -> bool {
        Self::any_match(&self.bans, prefix, true, false) && !Self::any_match(&self.excepts, prefix, true, false)
    }

    /// Matches an `m:` +b and no +e (plain or `m:`): may join but not speak.
    pub(super) fn muted(&self, prefix: &[u8]) -> bool {
        Self::any_match(&self.bans, prefix, false, true) && !Self::any_match(&self.excepts, prefix, true, true)
    }

    /// Matches a +I: may join a +i channel uninvited.
    pub(super) fn invited(&self, prefix: &[u8]) -> bool {
        Self::any_match(&self.invex, prefix, true, false)
    }
}

/// Why a client may not join or speak: the numeric and its text (the caller adds the channel).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: &'static str,
    pub(super) text: &'static str,
}

const fn refuse(code: &'static str, text: &'static str) -> Result<(), Refusal> {
    Err(Refusal { code, text })
}

impl ChatServer {
    /// Whether `id` may join the existing channel `ch` with `key`. An invitation lets a client
    /// past +i and +l (as modern.ircdocs.horse describes), never past a ban or the key; a +I
    /// match counts as an invitation for +i only.
    pub(super) fn may_join(&self, ch: &Channel, id: ClientId, key: Option<&[u8]>) -> Result<(), Refusal> {
        let prefix = self.clients.get(&id).map_or(&[][..], |c| &c.prefix);
        let invited = ch.invited.contains(&id);
        if ch.lists.banned(prefix) {
            refuse("474", "Cannot join channel (+b)")
        } else if ch.modes.invite_only && !invited && !ch.lists.invited(prefix) {
            refuse("473", "Cannot join channel (+i)")
        } else if ch.modes.key.as_deref().is_some_and(|k| key != Some(k)) {
            refuse("475", "Cannot join channel (+k)")
        } else if !invited && ch.modes.limit.is_some_and(|l| ch.members.len() >= l) {
            refuse("471", "Cannot join channel (+l)")
        } else {
            Ok(())
        }
    }

    /// Whether `id` may send PRIVMSG/NOTICE to `ch` now: +n keeps out non-members, +m everyone
    /// without voice, and a ban or mute (not excepted) everyone without voice or op.
    pub(super) fn may_speak(&self, ch: &Channel, id: ClientId) -> Result<(), Refusal> {
        let member = ch.members.get(&id);
        if ch.modes.no_external && member.is_none() {
            return refuse("404", "Cannot send to channel");
        }
        if member.is_some_and(|m| m.op || m.voice) {
            return Ok(());
        }
        if ch.modes.moderated {
            return refuse("404", "Cannot send to channel");
        }
        if !ch.lists.is_empty() {
            let prefix = self.clients.get(&id).map_or(&[][..], |c| &c.prefix);
            if ch.lists.banned(prefix) || ch.lists.muted(prefix) {
                return refuse("404", "Cannot send to channel");
            }
        }
        Ok(())
    }

    /// `MODE #chan b` (or e, I): the list, then its end. Anyone may look, as on most servers.
    pub(super) fn send_list(&self, id: ClientId, ch: &Channel, mode: u8, fx: &mut Effects) {
        let (item, end, text) = match mode {
            b'b' => ("367", "368", "End of channel ban list"),
            b'e' => ("348", "349", "End of channel exception list"),
            _ => ("346", "347", "End of channel invite list"),
        };
        for e in ch.lists.list(mode) {
            let time = e.time.to_string();
            let line = self
                .numeric(id, item)
                .middle(&ch.name)
                .middle(&e.mask)
                .middle(&e.setter)
                .middle(time.as_bytes())
                .finish();
            fx.send(id, line);
        }
        self.reply(fx, id, end, &[&ch.name], text);
    }

    /// Adds (or removes) mask `arg` to list `mode` of channel `key` (the caller checked that `id` is
    /// an operator). Returns the change as applied, or None if it changed nothing (a duplicate, a
    /// mask not on the list) or was refused (an invalid mask, a full list), with its error sent.
    /// Removal compares under case mapping, so `-b bar!*@*` lifts `+b BAR!*@*`.
    pub(super) fn apply_list_mode(
        &mut self,
        id: ClientId,
        key: &[u8],
        (adding, mode, arg): (bool, u8, &[u8]),
        now: Instant,
        fx: &mut Effects,
    ) -> Option<(bool, u8, Option<Vec<u8>>)> {
        let mode_str = [mode];
        let chname = self.channels.get(key)?.name.clone();
        let Some(mask) = normalize_mask(arg) else {
            self.reply(fx, id, "696", &[&chname, &mode_str, b"*"], "Invalid mask");
            return None;
        };
        let time = self.unix(now);
        let setter: Box<[u8]> = self.clients.get(&id).map_or(&[][..], |c| &c.prefix).into();
        let lists = &mut self.channels.get_mut(key)?.lists;
        let pos = lists.list(mode).iter().position(|e| eq_fold(&e.mask, &mask));
        if !adding {
            let e = lists.list_mut(mode).remove(pos?);
            return Some((false, mode, Some(e.mask.into_vec())));
        }
        if pos.is_some() {
            return None;
        }
        if lists.len() >= MAXLIST {
            self.reply(fx, id, "478", &[&chname, &mask], "Channel list is full");
            return None;
        }
        lists.list_mut(mode).push(ListEntry { mask: mask.clone().into(), setter, time });
        Some((true, mode, Some(mask)))
    }
}

/// The full form of a mask: `nick` -> `nick!*@*`, `nick!user` -> `nick!user@*`, `user@host` ->
/// `*!user@host`, `host.name` (a dot or colon, no `!`/`@`) -> `*!*@host.name`, empty parts -> `*`;
/// `m:` keeps its prefix and normalises the rest. None for what cannot be a mask: longer than
/// [`MASKLEN`], a leading `:` (it would not survive as a middle parameter), control bytes.
pub(super) fn normalize_mask(arg: &[u8]) -> Option<Vec<u8>> {
    let (ext, mask) = match arg.strip_prefix(MUTE) {
        Some(rest) => (MUTE, rest),
        None => (&[][..], arg),
    };
    if mask.is_empty() || mask[0] == b':' || !mask.iter().all(|b| b.is_ascii_graphic() || *b >= 0x80) {
        return None;
    }
    let or_star = |s: &[u8]| if s.is_empty() { b"*".to_vec() } else { s.to_vec() };
    let (nick, rest) = match mask.iter().position(|&b| b == b'!') {
        Some(i) => (&mask[..i], Some(&mask[i + 1..])),
        None => (mask, None),
    };
    let (nick, user, host) = match rest {
        Some(rest) => match rest.iter().position(|&b| b == b'@') {
            Some(i) => (nick, &rest[..i], &rest[i + 1..]),
            None => (nick, rest, &b""[..]),
        },
        None => match nick.iter().position(|&b| b == b'@') {
            Some(i) => (&b""[..], &nick[..i], &nick[i + 1..]),
            None if nick.iter().any(|&b| b == b'.' || b == b':') => (&b""[..], &b""[..], nick),
            None => (nick, &b""[..], &b""[..]),
        },
    };
    let mut out = ext.to_vec();
    out.extend_from_slice(&or_star(nick));
    out.push(b'!');
    out.extend_from_slice(&or_star(user));
    out.push(b'@');
    out.extend_from_slice(&or_star(host));
    (out.len() <= MASKLEN).then_some(out)
}
