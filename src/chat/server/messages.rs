//! PRIVMSG and NOTICE, to channels (whole, or their ops/voiced: STATUSMSG) and to nicks.

use std::time::Instant;

use echoport_irc::{LineBuilder, Message, fold};

use super::statusmsg::{split_status, status_target};
use super::{ChatServer, ClientId, Effects, MAX_TARGETS};

impl ChatServer {
    pub(super) fn cmd_message(&mut self, id: ClientId, msg: &Message, notice: bool, now: Instant, fx: &mut Effects) {
        let command: &[u8] = if notice { b"NOTICE" } else { b"PRIVMSG" };
        let Some(targets) = msg.nonempty(0) else {
            if !notice {
                self.reply(fx, id, "411", &[], "No recipient given (PRIVMSG)");
            }
            return;
        };
        let Some(text) = msg.nonempty(1) else {
            if !notice {
                self.reply(fx, id, "412", &[], "No text to send");
            }
            return;
        };
        self.clients.get_mut(&id).unwrap().last_message = now;
        for (i, target) in targets.split(|&b| b == b',').filter(|t| !t.is_empty()).enumerate() {
            if i == MAX_TARGETS {
                if !notice {
                    self.reply(fx, id, "407", &[target], "Too many recipients");
                }
                break;
            }
            let sender = &self.clients[&id];
            let (status, chan) = split_status(target);
            if chan.starts_with(b"#") {
                let key = fold(chan);
                let Some(ch) = self.channels.get(&key) else {
                    if !notice {
                        self.reply(fx, id, "401", &[target], "No such nick/channel");
                    }
                    continue;
                };
                if let Err(r) = self.may_speak(ch, id) {
                    if !notice {
                        self.reply(fx, id, r.code, &[&ch.name], r.text);
                    }
                    continue;
                }
                let line =
                    LineBuilder::new(&sender.prefix, command).middle(&status_target(status, &ch.name)).trailing(text);
                self.broadcast_status(fx, &key, &line, Some(id), status);
            } else {
                let Some(tid) = self.find_nick(target) else {
                    if !notice {
                        self.reply(fx, id, "401", &[target], "No such nick/channel");
                    }
                    continue;
                };
                let to = &self.clients[&tid];
                let line = LineBuilder::new(&sender.prefix, command).middle(to.nick_or_star()).trailing(text);
                fx.send(tid, line);
                if !notice && let Some(away) = &to.away {
                    self.reply_bytes(fx, id, "301", &[to.nick_or_star()], away);
                }
            }
        }
    }
}
