//! PRIVMSG, NOTICE and TAGMSG, to channels (whole, or their ops/voiced: STATUSMSG) and to nicks,
//! with the sender's client-only tags relayed to recipients that enabled message-tags and a copy
//! back to a sender that enabled echo-message.

use std::sync::Arc;
use std::time::Instant;

use echoport_irc::{LineBuilder, Message, fold};

use super::caps::Caps;
use super::statusmsg::{split_status, status_target};
use super::{ChatServer, ClientId, Effects, MAX_TARGETS};

/// The three ways of sending a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Privmsg,
    /// Never answered with an error, so two bots cannot loop on each other's replies.
    Notice,
    /// Tags only, no text: reaches only recipients that enabled message-tags.
    Tagmsg,
}

impl ChatServer {
    pub(super) fn cmd_message(&mut self, id: ClientId, msg: &Message, notice: bool, now: Instant, fx: &mut Effects) {
        let kind = if notice { Kind::Notice } else { Kind::Privmsg };
        self.send_message(id, msg, kind, now, fx);
        if let Some(c) = self.clients.get_mut(&id) {
            c.last_message = now;
        }
    }

    pub(super) fn cmd_tagmsg(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        self.send_message(id, msg, Kind::Tagmsg, now, fx);
    }

    fn send_message(&mut self, id: ClientId, msg: &Message, kind: Kind, now: Instant, fx: &mut Effects) {
        let (command, errors): (&[u8], bool) = match kind {
            Kind::Privmsg => (b"PRIVMSG", true),
            Kind::Notice => (b"NOTICE", false),
            Kind::Tagmsg => (b"TAGMSG", true),
        };
        let Some(targets) = msg.nonempty(0) else {
            if errors {
                let text = format!("No recipient given ({})", String::from_utf8_lossy(command));
                self.reply(fx, id, "411", &[], &text);
            }
            return;
        };
        let text = msg.nonempty(1);
        if kind != Kind::Tagmsg && text.is_none() {
            if errors {
                self.reply(fx, id, "412", &[], "No text to send");
            }
            return;
        }
        let echo = self.caps_of(id).has(Caps::ECHO_MESSAGE);
        for (i, target) in targets.split(|&b| b == b',').filter(|t| !t.is_empty()).enumerate() {
            if i == MAX_TARGETS {
                if errors {
                    self.reply(fx, id, "407", &[target], "Too many recipients");
                }
                break;
            }
            let build = |sender: &[u8], to: &[u8]| {
                let b = LineBuilder::new(sender, command).middle(to);
                match text {
                    Some(text) => b.trailing(text),
                    None => b.finish(),
                }
            };
            let sender = &self.clients[&id];
            let (status, chan) = split_status(target);
            if chan.starts_with(b"#") {
                let key = fold(chan);
                let Some(ch) = self.channels.get(&key) else {
                    if errors {
                        self.reply(fx, id, "401", &[target], "No such nick/channel");
                    }
                    continue;
                };
                if let Err(r) = self.may_speak(ch, id) {
                    if errors {
                        self.reply(fx, id, r.code, &[&ch.name], r.text);
                    }
                    continue;
                }
                // +C: a CTCP (text in \x01) is refused, but for ACTION (/me).
                if ch.modes.no_ctcp && text.is_some_and(|t| t.starts_with(b"\x01") && !t.starts_with(b"\x01ACTION")) {
                    if errors {
                        self.reply(fx, id, "404", &[&ch.name], "Cannot send to channel (+C)");
                    }
                    continue;
                }
                let line = build(&sender.prefix, &status_target(status, &ch.name));
                self.tagger.relay(&line, msg.tags);
                let need = if kind == Kind::Tagmsg { Caps::MESSAGE_TAGS } else { Caps::default() };
                self.broadcast_status(fx, &key, &line, Some(id), status, need);
                if kind != Kind::Tagmsg && status.is_none() {
                    self.record_history(&key, &line, id, now);
                }
                if echo {
                    fx.send(id, line);
                }
            } else {
                let Some(tid) = self.find_nick(target) else {
                    if errors {
                        self.reply(fx, id, "401", &[target], "No such nick/channel");
                    }
                    continue;
                };
                let to = &self.clients[&tid];
                let line: Arc<[u8]> = build(&sender.prefix, to.nick_or_star());
                self.tagger.relay(&line, msg.tags);
                if kind != Kind::Tagmsg || to.caps.has(Caps::MESSAGE_TAGS) {
                    if tid == id && echo {
                        // A message to oneself arrives twice; the echo is the reply that
                        // carries the label.
                        self.tagger.unlabeled(fx.sends.len());
                    }
                    fx.send(tid, line.clone());
                }
                if echo {
                    fx.send(id, line);
                }
                if kind == Kind::Privmsg
                    && let Some(away) = &to.away
                {
                    self.reply_bytes(fx, id, "301", &[to.nick_or_star()], away);
                }
            }
        }
    }
}
