//! IRCv3 capability negotiation (<https://ircv3.net/specs/extensions/capability-negotiation>):
//! the capabilities echoport offers, a client's enabled set as bits, and the CAP command.
//!
//! A capability costs a client that did not request it nothing: its bit is clear, and the code
//! that serves the capability looks at the bit first. Every capability can be enabled and
//! disabled at any time (none is sticky), so `CAP REQ :-x` always works.

use serde::{Deserialize, Serialize};
use std::time::Instant;

use echoport_irc::{LineBuilder, Message};

use super::{ChatServer, ClientId, Effects};

/// A set of capabilities, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(super) struct Caps(u32);

impl Caps {
    pub(super) const ACCOUNT_NOTIFY: Caps = Caps(1 << 0);
    pub(super) const ACCOUNT_TAG: Caps = Caps(1 << 1);
    pub(super) const AWAY_NOTIFY: Caps = Caps(1 << 2);
    pub(super) const BATCH: Caps = Caps(1 << 3);
    pub(super) const CAP_NOTIFY: Caps = Caps(1 << 4);
    pub(super) const CHGHOST: Caps = Caps(1 << 5);
    pub(super) const ECHO_MESSAGE: Caps = Caps(1 << 6);
    pub(super) const EXTENDED_JOIN: Caps = Caps(1 << 7);
    pub(super) const INVITE_NOTIFY: Caps = Caps(1 << 8);
    pub(super) const LABELED_RESPONSE: Caps = Caps(1 << 9);
    pub(super) const MESSAGE_TAGS: Caps = Caps(1 << 10);
    pub(super) const MULTI_PREFIX: Caps = Caps(1 << 11);
    pub(super) const SASL: Caps = Caps(1 << 12);
    pub(super) const SERVER_TIME: Caps = Caps(1 << 13);
    pub(super) const SETNAME: Caps = Caps(1 << 14);
    pub(super) const USERHOST_IN_NAMES: Caps = Caps(1 << 15);
    pub(super) const EXTENDED_MONITOR: Caps = Caps(1 << 16);
    pub(super) const CHATHISTORY: Caps = Caps(1 << 17);
    pub(super) const READ_MARKER: Caps = Caps(1 << 18);
    pub(super) const MESSAGE_REDACTION: Caps = Caps(1 << 19);

    /// The capabilities that add tags to lines a client receives.
    pub(super) const TAGGING: Caps =
        Caps(Caps::ACCOUNT_TAG.0 | Caps::MESSAGE_TAGS.0 | Caps::SERVER_TIME.0 | Caps::LABELED_RESPONSE.0);

    pub(super) fn has(self, c: Caps) -> bool {
        self.0 & c.0 != 0
    }

    pub(super) fn with(self, c: Caps, on: bool) -> Caps {
        if on { Caps(self.0 | c.0) } else { Caps(self.0 & !c.0) }
    }

    pub(super) fn and(self, c: Caps) -> Caps {
        Caps(self.0 & c.0)
    }

    pub(super) fn bits(self) -> u32 {
        self.0
    }
}

/// Every capability offered, by name, in the order CAP LS and CAP LIST show them.
const OFFERED: [(&str, Caps); 20] = [
    ("account-notify", Caps::ACCOUNT_NOTIFY),
    ("account-tag", Caps::ACCOUNT_TAG),
    ("away-notify", Caps::AWAY_NOTIFY),
    ("batch", Caps::BATCH),
    ("cap-notify", Caps::CAP_NOTIFY),
    ("chghost", Caps::CHGHOST),
    ("draft/chathistory", Caps::CHATHISTORY),
    ("draft/message-redaction", Caps::MESSAGE_REDACTION),
    ("draft/read-marker", Caps::READ_MARKER),
    ("echo-message", Caps::ECHO_MESSAGE),
    ("extended-join", Caps::EXTENDED_JOIN),
    ("extended-monitor", Caps::EXTENDED_MONITOR),
    ("invite-notify", Caps::INVITE_NOTIFY),
    ("labeled-response", Caps::LABELED_RESPONSE),
    ("message-tags", Caps::MESSAGE_TAGS),
    ("multi-prefix", Caps::MULTI_PREFIX),
    ("sasl", Caps::SASL),
    ("server-time", Caps::SERVER_TIME),
    ("setname", Caps::SETNAME),
    ("userhost-in-names", Caps::USERHOST_IN_NAMES),
];

impl ChatServer {
    /// The capabilities this server offers with its configuration (sasl only with accounts,
    /// draft/chathistory and draft/message-redaction only with history kept).
    fn offered(&self) -> impl Iterator<Item = (&'static str, Caps)> + '_ {
        OFFERED.into_iter().filter(|&(_, c)| match c {
            Caps::SASL => self.sasl_mechanisms().is_some(),
            // Both work on the history: a redaction needs the message to still be there.
            Caps::CHATHISTORY | Caps::MESSAGE_REDACTION => self.config.history > 0,
            _ => true,
        })
    }

    /// The value CAP LS 302 shows after `name=`, if any.
    fn cap_value(&self, cap: Caps) -> Option<&'static str> {
        match cap {
            Caps::SASL => self.sasl_mechanisms(),
            _ => None,
        }
    }

    pub(super) fn cmd_cap(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(sub) = msg.param(0) else {
            self.reply(fx, id, "461", &[b"CAP"], "Not enough parameters");
            return;
        };
        let registered = self.clients[&id].registered;
        let sub_upper = sub.to_ascii_uppercase();
        match &sub_upper[..] {
            b"LS" => {
                let v302 = msg.param(1).is_some_and(|v| v.iter().all(u8::is_ascii_digit) && v >= &b"302"[..]);
                let c = self.clients.get_mut(&id).unwrap();
                c.cap_negotiating = !registered;
                if v302 {
                    // CAP LS 302 enables cap-notify implicitly (spec: cap-notify section).
                    c.cap_302 = true;
                    c.caps = c.caps.with(Caps::CAP_NOTIFY, true);
                }
                let show_values = c.cap_302;
                let secure = c.secure;
                let mut names: Vec<String> = self
                    .offered()
                    .map(|(name, cap)| match self.cap_value(cap).filter(|_| show_values) {
                        Some(v) => format!("{name}={v}"),
                        None => name.to_owned(),
                    })
                    .collect();
                // STS is all in its value, so only 302 clients are shown it. It is advertised,
                // never requested (so it has no bit in Caps).
                if let Some((port, duration)) = self.config.sts.filter(|_| show_values) {
                    names.push(if secure { format!("sts=duration={duration}") } else { format!("sts=port={port}") });
                    names.sort();
                }
                self.send_cap_list(id, b"LS", &names, show_values, fx);
            }
            b"LIST" => {
                let caps = self.clients[&id].caps;
                let names: Vec<String> =
                    self.offered().filter(|&(_, c)| caps.has(c)).map(|(n, _)| n.to_owned()).collect();
                let multiline = self.clients[&id].cap_302;
                self.send_cap_list(id, b"LIST", &names, multiline, fx);
            }
            b"REQ" => {
                let list = msg.param(1).unwrap_or(b"");
                self.clients.get_mut(&id).unwrap().cap_negotiating = !registered;
                // All or nothing: one unknown name refuses the whole request.
                let mut caps = self.clients[&id].caps;
                let mut ok = true;
                for word in list.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
                    let (on, name) = match word.strip_prefix(b"-") {
                        Some(name) => (false, name),
                        None => (true, word),
                    };
                    match self.offered().find(|(n, _)| n.as_bytes() == name) {
                        Some((_, cap)) => caps = caps.with(cap, on),
                        None => ok = false,
                    }
                }
                let verb: &[u8] = if ok { b"ACK" } else { b"NAK" };
                if ok {
                    self.clients.get_mut(&id).unwrap().caps = caps;
                }
                let line = self.cap_line(id, verb).trailing(list);
                fx.send(id, line);
            }
            b"END" => {
                self.clients.get_mut(&id).unwrap().cap_negotiating = false;
                self.try_register(id, now, fx);
            }
            _ => self.reply(fx, id, "410", &[sub], "Invalid CAP command"),
        }
    }

    /// `:server CAP <nick or *> <verb>`.
    fn cap_line(&self, id: ClientId, verb: &[u8]) -> LineBuilder {
        let c = &self.clients[&id];
        let target: &[u8] = if c.registered { c.nick_or_star() } else { b"*" };
        LineBuilder::new(self.server(), b"CAP").middle(target).middle(verb)
    }

    /// A CAP LS or LIST reply: one line, or with `multiline` (CAP 302) as many as it takes,
    /// all but the last marked `*`.
    fn send_cap_list(&self, id: ClientId, verb: &[u8], names: &[String], multiline: bool, fx: &mut Effects) {
        let room = self.cap_line(id, verb).middle(b"*").trailing_room();
        let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
        for name in names {
            let last = lines.last_mut().unwrap();
            if multiline && !last.is_empty() && last.len() + 1 + name.len() > room {
                lines.push(Vec::new());
            }
            let last = lines.last_mut().unwrap();
            if !last.is_empty() {
                last.push(b' ');
            }
            last.extend_from_slice(name.as_bytes());
        }
        let n = lines.len();
        for (i, text) in lines.into_iter().enumerate() {
            let b = self.cap_line(id, verb);
            let b = if i + 1 < n { b.middle(b"*") } else { b };
            fx.send(id, b.trailing(&text));
        }
    }

    /// The client's enabled capabilities (none for an unknown id).
    pub(super) fn caps_of(&self, id: ClientId) -> Caps {
        self.clients.get(&id).map(|c| c.caps).unwrap_or_default()
    }
}
