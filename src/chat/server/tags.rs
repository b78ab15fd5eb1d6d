//! IRCv3 tags on what the server sends: `time` (server-time), `msgid`, `account` (account-tag),
//! `bot`, the sender's client-only tags (message-tags), and labeled responses (`label`, `ACK`,
//! `BATCH ... labeled-response`).
//!
//! Commands build plain lines, shared by every recipient; tagging is a pass over an event's
//! sends once the command has run. A recipient whose client enabled no tagging capability keeps
//! the plain line, so a capability nobody requested costs nothing but one bit test per send. A
//! broadcast builds one tagged line per distinct set of tagging capabilities among its
//! recipients, not one per recipient, and every recipient of one message sees the same `msgid`.

use std::sync::Arc;
use std::time::Instant;

use echoport_irc::tags::{push_tag, tags as tag_list, valid_key};
use echoport_irc::{LineBuilder, MAX_TAGS};

use super::caps::Caps;
use super::clock::server_time;
use super::idhash::IdMap;
use super::{ChatServer, ClientId, Effects};

/// The longest `label` a client may send; longer ones are ignored (the spec allows 64).
const MAX_LABEL: usize = 64;

/// Who an event's lines come from, captured before the command ran (a NICK changes the prefix
/// its own line carries as the old one).
#[derive(Default)]
pub(super) struct Source {
    prefix: Vec<u8>,
    account: Option<Vec<u8>>,
    bot: bool,
}

/// A plain line as the tagging cache knows it: its address and the recipient's tagging caps.
type LineKey = (usize, u32);
/// A built line, shared by its recipients.
type Line = Arc<[u8]>;

/// One event's tagging work, and the counters that make ids unique.
#[derive(Default)]
pub(super) struct Tagger {
    /// Lines that relay the sender's client-only tags, with those tags in wire form.
    relayed: Vec<(Arc<[u8]>, Vec<u8>)>,
    /// Sends (indices into `Effects::sends`) the label must not go on: a message to oneself,
    /// whose echo carries the label.
    unlabeled: Vec<usize>,
    /// Tagged lines by (plain line's address, recipient's tagging caps). The plain line is kept
    /// alive with it so no address is reused within the event.
    cache: IdMap<LineKey, (Line, Line)>,
    /// The last cache hit: a broadcast sends one line to many recipients in a row.
    last: Option<(LineKey, Line)>,
    msgids: IdMap<usize, Vec<u8>>,
    /// Unique within this server's life; `msgid_base` (its start time) makes ids unique across
    /// restarts too.
    next_id: u64,
    msgid_base: u64,
    /// In a network: the event being applied, as (instance tag, its sequence number). Its
    /// msgids then come from it and from each line's bytes, not from the counter, so they are the
    /// same on every instance whichever of a line's recipients each one has (an instance builds
    /// only the lines for its own clients).
    origin: Option<(u32, u64)>,
}

impl Tagger {
    pub(super) fn new(unix_ms: u64) -> Tagger {
        Tagger { msgid_base: unix_ms, ..Tagger::default() }
    }

    /// What makes the next msgid: (base, counter). Replicas of one network share it, so every
    /// instance tags a message with the same msgid.
    pub(super) fn msgid_state(&self) -> (u64, u64) {
        (self.msgid_base, self.next_id)
    }

    pub(super) fn set_msgid_state(&mut self, (base, next): (u64, u64)) {
        (self.msgid_base, self.next_id) = (base, next);
    }

    /// `line` relays a message whose client-only tags were `section` (a client's tag section,
    /// without `@`): recipients with message-tags get them. Tags with invalid keys are dropped.
    pub(super) fn relay(&mut self, line: &Arc<[u8]>, section: Option<&[u8]>) {
        let Some(section) = section else { return };
        let mut out = Vec::new();
        for tag in tag_list(section).filter(|t| t.is_client_only() && valid_key(t.key)) {
            push_tag(&mut out, tag.key, &tag.value());
        }
        if !out.is_empty() {
            self.relayed.push((line.clone(), out));
        }
    }

    /// The send about to be pushed at `index` does not take the label.
    pub(super) fn unlabeled(&mut self, index: usize) {
        self.unlabeled.push(index);
    }

    /// The msgid `line` goes out with, chosen now (history keeps it) instead of in the tag pass.
    pub(super) fn assign_msgid(&mut self, line: &Arc<[u8]>) -> Vec<u8> {
        self.msgid_at(line)
    }

    /// The msgid of `line` this event, made on first use.
    fn msgid_at(&mut self, line: &Arc<[u8]>) -> Vec<u8> {
        let addr = Arc::as_ptr(line) as *const u8 as usize;
        if let Some(id) = self.msgids.get(&addr) {
            return id.clone();
        }
        let id = match self.origin {
            Some((tag, seq)) => format!("{}-{}-{}", base36(tag.into()), base36(seq), base36(fnv1a(line) >> 24)),
            None => self.id(),
        };
        let id = id.into_bytes();
        self.msgids.insert(addr, id.clone());
        id
    }

    /// Sets (or, with `None`, clears) the network event being applied.
    pub(super) fn set_origin(&mut self, origin: Option<(u32, u64)>) {
        self.origin = origin;
    }

    /// The client-only tags `line` relays, in wire form.
    pub(super) fn client_tags(&self, line: &Arc<[u8]>) -> Option<Vec<u8>> {
        self.relayed.iter().find(|(l, _)| Arc::ptr_eq(l, line)).map(|(_, t)| t.clone())
    }

    /// A fresh batch reference: letters and digits only.
    pub(super) fn batch_id(&mut self) -> String {
        self.id().replace('-', "")
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", base36(self.msgid_base), base36(self.next_id))
    }

    fn clear(&mut self) {
        self.relayed.clear();
        self.unlabeled.clear();
        self.cache.clear();
        self.last = None;
        self.msgids.clear();
    }
}

/// FNV-1a: a hash every build computes alike (std's hashers promise no such thing).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn base36(mut n: u64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The source of a built line (`:source COMMAND ...`), empty if it has none.
fn source_of(line: &[u8]) -> &[u8] {
    match line.strip_prefix(b":") {
        Some(rest) => &rest[..rest.iter().position(|&b| b == b' ').unwrap_or(rest.len())],
        None => b"",
    }
}

/// `line` with `tag` (`key=value`, escaped) first in its tag section.
fn with_tag(line: &[u8], tag: &[u8]) -> Arc<[u8]> {
    let mut out = Vec::with_capacity(line.len() + tag.len() + 2);
    out.push(b'@');
    out.extend_from_slice(tag);
    match line.strip_prefix(b"@") {
        Some(rest) => {
            out.push(b';');
            out.extend_from_slice(rest);
        }
        None => {
            out.push(b' ');
            out.extend_from_slice(line);
        }
    }
    Arc::from(out)
}

impl ChatServer {
    /// Who `id`'s lines come from right now.
    pub(super) fn source(&self, id: ClientId) -> Source {
        match self.clients.get(&id) {
            Some(c) => Source { prefix: c.prefix.clone(), account: c.account.clone(), bot: c.bot },
            None => Source::default(),
        }
    }

    /// The label on a client's line, if it may have one answered.
    pub(super) fn label_of(&self, id: ClientId, tags: Option<&[u8]>) -> Option<Vec<u8>> {
        if !self.caps_of(id).has(Caps::LABELED_RESPONSE) {
            return None;
        }
        let label = echoport_irc::tags::tag_value(tags?, b"label")?;
        (!label.is_empty() && label.len() <= MAX_LABEL).then_some(label)
    }

    /// Tags the sends from `start` on (the event's), then answers the label if there is one.
    pub(super) fn tag_event(
        &mut self,
        fx: &mut Effects,
        start: usize,
        now: Instant,
        src: &Source,
        label: Option<(ClientId, Vec<u8>)>,
    ) {
        let unix_ms = self.unix_ms(now);
        let mut time: Option<Vec<u8>> = None;
        for i in start..fx.sends.len() {
            let Some(c) = self.clients.get(&fx.sends[i].0) else { continue };
            if fx.sends[i].1.first() == Some(&b'@') {
                // Built with its tags (history replay): already as the client must see it.
                continue;
            }
            let caps = c.caps.and(Caps::TAGGING).with(Caps::LABELED_RESPONSE, false);
            if caps == Caps::default() {
                continue;
            }
            let line = &fx.sends[i].1;
            let key = (Arc::as_ptr(line) as *const u8 as usize, caps.bits());
            let t = &mut self.tagger;
            if let Some((k, tagged)) = &t.last
                && *k == key
            {
                fx.sends[i].1 = tagged.clone();
                continue;
            }
            if let Some((_, tagged)) = t.cache.get(&key) {
                t.last = Some((key, tagged.clone()));
                fx.sends[i].1 = tagged.clone();
                continue;
            }
            let source = source_of(line);
            let from_sender = !source.is_empty() && source == &src.prefix[..];
            let mut section = Vec::new();
            if caps.has(Caps::MESSAGE_TAGS) {
                if let Some((_, client_tags)) = t.relayed.iter().find(|(l, _)| Arc::ptr_eq(l, line)) {
                    section.extend_from_slice(client_tags);
                }
                if source.contains(&b'!') {
                    let msgid = t.msgid_at(line);
                    push_tag(&mut section, b"msgid", &msgid);
                }
                if from_sender && src.bot {
                    push_tag(&mut section, b"bot", b"");
                }
            }
            if caps.has(Caps::SERVER_TIME) {
                let time = time.get_or_insert_with(|| server_time(unix_ms).into_bytes());
                push_tag(&mut section, b"time", time);
            }
            if caps.has(Caps::ACCOUNT_TAG)
                && from_sender
                && let Some(account) = &src.account
            {
                push_tag(&mut section, b"account", account);
            }
            let tagged = if section.is_empty() || section.len() + 2 > MAX_TAGS {
                line.clone()
            } else {
                with_tag(line, &section)
            };
            let t = &mut self.tagger;
            t.cache.insert(key, (line.clone(), tagged.clone()));
            t.last = Some((key, tagged.clone()));
            fx.sends[i].1 = tagged;
        }
        if let Some((id, label)) = label {
            self.answer_label(fx, start, id, &label);
        }
        self.tagger.clear();
    }

    /// labeled-response: the label goes on the one reply, on a batch around several, or on an
    /// ACK when the command had no reply for its sender.
    fn answer_label(&mut self, fx: &mut Effects, start: usize, id: ClientId, label: &[u8]) {
        if !self.caps_of(id).has(Caps::LABELED_RESPONSE) {
            return;
        }
        let mut label_tag = Vec::new();
        push_tag(&mut label_tag, b"label", label);
        let mine: Vec<usize> =
            (start..fx.sends.len()).filter(|&i| fx.sends[i].0 == id && !self.tagger.unlabeled.contains(&i)).collect();
        match mine[..] {
            [] => {
                let ack = LineBuilder::new(self.server(), b"ACK").finish();
                fx.send(id, with_tag(&ack, &label_tag));
            }
            [only] => fx.sends[only].1 = with_tag(&fx.sends[only].1, &label_tag),
            [first, .., last] => {
                let reference = self.tagger.batch_id();
                let open = LineBuilder::new(self.server(), b"BATCH")
                    .middle(format!("+{reference}").as_bytes())
                    .middle(b"labeled-response")
                    .finish();
                let close =
                    LineBuilder::new(self.server(), b"BATCH").middle(format!("-{reference}").as_bytes()).finish();
                let mut batch_tag = Vec::new();
                push_tag(&mut batch_tag, b"batch", reference.as_bytes());
                let sends = std::mem::take(&mut fx.sends);
                fx.sends.reserve(sends.len() + 2);
                for (i, (to, line)) in sends.into_iter().enumerate() {
                    if i == first {
                        fx.send(id, with_tag(&open, &label_tag));
                    }
                    // A line inside a batch of its own (chathistory) stays in that one.
                    let own_batch = echoport_irc::tags::split_tags(&line).0.windows(6).any(|w| w == b"batch=");
                    let line =
                        if mine.binary_search(&i).is_ok() && !own_batch { with_tag(&line, &batch_tag) } else { line };
                    fx.send(to, line);
                    if i == last {
                        fx.send(id, close.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_distinct() {
        let mut t = Tagger::new(1_700_000_000_000);
        let (a, b) = (t.id(), t.id());
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'), "{a}");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
    }

    #[test]
    fn tags_go_first() {
        assert_eq!(&*with_tag(b":a PRIVMSG b :c\r\n", b"label=1"), b"@label=1 :a PRIVMSG b :c\r\n");
        assert_eq!(&*with_tag(b"@time=x :a PING\r\n", b"batch=2"), b"@batch=2;time=x :a PING\r\n");
        assert_eq!(source_of(b":n!u@h PRIVMSG"), b"n!u@h");
        assert_eq!(source_of(b"PING :x"), b"");
    }
}
