//! MODE: a user's own modes (+i, +w, -o) and channel modes (+imnst, +k, +l, +o, +v; list queries
//! for b/e/I answer empty).

use echoport_irc::{LineBuilder, Message, eq_fold, fold};

use super::{ChatServer, ClientId, Effects, KEYLEN};

impl ChatServer {
    pub(super) fn cmd_mode(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(target) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"MODE"], "Not enough parameters");
            return;
        };
        if target.starts_with(b"#") {
            self.channel_mode(id, target, msg, fx);
        } else {
            self.user_mode(id, target, msg, fx);
        }
    }

    fn user_mode(&mut self, id: ClientId, target: &[u8], msg: &Message, fx: &mut Effects) {
        let c = &self.clients[&id];
        if !eq_fold(target, c.nick_or_star()) {
            if self.find_nick(target).is_some() {
                self.reply(fx, id, "502", &[], "Cant change mode for other users");
            } else {
                self.reply(fx, id, "401", &[target], "No such nick/channel");
            }
            return;
        }
        let Some(modes) = msg.param(1) else {
            let mut m = b"+".to_vec();
            if c.invisible {
                m.push(b'i');
            }
            if c.oper {
                m.push(b'o');
            }
            if c.wallops {
                m.push(b'w');
            }
            let line = self.numeric(id, "221").middle(&m).finish();
            fx.send(id, line);
            return;
        };
        let (mut invisible, mut oper, mut wallops) = (c.invisible, c.oper, c.wallops);
        let mut adding = true;
        let mut unknown = false;
        for &b in modes {
            match b {
                b'+' => adding = true,
                b'-' => adding = false,
                b'i' => invisible = adding,
                // +o only comes from OPER; -o gives operator status up.
                b'o' => oper &= adding,
                b'w' => wallops = adding,
                _ => unknown = true,
            }
        }
        let mut change = Vec::new();
        let mut sign = 0u8;
        for (before, after, ch) in [(c.invisible, invisible, b'i'), (c.oper, oper, b'o'), (c.wallops, wallops, b'w')] {
            if before != after {
                let s = if after { b'+' } else { b'-' };
                if s != sign {
                    change.push(s);
                    sign = s;
                }
                change.push(ch);
            }
        }
        if unknown {
            self.reply(fx, id, "501", &[], "Unknown MODE flag");
        }
        if change.is_empty() {
            return;
        }
        let c = self.clients.get_mut(&id).unwrap();
        if c.oper && !oper {
            self.opers -= 1;
        }
        // Registered, as MODE needs: the LUSERS count of invisible users follows.
        self.invisible = self.invisible + usize::from(invisible) - usize::from(c.invisible);
        c.invisible = invisible;
        c.oper = oper;
        c.wallops = wallops;
        let nick = c.nick_or_star().to_vec();
        let line = LineBuilder::new(&c.prefix, b"MODE").middle(&nick).middle(&change).finish();
        fx.send(id, line);
    }

    fn channel_mode(&mut self, id: ClientId, name: &[u8], msg: &Message, fx: &mut Effects) {
        let key = fold(name);
        let Some(ch) = self.channels.get(&key) else {
            self.reply(fx, id, "403", &[name], "No such channel");
            return;
        };
        let chname = ch.name.clone();
        let Some(modes) = msg.param(1) else {
            let mut b = self.numeric(id, "324").middle(&chname);
            for part in ch.mode_string(ch.has(id)) {
                b = b.middle(&part);
            }
            fx.send(id, b.finish());
            let created = ch.created.to_string();
            let line = self.numeric(id, "329").middle(&chname).middle(created.as_bytes()).finish();
            fx.send(id, line);
            return;
        };
        let is_op = ch.is_op(id);
        let mut args = msg.params()[2..].iter().copied();
        let mut adding = true;
        // Changes applied, as (adding, mode char, argument).
        let mut applied: Vec<(bool, u8, Option<Vec<u8>>)> = Vec::new();
        let mut refused = false;
        for &m in modes {
            match m {
                b'+' => adding = true,
                b'-' => adding = false,
                b'b' | b'e' | b'I' => {
                    if args.next().is_some() {
                        self.reply(fx, id, "472", &[std::slice::from_ref(&m)], "is unknown mode char to me");
                        continue;
                    }
                    let (code, text) = match m {
                        b'b' => ("368", "End of channel ban list"),
                        b'e' => ("349", "End of channel exception list"),
                        _ => ("347", "End of channel invite list"),
                    };
                    self.reply(fx, id, code, &[&chname], text);
                }
                b'i' | b'm' | b'n' | b's' | b't' | b'k' | b'l' | b'o' | b'v' => {
                    let arg = match m {
                        b'k' | b'o' | b'v' => args.next(),
                        b'l' if adding => args.next(),
                        _ => None,
                    };
                    if !is_op {
                        refused = true;
                        continue;
                    }
                    if let Some(change) = self.apply_mode(id, &key, adding, m, arg, fx) {
                        applied.push(change);
                    }
                }
                _ => self.reply(fx, id, "472", &[std::slice::from_ref(&m)], "is unknown mode char to me"),
            }
        }
        if refused {
            self.reply(fx, id, "482", &[&chname], "You're not channel operator");
        }
        if applied.is_empty() {
            return;
        }
        let mut modestr = Vec::new();
        let mut sign = None;
        for (adding, m, _) in &applied {
            if sign != Some(*adding) {
                modestr.push(if *adding { b'+' } else { b'-' });
                sign = Some(*adding);
            }
            modestr.push(*m);
        }
        let mut b = LineBuilder::new(&self.clients[&id].prefix, b"MODE").middle(&chname).middle(&modestr);
        for (_, _, arg) in &applied {
            if let Some(arg) = arg {
                b = b.middle(arg);
            }
        }
        let line = b.finish();
        self.broadcast(fx, &key, &line, None);
    }

    /// Applies one channel mode change by an operator; the change as applied, or None if it
    /// changed nothing (or was refused, with its error sent).
    fn apply_mode(
        &mut self,
        id: ClientId,
        key: &[u8],
        adding: bool,
        mode: u8,
        arg: Option<&[u8]>,
        fx: &mut Effects,
    ) -> Option<(bool, u8, Option<Vec<u8>>)> {
        let target = match mode {
            b'o' | b'v' => {
                let nick = arg?;
                let Some(t) = self.find_nick(nick) else {
                    self.reply(fx, id, "401", &[nick], "No such nick/channel");
                    return None;
                };
                Some((t, self.nick_of(t)))
            }
            _ => None,
        };
        let ch = self.channels.get_mut(key)?;
        let chname = ch.name.clone();
        let m = &mut ch.modes;
        let flag = match mode {
            b'i' => Some(&mut m.invite_only),
            b'm' => Some(&mut m.moderated),
            b'n' => Some(&mut m.no_external),
            b's' => Some(&mut m.secret),
            b't' => Some(&mut m.topic_lock),
            _ => None,
        };
        if let Some(flag) = flag {
            if *flag == adding {
                return None;
            }
            *flag = adding;
            return Some((adding, mode, None));
        }
        match mode {
            b'k' if adding => {
                let key_arg = arg?;
                if !valid_key(key_arg) {
                    self.reply(fx, id, "696", &[&chname, b"k", b"*"], "Invalid channel key");
                    return None;
                }
                if m.key.as_deref() == Some(key_arg) {
                    return None;
                }
                m.key = Some(key_arg.to_vec());
                Some((true, b'k', Some(key_arg.to_vec())))
            }
            b'k' => {
                m.key.take()?;
                Some((false, b'k', Some(b"*".to_vec())))
            }
            b'l' if adding => {
                let text = arg?;
                let limit = std::str::from_utf8(text)
                    .ok()
                    .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<usize>().ok())
                    .filter(|&l| l > 0);
                let Some(limit) = limit else {
                    self.reply(fx, id, "696", &[&chname, b"l", text], "Invalid limit");
                    return None;
                };
                if m.limit == Some(limit) {
                    return None;
                }
                m.limit = Some(limit);
                Some((true, b'l', Some(limit.to_string().into_bytes())))
            }
            b'l' => {
                m.limit.take()?;
                Some((false, b'l', None))
            }
            b'o' | b'v' => {
                let (t, nick) = target?;
                let Some(member) = ch.members.get_mut(&t) else {
                    self.reply(fx, id, "441", &[&nick, &chname], "They aren't on that channel");
                    return None;
                };
                let flag = if mode == b'o' { &mut member.op } else { &mut member.voice };
                if *flag == adding {
                    return None;
                }
                *flag = adding;
                Some((adding, mode, Some(nick)))
            }
            _ => None,
        }
    }
}

/// RFC 2812 key: 1 to 23 printable ASCII bytes; also no comma (it separates JOIN keys) and no
/// leading colon (it would not survive as a middle parameter).
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEYLEN && key[0] != b':' && key.iter().all(|&b| b.is_ascii_graphic() && b != b',')
}
