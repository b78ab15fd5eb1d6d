//! Channel commands: JOIN, PART, TOPIC, NAMES, LIST, KICK and INVITE.

use std::time::Instant;

use echoport_irc::{LineBuilder, Message, fold, truncate_utf8};

use super::caps::Caps;
use super::elist::ListFilter;
use super::idhash::{IdIndexMap, IdSet};
use super::state::{Channel, Member, Modes, Topic};
use super::{CHANNELLEN, ChatServer, ClientId, Effects, KICKLEN, MAX_CHANNELS, MAX_KICKS, TOPICLEN};

impl ChatServer {
    pub(super) fn cmd_join(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(names) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"JOIN"], "Not enough parameters");
            return;
        };
        if names == b"0" {
            let keys = self.clients[&id].channels.clone();
            for key in keys {
                let Some(ch) = self.channels.get(&key) else {
                    continue;
                };
                let line = LineBuilder::new(&self.clients[&id].prefix, b"PART").middle(&ch.name).finish();
                self.broadcast(fx, &key, &line, None);
                self.leave_channel(id, &key);
            }
            return;
        }
        let keys: Vec<&[u8]> = msg.param(1).map(|k| k.split(|&b| b == b',').collect()).unwrap_or_default();
        for (i, name) in names.split(|&b| b == b',').enumerate() {
            if !name.is_empty() {
                self.join_one(id, name, keys.get(i).copied(), now, fx);
            }
        }
    }

    fn join_one(&mut self, id: ClientId, name: &[u8], key: Option<&[u8]>, now: Instant, fx: &mut Effects) {
        if !valid_channel(name) {
            self.reply(fx, id, "403", &[name], "No such channel");
            return;
        }
        let ckey = fold(name);
        if self.channels.get(&ckey).is_some_and(|ch| ch.has(id)) {
            return;
        }
        if self.clients[&id].channels.len() >= MAX_CHANNELS {
            self.reply(fx, id, "405", &[name], "You have joined too many channels");
            return;
        }
        let unix = self.unix(now);
        let member = match self.channels.get(&ckey) {
            Some(ch) => {
                if let Err(r) = self.may_join(ch, id, key) {
                    self.reply(fx, id, r.code, &[&ch.name], r.text);
                    return;
                }
                Member::default()
            }
            None => {
                self.next_seq += 1;
                self.channels.insert(
                    ckey.clone(),
                    Channel {
                        name: name.to_vec(),
                        seq: self.next_seq,
                        created: unix,
                        members: IdIndexMap::default(),
                        topic: None,
                        modes: Modes { no_external: true, topic_lock: true, ..Modes::default() },
                        invited: IdSet::default(),
                        lists: Default::default(),
                        history: Default::default(),
                    },
                );
                Member { op: true, voice: false }
            }
        };
        self.add_member(id, ckey.clone(), member);
        self.announce_join(fx, id, &ckey);
        let ch = &self.channels[&ckey];
        if let Some(topic) = &ch.topic {
            self.send_topic(id, ch, topic, fx);
        }
        self.send_names(id, ch, fx);
        self.markread_on_join(id, &ch.name, &ckey, fx);
        self.reply(fx, id, "366", &[&ch.name], "End of NAMES list");
    }

    fn send_topic(&self, id: ClientId, ch: &Channel, topic: &Topic, fx: &mut Effects) {
        self.reply_bytes(fx, id, "332", &[&ch.name], &topic.text);
        let time = topic.time.to_string();
        let line = self.numeric(id, "333").middle(&ch.name).middle(&topic.setter).middle(time.as_bytes()).finish();
        fx.send(id, line);
    }

    /// 353 lines for channel `ch` as `id` may see it (nothing if it may not see the channel).
    fn send_names(&self, id: ClientId, ch: &Channel, fx: &mut Effects) {
        let member = ch.has(id);
        if ch.modes.secret && !member {
            return;
        }
        let head = self.numeric(id, "353").middle(ch.symbol()).middle(&ch.name);
        let room = head.trailing_room();
        let caps = self.caps_of(id);
        let (all_prefixes, full) = (caps.has(Caps::MULTI_PREFIX), caps.has(Caps::USERHOST_IN_NAMES));
        let mut names: Vec<u8> = Vec::with_capacity(room);
        for (m, status) in &ch.members {
            let Some(c) = self.clients.get(m) else {
                continue;
            };
            if !member && c.invisible {
                continue;
            }
            let flag = status.prefixes(all_prefixes);
            let nick = if full { &c.prefix[..] } else { c.nick_or_star() };
            let need = flag.len() + nick.len() + usize::from(!names.is_empty());
            if !names.is_empty() && names.len() + need > room {
                fx.send(id, head.clone().trailing(&names));
                names.clear();
            }
            if !names.is_empty() {
                names.push(b' ');
            }
            names.extend_from_slice(flag);
            names.extend_from_slice(nick);
        }
        if !names.is_empty() {
            fx.send(id, head.trailing(&names));
        }
    }

    pub(super) fn cmd_part(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(names) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"PART"], "Not enough parameters");
            return;
        };
        let reason = msg.nonempty(1);
        for name in names.split(|&b| b == b',').filter(|n| !n.is_empty()) {
            let key = fold(name);
            let Some(ch) = self.channels.get(&key) else {
                self.reply(fx, id, "403", &[name], "No such channel");
                continue;
            };
            if !ch.has(id) {
                self.reply(fx, id, "442", &[&ch.name], "You're not on that channel");
                continue;
            }
            let b = LineBuilder::new(&self.clients[&id].prefix, b"PART").middle(&ch.name);
            let line = match reason {
                Some(r) => b.trailing(r),
                None => b.finish(),
            };
            self.broadcast(fx, &key, &line, None);
            self.leave_channel(id, &key);
        }
    }

    pub(super) fn cmd_topic(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(name) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"TOPIC"], "Not enough parameters");
            return;
        };
        let key = fold(name);
        let Some(ch) = self.channels.get(&key) else {
            self.reply(fx, id, "403", &[name], "No such channel");
            return;
        };
        let member = ch.has(id);
        let Some(text) = msg.param(1) else {
            if !member && ch.modes.secret {
                self.reply(fx, id, "442", &[&ch.name], "You're not on that channel");
            } else if let Some(topic) = &ch.topic {
                self.send_topic(id, ch, topic, fx);
            } else {
                self.reply(fx, id, "331", &[&ch.name], "No topic is set");
            }
            return;
        };
        if !member {
            self.reply(fx, id, "442", &[&ch.name], "You're not on that channel");
            return;
        }
        if ch.modes.topic_lock && !ch.is_op(id) {
            self.reply(fx, id, "482", &[&ch.name], "You're not channel operator");
            return;
        }
        let text = truncate_utf8(text, TOPICLEN);
        // Only a change is news: setting the same text (or clearing no topic) says nothing.
        if ch.topic.as_ref().map_or(&[][..], |t| &t.text[..]) == text {
            return;
        }
        let prefix = &self.clients[&id].prefix;
        let line = LineBuilder::new(prefix, b"TOPIC").middle(&ch.name).trailing(text);
        self.broadcast(fx, &key, &line, None);
        let topic =
            (!text.is_empty()).then(|| Topic { text: text.to_vec(), setter: self.nick_of(id), time: self.unix(now) });
        self.channels.get_mut(&key).unwrap().topic = topic;
    }

    /// Channels `id` may see, in creation order.
    fn visible_channels(&self, id: ClientId) -> Vec<&Channel> {
        let mut chans: Vec<&Channel> = self.channels.values().filter(|ch| !ch.modes.secret || ch.has(id)).collect();
        chans.sort_unstable_by_key(|ch| ch.seq);
        chans
    }

    pub(super) fn cmd_names(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        match msg.nonempty(0) {
            None => {
                for ch in self.visible_channels(id) {
                    self.send_names(id, ch, fx);
                }
                self.reply(fx, id, "366", &[b"*"], "End of NAMES list");
            }
            Some(names) => {
                for name in names.split(|&b| b == b',') {
                    if let Some(ch) = self.channels.get(&*fold(name)) {
                        self.send_names(id, ch, fx);
                    }
                }
                self.reply(fx, id, "366", &[names], "End of NAMES list");
            }
        }
    }

    /// `LIST [<terms>]` with the ELIST search terms of [`ListFilter`]; secret channels only
    /// for their members.
    pub(super) fn cmd_list(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        self.reply(fx, id, "321", &[b"Channel"], "Users  Name");
        let filter = ListFilter::parse(msg.nonempty(0).unwrap_or(b""));
        let unix = self.unix(now);
        let chans: Vec<&Channel> = if filter.by_name_only() {
            filter
                .names
                .iter()
                .filter_map(|n| self.channels.get(&*fold(n)))
                .filter(|ch| !ch.modes.secret || ch.has(id))
                .collect()
        } else {
            self.visible_channels(id)
        };
        for ch in chans.into_iter().filter(|ch| filter.matches(ch, unix)) {
            let count = ch.members.len().to_string();
            let topic = ch.topic.as_ref().map(|t| &t.text[..]).unwrap_or(b"");
            self.reply_bytes(fx, id, "322", &[&ch.name, count.as_bytes()], topic);
        }
        self.reply(fx, id, "323", &[], "End of LIST");
    }

    pub(super) fn cmd_kick(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let (Some(chans), Some(users)) = (msg.nonempty(0), msg.nonempty(1)) else {
            self.reply(fx, id, "461", &[b"KICK"], "Not enough parameters");
            return;
        };
        let chans: Vec<&[u8]> = chans.split(|&b| b == b',').collect();
        let users: Vec<&[u8]> = users.split(|&b| b == b',').collect();
        let pairs: Vec<(&[u8], &[u8])> = if chans.len() == 1 {
            users.iter().map(|&u| (chans[0], u)).collect()
        } else if chans.len() == users.len() {
            chans.into_iter().zip(users).collect()
        } else {
            self.reply(fx, id, "461", &[b"KICK"], "Not enough parameters");
            return;
        };
        let kicker = self.nick_of(id);
        let reason = truncate_utf8(msg.nonempty(2).unwrap_or(&kicker), KICKLEN).to_vec();
        for (chan, user) in pairs.into_iter().take(MAX_KICKS) {
            self.kick_one(id, chan, user, &reason, fx);
        }
    }

    fn kick_one(&mut self, id: ClientId, chan: &[u8], user: &[u8], reason: &[u8], fx: &mut Effects) {
        let key = fold(chan);
        let Some(ch) = self.channels.get(&key) else {
            self.reply(fx, id, "403", &[chan], "No such channel");
            return;
        };
        if !ch.has(id) {
            self.reply(fx, id, "442", &[&ch.name], "You're not on that channel");
            return;
        }
        if !ch.is_op(id) {
            self.reply(fx, id, "482", &[&ch.name], "You're not channel operator");
            return;
        }
        let Some(target) = self.find_nick(user) else {
            self.reply(fx, id, "401", &[user], "No such nick/channel");
            return;
        };
        let target_nick = self.nick_of(target);
        if !ch.has(target) {
            self.reply(fx, id, "441", &[&target_nick, &ch.name], "They aren't on that channel");
            return;
        }
        let line =
            LineBuilder::new(&self.clients[&id].prefix, b"KICK").middle(&ch.name).middle(&target_nick).trailing(reason);
        self.broadcast(fx, &key, &line, None);
        self.leave_channel(target, &key);
    }

    pub(super) fn cmd_invite(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if msg.is_empty() {
            // INVITE alone lists the channels one is invited to (336, 337).
            let mut names: Vec<&Channel> =
                self.invites.get(&id).into_iter().flatten().filter_map(|k| self.channels.get(k)).collect();
            names.sort_unstable_by_key(|ch| ch.seq);
            for ch in names {
                let line = self.numeric(id, "336").middle(&ch.name).finish();
                fx.send(id, line);
            }
            self.reply(fx, id, "337", &[], "End of /INVITE list");
            return;
        }
        let (Some(nick), Some(chan)) = (msg.nonempty(0), msg.nonempty(1)) else {
            self.reply(fx, id, "461", &[b"INVITE"], "Not enough parameters");
            return;
        };
        let Some(target) = self.find_nick(nick) else {
            self.reply(fx, id, "401", &[nick], "No such nick/channel");
            return;
        };
        let key = fold(chan);
        let Some(ch) = self.channels.get(&key) else {
            self.reply(fx, id, "403", &[chan], "No such channel");
            return;
        };
        let target_nick = self.nick_of(target);
        if !ch.has(id) {
            self.reply(fx, id, "442", &[&ch.name], "You're not on that channel");
            return;
        }
        if ch.has(target) {
            self.reply(fx, id, "443", &[&target_nick, &ch.name], "is already on channel");
            return;
        }
        if ch.modes.invite_only && !ch.is_op(id) {
            self.reply(fx, id, "482", &[&ch.name], "You're not channel operator");
            return;
        }
        let name = ch.name.clone();
        let line = self.numeric(id, "341").middle(&target_nick).middle(&name).finish();
        fx.send(id, line);
        let line = LineBuilder::new(&self.clients[&id].prefix, b"INVITE").middle(&target_nick).middle(&name).finish();
        fx.send(target, line);
        if let Some(away) = &self.clients[&target].away {
            self.reply_bytes(fx, id, "301", &[&target_nick], away);
        }
        self.announce_invite(fx, id, target, &key);
        self.add_invite(target, key);
    }
}

/// `#` and then any bytes but NUL, BEL, CR, LF, space, comma and colon; at most [`CHANNELLEN`].
pub fn valid_channel(name: &[u8]) -> bool {
    name.len() <= CHANNELLEN
        && name.first() == Some(&b'#')
        && !name.iter().any(|&b| matches!(b, 0 | 7 | b'\r' | b'\n' | b' ' | b',' | b':'))
}
