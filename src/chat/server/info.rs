//! Questions about the server itself and its operators' broadcast: LUSERS, INFO, HELP/HELPOP,
//! LINKS and WALLOPS.

use echoport_irc::{LineBuilder, Message, wildcard_match};

use super::{ChatServer, ClientId, Effects, VERSION};

/// The HELP topics: each command the server answers, with a line or two on how to use it.
const HELP: &[(&str, &[&str])] = &[
    ("AUTHENTICATE", &["AUTHENTICATE PLAIN", "SASL PLAIN login to an account, before registering."]),
    ("AWAY", &["AWAY [:<message>]", "Marks you as away with <message>, or back without one."]),
    ("CAP", &["CAP LS [302]|LIST|REQ :<caps>|END", "IRCv3 capability negotiation: CAP LS lists what is offered."]),
    (
        "CHATHISTORY",
        &[
            "CHATHISTORY LATEST|BEFORE|AFTER|AROUND <channel> <*|msgid=|timestamp=> <limit>",
            "CHATHISTORY BETWEEN <channel> <ref> <ref> <limit>, CHATHISTORY TARGETS <ts> <ts> <limit>",
            "Replays a channel's recent messages (draft/chathistory, when the server keeps history).",
        ],
    ),
    ("CHGHOST", &["CHGHOST <nick> <user> <host>", "Changes a user's user name and host (IRC operators only)."]),
    ("HELP", &["HELP [<topic>]", "Shows help on a command; HELP alone lists the topics."]),
    ("INFO", &["INFO", "Shows information about this server."]),
    ("INVITE", &["INVITE <nick> <channel>", "Invites <nick> to <channel> (operators only if +i)."]),
    ("ISON", &["ISON <nick>{ <nick>}", "Tells which of the nicks are online."]),
    ("JOIN", &["JOIN <channel>{,<channel>} [<key>{,<key>}]", "Joins channels; JOIN 0 leaves them all."]),
    ("KICK", &["KICK <channel> <nick>{,<nick>} [:<reason>]", "Removes members (channel operators only)."]),
    ("KILL", &["KILL <nick> :<reason>", "Disconnects a user (IRC operators only)."]),
    ("LINKS", &["LINKS [<mask>]", "Lists the servers of the network: just this one."]),
    (
        "LIST",
        &[
            "LIST [<filter>{,<filter>}]",
            "Lists channels. Filters: channel names or masks, !<mask> (not matching),",
            ">n / <n (more / fewer than n users), C>n / C<n (created more / less than n minutes",
            "ago), T>n / T<n (topic set more / less than n minutes ago).",
        ],
    ),
    ("LUSERS", &["LUSERS", "Shows how many users, operators and channels there are."]),
    ("MARKREAD", &["MARKREAD <target> [timestamp=<time>]", "Gets or sets how far you have read a target."]),
    (
        "MODE",
        &["MODE <nick> [+|-iwB]", "MODE <channel> [+|-Cimnstklovbe [<args>]]", "Shows or changes modes and lists."],
    ),
    ("MONITOR", &["MONITOR +|- <nick>{,<nick>}, MONITOR C|L|S", "Tells you when nicks come online and go."]),
    ("MOTD", &["MOTD", "Shows the message of the day."]),
    ("NAMES", &["NAMES [<channel>{,<channel>}]", "Lists the members of channels."]),
    ("NICK", &["NICK <nick>", "Sets or changes your nick."]),
    ("NOTICE", &["NOTICE <target>{,<target>} :<text>", "Like PRIVMSG, but never answered automatically."]),
    ("OPER", &["OPER <name> <password>", "Makes you an IRC operator."]),
    ("PART", &["PART <channel>{,<channel>} [:<reason>]", "Leaves channels."]),
    ("PASS", &["PASS <password>", "The server password, sent before NICK and USER."]),
    ("PING", &["PING <token>", "Asks the server to answer PONG <token>."]),
    ("PRIVMSG", &["PRIVMSG <target>{,<target>} :<text>", "Sends <text> to users or channels."]),
    ("QUIT", &["QUIT [:<reason>]", "Disconnects you."]),
    ("REDACT", &["REDACT <channel> <msgid> [:<reason>]", "Takes back a message (yours, or any as channel operator)."]),
    ("SETNAME", &["SETNAME :<real name>", "Changes your real name."]),
    ("TAGMSG", &["TAGMSG <target>", "Sends only message tags (to clients with message-tags)."]),
    ("TIME", &["TIME", "Shows the server's time."]),
    ("TOPIC", &["TOPIC <channel> [:<topic>]", "Shows or sets a channel's topic."]),
    ("USER", &["USER <user> 0 * :<real name>", "Registers your user name and real name."]),
    ("USERHOST", &["USERHOST <nick>{ <nick>}", "Shows user@host of up to five nicks."]),
    ("VERSION", &["VERSION", "Shows the server's version."]),
    ("WALLOPS", &["WALLOPS :<text>", "Sends <text> to users with mode +w (IRC operators only)."]),
    (
        "WHO",
        &[
            "WHO <mask> [o][%<fields>[,<token>]]",
            "Lists users matching <mask> (a channel, nick or wildcard mask); o: operators only.",
            "With %<fields> (WHOX), answers 354 with the fields asked for, from tcuihsnfdlaor.",
        ],
    ),
    ("WHOIS", &["WHOIS <nick>", "Shows information about a user."]),
    ("WHOWAS", &["WHOWAS <nick> [<count>]", "Shows who used <nick> recently."]),
];

impl ChatServer {
    /// What LINKS and WHOWAS show as the server's description.
    pub(super) fn server_info(&self) -> String {
        match &self.config.server_info {
            Some(info) => info.clone(),
            None => format!("{} IRC server", self.config.network),
        }
    }

    /// 251-255 and 265/266. Counts only registered clients as users (and in 255 "I have N
    /// clients"), as Modern and irctest's lusers.py expect; the others are 253's unknown
    /// connections. 252-254 are left out when zero.
    pub(super) fn send_lusers(&self, id: ClientId, fx: &mut Effects) {
        let users = self.registered;
        let visible = users - self.invisible;
        let unknown = self.clients.len() - users;
        let text = format!("There are {visible} users and {} invisible on 1 servers", self.invisible);
        self.reply(fx, id, "251", &[], &text);
        for (n, code, text) in [
            (self.opers, "252", "operator(s) online"),
            (unknown, "253", "unknown connection(s)"),
            (self.channels.len(), "254", "channels formed"),
        ] {
            if n > 0 {
                self.reply(fx, id, code, &[n.to_string().as_bytes()], text);
            }
        }
        self.reply(fx, id, "255", &[], &format!("I have {users} clients and 0 servers"));
        let (now, max) = (users.to_string(), self.max_registered.to_string());
        let counts: [&[u8]; 2] = [now.as_bytes(), max.as_bytes()];
        self.reply(fx, id, "265", &counts, &format!("Current local users {now}, max {max}"));
        self.reply(fx, id, "266", &counts, &format!("Current global users {now}, max {max}"));
    }

    /// `INFO [<target>]`: 371 lines then 374. The target may name this server (a mask) or a
    /// user on it; anything else is 402.
    pub(super) fn cmd_info(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if let Some(target) = msg.nonempty(0)
            && !wildcard_match(target, self.server())
            && self.find_nick(target).is_none()
        {
            self.reply(fx, id, "402", &[target], "No such server");
            return;
        }
        for line in [
            VERSION,
            "An IRC server on an IOCP-style completion port: an acceptor, one completion port,",
            "a pool of worker threads. RFC 1459/2812 client protocol.",
            &format!("Birth date: {}", self.created),
        ] {
            self.reply(fx, id, "371", &[], line);
        }
        self.reply(fx, id, "374", &[], "End of INFO list");
    }

    /// `HELP [<topic>]` (and HELPOP, its InspIRCd/Unreal name): 704, 705..., 706 with the topic as
    /// the second parameter; 524 for a topic we have no help on.
    pub(super) fn cmd_help(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let names = HELP.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(" ");
        let index = ["Help topics (HELP <topic>):", names.as_str()];
        let (subject, lines): (&[u8], &[&str]) = match msg.nonempty(0) {
            None => (b"*", &index),
            Some(topic) => match HELP.iter().find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(topic)) {
                Some((name, text)) => (name.as_bytes(), text),
                None => {
                    self.reply(fx, id, "524", &[topic], "No help available on this topic");
                    return;
                }
            },
        };
        let (first, rest) = lines.split_first().map_or(("", &[][..]), |(f, r)| (*f, r));
        self.reply(fx, id, "704", &[subject], first);
        for line in rest {
            self.reply(fx, id, "705", &[subject], line);
        }
        self.reply(fx, id, "706", &[subject], "End of /HELP");
    }

    /// `LINKS [[<server>] <mask>]`: this server, if it matches, then 365 naming the mask.
    pub(super) fn cmd_links(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let mask = msg.nonempty(1).or(msg.nonempty(0)).unwrap_or(b"*");
        if wildcard_match(mask, self.server()) {
            let server = self.server().to_vec();
            let info = format!("0 {}", self.server_info());
            self.reply(fx, id, "364", &[&server, &server], &info);
        }
        self.reply(fx, id, "365", &[mask], "End of /LINKS list");
    }

    /// `WALLOPS :<text>` from an IRC operator to every user with mode +w (the sender included,
    /// if it has +w).
    pub(super) fn cmd_wallops(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if !self.clients[&id].oper {
            self.reply(fx, id, "481", &[], "Permission Denied- You're not an IRC operator");
            return;
        }
        let Some(text) = msg.nonempty(0) else {
            self.reply(fx, id, "461", &[b"WALLOPS"], "Not enough parameters");
            return;
        };
        let line = LineBuilder::new(&self.clients[&id].prefix, b"WALLOPS").trailing(text);
        let mut to: Vec<ClientId> =
            self.clients.iter().filter(|(_, c)| c.registered && c.wallops).map(|(&i, _)| i).collect();
        to.sort_unstable();
        for t in to {
            fx.send(t, line.clone());
        }
    }
}
