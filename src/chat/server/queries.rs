//! Questions about users and the server: WHO (with WHOX), WHOIS, ISON, USERHOST, VERSION, TIME,
//! and AWAY (which sets what WHOIS and PRIVMSG report). WHOWAS is in whowas.rs.

use std::sync::Arc;
use std::time::Instant;

use echoport_irc::{Message, fold, truncate_utf8, wildcard_match};

use super::caps::Caps;
use super::clock::format_time;
use super::state::{Client, Member};
use super::{AWAYLEN, ChatServer, ClientId, Effects, VERSION};

/// WHOX fields in the order 354 lists them: token, channel, user, IP, host, server, nick,
/// flags, hop count, idle seconds, account, op level, real name.
const WHOX_FIELDS: &[u8] = b"tcuihsnfdlaor";

/// What a WHOX request asked for.
struct Whox<'a> {
    fields: &'a [u8],
    /// Echoed as field `t`: 1 to 3 digits, as the spec allows; `0` if absent or not that.
    token: &'a [u8],
}

impl<'a> Whox<'a> {
    /// `<fields>[,<token>]`, the part after `%`.
    fn parse(spec: &'a [u8]) -> Whox<'a> {
        let (fields, token) = match spec.iter().position(|&b| b == b',') {
            Some(i) => (&spec[..i], &spec[i + 1..]),
            None => (spec, &b""[..]),
        };
        let valid = (1..=3).contains(&token.len()) && token.iter().all(u8::is_ascii_digit);
        Whox { fields, token: if valid { token } else { b"0" } }
    }
}

impl ChatServer {
    /// `WHO <mask> [o][%<fields>[,<token>]]`: 352 per user, or with `%` (WHOX) 354 with the
    /// fields asked for, in [`WHOX_FIELDS`] order whatever order they were asked in.
    pub(super) fn cmd_who(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let mask = msg.nonempty(0).unwrap_or(b"*");
        let options = msg.param(1).unwrap_or(b"");
        let (filters, whox) = match options.iter().position(|&b| b == b'%') {
            Some(i) => (&options[..i], Some(Whox::parse(&options[i + 1..]))),
            None => (options, None),
        };
        let opers_only = filters.contains(&b'o');
        let server = self.server().to_vec();
        let multi_prefix = self.caps_of(id).has(Caps::MULTI_PREFIX);
        let reply = |fx: &mut Effects, chan: &[u8], c: &Client, member: Option<Member>| {
            let mut flags = vec![if c.away.is_some() { b'G' } else { b'H' }];
            if c.oper {
                flags.push(b'*');
            }
            if let Some(m) = member {
                flags.extend_from_slice(m.prefixes(multi_prefix));
            }
            if c.bot {
                flags.push(b'B');
            }
            if let Some(whox) = &whox {
                fx.send(id, self.whox_line(id, whox, chan, c, &flags, now));
                return;
            }
            let mut real = b"0 ".to_vec();
            real.extend_from_slice(&c.realname);
            let line = self
                .numeric(id, "352")
                .middle(chan)
                .middle(c.user.as_deref().unwrap_or(b"*"))
                .middle(c.host.as_bytes())
                .middle(&server)
                .middle(c.nick_or_star())
                .middle(&flags)
                .trailing(&real);
            fx.send(id, line);
        };
        if mask.starts_with(b"#") {
            if let Some(ch) = self.channels.get(&*fold(mask)) {
                let member = ch.has(id);
                if member || !ch.modes.secret {
                    for (m, &status) in &ch.members {
                        let Some(c) = self.clients.get(m) else {
                            continue;
                        };
                        if (!member && c.invisible) || (opers_only && !c.oper) {
                            continue;
                        }
                        reply(fx, &ch.name, c, Some(status));
                    }
                }
            }
        } else if !mask.contains(&b'*') && !mask.contains(&b'?') && mask != b"0" {
            if let Some(t) = self.find_nick(mask) {
                let c = &self.clients[&t];
                if !opers_only || c.oper {
                    reply(fx, b"*", c, None);
                }
            }
        } else {
            let mask: &[u8] = if mask == b"0" { b"*" } else { mask };
            let mut ids: Vec<ClientId> = self.clients.iter().filter(|(_, c)| c.registered).map(|(&i, _)| i).collect();
            ids.sort_unstable();
            for t in ids {
                let c = &self.clients[&t];
                // Shares a channel with the asker: one lookup per channel of `c` (at most
                // MAX_CHANNELS), not a comparison with each of the asker's.
                let visible = t == id
                    || !c.invisible
                    || c.channels.iter().any(|k| self.channels.get(k).is_some_and(|ch| ch.has(id)));
                let matches =
                    [c.nick_or_star(), c.host.as_bytes(), &c.realname, c.user.as_deref().unwrap_or(b""), &server]
                        .iter()
                        .any(|field| wildcard_match(mask, field));
                if visible && matches && (!opers_only || c.oper) {
                    reply(fx, b"*", c, None);
                }
            }
        }
        self.reply(fx, id, "315", &[msg.nonempty(0).unwrap_or(b"*")], "End of WHO list");
    }

    /// One 354: the fields `whox` asked for about `c`, seen in `chan` with WHO `flags`.
    fn whox_line(&self, id: ClientId, whox: &Whox, chan: &[u8], c: &Client, flags: &[u8], now: Instant) -> Arc<[u8]> {
        let idle = now.saturating_duration_since(c.last_message).as_secs().to_string();
        let field = |f: u8| -> &[u8] {
            match f {
                b't' => whox.token,
                b'c' => chan,
                b'u' => c.user.as_deref().unwrap_or(b"*"),
                // The host is the IP address: no reverse DNS, no cloaks.
                b'i' | b'h' => c.host.as_bytes(),
                b's' => self.server(),
                b'n' => c.nick_or_star(),
                b'f' => flags,
                // One server: no hops, no idle times unknown here, no op levels (an ircu feature).
                b'd' => b"0",
                b'l' => idle.as_bytes(),
                b'a' => c.account.as_deref().unwrap_or(b"0"),
                b'o' => b"n/a",
                _ => &c.realname,
            }
        };
        let fields: Vec<&[u8]> = WHOX_FIELDS.iter().filter(|f| whox.fields.contains(f)).map(|&f| field(f)).collect();
        let mut b = self.numeric(id, "354");
        // The last field goes as the trailing parameter: the real name has spaces, and any other
        // field reads the same either way.
        let Some((last, rest)) = fields.split_last() else {
            return b.finish();
        };
        for f in rest {
            b = b.middle(f);
        }
        b.trailing(last)
    }

    pub(super) fn cmd_whois(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(arg) = msg.nonempty(1).or(msg.nonempty(0)) else {
            self.reply(fx, id, "431", &[], "No nickname given");
            return;
        };
        let nick = arg.split(|&b| b == b',').next().unwrap_or(arg);
        let Some(t) = self.find_nick(nick) else {
            self.reply(fx, id, "401", &[nick], "No such nick/channel");
            self.reply(fx, id, "318", &[arg], "End of WHOIS list");
            return;
        };
        let c = &self.clients[&t];
        let tnick = c.nick_or_star();
        let line = self
            .numeric(id, "311")
            .middle(tnick)
            .middle(c.user.as_deref().unwrap_or(b"*"))
            .middle(c.host.as_bytes())
            .middle(b"*")
            .trailing(&c.realname);
        fx.send(id, line);
        let multi_prefix = self.caps_of(id).has(Caps::MULTI_PREFIX);
        let head = self.numeric(id, "319").middle(tnick);
        let room = head.trailing_room();
        let mut list: Vec<u8> = Vec::new();
        for key in &c.channels {
            let Some(ch) = self.channels.get(key) else {
                continue;
            };
            if ch.modes.secret && !ch.has(id) {
                continue;
            }
            let flag = ch.members.get(&t).copied().unwrap_or_default().prefixes(multi_prefix);
            if !list.is_empty() && list.len() + 1 + flag.len() + ch.name.len() > room {
                fx.send(id, head.clone().trailing(&list));
                list.clear();
            }
            if !list.is_empty() {
                list.push(b' ');
            }
            list.extend_from_slice(flag);
            list.extend_from_slice(&ch.name);
        }
        if !list.is_empty() {
            fx.send(id, head.trailing(&list));
        }
        let server = c.server.as_deref().unwrap_or(self.server()).to_vec();
        self.reply(fx, id, "312", &[tnick, &server], &self.server_info());
        if let Some(away) = &c.away {
            self.reply_bytes(fx, id, "301", &[tnick], away);
        }
        if c.oper {
            self.reply(fx, id, "313", &[tnick], "is an IRC operator");
        }
        if let Some(account) = &c.account {
            self.reply(fx, id, "330", &[tnick, account], "is logged in as");
        }
        if c.bot {
            self.reply(fx, id, "335", &[tnick], "is a bot");
        }
        if c.secure {
            self.reply(fx, id, "671", &[tnick], "is using a secure connection");
        }
        let idle = now.saturating_duration_since(c.last_message).as_secs().to_string();
        let signon = c.signon.to_string();
        self.reply(fx, id, "317", &[tnick, idle.as_bytes(), signon.as_bytes()], "seconds idle, signon time");
        self.reply(fx, id, "318", &[arg], "End of WHOIS list");
    }

    pub(super) fn cmd_ison(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if msg.is_empty() {
            self.reply(fx, id, "461", &[b"ISON"], "Not enough parameters");
            return;
        }
        let mut online: Vec<u8> = Vec::new();
        for nick in msg.params().iter().flat_map(|p| p.split(|&b| b == b' ')) {
            if let Some(t) = self.find_nick(nick) {
                if !online.is_empty() {
                    online.push(b' ');
                }
                online.extend_from_slice(self.clients[&t].nick_or_star());
            }
        }
        self.reply_bytes(fx, id, "303", &[], &online);
    }

    pub(super) fn cmd_userhost(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if msg.is_empty() {
            self.reply(fx, id, "461", &[b"USERHOST"], "Not enough parameters");
            return;
        }
        let mut out: Vec<u8> = Vec::new();
        for nick in msg.params().iter().take(5) {
            let Some(t) = self.find_nick(nick) else {
                continue;
            };
            let c = &self.clients[&t];
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(c.nick_or_star());
            if c.oper {
                out.push(b'*');
            }
            out.push(b'=');
            out.push(if c.away.is_some() { b'-' } else { b'+' });
            out.extend_from_slice(c.user.as_deref().unwrap_or(b"*"));
            out.push(b'@');
            out.extend_from_slice(c.host.as_bytes());
        }
        self.reply_bytes(fx, id, "302", &[], &out);
    }

    pub(super) fn cmd_version(&self, id: ClientId, fx: &mut Effects) {
        let server = self.config.server_name.clone();
        self.reply(fx, id, "351", &[VERSION.as_bytes(), server.as_bytes()], "");
    }

    pub(super) fn cmd_time(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        if let Some(server) = msg.nonempty(0)
            && !wildcard_match(server, self.server())
        {
            self.reply(fx, id, "402", &[server], "No such server");
            return;
        }
        let server = self.server().to_vec();
        self.reply(fx, id, "391", &[&server], &format_time(self.unix(now)));
    }

    pub(super) fn cmd_away(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let c = self.clients.get_mut(&id).unwrap();
        match msg.nonempty(0) {
            Some(text) => {
                c.away = Some(truncate_utf8(text, AWAYLEN).to_vec());
                self.reply(fx, id, "306", &[], "You have been marked as being away");
            }
            None => {
                c.away = None;
                self.reply(fx, id, "305", &[], "You are no longer marked as being away");
            }
        }
        self.announce_away(fx, id);
    }
}
