//! Channel history and CHATHISTORY (IRCv3 draft/chathistory,
//! <https://ircv3.net/specs/extensions/chathistory>): the last `--history` PRIVMSGs and NOTICEs
//! of each channel, kept in memory with the time and msgid their recipients saw, and replayed
//! in a `chathistory` batch to members that ask.
//!
//! **Memory.** Each channel keeps at most `--history` messages, and all channels together at
//! most `--history-bytes` (counted: the line, its tags, its msgid and a fixed overhead). A
//! message that would pass the total first pushes out its own channel's oldest ones; a channel
//! whose history is already empty keeps nothing more until others shrink. A channel's history
//! goes with the channel when its last member leaves. Only channel messages are kept: private
//! messages are nobody's history here.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use echoport_irc::{LineBuilder, Message, fold};

use super::caps::Caps;
use super::clock::{parse_server_time, server_time};
use super::{ChatServer, ClientId, Effects};

/// Bytes counted for an entry beyond its line, tags and msgid: the entry itself, its share of
/// the deque, the Arc's counts and the allocator's headers.
const ENTRY_OVERHEAD: usize = 96;

/// The most messages one CHATHISTORY reply holds (ISUPPORT CHATHISTORY).
pub const MAX_REPLY: usize = 1000;

/// One message as its recipients saw it.
#[derive(Serialize, Deserialize)]
pub(super) struct Entry {
    unix_ms: u64,
    msgid: Box<[u8]>,
    /// The plain line as relayed (`:nick!user@host PRIVMSG #chan :text\r\n`).
    line: Arc<[u8]>,
    /// The sender's client-only tags, in wire form.
    client_tags: Option<Box<[u8]>>,
    /// The sender's nick, folded: who may REDACT it besides the channel's operators.
    sender: Box<[u8]>,
}

impl Entry {
    pub(super) fn bytes(&self) -> usize {
        self.line.len()
            + self.msgid.len()
            + self.client_tags.as_ref().map_or(0, |t| t.len())
            + self.sender.len()
            + ENTRY_OVERHEAD
    }
}

/// A message reference in a CHATHISTORY command.
enum Ref {
    /// `*`: the latest end.
    Latest,
    Msgid(Vec<u8>),
    Timestamp(u64),
}

impl Ref {
    fn parse(arg: &[u8]) -> Option<Ref> {
        if arg == b"*" {
            return Some(Ref::Latest);
        }
        if let Some(id) = arg.strip_prefix(b"msgid=") {
            return (!id.is_empty()).then(|| Ref::Msgid(id.to_vec()));
        }
        parse_server_time(arg.strip_prefix(b"timestamp=")?).map(Ref::Timestamp)
    }
}

/// Where a reference falls in a channel's history: the index of the first entry at or after it
/// (`at`), and of the first entry strictly after it (`after`). A msgid no longer kept is None.
fn locate(h: &VecDeque<Entry>, r: &Ref) -> Option<(usize, usize)> {
    match r {
        // Everything is before the latest end, and LATEST * counts back from it.
        Ref::Latest => Some((h.len(), 0)),
        Ref::Msgid(id) => h.iter().position(|e| *e.msgid == id[..]).map(|i| (i, i + 1)),
        Ref::Timestamp(ms) => {
            let at = h.partition_point(|e| e.unix_ms < *ms);
            Some((at, h.partition_point(|e| e.unix_ms <= *ms)))
        }
    }
}

impl ChatServer {
    /// Keeps a message just relayed to channel `key` (if history is on), with the msgid its
    /// recipients get.
    pub(super) fn record_history(&mut self, key: &[u8], line: &Arc<[u8]>, sender: ClientId, now: Instant) {
        if self.config.history == 0 {
            return;
        }
        let entry = Entry {
            sender: fold(&self.nick_of(sender)),
            unix_ms: self.unix_ms(now),
            msgid: self.tagger.assign_msgid(line).into(),
            line: line.clone(),
            client_tags: self.tagger.client_tags(line).map(Into::into),
        };
        let (max, budget) = (self.config.history, self.config.history_bytes);
        let Some(ch) = self.channels.get_mut(key) else { return };
        let size = entry.bytes();
        while ch.history.len() >= max || (self.history_bytes + size > budget && !ch.history.is_empty()) {
            if let Some(old) = ch.history.pop_front() {
                self.history_bytes -= old.bytes();
            }
        }
        if self.history_bytes + size <= budget {
            self.history_bytes += size;
            ch.history.push_back(entry);
        }
    }

    /// A channel's history is gone (the channel is).
    pub(super) fn forget_history(&mut self, history: &VecDeque<Entry>) {
        self.history_bytes -= history.iter().map(Entry::bytes).sum::<usize>();
    }

    /// Bytes of history held, all channels together.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    pub(super) fn cmd_chathistory(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let fail = |s: &Self, fx: &mut Effects, code: &[u8], context: &[&[u8]], text: &str| {
            s.fail(fx, id, b"CHATHISTORY", code, context, text);
        };
        let Some(sub) = msg.param(0).map(<[u8]>::to_ascii_uppercase) else {
            fail(self, fx, b"NEED_MORE_PARAMS", &[], "Missing parameters");
            return;
        };
        let refs = match &sub[..] {
            b"LATEST" | b"BEFORE" | b"AFTER" | b"AROUND" | b"TARGETS" => 1,
            b"BETWEEN" => 2,
            _ => {
                fail(self, fx, b"UNKNOWN_COMMAND", &[&sub], "Unknown subcommand");
                return;
            }
        };
        if sub == b"TARGETS" {
            self.history_targets(id, msg, fx);
            return;
        }
        let (Some(target), Some(limit)) = (msg.nonempty(1), msg.param(2 + refs)) else {
            fail(self, fx, b"NEED_MORE_PARAMS", &[&sub], "Missing parameters");
            return;
        };
        let limit = std::str::from_utf8(limit).ok().and_then(|l| l.parse::<usize>().ok()).filter(|&l| l > 0);
        let a = msg.param(2).and_then(Ref::parse);
        let b = if refs == 2 { msg.param(3).and_then(Ref::parse) } else { None };
        let (Some(limit), Some(a)) = (limit, a) else {
            fail(self, fx, b"INVALID_PARAMS", &[&sub], "Invalid reference or limit");
            return;
        };
        if (refs == 2 && b.is_none()) || (matches!(a, Ref::Latest) && sub != b"LATEST") {
            fail(self, fx, b"INVALID_PARAMS", &[&sub], "Invalid reference or limit");
            return;
        }
        let n = limit.min(MAX_REPLY);
        let reference = self.tagger.batch_id();
        let open = LineBuilder::new(self.server(), b"BATCH")
            .middle(format!("+{reference}").as_bytes())
            .middle(b"chathistory")
            .middle(target)
            .finish();
        let close = LineBuilder::new(self.server(), b"BATCH").middle(format!("-{reference}").as_bytes()).finish();
        if !target.starts_with(b"#") {
            // Private messages are not kept: an empty batch, not an error.
            fx.send(id, open);
            fx.send(id, close);
            return;
        }
        let Some(ch) = self.channels.get(&fold(target)).filter(|ch| ch.has(id)) else {
            fail(self, fx, b"INVALID_TARGET", &[&sub, target], "No such channel, or not a member");
            return;
        };
        let h = &ch.history;
        let range = match (&sub[..], locate(h, &a), b.as_ref().map(|b| locate(h, b))) {
            (_, None, _) | (_, _, Some(None)) => 0..0,
            (b"LATEST", Some((_, after)), _) => h.len().saturating_sub(n).max(after)..h.len(),
            (b"BEFORE", Some((at, _)), _) => at.saturating_sub(n)..at,
            (b"AFTER", Some((_, after)), _) => after..(after + n).min(h.len()),
            (b"AROUND", Some((at, _)), _) => {
                let start = at.saturating_sub(n / 2);
                start..(start + n).min(h.len())
            }
            (_, Some((a_at, a_after)), Some(Some((b_at, b_after)))) => {
                if a_at <= b_at {
                    a_after..(a_after + n).min(b_at)
                } else {
                    b_after.max(a_at.saturating_sub(n))..a_at
                }
            }
            _ => 0..0,
        };
        let with_tags = self.caps_of(id).has(Caps::MESSAGE_TAGS);
        fx.send(id, open);
        for e in h.range(range) {
            let mut line = Vec::with_capacity(e.line.len() + 96);
            line.extend_from_slice(b"@time=");
            line.extend_from_slice(server_time(e.unix_ms).as_bytes());
            line.extend_from_slice(b";msgid=");
            line.extend_from_slice(&e.msgid);
            line.extend_from_slice(b";batch=");
            line.extend_from_slice(reference.as_bytes());
            if let Some(tags) = e.client_tags.as_ref().filter(|_| with_tags) {
                line.push(b';');
                line.extend_from_slice(tags);
            }
            line.push(b' ');
            line.extend_from_slice(&e.line);
            fx.send(id, Arc::from(line));
        }
        fx.send(id, close);
    }

    /// `REDACT <channel> <msgid> [:<reason>]` (IRCv3 draft/message-redaction): the sender or a
    /// channel operator takes back a message still in the channel's history. It leaves the
    /// history, and members that enabled the capability are told; the others keep what they saw.
    pub(super) fn cmd_redact(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let (Some(target), Some(msgid)) = (msg.nonempty(0), msg.nonempty(1)) else {
            self.fail(fx, id, b"REDACT", b"NEED_MORE_PARAMS", &[], "Missing parameters");
            return;
        };
        let key = fold(target);
        let Some(ch) = self.channels.get(&key).filter(|ch| ch.has(id)) else {
            self.fail(fx, id, b"REDACT", b"INVALID_TARGET", &[target], "No such channel, or not a member");
            return;
        };
        let Some(i) = ch.history.iter().position(|e| *e.msgid == *msgid) else {
            self.fail(fx, id, b"REDACT", b"UNKNOWN_MSGID", &[target, msgid], "No such message to redact");
            return;
        };
        if !ch.is_op(id) && *ch.history[i].sender != *fold(&self.nick_of(id)) {
            self.fail(fx, id, b"REDACT", b"REDACT_FORBIDDEN", &[target, msgid], "You may not redact that message");
            return;
        }
        let b = LineBuilder::new(&self.clients[&id].prefix, b"REDACT").middle(&ch.name).middle(msgid);
        let line = match msg.nonempty(2) {
            Some(reason) => b.trailing(reason),
            None => b.finish(),
        };
        self.broadcast_to(fx, &key, &line, None, Caps::MESSAGE_REDACTION);
        if let Some(e) = self.channels.get_mut(&key).and_then(|ch| ch.history.remove(i)) {
            self.history_bytes -= e.bytes();
        }
    }

    /// `CHATHISTORY TARGETS <from> <to> <limit>`: the client's channels with a message kept
    /// between two times, in the order of their latest message.
    fn history_targets(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let time = |i| msg.param(i).and_then(|p: &[u8]| p.strip_prefix(b"timestamp=")).and_then(parse_server_time);
        let limit = msg.param(3).and_then(|l| std::str::from_utf8(l).ok()?.parse::<usize>().ok());
        let (Some(a), Some(b), Some(limit)) = (time(1), time(2), limit) else {
            self.fail(fx, id, b"CHATHISTORY", b"INVALID_PARAMS", &[b"TARGETS"], "Invalid timestamps or limit");
            return;
        };
        let (from, to) = (a.min(b), a.max(b));
        let Some(c) = self.clients.get(&id) else { return };
        let mut found: Vec<(u64, &[u8])> = c
            .channels
            .iter()
            .filter_map(|k| self.channels.get(k))
            .filter_map(|ch| ch.history.back().map(|e| (e.unix_ms, &ch.name[..])))
            .filter(|&(ms, _)| ms > from && ms < to)
            .collect();
        found.sort_unstable();
        found.truncate(limit.min(MAX_REPLY));
        let reference = self.tagger.batch_id();
        let open = LineBuilder::new(self.server(), b"BATCH")
            .middle(format!("+{reference}").as_bytes())
            .middle(b"draft/chathistory-targets")
            .finish();
        fx.send(id, open);
        let batch = format!("@batch={reference} ");
        for (ms, name) in found {
            let line = LineBuilder::new(self.server(), b"CHATHISTORY")
                .middle(b"TARGETS")
                .middle(name)
                .middle(server_time(ms).as_bytes())
                .finish();
            fx.send(id, Arc::from([batch.as_bytes(), &line].concat()));
        }
        let close = LineBuilder::new(self.server(), b"BATCH").middle(format!("-{reference}").as_bytes()).finish();
        fx.send(id, close);
    }
}
