//! MODE: a user's own modes (+i, +w, +B, -o) and channel modes (+Cimnst, +k, +l, +o, +v, and the
//! +b/+e/+I lists, whose matching is in lists.rs).

use std::sync::Arc;
use std::time::Instant;

use echoport_irc::{LineBuilder, MAX_BODY, Message, eq_fold, fold};

use super::{ChatServer, ClientId, Effects, KEYLEN};

/// One change as applied: (adding, mode char, argument).
type Change = (bool, u8, Option<Vec<u8>>);

impl ChatServer {
    pub(super) fn cmd_mode(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(target) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"MODE"], "Not enough parameters");
            return;
        };
        if target.starts_with(b"#") {
            self.channel_mode(id, target, msg, now, fx);
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
            if c.bot {
                m.push(b'B');
            }
            if c.wallops {
                m.push(b'w');
            }
            let line = self.numeric(id, "221").middle(&m).finish();
            fx.send(id, line);
            return;
        };
        let (mut invisible, mut oper, mut bot, mut wallops) = (c.invisible, c.oper, c.bot, c.wallops);
        let mut adding = true;
        let mut unknown = false;
        for &b in modes {
            match b {
                b'+' => adding = true,
                b'-' => adding = false,
                b'i' => invisible = adding,
                // +o only comes from OPER; -o gives operator status up.
                b'o' => oper &= adding,
                b'B' => bot = adding,
                b'w' => wallops = adding,
                _ => unknown = true,
            }
        }
        let mut change = Vec::new();
        let mut sign = 0u8;
        for (before, after, ch) in
            [(c.invisible, invisible, b'i'), (c.oper, oper, b'o'), (c.bot, bot, b'B'), (c.wallops, wallops, b'w')]
        {
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
        c.bot = bot;
        c.wallops = wallops;
        let nick = c.nick_or_star().to_vec();
        let line = LineBuilder::new(&c.prefix, b"MODE").middle(&nick).middle(&change).finish();
        fx.send(id, line);
    }

    fn channel_mode(&mut self, id: ClientId, name: &[u8], msg: &Message, now: Instant, fx: &mut Effects) {
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
        let mut applied: Vec<Change> = Vec::new();
        let mut refused = false;
        // Lists already sent: each goes once per command, or `MODE #c bbbb...` would have one
        // line of ours answered with thousands.
        let mut listed = Vec::new();
        for &m in modes {
            match m {
                b'+' => adding = true,
                b'-' => adding = false,
                b'b' | b'e' | b'I' => match args.next() {
                    None if listed.contains(&m) => {}
                    None => {
                        listed.push(m);
                        if let Some(ch) = self.channels.get(&key) {
                            self.send_list(id, ch, m, fx);
                        }
                    }
                    Some(_) if !is_op => refused = true,
                    Some(mask) => {
                        if let Some(change) = self.apply_list_mode(id, &key, (adding, m, mask), now, fx) {
                            applied.push(change);
                        }
                    }
                },
                b'C' | b'i' | b'm' | b'n' | b's' | b't' | b'k' | b'l' | b'o' | b'v' => {
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
        for line in mode_lines(&self.clients[&id].prefix, &chname, &applied) {
            self.broadcast(fx, &key, &line, None);
        }
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
    ) -> Option<Change> {
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
            b'C' => Some(&mut m.no_ctcp),
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

/// The MODE lines announcing `applied`, as few as fit: more masks than one line holds (each up to
/// MASKLEN, normalised longer than sent) go out in several lines rather than one cut short.
fn mode_lines(prefix: &[u8], chname: &[u8], applied: &[Change]) -> Vec<Arc<[u8]>> {
    // ":prefix MODE #chan " before the mode string.
    let base = 1 + prefix.len() + 6 + chname.len() + 1;
    let mut lines = Vec::new();
    let mut rest = applied;
    while !rest.is_empty() {
        let (mut n, mut cost) = (0, base);
        for (_, _, arg) in rest {
            // The letter, a sign it may need, and its argument.
            let c = 2 + arg.as_ref().map_or(0, |a| 1 + a.len());
            if n > 0 && cost + c > MAX_BODY {
                break;
            }
            cost += c;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut modestr = Vec::new();
        let mut sign = None;
        for (adding, m, _) in chunk {
            if sign != Some(*adding) {
                modestr.push(if *adding { b'+' } else { b'-' });
                sign = Some(*adding);
            }
            modestr.push(*m);
        }
        let mut b = LineBuilder::new(prefix, b"MODE").middle(chname).middle(&modestr);
        for arg in chunk.iter().filter_map(|(_, _, arg)| arg.as_ref()) {
            b = b.middle(arg);
        }
        lines.push(b.finish());
    }
    lines
}

/// RFC 2812 key: 1 to 23 printable ASCII bytes; also no comma (it separates JOIN keys) and no
/// leading colon (it would not survive as a middle parameter).
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEYLEN && key[0] != b':' && key.iter().all(|&b| b.is_ascii_graphic() && b != b',')
}
