//! Chat mode's protocol logic: the IRC server state and command handling, free of I/O.
//!
//! [`ChatServer`] is a pure state machine: the engine feeds it events (a connection opened, one
//! line arrived, the connection is gone, a second passed) and it answers with [`Effects`], the
//! lines to send to which clients and the connections to close. It never touches a socket or a
//! clock, so every conversation can be unit-tested by driving it with fake client ids.
//!
//! Protocol: the client side of RFC 1459 / RFC 2812 with the behaviour of ngIRCd and InspIRCd
//! where the RFCs are silent (see `issues show 4`). Notes on choices made here:
//!
//! - A line longer than 510 bytes (or cut by the engine) is refused with 417 ERR_INPUTTOOLONG
//!   and not processed: a cut command could do something its sender did not mean.
//! - A line is cut at its first CR or NUL before parsing (see [`echoport_irc::sanitize`]): what
//!   follows is dropped, so a relayed PRIVMSG can never carry a second line to its recipients.
//! - Nicks and channel names compare under rfc1459 case mapping; they are shown as their owner
//!   (or the channel's creator) spelled them.
//! - New channels get modes `+nt`, and their creator is channel operator.
//! - `NAMES a,b` answers 353 for each visible channel, then one 366 naming the argument as sent
//!   (as irctest expects for multi-target NAMES); `NAMES` alone lists every visible channel and
//!   ends with `366 * `.
//! - 341 RPL_INVITING is `<client> <nick> <channel>` (the order modern clients and irctest expect,
//!   and what ngIRCd and InspIRCd send) rather than RFC 2812's `<channel> <nick>`.
//! - WHO with a mask (not a channel) shows `*` as the channel; `WHO #chan` shows the channel and
//!   the member's `@`/`+`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use echoport_irc::{LineBuilder, MAX_BODY, Message, eq_fold, fold, sanitize, truncate_utf8, wildcard_match};

/// The connection's completion key; unique while the connection is open.
pub type ClientId = usize;

/// Longest nick (ISUPPORT NICKLEN).
pub const NICKLEN: usize = 30;
/// Longest channel name, `#` included (ISUPPORT CHANNELLEN).
pub const CHANNELLEN: usize = 50;
/// Longest topic (ISUPPORT TOPICLEN).
pub const TOPICLEN: usize = 390;
/// Longest KICK reason (ISUPPORT KICKLEN).
pub const KICKLEN: usize = 255;
/// Longest AWAY message (ISUPPORT AWAYLEN).
pub const AWAYLEN: usize = 200;
/// Longest user name kept from USER (ISUPPORT USERLEN).
pub const USERLEN: usize = 10;
/// Longest channel key (ISUPPORT KEYLEN).
pub const KEYLEN: usize = 23;
/// Longest real name kept from USER.
pub const REALLEN: usize = 100;
/// Longest QUIT (or KILL) reason kept.
pub const QUITLEN: usize = 300;
/// Most channels one client may be in (ISUPPORT CHANLIMIT).
pub const MAX_CHANNELS: usize = 50;
/// Most PRIVMSG/NOTICE targets in one command (ISUPPORT TARGMAX); more get 407.
pub const MAX_TARGETS: usize = 4;
/// Most KICK targets in one command (ISUPPORT TARGMAX); more are dropped silently.
pub const MAX_KICKS: usize = 4;

const VERSION: &str = concat!("echoport-", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// The server's name: the source of its replies. Default `echoport`.
    pub server_name: String,
    /// PASS required if Some.
    pub password: Option<String>,
    /// Message of the day, by line; None answers 422 ERR_NOMOTD.
    pub motd: Option<Vec<String>>,
    /// (name, password) pairs for OPER.
    pub opers: Vec<(String, String)>,
    /// For 005 NETWORK=. Default `echoport`.
    pub network: String,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            server_name: "echoport".to_owned(),
            password: None,
            motd: None,
            opers: Vec::new(),
            network: "echoport".to_owned(),
        }
    }
}

/// Clients [`ChatServer::tick`] dropped, by reason.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Connected for the ping timeout without registering.
    pub registration: usize,
    /// Sent a PING and did not answer within the ping timeout.
    pub ping: usize,
}

const REGISTRATION_TIMEOUT: &str = "Registration timeout";

/// What the engine must do after a call. Messages are complete IRC lines ending in "\r\n",
/// shared (Arc) so a broadcast to N members allocates the line once.
#[derive(Default, Debug)]
pub struct Effects {
    /// Lines to send, in order.
    pub sends: Vec<(ClientId, Arc<[u8]>)>,
    /// Close these after their queued sends are flushed (QUIT, ERROR, kill).
    pub close: Vec<ClientId>,
}

impl Effects {
    fn send(&mut self, id: ClientId, line: Arc<[u8]>) {
        self.sends.push((id, line));
    }
}

/// rfc1459-folded nick or channel name.
type Key = Box<[u8]>;

struct Client {
    /// The IP address as text: the host part of the client's prefix.
    host: String,
    /// As the client spelled it; valid per the nick grammar.
    nick: Option<Vec<u8>>,
    user: Option<Vec<u8>>,
    realname: Vec<u8>,
    pass: Option<Vec<u8>>,
    /// CAP LS/REQ seen and no CAP END yet: registration waits.
    cap_negotiating: bool,
    registered: bool,
    /// `nick!user@host`, kept current once registered.
    prefix: Vec<u8>,
    /// Channels this client is in, folded, in joining order.
    channels: Vec<Key>,
    /// Channels that have an invitation for this client (to clear it when the client leaves).
    invited_to: Vec<Key>,
    away: Option<Vec<u8>>,
    invisible: bool,
    oper: bool,
    connected: Instant,
    signon: u64,
    last_active: Instant,
    /// The last PRIVMSG/NOTICE sent, for WHOIS idle time.
    last_message: Instant,
    ping_sent: Option<Instant>,
}

impl Client {
    fn nick_or_star(&self) -> &[u8] {
        self.nick.as_deref().unwrap_or(b"*")
    }

    fn in_channel(&self, key: &[u8]) -> bool {
        self.channels.iter().any(|k| &**k == key)
    }
}

#[derive(Clone, Copy, Default)]
struct Member {
    op: bool,
    voice: bool,
}

impl Member {
    fn prefix(self) -> &'static [u8] {
        if self.op {
            b"@"
        } else if self.voice {
            b"+"
        } else {
            b""
        }
    }
}

struct Topic {
    text: Vec<u8>,
    setter: Vec<u8>,
    time: u64,
}

#[derive(Default)]
struct Modes {
    invite_only: bool,
    moderated: bool,
    no_external: bool,
    secret: bool,
    topic_lock: bool,
    key: Option<Vec<u8>>,
    limit: Option<usize>,
}

struct Channel {
    name: Vec<u8>,
    /// Creation order, for listing channels deterministically.
    seq: u64,
    created: u64,
    /// In joining order: the fan-out list.
    members: Vec<ClientId>,
    flags: HashMap<ClientId, Member>,
    topic: Option<Topic>,
    modes: Modes,
    invited: HashSet<ClientId>,
}

impl Channel {
    fn is_op(&self, id: ClientId) -> bool {
        self.flags.get(&id).is_some_and(|m| m.op)
    }

    fn has(&self, id: ClientId) -> bool {
        self.flags.contains_key(&id)
    }

    fn symbol(&self) -> &'static [u8] {
        if self.modes.secret { b"@" } else { b"=" }
    }

    fn mode_string(&self, show_key: bool) -> Vec<Vec<u8>> {
        let m = &self.modes;
        let mut flags = b"+".to_vec();
        for (on, c) in [
            (m.invite_only, b'i'),
            (m.moderated, b'm'),
            (m.no_external, b'n'),
            (m.secret, b's'),
            (m.topic_lock, b't'),
            (m.key.is_some(), b'k'),
            (m.limit.is_some(), b'l'),
        ] {
            if on {
                flags.push(c);
            }
        }
        let mut out = vec![flags];
        if let Some(key) = &m.key {
            out.push(if show_key { key.clone() } else { b"*".to_vec() });
        }
        if let Some(limit) = m.limit {
            out.push(limit.to_string().into_bytes());
        }
        out
    }
}

/// The chat server's whole state.
pub struct ChatServer {
    config: ChatConfig,
    clients: HashMap<ClientId, Client>,
    nicks: HashMap<Key, ClientId>,
    channels: HashMap<Key, Channel>,
    next_seq: u64,
    registered: usize,
    opers: usize,
    /// An instant and the Unix time (seconds) at that instant: converts `Instant`s to timestamps.
    clock: (Instant, u64),
    created: String,
    isupport: Vec<Vec<u8>>,
}

impl ChatServer {
    pub fn new(config: ChatConfig) -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let isupport = [
            "CASEMAPPING=rfc1459".to_owned(),
            "CHANTYPES=#".to_owned(),
            format!("NICKLEN={NICKLEN}"),
            format!("CHANNELLEN={CHANNELLEN}"),
            format!("TOPICLEN={TOPICLEN}"),
            "PREFIX=(ov)@+".to_owned(),
            "CHANMODES=,k,l,imnst".to_owned(),
            format!("NETWORK={}", config.network),
            format!("CHANLIMIT=#:{MAX_CHANNELS}"),
            format!("KICKLEN={KICKLEN}"),
            format!("AWAYLEN={AWAYLEN}"),
            format!("USERLEN={USERLEN}"),
            format!("KEYLEN={KEYLEN}"),
            "MODES=12".to_owned(),
            format!(
                "TARGMAX=JOIN:,PART:,NAMES:,LIST:,WHOIS:1,KICK:{MAX_KICKS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS}"
            ),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        ChatServer {
            created: format_time(unix),
            config,
            clients: HashMap::new(),
            nicks: HashMap::new(),
            channels: HashMap::new(),
            next_seq: 0,
            registered: 0,
            opers: 0,
            clock: (Instant::now(), unix),
            isupport,
        }
    }

    /// A new connection from `ip` (the IP text is the host part of the client's prefix).
    pub fn connect(&mut self, id: ClientId, ip: IpAddr, now: Instant) {
        if self.clients.contains_key(&id) {
            // The engine must call `disconnect` before reusing an id; if it did not, forget the
            // old client (peers are not told: there is nowhere to put the QUIT lines).
            self.remove_client(id, b"Connection reset", &mut Effects::default());
        }
        let mut host = ip.to_string();
        if host.starts_with(':') {
            // "::1" would read as a trailing parameter where the host is a middle one.
            host.insert(0, '0');
        }
        self.clients.insert(
            id,
            Client {
                host,
                nick: None,
                user: None,
                realname: Vec::new(),
                pass: None,
                cap_negotiating: false,
                registered: false,
                prefix: Vec::new(),
                channels: Vec::new(),
                invited_to: Vec::new(),
                away: None,
                invisible: false,
                oper: false,
                connected: now,
                signon: self.unix(now),
                last_active: now,
                last_message: now,
                ping_sent: None,
            },
        );
    }

    /// One line from the client, without its CR/LF terminator; `truncated` if the engine cut it.
    pub fn handle_line(&mut self, id: ClientId, line: &[u8], truncated: bool, now: Instant, fx: &mut Effects) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.last_active = now;
        client.ping_sent = None;
        let registered = client.registered;
        if truncated || line.len() > MAX_BODY {
            self.reply(fx, id, "417", &[], "Input line was too long");
            return;
        }
        let Some(msg) = Message::parse(sanitize(line)) else {
            return;
        };
        let mut buf = [0u8; 16];
        let command = msg.command_upper(&mut buf).unwrap_or(b"");
        match command {
            b"CAP" => self.cmd_cap(id, &msg, now, fx),
            b"PASS" => self.cmd_pass(id, &msg, fx),
            b"NICK" => self.cmd_nick(id, &msg, now, fx),
            b"USER" => self.cmd_user(id, &msg, now, fx),
            b"PING" => self.cmd_ping(id, &msg, fx),
            b"PONG" => {}
            b"QUIT" => self.cmd_quit(id, &msg, fx),
            b"NOTICE" if !registered => {}
            _ if !registered => self.reply(fx, id, "451", &[], "You have not registered"),
            b"PRIVMSG" => self.cmd_message(id, &msg, false, now, fx),
            b"NOTICE" => self.cmd_message(id, &msg, true, now, fx),
            b"JOIN" => self.cmd_join(id, &msg, now, fx),
            b"PART" => self.cmd_part(id, &msg, fx),
            b"TOPIC" => self.cmd_topic(id, &msg, now, fx),
            b"NAMES" => self.cmd_names(id, &msg, fx),
            b"LIST" => self.cmd_list(id, &msg, fx),
            b"MODE" => self.cmd_mode(id, &msg, fx),
            b"KICK" => self.cmd_kick(id, &msg, fx),
            b"INVITE" => self.cmd_invite(id, &msg, fx),
            b"WHO" => self.cmd_who(id, &msg, fx),
            b"WHOIS" => self.cmd_whois(id, &msg, now, fx),
            b"WHOWAS" => self.cmd_whowas(id, &msg, fx),
            b"AWAY" => self.cmd_away(id, &msg, fx),
            b"OPER" => self.cmd_oper(id, &msg, fx),
            b"KILL" => self.cmd_kill(id, &msg, fx),
            b"TIME" => self.cmd_time(id, &msg, now, fx),
            b"MOTD" => self.send_motd(id, fx),
            b"LUSERS" => self.send_lusers(id, fx),
            b"VERSION" => {
                let server = self.config.server_name.clone();
                self.reply(fx, id, "351", &[VERSION.as_bytes(), server.as_bytes()], "");
            }
            b"ISON" => self.cmd_ison(id, &msg, fx),
            b"USERHOST" => self.cmd_userhost(id, &msg, fx),
            _ => self.reply(fx, id, "421", &[msg.command], "Unknown command"),
        }
    }

    /// The connection is gone (EOF, error, ping timeout, SendQ exceeded): QUIT with `reason` to
    /// channel peers, free the nick and memberships. Idempotent.
    pub fn disconnect(&mut self, id: ClientId, reason: &str, fx: &mut Effects) {
        self.remove_client(id, reason.as_bytes(), fx);
    }

    /// Called about once a second: PING clients idle longer than `ping_interval` (once); drop
    /// those that did not answer within `ping_timeout` after that ("Ping timeout") and those
    /// that did not register within `ping_timeout` of connecting ("Registration timeout").
    /// A zero `ping_interval` turns pinging off; a zero `ping_timeout` turns both drops off.
    /// Returns how many clients it dropped, by reason.
    pub fn tick(&mut self, now: Instant, ping_interval: Duration, ping_timeout: Duration, fx: &mut Effects) -> Expired {
        let mut to_ping = Vec::new();
        let mut expired = Vec::new();
        for (&id, c) in &self.clients {
            if !c.registered {
                if !ping_timeout.is_zero() && now.saturating_duration_since(c.connected) >= ping_timeout {
                    expired.push((id, REGISTRATION_TIMEOUT));
                }
                continue;
            }
            match c.ping_sent {
                Some(sent) => {
                    if !ping_timeout.is_zero() && now.saturating_duration_since(sent) >= ping_timeout {
                        expired.push((id, "Ping timeout"));
                    }
                }
                None => {
                    if !ping_interval.is_zero() && now.saturating_duration_since(c.last_active) >= ping_interval {
                        to_ping.push(id);
                    }
                }
            }
        }
        to_ping.sort_unstable();
        expired.sort_unstable();
        if !to_ping.is_empty() {
            let ping = LineBuilder::new(b"", b"PING").trailing(self.config.server_name.as_bytes());
            for id in to_ping {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.ping_sent = Some(now);
                    fx.send(id, ping.clone());
                }
            }
        }
        let mut counts = Expired::default();
        for (id, reason) in expired {
            match reason {
                REGISTRATION_TIMEOUT => counts.registration += 1,
                _ => counts.ping += 1,
            }
            self.send_error(fx, id, reason.as_bytes());
            self.remove_client(id, reason.as_bytes(), fx);
            fx.close.push(id);
        }
        counts
    }

    /// Open connections, registered or not.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Channels that exist (that have members).
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    // ---------------------------------------------------------------------------------------
    // Helpers

    fn unix(&self, now: Instant) -> u64 {
        let (base, unix) = self.clock;
        match now.checked_duration_since(base) {
            Some(d) => unix + d.as_secs(),
            None => unix.saturating_sub(base.duration_since(now).as_secs()),
        }
    }

    fn server(&self) -> &[u8] {
        self.config.server_name.as_bytes()
    }

    /// Starts a numeric reply to `id`: `:server NNN <nick or *>`.
    fn numeric(&self, id: ClientId, code: &str) -> LineBuilder {
        let nick = self.clients.get(&id).map(Client::nick_or_star).unwrap_or(b"*");
        LineBuilder::new(self.server(), code.as_bytes()).middle(nick)
    }

    /// Sends `:server NNN <nick> <middles...> :<trailing>` to `id`.
    fn reply(&self, fx: &mut Effects, id: ClientId, code: &str, middles: &[&[u8]], text: &str) {
        self.reply_bytes(fx, id, code, middles, text.as_bytes());
    }

    fn reply_bytes(&self, fx: &mut Effects, id: ClientId, code: &str, middles: &[&[u8]], text: &[u8]) {
        let mut b = self.numeric(id, code);
        for m in middles {
            b = b.middle(m);
        }
        fx.send(id, b.trailing(text));
    }

    fn send_error(&self, fx: &mut Effects, id: ClientId, reason: &[u8]) {
        if let Some(c) = self.clients.get(&id) {
            let text = [b"Closing Link: ", c.host.as_bytes(), b" (", reason, b")"].concat();
            fx.send(id, LineBuilder::new(b"", b"ERROR").trailing(&text));
        }
    }

    /// A registered client by nick (folded lookup).
    fn find_nick(&self, nick: &[u8]) -> Option<ClientId> {
        let id = *self.nicks.get(&*fold(nick))?;
        self.clients.get(&id).is_some_and(|c| c.registered).then_some(id)
    }

    fn nick_of(&self, id: ClientId) -> Vec<u8> {
        self.clients.get(&id).map(|c| c.nick_or_star().to_vec()).unwrap_or_else(|| b"*".to_vec())
    }

    /// Everyone sharing a channel with `id`, each once, without `id`.
    fn peers(&self, id: ClientId) -> Vec<ClientId> {
        let Some(c) = self.clients.get(&id) else {
            return Vec::new();
        };
        let mut peers: Vec<ClientId> = c
            .channels
            .iter()
            .filter_map(|k| self.channels.get(k))
            .flat_map(|ch| ch.members.iter().copied())
            .filter(|&m| m != id)
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    fn broadcast(&self, fx: &mut Effects, key: &[u8], line: &Arc<[u8]>, except: Option<ClientId>) {
        if let Some(ch) = self.channels.get(key) {
            for &m in &ch.members {
                if Some(m) != except {
                    fx.send(m, line.clone());
                }
            }
        }
    }

    /// Removes `id` from channel `key` (deleting the channel when it empties).
    fn leave_channel(&mut self, id: ClientId, key: &[u8]) {
        if let Some(ch) = self.channels.get_mut(key) {
            ch.members.retain(|&m| m != id);
            ch.flags.remove(&id);
            if ch.members.is_empty() {
                self.channels.remove(key);
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.channels.retain(|k| &**k != key);
        }
    }

    fn remove_client(&mut self, id: ClientId, reason: &[u8], fx: &mut Effects) {
        if !self.clients.contains_key(&id) {
            return;
        }
        let peers = self.peers(id);
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        if c.registered && !peers.is_empty() {
            let line = LineBuilder::new(&c.prefix, b"QUIT").trailing(reason);
            for p in peers {
                fx.send(p, line.clone());
            }
        }
        for key in &c.channels {
            if let Some(ch) = self.channels.get_mut(key) {
                ch.members.retain(|&m| m != id);
                ch.flags.remove(&id);
                if ch.members.is_empty() {
                    self.channels.remove(key);
                }
            }
        }
        for key in &c.invited_to {
            if let Some(ch) = self.channels.get_mut(key) {
                ch.invited.remove(&id);
            }
        }
        if let Some(nick) = &c.nick {
            let key = fold(nick);
            if self.nicks.get(&key) == Some(&id) {
                self.nicks.remove(&key);
            }
        }
        if c.registered {
            self.registered -= 1;
        }
        if c.oper {
            self.opers -= 1;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Registration

    fn cmd_cap(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(sub) = msg.param(0) else {
            self.reply(fx, id, "461", &[b"CAP"], "Not enough parameters");
            return;
        };
        let registered = self.clients[&id].registered;
        let target: &[u8] = if registered { self.clients[&id].nick_or_star() } else { b"*" };
        let cap =
            |sub: &[u8], caps: &[u8]| LineBuilder::new(self.server(), b"CAP").middle(target).middle(sub).trailing(caps);
        let sub_upper = sub.to_ascii_uppercase();
        match &sub_upper[..] {
            b"LS" => {
                fx.send(id, cap(b"LS", b""));
                self.clients.get_mut(&id).unwrap().cap_negotiating = !registered;
            }
            b"LIST" => fx.send(id, cap(b"LIST", b"")),
            b"REQ" => {
                fx.send(id, cap(b"NAK", msg.param(1).unwrap_or(b"")));
                self.clients.get_mut(&id).unwrap().cap_negotiating = !registered;
            }
            b"END" => {
                self.clients.get_mut(&id).unwrap().cap_negotiating = false;
                self.try_register(id, now, fx);
            }
            _ => self.reply(fx, id, "410", &[sub], "Invalid CAP command"),
        }
    }

    fn cmd_pass(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if self.clients[&id].registered {
            self.reply(fx, id, "462", &[], "You may not reregister");
            return;
        }
        let Some(pass) = msg.param(0) else {
            self.reply(fx, id, "461", &[b"PASS"], "Not enough parameters");
            return;
        };
        self.clients.get_mut(&id).unwrap().pass = Some(pass.to_vec());
    }

    fn cmd_user(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        if self.clients[&id].registered {
            self.reply(fx, id, "462", &[], "You may not reregister");
            return;
        }
        let (Some(user), Some(real)) = (msg.nonempty(0), msg.nonempty(3)) else {
            self.reply(fx, id, "461", &[b"USER"], "Not enough parameters");
            return;
        };
        // user = 1*( %x01-09 / %x0B-0C / %x0E-1F / %x21-3F / %x41-FF ); kept to printable
        // ASCII without '@' and '!' so the prefix nick!user@host stays unambiguous.
        let mut user: Vec<u8> =
            user.iter().copied().filter(|&b| b.is_ascii_graphic() && b != b'@' && b != b'!').take(USERLEN).collect();
        if user.is_empty() {
            user = b"user".to_vec();
        }
        let c = self.clients.get_mut(&id).unwrap();
        c.user = Some(user);
        c.realname = truncate_utf8(real, REALLEN).to_vec();
        self.try_register(id, now, fx);
    }

    fn cmd_nick(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        let Some(new) = msg.nonempty(0) else {
            self.reply(fx, id, "431", &[], "No nickname given");
            return;
        };
        if !valid_nick(new) {
            self.reply(fx, id, "432", &[new], "Erroneous nickname");
            return;
        }
        let key = fold(new);
        if let Some(&owner) = self.nicks.get(&key)
            && owner != id
        {
            self.reply(fx, id, "433", &[new], "Nickname is already in use");
            return;
        }
        let c = self.clients.get_mut(&id).unwrap();
        if c.nick.as_deref() == Some(new) {
            return;
        }
        if let Some(old) = &c.nick {
            let old_key = fold(old);
            if old_key != key {
                self.nicks.remove(&old_key);
            }
        }
        self.nicks.insert(key, id);
        let c = self.clients.get_mut(&id).unwrap();
        c.nick = Some(new.to_vec());
        if !c.registered {
            self.try_register(id, now, fx);
            return;
        }
        let old_prefix = std::mem::take(&mut c.prefix);
        c.prefix = make_prefix(new, c.user.as_deref().unwrap_or(b""), &c.host);
        let line = LineBuilder::new(&old_prefix, b"NICK").middle(new).finish();
        fx.send(id, line.clone());
        for p in self.peers(id) {
            fx.send(p, line.clone());
        }
    }

    fn try_register(&mut self, id: ClientId, now: Instant, fx: &mut Effects) {
        let c = &self.clients[&id];
        if c.registered || c.cap_negotiating || c.nick.is_none() || c.user.is_none() {
            return;
        }
        if let Some(password) = &self.config.password
            && c.pass.as_deref() != Some(password.as_bytes())
        {
            self.reply(fx, id, "464", &[], "Password incorrect");
            self.send_error(fx, id, b"Bad password");
            self.remove_client(id, b"Bad password", fx);
            fx.close.push(id);
            return;
        }
        let unix = self.unix(now);
        let c = self.clients.get_mut(&id).unwrap();
        c.registered = true;
        c.signon = unix;
        c.last_message = now;
        let nick = c.nick.clone().unwrap_or_default();
        c.prefix = make_prefix(&nick, c.user.as_deref().unwrap_or(b""), &c.host);
        let prefix = c.prefix.clone();
        self.registered += 1;

        let mut welcome = format!("Welcome to the {} IRC Network ", self.config.network).into_bytes();
        welcome.extend_from_slice(&prefix);
        self.reply_bytes(fx, id, "001", &[], &welcome);
        let server = self.config.server_name.clone();
        self.reply(fx, id, "002", &[], &format!("Your host is {server}, running version {VERSION}"));
        self.reply(fx, id, "003", &[], &format!("This server was created {}", self.created));
        let line = self
            .numeric(id, "004")
            .middle(server.as_bytes())
            .middle(VERSION.as_bytes())
            .middle(b"io")
            .middle(b"iklmnostv")
            .middle(b"klov")
            .finish();
        fx.send(id, line);
        for tokens in self.isupport.chunks(13) {
            let mut b = self.numeric(id, "005");
            for t in tokens {
                b = b.middle(t);
            }
            fx.send(id, b.trailing(b"are supported by this server"));
        }
        self.send_lusers(id, fx);
        self.send_motd(id, fx);
    }

    fn send_lusers(&self, id: ClientId, fx: &mut Effects) {
        let unknown = self.clients.len() - self.registered;
        self.reply(fx, id, "251", &[], &format!("There are {} users and 0 services on 1 servers", self.registered));
        if self.opers > 0 {
            let n = self.opers.to_string();
            self.reply(fx, id, "252", &[n.as_bytes()], "operator(s) online");
        }
        if unknown > 0 {
            let n = unknown.to_string();
            self.reply(fx, id, "253", &[n.as_bytes()], "unknown connection(s)");
        }
        if !self.channels.is_empty() {
            let n = self.channels.len().to_string();
            self.reply(fx, id, "254", &[n.as_bytes()], "channels formed");
        }
        self.reply(fx, id, "255", &[], &format!("I have {} clients and 0 servers", self.clients.len()));
    }

    fn send_motd(&self, id: ClientId, fx: &mut Effects) {
        let Some(motd) = &self.config.motd else {
            self.reply(fx, id, "422", &[], "MOTD File is missing");
            return;
        };
        let server = &self.config.server_name;
        self.reply(fx, id, "375", &[], &format!("- {server} Message of the day - "));
        for line in motd {
            self.reply(fx, id, "372", &[], &format!("- {line}"));
        }
        self.reply(fx, id, "376", &[], "End of MOTD command");
    }

    // ---------------------------------------------------------------------------------------
    // Connection upkeep

    fn cmd_ping(&self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(token) = msg.param(0) else {
            self.reply(fx, id, "409", &[], "No origin specified");
            return;
        };
        let line = LineBuilder::new(self.server(), b"PONG").middle(self.server()).trailing(token);
        fx.send(id, line);
    }

    fn cmd_quit(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let reason = match msg.nonempty(0) {
            Some(r) => [&b"Quit: "[..], truncate_utf8(r, QUITLEN)].concat(),
            None => b"Client Quit".to_vec(),
        };
        self.send_error(fx, id, &reason);
        self.remove_client(id, &reason, fx);
        fx.close.push(id);
    }

    // ---------------------------------------------------------------------------------------
    // Messages

    fn cmd_message(&mut self, id: ClientId, msg: &Message, notice: bool, now: Instant, fx: &mut Effects) {
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
            if target.starts_with(b"#") {
                let key = fold(target);
                let Some(ch) = self.channels.get(&key) else {
                    if !notice {
                        self.reply(fx, id, "401", &[target], "No such nick/channel");
                    }
                    continue;
                };
                let member = ch.flags.get(&id);
                let blocked = (ch.modes.no_external && member.is_none())
                    || (ch.modes.moderated && !member.is_some_and(|m| m.op || m.voice));
                if blocked {
                    if !notice {
                        self.reply(fx, id, "404", &[&ch.name], "Cannot send to channel");
                    }
                    continue;
                }
                let line = LineBuilder::new(&sender.prefix, command).middle(&ch.name).trailing(text);
                for &m in &ch.members {
                    if m != id {
                        fx.send(m, line.clone());
                    }
                }
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

    // ---------------------------------------------------------------------------------------
    // Channels

    fn cmd_join(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
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
        let c = &self.clients[&id];
        if c.in_channel(&ckey) {
            return;
        }
        if c.channels.len() >= MAX_CHANNELS {
            self.reply(fx, id, "405", &[name], "You have joined too many channels");
            return;
        }
        let unix = self.unix(now);
        match self.channels.get_mut(&ckey) {
            Some(ch) => {
                let invited = ch.invited.contains(&id);
                let refusal = if ch.modes.invite_only && !invited {
                    Some(("473", "Cannot join channel (+i)"))
                } else if ch.modes.key.as_deref().is_some_and(|k| key != Some(k)) {
                    Some(("475", "Cannot join channel (+k)"))
                } else if ch.modes.limit.is_some_and(|l| ch.members.len() >= l) {
                    Some(("471", "Cannot join channel (+l)"))
                } else {
                    None
                };
                if let Some((code, text)) = refusal {
                    let name = ch.name.clone();
                    self.reply(fx, id, code, &[&name], text);
                    return;
                }
                ch.invited.remove(&id);
                ch.members.push(id);
                ch.flags.insert(id, Member::default());
            }
            None => {
                self.next_seq += 1;
                let mut flags = HashMap::new();
                flags.insert(id, Member { op: true, voice: false });
                self.channels.insert(
                    ckey.clone(),
                    Channel {
                        name: name.to_vec(),
                        seq: self.next_seq,
                        created: unix,
                        members: vec![id],
                        flags,
                        topic: None,
                        modes: Modes { no_external: true, topic_lock: true, ..Modes::default() },
                        invited: HashSet::new(),
                    },
                );
            }
        }
        let c = self.clients.get_mut(&id).unwrap();
        c.channels.push(ckey.clone());
        c.invited_to.retain(|k| *k != ckey);
        let ch = &self.channels[&ckey];
        let line = LineBuilder::new(&self.clients[&id].prefix, b"JOIN").middle(&ch.name).finish();
        self.broadcast(fx, &ckey, &line, None);
        if let Some(topic) = &ch.topic {
            self.send_topic(id, ch, topic, fx);
        }
        self.send_names(id, ch, fx);
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
        let mut names: Vec<u8> = Vec::with_capacity(room);
        for &m in &ch.members {
            let Some(c) = self.clients.get(&m) else {
                continue;
            };
            if !member && c.invisible {
                continue;
            }
            let flag = ch.flags.get(&m).copied().unwrap_or_default().prefix();
            let nick = c.nick_or_star();
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

    fn cmd_part(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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

    fn cmd_topic(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
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

    fn cmd_names(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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

    fn cmd_list(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        self.reply(fx, id, "321", &[b"Channel"], "Users  Name");
        let chans: Vec<&Channel> = match msg.nonempty(0) {
            None => self.visible_channels(id),
            Some(names) => names
                .split(|&b| b == b',')
                .filter_map(|n| self.channels.get(&*fold(n)))
                .filter(|ch| !ch.modes.secret || ch.has(id))
                .collect(),
        };
        for ch in chans {
            let count = ch.members.len().to_string();
            let topic = ch.topic.as_ref().map(|t| &t.text[..]).unwrap_or(b"");
            self.reply_bytes(fx, id, "322", &[&ch.name, count.as_bytes()], topic);
        }
        self.reply(fx, id, "323", &[], "End of LIST");
    }

    fn cmd_kick(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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

    fn cmd_invite(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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
        self.channels.get_mut(&key).unwrap().invited.insert(target);
        let t = self.clients.get_mut(&target).unwrap();
        if !t.invited_to.contains(&key) {
            t.invited_to.push(key);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Modes

    fn cmd_mode(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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
            let line = self.numeric(id, "221").middle(&m).finish();
            fx.send(id, line);
            return;
        };
        let (mut invisible, mut oper) = (c.invisible, c.oper);
        let mut adding = true;
        let mut unknown = false;
        for &b in modes {
            match b {
                b'+' => adding = true,
                b'-' => adding = false,
                b'i' => invisible = adding,
                // +o only comes from OPER; -o gives operator status up.
                b'o' => oper &= adding,
                _ => unknown = true,
            }
        }
        let mut change = Vec::new();
        let mut sign = 0u8;
        for (before, after, ch) in [(c.invisible, invisible, b'i'), (c.oper, oper, b'o')] {
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
        c.invisible = invisible;
        c.oper = oper;
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
                let Some(member) = ch.flags.get_mut(&t) else {
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

    // ---------------------------------------------------------------------------------------
    // Queries

    fn cmd_who(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let mask = msg.nonempty(0).unwrap_or(b"*");
        let opers_only = msg.param(1).is_some_and(|f| f.contains(&b'o'));
        let me = &self.clients[&id];
        let server = self.server().to_vec();
        let reply = |fx: &mut Effects, chan: &[u8], c: &Client, member: Option<Member>| {
            let mut flags = vec![if c.away.is_some() { b'G' } else { b'H' }];
            if c.oper {
                flags.push(b'*');
            }
            if let Some(m) = member {
                flags.extend_from_slice(m.prefix());
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
                    for &m in &ch.members {
                        let Some(c) = self.clients.get(&m) else {
                            continue;
                        };
                        if (!member && c.invisible) || (opers_only && !c.oper) {
                            continue;
                        }
                        reply(fx, &ch.name, c, ch.flags.get(&m).copied());
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
                let visible = t == id || !c.invisible || c.channels.iter().any(|k| me.in_channel(k));
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

    fn cmd_whois(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
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
            let flag = ch.flags.get(&t).copied().unwrap_or_default().prefix();
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
        let server = self.server().to_vec();
        let info = format!("{} IRC server", self.config.network);
        self.reply(fx, id, "312", &[tnick, &server], &info);
        if let Some(away) = &c.away {
            self.reply_bytes(fx, id, "301", &[tnick], away);
        }
        if c.oper {
            self.reply(fx, id, "313", &[tnick], "is an IRC operator");
        }
        let idle = now.saturating_duration_since(c.last_message).as_secs().to_string();
        let signon = c.signon.to_string();
        self.reply(fx, id, "317", &[tnick, idle.as_bytes(), signon.as_bytes()], "seconds idle, signon time");
        self.reply(fx, id, "318", &[arg], "End of WHOIS list");
    }

    fn cmd_whowas(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(nick) = msg.nonempty(0) else {
            self.reply(fx, id, "431", &[], "No nickname given");
            return;
        };
        self.reply(fx, id, "406", &[nick], "There was no such nickname");
        self.reply(fx, id, "369", &[nick], "End of WHOWAS");
    }

    fn cmd_ison(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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

    fn cmd_userhost(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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

    fn cmd_time(&mut self, id: ClientId, msg: &Message, now: Instant, fx: &mut Effects) {
        if let Some(server) = msg.nonempty(0)
            && !wildcard_match(server, self.server())
        {
            self.reply(fx, id, "402", &[server], "No such server");
            return;
        }
        let server = self.server().to_vec();
        self.reply(fx, id, "391", &[&server], &format_time(self.unix(now)));
    }

    // ---------------------------------------------------------------------------------------
    // User state

    fn cmd_away(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
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
    }

    fn cmd_oper(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let (Some(name), Some(pass)) = (msg.param(0), msg.param(1)) else {
            self.reply(fx, id, "461", &[b"OPER"], "Not enough parameters");
            return;
        };
        let ok = self.config.opers.iter().any(|(n, p)| n.as_bytes() == name && p.as_bytes() == pass);
        if !ok {
            self.reply(fx, id, "464", &[], "Password incorrect");
            return;
        }
        self.reply(fx, id, "381", &[], "You are now an IRC operator");
        let c = self.clients.get_mut(&id).unwrap();
        if c.oper {
            return;
        }
        c.oper = true;
        self.opers += 1;
        let nick = c.nick_or_star().to_vec();
        let line = LineBuilder::new(&c.prefix, b"MODE").middle(&nick).middle(b"+o").finish();
        fx.send(id, line);
    }

    fn cmd_kill(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        if !self.clients[&id].oper {
            self.reply(fx, id, "481", &[], "Permission Denied- You're not an IRC operator");
            return;
        }
        let (Some(nick), Some(comment)) = (msg.nonempty(0), msg.nonempty(1)) else {
            self.reply(fx, id, "461", &[b"KILL"], "Not enough parameters");
            return;
        };
        let Some(t) = self.find_nick(nick) else {
            self.reply(fx, id, "401", &[nick], "No such nick/channel");
            return;
        };
        let killer = self.nick_of(id);
        let target_nick = self.nick_of(t);
        let line = LineBuilder::new(&self.clients[&id].prefix, b"KILL").middle(&target_nick).trailing(comment);
        fx.send(t, line);
        let reason = [&b"Killed ("[..], &killer, b" (", truncate_utf8(comment, QUITLEN), b"))"].concat();
        self.send_error(fx, t, &reason);
        self.remove_client(t, &reason, fx);
        fx.close.push(t);
    }
}

/// `nick!user@host`.
fn make_prefix(nick: &[u8], user: &[u8], host: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(nick.len() + user.len() + host.len() + 2);
    p.extend_from_slice(nick);
    p.push(b'!');
    p.extend_from_slice(user);
    p.push(b'@');
    p.extend_from_slice(host.as_bytes());
    p
}

/// RFC 2812 nickname = ( letter / special ) *( letter / digit / special / "-" ), at most
/// [`NICKLEN`] bytes; special = `[ ] \ ` _ ^ { | }`.
pub fn valid_nick(nick: &[u8]) -> bool {
    let special = |b: u8| matches!(b, b'['..=b'`' | b'{'..=b'}');
    let Some((&first, rest)) = nick.split_first() else {
        return false;
    };
    nick.len() <= NICKLEN
        && (first.is_ascii_alphabetic() || special(first))
        && rest.iter().all(|&b| b.is_ascii_alphanumeric() || special(b) || b == b'-')
}

/// `#` and then any bytes but NUL, BEL, CR, LF, space, comma and colon; at most [`CHANNELLEN`].
pub fn valid_channel(name: &[u8]) -> bool {
    name.len() <= CHANNELLEN
        && name.first() == Some(&b'#')
        && !name.iter().any(|&b| matches!(b, 0 | 7 | b'\r' | b'\n' | b' ' | b',' | b':'))
}

/// RFC 2812 key: 1 to 23 printable ASCII bytes; also no comma (it separates JOIN keys) and no
/// leading colon (it would not survive as a middle parameter).
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= KEYLEN && key[0] != b':' && key.iter().all(|&b| b.is_ascii_graphic() && b != b',')
}

/// e.g. `Thursday January 1 1970 -- 00:00:00 +00:00` (UTC).
fn format_time(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_date(days);
    format!(
        "{} {} {} {} -- {:02}:{:02}:{:02} +00:00",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01, proleptic Gregorian.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 so the leap day ends each 4/100/400-year cycle.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const T0_UNIX: u64 = 1_000_000_000;

    /// Drives a ChatServer with fake clients 1, 2, 3... from 10.0.0.<id>, on a fake clock.
    struct H {
        s: ChatServer,
        now: Instant,
    }

    impl H {
        fn new() -> H {
            H::with(ChatConfig { server_name: "irc.test".to_owned(), ..ChatConfig::default() })
        }

        fn with(config: ChatConfig) -> H {
            let mut s = ChatServer::new(config);
            let now = Instant::now();
            s.clock = (now, T0_UNIX);
            H { s, now }
        }

        fn connect(&mut self, id: ClientId) {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8));
            self.s.connect(id, ip, self.now);
        }

        fn send(&mut self, id: ClientId, line: &str) -> Effects {
            self.sendb(id, line.as_bytes())
        }

        fn sendb(&mut self, id: ClientId, line: &[u8]) -> Effects {
            let mut fx = Effects::default();
            self.s.handle_line(id, line, false, self.now, &mut fx);
            check_lines(&fx);
            fx
        }

        /// Connects and registers `id` as `nick` (user name = nick), discarding the welcome.
        fn register(&mut self, id: ClientId, nick: &str) {
            self.connect(id);
            self.send(id, &format!("NICK {nick}"));
            let fx = self.send(id, &format!("USER {nick} 0 * :Real {nick}"));
            assert_eq!(cmds(&fx, id)[0], "001", "{:?}", lines(&fx, id));
        }

        fn tick(&mut self, after: u64) -> Effects {
            self.now += Duration::from_secs(after);
            let mut fx = Effects::default();
            self.s.tick(self.now, Duration::from_secs(60), Duration::from_secs(30), &mut fx);
            check_lines(&fx);
            fx
        }
    }

    /// Every line sent is one well-formed IRC line.
    fn check_lines(fx: &Effects) {
        for (_, line) in &fx.sends {
            assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
            assert!(line.ends_with(b"\r\n"));
            let body = &line[..line.len() - 2];
            assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0), "{:?}", String::from_utf8_lossy(line));
        }
    }

    use echoport_irc::MAX_LINE;

    /// The lines `id` got, without CR LF.
    fn lines(fx: &Effects, id: ClientId) -> Vec<String> {
        fx.sends
            .iter()
            .filter(|(to, _)| *to == id)
            .map(|(_, l)| String::from_utf8_lossy(&l[..l.len() - 2]).into_owned())
            .collect()
    }

    /// The commands (or numerics) of the lines `id` got.
    fn cmds(fx: &Effects, id: ClientId) -> Vec<String> {
        lines(fx, id)
            .iter()
            .map(|l| {
                let mut words = l.split(' ');
                let first = words.next().unwrap_or("");
                if first.starts_with(':') { words.next().unwrap_or("").to_owned() } else { first.to_owned() }
            })
            .collect()
    }

    fn recipients(fx: &Effects) -> Vec<ClientId> {
        fx.sends.iter().map(|(id, _)| *id).collect()
    }

    // ------------------------------------------------------------------------------------
    // Registration

    #[test]
    fn registration_nick_then_user() {
        let mut h = H::new();
        h.connect(1);
        assert!(h.send(1, "NICK alice").sends.is_empty());
        let fx = h.send(1, "USER al 0 * :Alice Liddell");
        let got = lines(&fx, 1);
        assert_eq!(got[0], ":irc.test 001 alice :Welcome to the echoport IRC Network alice!al@10.0.0.1");
        assert_eq!(got[1], format!(":irc.test 002 alice :Your host is irc.test, running version {VERSION}"));
        assert!(got[2].starts_with(":irc.test 003 alice :This server was created "));
        assert_eq!(got[3], format!(":irc.test 004 alice irc.test {VERSION} io iklmnostv klov"));
        assert_eq!(
            got[4],
            ":irc.test 005 alice CASEMAPPING=rfc1459 CHANTYPES=# NICKLEN=30 CHANNELLEN=50 \
             TOPICLEN=390 PREFIX=(ov)@+ CHANMODES=,k,l,imnst NETWORK=echoport CHANLIMIT=#:50 \
             KICKLEN=255 AWAYLEN=200 USERLEN=10 KEYLEN=23 :are supported by this server"
        );
        assert_eq!(
            got[5],
            ":irc.test 005 alice MODES=12 TARGMAX=JOIN:,PART:,NAMES:,LIST:,WHOIS:1,KICK:4,\
             PRIVMSG:4,NOTICE:4 :are supported by this server"
        );
        assert_eq!(
            &got[6..],
            [
                ":irc.test 251 alice :There are 1 users and 0 services on 1 servers",
                ":irc.test 255 alice :I have 1 clients and 0 servers",
                ":irc.test 422 alice :MOTD File is missing",
            ]
        );
        assert!(fx.close.is_empty());
        assert_eq!(h.s.clients(), 1);
    }

    #[test]
    fn registration_user_then_nick_and_motd() {
        let mut h = H::with(ChatConfig {
            server_name: "irc.test".to_owned(),
            motd: Some(vec!["hello".to_owned(), "world".to_owned()]),
            ..ChatConfig::default()
        });
        h.connect(1);
        assert!(h.send(1, "USER bob 0 * :Bob").sends.is_empty());
        let fx = h.send(1, "NICK bob");
        let got = lines(&fx, 1);
        assert_eq!(got[0], ":irc.test 001 bob :Welcome to the echoport IRC Network bob!bob@10.0.0.1");
        assert_eq!(
            &got[got.len() - 4..],
            [
                ":irc.test 375 bob :- irc.test Message of the day - ",
                ":irc.test 372 bob :- hello",
                ":irc.test 372 bob :- world",
                ":irc.test 376 bob :End of MOTD command",
            ]
        );
        let fx = h.send(1, "MOTD");
        assert_eq!(cmds(&fx, 1), ["375", "372", "372", "376"]);
    }

    #[test]
    fn cap_negotiation_holds_registration_until_cap_end() {
        let mut h = H::new();
        h.connect(1);
        let fx = h.send(1, "CAP LS 302");
        assert_eq!(lines(&fx, 1), [":irc.test CAP * LS :"]);
        assert!(h.send(1, "NICK carol").sends.is_empty());
        assert!(h.send(1, "USER carol 0 * :Carol").sends.is_empty());
        let fx = h.send(1, "CAP REQ :multi-prefix sasl");
        assert_eq!(lines(&fx, 1), [":irc.test CAP * NAK :multi-prefix sasl"]);
        let fx = h.send(1, "CAP LIST");
        assert_eq!(lines(&fx, 1), [":irc.test CAP * LIST :"]);
        let fx = h.send(1, "cap bogus");
        assert_eq!(lines(&fx, 1), [":irc.test 410 carol bogus :Invalid CAP command"]);
        let fx = h.send(1, "CAP END");
        assert_eq!(cmds(&fx, 1)[0], "001");
        // After registration CAP still answers, with the nick, and holds nothing.
        let fx = h.send(1, "CAP LS");
        assert_eq!(lines(&fx, 1), [":irc.test CAP carol LS :"]);
        let fx = h.send(1, "CAP LIST");
        assert_eq!(lines(&fx, 1), [":irc.test CAP carol LIST :"]);
        let fx = h.send(1, "PING x");
        assert_eq!(cmds(&fx, 1), ["PONG"]);
        // A first message of CAP LIST is answered the same way.
        h.connect(2);
        let fx = h.send(2, "CAP LIST");
        assert_eq!(lines(&fx, 2), [":irc.test CAP * LIST :"]);
        let fx = h.send(2, "CAP");
        assert_eq!(lines(&fx, 2), [":irc.test 461 * CAP :Not enough parameters"]);
    }

    fn with_password() -> H {
        H::with(ChatConfig {
            server_name: "irc.test".to_owned(),
            password: Some("sesame".to_owned()),
            ..ChatConfig::default()
        })
    }

    #[test]
    fn pass_right_registers() {
        let mut h = with_password();
        h.connect(1);
        assert!(h.send(1, "PASS sesame").sends.is_empty());
        h.send(1, "NICK foo");
        let fx = h.send(1, "USER foo * * :Realname");
        assert_eq!(cmds(&fx, 1)[0], "001");
        let fx = h.send(1, "PASS sesame");
        assert_eq!(lines(&fx, 1), [":irc.test 462 foo :You may not reregister"]);
    }

    #[test]
    fn pass_wrong_or_missing_or_late_is_464_error_and_close() {
        for script in
            [&["PASS wrong", "NICK foo", "USER foo * * :Realname"][..], &["NICK foo", "USER foo * * :Realname"][..]]
        {
            let mut h = with_password();
            h.connect(1);
            let mut fx = Effects::default();
            for line in script {
                fx = h.send(1, line);
            }
            assert_eq!(
                lines(&fx, 1),
                [":irc.test 464 foo :Password incorrect", "ERROR :Closing Link: 10.0.0.1 (Bad password)",]
            );
            assert_eq!(fx.close, [1]);
            assert_eq!(h.s.clients(), 0);
            // The nick is free again and later lines for the id are ignored.
            assert!(h.send(1, "PASS sesame").sends.is_empty());
            assert!(h.s.nicks.is_empty());
        }
        let mut h = with_password();
        h.connect(1);
        h.send(1, "PASS");
        let fx = h.send(1, "PASS");
        assert_eq!(lines(&fx, 1), [":irc.test 461 * PASS :Not enough parameters"]);
    }

    #[test]
    fn nick_errors() {
        let mut h = H::new();
        h.register(1, "alice");
        h.connect(2);
        let fx = h.send(2, "NICK");
        assert_eq!(lines(&fx, 2), [":irc.test 431 * :No nickname given"]);
        let fx = h.send(2, "NICK :");
        assert_eq!(lines(&fx, 2), [":irc.test 431 * :No nickname given"]);
        for bad in ["1abc", "-dash", "a.b", "x@y", "#chan", "é", &"n".repeat(31)] {
            let fx = h.send(2, &format!("NICK {bad}"));
            assert_eq!(lines(&fx, 2), [format!(":irc.test 432 * {bad} :Erroneous nickname")], "{bad}");
        }
        let fx = h.sendb(2, b"NICK a\xffb");
        assert_eq!(cmds(&fx, 2), ["432"]);
        let fx = h.send(2, "NICK ALICE");
        assert_eq!(lines(&fx, 2), [":irc.test 433 * ALICE :Nickname is already in use"]);
        for good in ["[x]", "`x", "_x-1", "^{}|\\", &"n".repeat(30)] {
            assert!(valid_nick(good.as_bytes()), "{good}");
        }
        // Registered client: errors carry its nick.
        let fx = h.send(1, "NICK 9x");
        assert_eq!(lines(&fx, 1), [":irc.test 432 alice 9x :Erroneous nickname"]);
    }

    #[test]
    fn early_nick_collision_only_one_registers() {
        let mut h = H::new();
        h.connect(1);
        h.connect(2);
        assert!(h.send(1, "NICK foo").sends.is_empty());
        let fx = h.send(2, "NICK foo");
        assert_eq!(lines(&fx, 2), [":irc.test 433 * foo :Nickname is already in use"]);
        let fx = h.send(1, "USER u * * :R");
        assert_eq!(cmds(&fx, 1)[0], "001");
        let fx = h.send(2, "USER u * * :R");
        assert!(fx.sends.is_empty(), "no nick yet: still unregistered");
        let fx = h.send(2, "NICK foo2");
        assert_eq!(cmds(&fx, 2)[0], "001");
    }

    #[test]
    fn unregistered_and_user_errors() {
        let mut h = H::new();
        h.connect(1);
        for line in ["JOIN #a", "PRIVMSG x :y", "WHOIS x", "MODE x", "FOO"] {
            let fx = h.send(1, line);
            assert_eq!(lines(&fx, 1), [":irc.test 451 * :You have not registered"]);
        }
        assert!(h.send(1, "NOTICE x :y").sends.is_empty());
        let fx = h.send(1, "PING tok");
        assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :tok"]);
        assert!(h.send(1, "PONG tok").sends.is_empty());
        h.send(1, "NICK foo");
        let fx = h.send(1, "USER username * * :");
        assert_eq!(lines(&fx, 1), [":irc.test 461 foo USER :Not enough parameters"]);
        let fx = h.send(1, "USER username *");
        assert_eq!(cmds(&fx, 1), ["461"]);
        let fx = h.send(1, "USER us@er!x * * :R");
        assert_eq!(cmds(&fx, 1)[0], "001");
        assert_eq!(h.s.clients[&1].prefix, b"foo!userx@10.0.0.1");
        let fx = h.send(1, "USER again * * :R");
        assert_eq!(lines(&fx, 1), [":irc.test 462 foo :You may not reregister"]);
    }

    #[test]
    fn misc_errors_and_empty_lines() {
        let mut h = H::new();
        h.register(1, "alice");
        let fx = h.send(1, "FROBNICATE a b");
        assert_eq!(lines(&fx, 1), [":irc.test 421 alice FROBNICATE :Unknown command"]);
        let fx = h.send(1, "averyveryverylongcommandname");
        assert_eq!(cmds(&fx, 1), ["421"]);
        assert!(h.send(1, "").sends.is_empty());
        assert!(h.send(1, "    ").sends.is_empty());
        assert!(h.send(1, ":prefix.only").sends.is_empty());
        let fx = h.send(1, "PING");
        assert_eq!(lines(&fx, 1), [":irc.test 409 alice :No origin specified"]);
        let fx = h.send(1, "PING :");
        assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :"]);
        let fx = h.send(1, "ping :a b");
        assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :a b"]);
        // A prefix sent by the client is ignored.
        let fx = h.send(1, ":bob!x@y PING z");
        assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :z"]);
        for (line, cmd) in [
            ("JOIN", "JOIN"),
            ("PART", "PART"),
            ("TOPIC", "TOPIC"),
            ("MODE", "MODE"),
            ("KICK #a", "KICK"),
            ("INVITE bob", "INVITE"),
            ("OPER x", "OPER"),
            ("ISON", "ISON"),
            ("USERHOST", "USERHOST"),
        ] {
            let fx = h.send(1, line);
            assert_eq!(lines(&fx, 1), [format!(":irc.test 461 alice {cmd} :Not enough parameters")], "{line}");
        }
    }

    // ------------------------------------------------------------------------------------
    // Channels

    #[test]
    fn join_creates_channel_with_op_and_fans_out() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        let fx = h.send(1, "JOIN #chan");
        assert_eq!(
            lines(&fx, 1),
            [
                ":alice!alice@10.0.0.1 JOIN #chan",
                ":irc.test 353 alice = #chan :@alice",
                ":irc.test 366 alice #chan :End of NAMES list",
            ]
        );
        assert_eq!(h.s.channels(), 1);
        let fx = h.send(2, "join #CHAN");
        assert_eq!(
            lines(&fx, 2),
            [
                ":bob!bob@10.0.0.2 JOIN #chan",
                ":irc.test 353 bob = #chan :@alice bob",
                ":irc.test 366 bob #chan :End of NAMES list",
            ]
        );
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 JOIN #chan"]);
        let a = &fx.sends.iter().find(|(id, _)| *id == 1).unwrap().1;
        let b = &fx.sends.iter().find(|(id, _)| *id == 2).unwrap().1;
        assert!(Arc::ptr_eq(a, b), "one JOIN line shared by all members");
        // Joining again is ignored.
        assert!(h.send(2, "JOIN #Chan").sends.is_empty());
        assert_eq!(h.s.channels(), 1);
    }

    #[test]
    fn join_lists_keys_and_errors() {
        let mut h = H::new();
        h.register(1, "alice");
        let fx = h.send(1, "JOIN #a,#b,bad,#c");
        assert_eq!(cmds(&fx, 1), ["JOIN", "353", "366", "JOIN", "353", "366", "403", "JOIN", "353", "366"]);
        assert!(lines(&fx, 1).contains(&":irc.test 403 alice bad :No such channel".to_owned()));
        for bad in ["#a\x07b", &format!("#{}", "x".repeat(50)), "#a:b", "&x"] {
            let fx = h.send(1, &format!("JOIN {bad}"));
            assert_eq!(cmds(&fx, 1), ["403"], "{bad:?}");
        }
        assert!(valid_channel(format!("#{}", "x".repeat(49)).as_bytes()));
        // Keys, limit, invite-only.
        h.send(1, "MODE #a +k sekrit");
        h.send(1, "MODE #b +l 1");
        h.send(1, "MODE #c +i");
        h.register(2, "bob");
        let fx = h.send(2, "JOIN #a,#b,#c");
        assert_eq!(
            lines(&fx, 2),
            [
                ":irc.test 475 bob #a :Cannot join channel (+k)",
                ":irc.test 471 bob #b :Cannot join channel (+l)",
                ":irc.test 473 bob #c :Cannot join channel (+i)",
            ]
        );
        assert!(lines(&fx, 1).is_empty());
        let fx = h.send(2, "JOIN #a wrong");
        assert_eq!(cmds(&fx, 2), ["475"]);
        let fx = h.send(2, "JOIN #x,#a other,sekrit");
        assert_eq!(cmds(&fx, 2), ["JOIN", "353", "366", "JOIN", "353", "366"]);
        // JOIN 0 parts everything.
        let fx = h.send(2, "JOIN 0");
        assert_eq!(lines(&fx, 2), [":bob!bob@10.0.0.2 PART #x", ":bob!bob@10.0.0.2 PART #a"]);
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PART #a"]);
        assert!(h.s.clients[&2].channels.is_empty());
    }

    #[test]
    fn too_many_channels() {
        let mut h = H::new();
        h.register(1, "alice");
        for i in 0..MAX_CHANNELS {
            h.send(1, &format!("JOIN #c{i}"));
        }
        let fx = h.send(1, "JOIN #one-more");
        assert_eq!(lines(&fx, 1), [":irc.test 405 alice #one-more :You have joined too many channels"]);
    }

    #[test]
    fn part_with_and_without_message() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.send(1, "JOIN #chan");
        h.send(2, "JOIN #chan");
        let fx = h.send(2, "PART #chan :bye everyone");
        let want = ":bob!bob@10.0.0.2 PART #chan :bye everyone";
        assert_eq!(lines(&fx, 1), [want]);
        assert_eq!(lines(&fx, 2), [want]);
        let fx = h.send(2, "PART #chan");
        assert_eq!(lines(&fx, 2), [":irc.test 442 bob #chan :You're not on that channel"]);
        let fx = h.send(2, "PART #nope,bad");
        assert_eq!(
            lines(&fx, 2),
            [":irc.test 403 bob #nope :No such channel", ":irc.test 403 bob bad :No such channel",]
        );
        let fx = h.send(1, "PART #CHAN");
        assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 PART #chan"]);
        assert_eq!(h.s.channels(), 0, "an empty channel is gone");
    }

    #[test]
    fn privmsg_to_channel_is_not_echoed_and_shares_one_buffer() {
        let mut h = H::new();
        for (id, nick) in [(1, "alice"), (2, "bob"), (3, "carol"), (4, "dave")] {
            h.register(id, nick);
        }
        for id in 1..=3 {
            h.send(id, "JOIN #chan");
        }
        let fx = h.send(1, "PRIVMSG #chan :hello there");
        let want = ":alice!alice@10.0.0.1 PRIVMSG #chan :hello there";
        assert!(lines(&fx, 1).is_empty(), "not echoed to the sender");
        assert_eq!(lines(&fx, 2), [want]);
        assert_eq!(lines(&fx, 3), [want]);
        assert!(lines(&fx, 4).is_empty());
        assert_eq!(fx.sends.len(), 2);
        assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
        let fx = h.send(2, "NOTICE #CHAN :note");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 NOTICE #chan :note"]);
        assert_eq!(recipients(&fx), [1, 3]);
        // A message without a colon takes its first word.
        let fx = h.send(1, "PRIVMSG #chan word other");
        assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG #chan :word"]);
        // Invalid UTF-8 is relayed as bytes.
        let fx = h.sendb(1, b"PRIVMSG #chan :caf\xe9 \xff");
        assert_eq!(&*fx.sends[0].1, b":alice!alice@10.0.0.1 PRIVMSG #chan :caf\xe9 \xff\r\n");
    }

    #[test]
    fn privmsg_to_nick_and_errors() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        let fx = h.send(1, "PRIVMSG BOB :hey there!");
        assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG bob :hey there!"]);
        assert!(lines(&fx, 1).is_empty());
        let fx = h.send(1, "PRIVMSG nobody :hi");
        assert_eq!(lines(&fx, 1), [":irc.test 401 alice nobody :No such nick/channel"]);
        let fx = h.send(1, "PRIVMSG #nochan :hi");
        assert_eq!(lines(&fx, 1), [":irc.test 401 alice #nochan :No such nick/channel"]);
        let fx = h.send(1, "PRIVMSG");
        assert_eq!(lines(&fx, 1), [":irc.test 411 alice :No recipient given (PRIVMSG)"]);
        let fx = h.send(1, "PRIVMSG bob");
        assert_eq!(lines(&fx, 1), [":irc.test 412 alice :No text to send"]);
        let fx = h.send(1, "PRIVMSG bob :");
        assert_eq!(lines(&fx, 1), [":irc.test 412 alice :No text to send"]);
        for line in ["NOTICE", "NOTICE bob", "NOTICE nobody :x", "NOTICE #nochan :x"] {
            assert!(h.send(1, line).sends.is_empty(), "{line}");
        }
        // Several targets, at most four.
        let fx = h.send(1, "PRIVMSG bob,alice :both");
        assert_eq!(recipients(&fx), [2, 1]);
        let fx = h.send(1, "PRIVMSG bob,bob,bob,bob,bob :x");
        assert_eq!(recipients(&fx), [2, 2, 2, 2, 1]);
        assert_eq!(lines(&fx, 1), [":irc.test 407 alice bob :Too many recipients"]);
        let fx = h.send(1, "NOTICE bob,bob,bob,bob,bob :x");
        assert_eq!(recipients(&fx), [2, 2, 2, 2]);
        // An unregistered client's nick is not a target.
        h.connect(3);
        h.send(3, "NICK carol");
        let fx = h.send(1, "PRIVMSG carol :x");
        assert_eq!(cmds(&fx, 1), ["401"]);
    }

    #[test]
    fn no_external_and_moderated() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.register(3, "carol");
        h.send(1, "JOIN #chan");
        h.send(2, "JOIN #chan");
        let fx = h.send(3, "PRIVMSG #chan :from outside");
        assert_eq!(lines(&fx, 3), [":irc.test 404 carol #chan :Cannot send to channel"]);
        assert_eq!(fx.sends.len(), 1);
        assert!(h.send(3, "NOTICE #chan :from outside").sends.is_empty());
        h.send(1, "MODE #chan -n");
        let fx = h.send(3, "PRIVMSG #chan :from outside");
        assert_eq!(recipients(&fx), [1, 2]);
        h.send(1, "MODE #chan +m");
        let fx = h.send(2, "PRIVMSG #chan :unvoiced");
        assert_eq!(lines(&fx, 2), [":irc.test 404 bob #chan :Cannot send to channel"]);
        let fx = h.send(3, "PRIVMSG #chan :outside");
        assert_eq!(cmds(&fx, 3), ["404"]);
        let fx = h.send(1, "PRIVMSG #chan :op speaks");
        assert_eq!(recipients(&fx), [2]);
        h.send(1, "MODE #chan +v bob");
        let fx = h.send(2, "PRIVMSG #chan :voiced");
        assert_eq!(recipients(&fx), [1]);
    }

    #[test]
    fn nick_change_reaches_each_peer_once() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.register(3, "carol");
        h.send(1, "JOIN #a,#b");
        h.send(2, "JOIN #a,#b");
        let fx = h.send(1, "NICK alicia");
        let want = ":alice!alice@10.0.0.1 NICK alicia";
        assert_eq!(lines(&fx, 1), [want]);
        assert_eq!(lines(&fx, 2), [want], "once, though two channels are shared");
        assert!(lines(&fx, 3).is_empty());
        assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
        // The old nick is free, the new one taken; the prefix follows.
        let fx = h.send(3, "PRIVMSG alice :x");
        assert_eq!(cmds(&fx, 3), ["401"]);
        let fx = h.send(3, "PRIVMSG ALICIA :x");
        assert_eq!(lines(&fx, 1), [":carol!carol@10.0.0.3 PRIVMSG alicia :x"]);
        let fx = h.send(2, "PRIVMSG #a :hi");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG #a :hi"]);
        let fx = h.send(1, "PRIVMSG #a :me");
        assert_eq!(lines(&fx, 2), [":alicia!alice@10.0.0.1 PRIVMSG #a :me"]);
        // Case variant of one's own nick: allowed; the same nick: nothing.
        let fx = h.send(1, "NICK Alicia");
        assert_eq!(lines(&fx, 1), [":alicia!alice@10.0.0.1 NICK Alicia"]);
        assert!(h.send(1, "NICK Alicia").sends.is_empty());
        let fx = h.send(2, "NICK ALICIA");
        assert_eq!(lines(&fx, 2), [":irc.test 433 bob ALICIA :Nickname is already in use"]);
        let fx = h.send(2, "NICK");
        assert_eq!(cmds(&fx, 2), ["431"]);
        h.send(2, "NICK alice");
        assert_eq!(h.s.find_nick(b"ALICE"), Some(2));
    }

    #[test]
    fn quit_reaches_each_peer_once_and_frees_everything() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.register(3, "carol");
        h.register(4, "dave");
        h.send(1, "JOIN #a,#b");
        h.send(2, "JOIN #a,#b");
        h.send(3, "JOIN #b");
        let fx = h.send(1, "QUIT :gone fishing");
        assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Quit: gone fishing)"]);
        let want = ":alice!alice@10.0.0.1 QUIT :Quit: gone fishing";
        assert_eq!(lines(&fx, 2), [want]);
        assert_eq!(lines(&fx, 3), [want]);
        assert!(lines(&fx, 4).is_empty());
        assert_eq!(fx.close, [1]);
        assert_eq!(h.s.clients(), 3);
        assert_eq!(h.s.channels(), 2);
        // Lines after QUIT and a later disconnect do nothing.
        assert!(h.send(1, "PRIVMSG #a :ghost").sends.is_empty());
        let mut fx = Effects::default();
        h.s.disconnect(1, "EOF", &mut fx);
        assert!(fx.sends.is_empty() && fx.close.is_empty());
        // The nick is free.
        h.connect(5);
        h.send(5, "NICK alice");
        let fx = h.send(5, "USER a * * :A");
        assert_eq!(cmds(&fx, 5)[0], "001");
        // QUIT without a reason; the last member leaving removes the channel.
        let fx = h.send(3, "QUIT");
        assert_eq!(lines(&fx, 3), ["ERROR :Closing Link: 10.0.0.3 (Client Quit)"]);
        assert_eq!(lines(&fx, 2), [":carol!carol@10.0.0.3 QUIT :Client Quit"]);
        let mut fx = Effects::default();
        h.s.disconnect(2, "Connection reset by peer", &mut fx);
        assert!(fx.sends.is_empty());
        assert_eq!(h.s.channels(), 0);
        // A reason that is not UTF-8 goes out as it came.
        let fx = h.sendb(4, b"QUIT :caf\xe9");
        assert_eq!(&*fx.sends[0].1, b"ERROR :Closing Link: 10.0.0.4 (Quit: caf\xe9)\r\n");
        // An unregistered client quits quietly.
        h.connect(6);
        let fx = h.send(6, "QUIT :bye");
        assert_eq!(lines(&fx, 6), ["ERROR :Closing Link: 10.0.0.6 (Quit: bye)"]);
        assert_eq!(fx.close, [6]);
    }

    #[test]
    fn disconnect_broadcasts_reason() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.send(1, "JOIN #a");
        h.send(2, "JOIN #a");
        let mut fx = Effects::default();
        h.s.disconnect(1, "SendQ exceeded", &mut fx);
        assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 QUIT :SendQ exceeded"]);
        assert!(fx.close.is_empty());
        assert_eq!(h.s.registered, 1);
        let fx = h.send(2, "NAMES #a");
        assert_eq!(lines(&fx, 2)[0], ":irc.test 353 bob = #a :bob");
    }

    #[test]
    fn topic_get_set_and_errors() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.register(3, "carol");
        h.send(1, "JOIN #chan");
        h.send(2, "JOIN #chan");
        let fx = h.send(2, "TOPIC #chan");
        assert_eq!(lines(&fx, 2), [":irc.test 331 bob #chan :No topic is set"]);
        let fx = h.send(2, "TOPIC #chan :by bob");
        assert_eq!(lines(&fx, 2), [":irc.test 482 bob #chan :You're not channel operator"]);
        assert!(lines(&fx, 1).is_empty());
        h.now += Duration::from_secs(5);
        let fx = h.send(1, "TOPIC #chan :T0P1C is here");
        let want = ":alice!alice@10.0.0.1 TOPIC #chan :T0P1C is here";
        assert_eq!(lines(&fx, 1), [want]);
        assert_eq!(lines(&fx, 2), [want]);
        let fx = h.send(3, "JOIN #chan");
        assert_eq!(
            &lines(&fx, 3)[1..3],
            [":irc.test 332 carol #chan :T0P1C is here", ":irc.test 333 carol #chan alice 1000000005",]
        );
        let fx = h.send(2, "TOPIC #CHAN");
        assert_eq!(cmds(&fx, 2), ["332", "333"]);
        h.send(1, "MODE #chan -t");
        let fx = h.send(2, "TOPIC #chan :by bob");
        assert_eq!(recipients(&fx), [1, 2, 3]);
        // Clearing.
        let fx = h.send(2, "TOPIC #chan :");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 TOPIC #chan :"]);
        let fx = h.send(2, "TOPIC #chan");
        assert_eq!(cmds(&fx, 2), ["331"]);
        // Non-member: may read a public channel's topic, not set it.
        h.register(4, "dave");
        let fx = h.send(4, "TOPIC #chan");
        assert_eq!(cmds(&fx, 4), ["331"]);
        let fx = h.send(4, "TOPIC #chan :x");
        assert_eq!(lines(&fx, 4), [":irc.test 442 dave #chan :You're not on that channel"]);
        h.send(1, "MODE #chan +s");
        let fx = h.send(4, "TOPIC #chan");
        assert_eq!(cmds(&fx, 4), ["442"]);
        let fx = h.send(4, "TOPIC #nochan");
        assert_eq!(lines(&fx, 4), [":irc.test 403 dave #nochan :No such channel"]);
        // Long topics are cut at TOPICLEN.
        let fx = h.send(1, &format!("TOPIC #chan :{}", "t".repeat(450)));
        assert!(lines(&fx, 1)[0].ends_with(&format!(":{}", "t".repeat(TOPICLEN))));
    }

    #[test]
    fn names_forms() {
        let mut h = H::new();
        h.register(1, "nick1");
        h.register(2, "nick2");
        h.register(3, "nick3");
        h.send(1, "JOIN #chan1");
        h.send(2, "JOIN #chan2");
        h.send(2, "JOIN #chan1");
        h.send(3, "JOIN #secret");
        h.send(3, "MODE #secret +s");
        let fx = h.send(1, "NAMES #chan1");
        assert_eq!(
            lines(&fx, 1),
            [":irc.test 353 nick1 = #chan1 :@nick1 nick2", ":irc.test 366 nick1 #chan1 :End of NAMES list",]
        );
        let fx = h.send(1, "NAMES #chan1,#chan2");
        assert_eq!(
            lines(&fx, 1),
            [
                ":irc.test 353 nick1 = #chan1 :@nick1 nick2",
                ":irc.test 353 nick1 = #chan2 :@nick2",
                ":irc.test 366 nick1 #chan1,#chan2 :End of NAMES list",
            ]
        );
        let fx = h.send(1, "NAMES");
        assert_eq!(
            lines(&fx, 1),
            [
                ":irc.test 353 nick1 = #chan1 :@nick1 nick2",
                ":irc.test 353 nick1 = #chan2 :@nick2",
                ":irc.test 366 nick1 * :End of NAMES list",
            ]
        );
        let fx = h.send(3, "NAMES");
        assert_eq!(lines(&fx, 3)[2], ":irc.test 353 nick3 @ #secret :@nick3");
        for arg in ["#secret", "#nonexisting", "invalid"] {
            let fx = h.send(1, &format!("NAMES {arg}"));
            assert_eq!(lines(&fx, 1), [format!(":irc.test 366 nick1 {arg} :End of NAMES list")]);
        }
        // Invisible users are hidden from non-members.
        h.send(2, "MODE nick2 +i");
        let fx = h.send(3, "NAMES #chan1");
        assert_eq!(lines(&fx, 3)[0], ":irc.test 353 nick3 = #chan1 :@nick1");
        let fx = h.send(1, "NAMES #chan1");
        assert_eq!(lines(&fx, 1)[0], ":irc.test 353 nick1 = #chan1 :@nick1 nick2");
    }

    #[test]
    fn names_split_over_lines() {
        let mut h = H::new();
        for id in 1..=40 {
            h.register(id, &format!("user{id:02}{}", "x".repeat(20)));
            h.send(id, "JOIN #big");
        }
        let fx = h.send(1, "NAMES #big");
        let got = lines(&fx, 1);
        assert!(got.len() >= 3, "{}", got.len());
        let mut names = Vec::new();
        for l in &got[..got.len() - 1] {
            assert!(l.len() + 2 <= MAX_LINE);
            let list = l.split(" :").nth(1).unwrap();
            names.extend(list.split(' ').map(str::to_owned));
        }
        assert_eq!(names.len(), 40);
        assert_eq!(names[0], format!("@user01{}", "x".repeat(20)));
        assert_eq!(cmds(&fx, 1).last().unwrap(), "366");
    }

    #[test]
    fn list_hides_secret_channels_from_outsiders() {
        let mut h = H::new();
        h.register(1, "first");
        h.register(2, "second");
        let fx = h.send(2, "LIST");
        assert_eq!(lines(&fx, 2), [":irc.test 321 second Channel :Users  Name", ":irc.test 323 second :End of LIST",]);
        h.send(1, "JOIN #gen");
        h.send(1, "JOIN #pub");
        h.send(1, "TOPIC #pub :a topic");
        h.send(1, "MODE #gen +s");
        let fx = h.send(1, "LIST");
        assert_eq!(
            lines(&fx, 1),
            [
                ":irc.test 321 first Channel :Users  Name",
                ":irc.test 322 first #gen 1 :",
                ":irc.test 322 first #pub 1 :a topic",
                ":irc.test 323 first :End of LIST",
            ]
        );
        let fx = h.send(2, "LIST");
        assert_eq!(cmds(&fx, 2), ["321", "322", "323"]);
        assert_eq!(lines(&fx, 2)[1], ":irc.test 322 second #pub 1 :a topic");
        let fx = h.send(2, "LIST #gen,#nonexistent");
        assert_eq!(cmds(&fx, 2), ["321", "323"]);
        h.send(2, "JOIN #gen");
        let fx = h.send(2, "LIST #GEN");
        assert_eq!(lines(&fx, 2)[1], ":irc.test 322 second #gen 2 :");
    }

    // ------------------------------------------------------------------------------------
    // Modes

    #[test]
    fn channel_mode_query_and_changes() {
        let mut h = H::new();
        h.register(1, "chanop");
        h.register(2, "bob");
        h.send(1, "JOIN #chan");
        h.send(2, "JOIN #chan");
        let fx = h.send(1, "MODE #chan");
        assert_eq!(lines(&fx, 1), [":irc.test 324 chanop #chan +nt", ":irc.test 329 chanop #chan 1000000000",]);
        let fx = h.send(1, "MODE #chan +ims-t");
        let want = ":chanop!chanop@10.0.0.1 MODE #chan +ims-t";
        assert_eq!(lines(&fx, 1), [want]);
        assert_eq!(lines(&fx, 2), [want]);
        assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
        // Setting what is already set changes nothing and says nothing.
        assert!(h.send(1, "MODE #chan +i").sends.is_empty());
        let fx = h.send(1, "MODE #chan +kl key 10");
        assert_eq!(lines(&fx, 2), [":chanop!chanop@10.0.0.1 MODE #chan +kl key 10"]);
        let fx = h.send(2, "MODE #chan");
        assert_eq!(lines(&fx, 2)[0], ":irc.test 324 bob #chan +imnskl key 10");
        h.register(3, "out");
        let fx = h.send(3, "MODE #chan");
        assert_eq!(lines(&fx, 3)[0], ":irc.test 324 out #chan +imnskl * 10");
        let fx = h.send(1, "MODE #chan -imnskl *");
        assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan -imnskl *"]);
        let fx = h.send(1, "MODE #chan");
        assert_eq!(lines(&fx, 1)[0], ":irc.test 324 chanop #chan +");
        // o and v.
        let fx = h.send(1, "MODE #chan +ov BOB bob");
        assert_eq!(lines(&fx, 2), [":chanop!chanop@10.0.0.1 MODE #chan +ov bob bob"]);
        let fx = h.send(2, "NAMES #chan");
        assert_eq!(lines(&fx, 2)[0], ":irc.test 353 bob = #chan :@chanop @bob");
        let fx = h.send(2, "MODE #chan -o chanop");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 MODE #chan -o chanop"]);
        let fx = h.send(1, "MODE #chan +t");
        assert_eq!(lines(&fx, 1), [":irc.test 482 chanop #chan :You're not channel operator"]);
        assert!(lines(&fx, 2).is_empty());
        let fx = h.send(2, "MODE #chan -o+o bob nobody");
        assert_eq!(
            lines(&fx, 2),
            [":irc.test 401 bob nobody :No such nick/channel", ":bob!bob@10.0.0.2 MODE #chan -o bob",]
        );
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 MODE #chan -o bob"]);
        let fx = h.send(2, "MODE #chan +o out");
        assert_eq!(cmds(&fx, 2), ["482"]);
    }

    #[test]
    fn channel_mode_errors() {
        let mut h = H::new();
        h.register(1, "op");
        h.register(2, "out");
        h.send(1, "JOIN #chan");
        let fx = h.send(1, "MODE #chan +o out");
        assert_eq!(lines(&fx, 1), [":irc.test 441 op out #chan :They aren't on that channel"]);
        let fx = h.send(1, "MODE #chan +zx");
        assert_eq!(
            lines(&fx, 1),
            [":irc.test 472 op z :is unknown mode char to me", ":irc.test 472 op x :is unknown mode char to me",]
        );
        let fx = h.send(1, "MODE #nochan +t");
        assert_eq!(lines(&fx, 1), [":irc.test 403 op #nochan :No such channel"]);
        let fx = h.send(1, "MODE #chan b");
        assert_eq!(lines(&fx, 1), [":irc.test 368 op #chan :End of channel ban list"]);
        let fx = h.send(1, "MODE #chan +b nick!*@*");
        assert_eq!(cmds(&fx, 1), ["472"]);
        for key in [":passphrase with spaces", &"long".repeat(100), ":", "a,b"] {
            let fx = h.send(1, &format!("MODE #chan +k {key}"));
            assert_eq!(lines(&fx, 1), [":irc.test 696 op #chan k * :Invalid channel key"], "{key}");
        }
        let fx = h.send(1, "MODE #chan +l many");
        assert_eq!(lines(&fx, 1), [":irc.test 696 op #chan l many :Invalid limit"]);
        // Missing parameters are ignored.
        assert!(h.send(1, "MODE #chan +k").sends.is_empty());
        assert!(h.send(1, "MODE #chan +o").sends.is_empty());
        // A non-member is not an operator.
        let fx = h.send(2, "MODE #chan +i");
        assert_eq!(cmds(&fx, 2), ["482"]);
        let fx = h.send(2, "MODE #chan b");
        assert_eq!(cmds(&fx, 2), ["368"]);
    }

    #[test]
    fn user_modes() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        let fx = h.send(1, "MODE alice");
        assert_eq!(lines(&fx, 1), [":irc.test 221 alice +"]);
        let fx = h.send(1, "MODE ALICE +i");
        assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 MODE alice +i"]);
        assert!(h.send(1, "MODE alice +i").sends.is_empty());
        let fx = h.send(1, "MODE alice");
        assert_eq!(lines(&fx, 1), [":irc.test 221 alice +i"]);
        let fx = h.send(1, "MODE alice +o");
        assert!(fx.sends.is_empty(), "+o only comes from OPER");
        let fx = h.send(1, "MODE alice -i+x");
        assert_eq!(lines(&fx, 1), [":irc.test 501 alice :Unknown MODE flag", ":alice!alice@10.0.0.1 MODE alice -i",]);
        let fx = h.send(1, "MODE bob +i");
        assert_eq!(lines(&fx, 1), [":irc.test 502 alice :Cant change mode for other users"]);
        let fx = h.send(1, "MODE bob");
        assert_eq!(cmds(&fx, 1), ["502"]);
        let fx = h.send(1, "MODE nobody");
        assert_eq!(lines(&fx, 1), [":irc.test 401 alice nobody :No such nick/channel"]);
    }

    #[test]
    fn kick() {
        let mut h = H::new();
        h.register(1, "foo");
        h.register(2, "bar");
        h.register(3, "baz");
        h.send(1, "JOIN #chan");
        h.send(2, "JOIN #chan");
        let fx = h.send(3, "KICK #chan bar");
        assert_eq!(lines(&fx, 3), [":irc.test 442 baz #chan :You're not on that channel"]);
        h.send(3, "JOIN #chan");
        let fx = h.send(3, "KICK #chan bar");
        assert_eq!(lines(&fx, 3), [":irc.test 482 baz #chan :You're not channel operator"]);
        let fx = h.send(1, "KICK #chan bar :bye");
        let want = ":foo!foo@10.0.0.1 KICK #chan bar :bye";
        assert_eq!(lines(&fx, 1), [want]);
        assert_eq!(lines(&fx, 2), [want]);
        assert_eq!(lines(&fx, 3), [want]);
        assert!(!h.s.clients[&2].in_channel(b"#chan"));
        let fx = h.send(1, "KICK #chan BAZ");
        assert_eq!(lines(&fx, 3), [":foo!foo@10.0.0.1 KICK #chan baz :foo"]);
        let fx = h.send(1, "KICK #chan bar");
        assert_eq!(lines(&fx, 1), [":irc.test 441 foo bar #chan :They aren't on that channel"]);
        let fx = h.send(1, "KICK #chan nobody");
        assert_eq!(cmds(&fx, 1), ["401"]);
        let fx = h.send(1, "KICK #nochan bar");
        assert_eq!(lines(&fx, 1), [":irc.test 403 foo #nochan :No such channel"]);
        // Several targets.
        h.send(2, "JOIN #chan");
        h.send(3, "JOIN #chan");
        let fx = h.send(1, "KICK #chan bar,baz :both");
        assert_eq!(
            lines(&fx, 1),
            [":foo!foo@10.0.0.1 KICK #chan bar :both", ":foo!foo@10.0.0.1 KICK #chan baz :both",]
        );
        // Kicking oneself empties the channel.
        h.send(1, "KICK #chan foo");
        assert_eq!(h.s.channels(), 0);
    }

    #[test]
    fn invite() {
        let mut h = H::new();
        h.register(1, "foo");
        h.send(1, "JOIN #chan");
        h.send(1, "MODE #chan +i");
        let fx = h.send(1, "INVITE bar #chan");
        assert_eq!(lines(&fx, 1), [":irc.test 401 foo bar :No such nick/channel"]);
        h.register(2, "bar");
        h.register(3, "baz");
        let fx = h.send(2, "JOIN #chan");
        assert_eq!(lines(&fx, 2), [":irc.test 473 bar #chan :Cannot join channel (+i)"]);
        let fx = h.send(1, "INVITE BAR #CHAN");
        assert_eq!(lines(&fx, 1), [":irc.test 341 foo bar #chan"]);
        assert_eq!(lines(&fx, 2), [":foo!foo@10.0.0.1 INVITE bar #chan"]);
        let fx = h.send(2, "JOIN #chan");
        assert_eq!(cmds(&fx, 2), ["JOIN", "353", "366"]);
        let fx = h.send(1, "INVITE bar #chan");
        assert_eq!(lines(&fx, 1), [":irc.test 443 foo bar #chan :is already on channel"]);
        let fx = h.send(2, "INVITE baz #chan");
        assert_eq!(lines(&fx, 2), [":irc.test 482 bar #chan :You're not channel operator"]);
        let fx = h.send(3, "INVITE bar #chan");
        assert_eq!(lines(&fx, 3), [":irc.test 442 baz #chan :You're not on that channel"]);
        let fx = h.send(1, "INVITE baz #nochan");
        assert_eq!(lines(&fx, 1), [":irc.test 403 foo #nochan :No such channel"]);
        // The invitation is used up by the JOIN.
        h.send(2, "PART #chan");
        let fx = h.send(2, "JOIN #chan");
        assert_eq!(cmds(&fx, 2), ["473"]);
        // On a channel without +i anyone in it may invite; away targets are reported.
        h.send(1, "MODE #chan -i");
        h.send(3, "JOIN #chan");
        h.send(2, "AWAY :out");
        let fx = h.send(3, "INVITE bar #chan");
        assert_eq!(lines(&fx, 3), [":irc.test 341 baz bar #chan", ":irc.test 301 baz bar :out",]);
        // A departing invitee leaves no invitation behind.
        let mut fx = Effects::default();
        h.s.disconnect(2, "gone", &mut fx);
        assert!(h.s.channels[&*fold(b"#chan")].invited.is_empty());
    }

    // ------------------------------------------------------------------------------------
    // Queries and user state

    #[test]
    fn away() {
        let mut h = H::new();
        h.register(1, "bar");
        h.register(2, "qux");
        let fx = h.send(1, "AWAY :I'm not here right now");
        assert_eq!(lines(&fx, 1), [":irc.test 306 bar :You have been marked as being away"]);
        let fx = h.send(2, "PRIVMSG bar :what's up");
        assert_eq!(lines(&fx, 2), [":irc.test 301 qux bar :I'm not here right now"]);
        assert_eq!(lines(&fx, 1).len(), 1);
        assert!(lines(&h.send(2, "NOTICE bar :x"), 2).is_empty());
        let fx = h.send(2, "WHOIS bar");
        assert!(lines(&fx, 2).contains(&":irc.test 301 qux bar :I'm not here right now".to_owned()));
        let fx = h.send(2, "USERHOST bar qux nobody");
        assert_eq!(lines(&fx, 2), [":irc.test 302 qux :bar=-bar@10.0.0.1 qux=+qux@10.0.0.2"]);
        let fx = h.send(1, "AWAY");
        assert_eq!(lines(&fx, 1), [":irc.test 305 bar :You are no longer marked as being away"]);
        let fx = h.send(2, "PRIVMSG bar :what's up");
        assert!(lines(&fx, 2).is_empty());
    }

    fn with_oper() -> H {
        H::with(ChatConfig {
            server_name: "irc.test".to_owned(),
            opers: vec![("operuser".to_owned(), "operpassword".to_owned())],
            ..ChatConfig::default()
        })
    }

    #[test]
    fn oper_and_kill() {
        let mut h = with_oper();
        h.register(1, "boss");
        h.register(2, "victim");
        h.register(3, "peer");
        h.send(2, "JOIN #c");
        h.send(3, "JOIN #c");
        let fx = h.send(1, "KILL victim :bye");
        assert_eq!(lines(&fx, 1), [":irc.test 481 boss :Permission Denied- You're not an IRC operator"]);
        let fx = h.send(1, "OPER operuser wrong");
        assert_eq!(lines(&fx, 1), [":irc.test 464 boss :Password incorrect"]);
        let fx = h.send(1, "OPER nobody operpassword");
        assert_eq!(cmds(&fx, 1), ["464"]);
        let fx = h.send(1, "OPER operuser operpassword");
        assert_eq!(
            lines(&fx, 1),
            [":irc.test 381 boss :You are now an IRC operator", ":boss!boss@10.0.0.1 MODE boss +o",]
        );
        assert_eq!(h.s.opers, 1);
        let fx = h.send(1, "MODE boss");
        assert_eq!(lines(&fx, 1), [":irc.test 221 boss +o"]);
        let fx = h.send(1, "LUSERS");
        assert!(lines(&fx, 1).contains(&":irc.test 252 boss 1 :operator(s) online".to_owned()));
        let fx = h.send(2, "WHOIS boss");
        assert!(lines(&fx, 2).contains(&":irc.test 313 victim boss :is an IRC operator".to_owned()));
        let fx = h.send(1, "KILL nobody :x");
        assert_eq!(cmds(&fx, 1), ["401"]);
        let fx = h.send(1, "KILL victim");
        assert_eq!(cmds(&fx, 1), ["461"]);
        let fx = h.send(1, "KILL Victim :spamming");
        assert_eq!(
            lines(&fx, 2),
            [":boss!boss@10.0.0.1 KILL victim :spamming", "ERROR :Closing Link: 10.0.0.2 (Killed (boss (spamming)))",]
        );
        assert_eq!(lines(&fx, 3), [":victim!victim@10.0.0.2 QUIT :Killed (boss (spamming))"]);
        assert_eq!(fx.close, [2]);
        let fx = h.send(1, "MODE boss -o");
        assert_eq!(lines(&fx, 1), [":boss!boss@10.0.0.1 MODE boss -o"]);
        assert_eq!(h.s.opers, 0);
    }

    /// The set-up of irctest's WHO tests.
    fn who_setup() -> H {
        let mut h = with_oper();
        h.connect(1);
        h.send(1, "NICK coolNick");
        h.send(1, "USER myusernam 0 * :My UniqueReal Name");
        h.send(1, "JOIN #chan");
        h.register(2, "otherNick");
        h.send(2, "JOIN #chan");
        h
    }

    #[test]
    fn who_masks_nicks_and_channels() {
        let mut h = who_setup();
        let coolnick = ":irc.test 352 otherNick * myusernam 10.0.0.1 irc.test coolNick";
        for mask in ["coolNick", "coolnick", "coolni*", "COOL?ICK"] {
            let fx = h.send(2, &format!("WHO {mask}"));
            assert_eq!(
                lines(&fx, 2),
                [
                    format!("{coolnick} H :0 My UniqueReal Name"),
                    format!(":irc.test 315 otherNick {mask} :End of WHO list"),
                ]
            );
        }
        let fx = h.send(2, "WHO *");
        assert_eq!(cmds(&fx, 2), ["352", "352", "315"]);
        assert_eq!(
            lines(&fx, 2)[1],
            ":irc.test 352 otherNick * otherNick 10.0.0.2 irc.test otherNick H :0 Real otherNick"
        );
        assert_eq!(lines(&fx, 2)[2], ":irc.test 315 otherNick * :End of WHO list");
        let fx = h.send(2, "WHO");
        assert_eq!(cmds(&fx, 2), ["352", "352", "315"]);
        let fx = h.send(2, "WHO idontexist");
        assert_eq!(lines(&fx, 2), [":irc.test 315 otherNick idontexist :End of WHO list"]);
        h.send(1, "AWAY :be right back");
        h.send(1, "OPER operuser operpassword");
        let fx = h.send(2, "WHO coolNick");
        assert_eq!(lines(&fx, 2)[0], format!("{coolnick} G* :0 My UniqueReal Name"));
        for mask in ["#chan", "#CHAN"] {
            let fx = h.send(2, &format!("WHO {mask}"));
            assert_eq!(
                lines(&fx, 2),
                [
                    ":irc.test 352 otherNick #chan myusernam 10.0.0.1 irc.test coolNick G*@ \
                     :0 My UniqueReal Name"
                        .to_owned(),
                    ":irc.test 352 otherNick #chan otherNick 10.0.0.2 irc.test otherNick H \
                     :0 Real otherNick"
                        .to_owned(),
                    format!(":irc.test 315 otherNick {mask} :End of WHO list"),
                ]
            );
        }
        let fx = h.send(2, "WHO * o");
        assert_eq!(cmds(&fx, 2), ["352", "315"]);
        // Invisible users: hidden from mask queries unless a channel is shared.
        h.register(3, "stranger");
        h.send(1, "MODE coolNick +i");
        let fx = h.send(3, "WHO *");
        assert_eq!(cmds(&fx, 3), ["352", "352", "315"]);
        assert!(!lines(&fx, 3).iter().any(|l| l.contains("coolNick")));
        let fx = h.send(3, "WHO coolNick");
        assert_eq!(cmds(&fx, 3), ["352", "315"], "an exact nick is shown");
        let fx = h.send(3, "WHO #chan");
        assert_eq!(cmds(&fx, 3), ["352", "315"]);
        let fx = h.send(2, "WHO *");
        assert_eq!(cmds(&fx, 2), ["352", "352", "352", "315"]);
        // Secret channels: nothing for outsiders.
        h.send(1, "MODE #chan +s");
        let fx = h.send(3, "WHO #chan");
        assert_eq!(cmds(&fx, 3), ["315"]);
    }

    #[test]
    fn whois() {
        let mut h = who_setup();
        h.now += Duration::from_secs(7);
        h.send(1, "JOIN #secret");
        h.send(1, "MODE #secret +s");
        let fx = h.send(2, "WHOIS coolnick");
        assert_eq!(
            lines(&fx, 2),
            [
                ":irc.test 311 otherNick coolNick myusernam 10.0.0.1 * :My UniqueReal Name",
                ":irc.test 319 otherNick coolNick :@#chan",
                ":irc.test 312 otherNick coolNick irc.test :echoport IRC server",
                ":irc.test 317 otherNick coolNick 7 1000000000 :seconds idle, signon time",
                ":irc.test 318 otherNick coolnick :End of WHOIS list",
            ]
        );
        let fx = h.send(1, "WHOIS irc.test coolNick");
        assert_eq!(lines(&fx, 1)[1], ":irc.test 319 coolNick coolNick :@#chan @#secret");
        let fx = h.send(2, "WHOIS nobody");
        assert_eq!(
            lines(&fx, 2),
            [
                ":irc.test 401 otherNick nobody :No such nick/channel",
                ":irc.test 318 otherNick nobody :End of WHOIS list",
            ]
        );
        let fx = h.send(2, "WHOIS");
        assert_eq!(lines(&fx, 2), [":irc.test 431 otherNick :No nickname given"]);
        let fx = h.send(2, "WHOWAS gone");
        assert_eq!(cmds(&fx, 2), ["406", "369"]);
        let fx = h.send(2, "ISON coolnick nobody :otherNick x");
        assert_eq!(lines(&fx, 2), [":irc.test 303 otherNick :coolNick otherNick"]);
    }

    #[test]
    fn time_and_version() {
        let mut h = H::new();
        h.register(1, "alice");
        let fx = h.send(1, "TIME");
        assert_eq!(lines(&fx, 1), [":irc.test 391 alice irc.test :Sunday September 9 2001 -- 01:46:40 +00:00"]);
        let fx = h.send(1, "TIME irc.test");
        assert_eq!(cmds(&fx, 1), ["391"]);
        let fx = h.send(1, "TIME other.server");
        assert_eq!(lines(&fx, 1), [":irc.test 402 alice other.server :No such server"]);
        let fx = h.send(1, "VERSION");
        assert_eq!(lines(&fx, 1), [format!(":irc.test 351 alice {VERSION} irc.test :")]);
        assert_eq!(format_time(0), "Thursday January 1 1970 -- 00:00:00 +00:00");
        assert_eq!(format_time(951_782_400), "Tuesday February 29 2000 -- 00:00:00 +00:00");
        assert_eq!(format_time(4_107_542_399), "Sunday February 28 2100 -- 23:59:59 +00:00");
        assert_eq!(format_time(1_735_689_600), "Wednesday January 1 2025 -- 00:00:00 +00:00");
    }

    #[test]
    fn lusers_counts() {
        let mut h = H::new();
        h.register(1, "alice");
        h.connect(2);
        h.send(1, "JOIN #a");
        let fx = h.send(1, "LUSERS");
        assert_eq!(
            lines(&fx, 1),
            [
                ":irc.test 251 alice :There are 1 users and 0 services on 1 servers",
                ":irc.test 253 alice 1 :unknown connection(s)",
                ":irc.test 254 alice 1 :channels formed",
                ":irc.test 255 alice :I have 2 clients and 0 servers",
            ]
        );
    }

    // ------------------------------------------------------------------------------------
    // Case mapping

    #[test]
    fn case_insensitive_nicks_and_channels() {
        let mut h = H::new();
        h.register(1, "[Alice]");
        h.register(2, "bob");
        h.connect(3);
        let fx = h.send(3, "NICK {alice}");
        assert_eq!(cmds(&fx, 3), ["433"]);
        let fx = h.send(3, "NICK {ALICE}");
        assert_eq!(cmds(&fx, 3), ["433"]);
        h.send(1, "JOIN #Chan[1]");
        let fx = h.send(2, "JOIN #CHAN{1}");
        assert_eq!(lines(&fx, 2)[0], ":bob!bob@10.0.0.2 JOIN #Chan[1]");
        let fx = h.send(2, "PRIVMSG {alice} :hi");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG [Alice] :hi"]);
        let fx = h.send(2, "PRIVMSG #chan{1} :all");
        assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG #Chan[1] :all"]);
        let fx = h.send(1, "MODE #CHAN[1] +v BOB");
        assert_eq!(recipients(&fx), [1, 2]);
        let fx = h.send(2, "WHOIS {ALICE}");
        assert_eq!(cmds(&fx, 2)[0], "311");
        assert_eq!(h.s.channels(), 1);
    }

    // ------------------------------------------------------------------------------------
    // Timers

    #[test]
    fn ping_timeout() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.send(1, "JOIN #a");
        h.send(2, "JOIN #a");
        assert!(h.tick(59).sends.is_empty());
        let fx = h.tick(1);
        assert_eq!(lines(&fx, 1), ["PING :irc.test"]);
        assert_eq!(lines(&fx, 2), ["PING :irc.test"]);
        assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
        // Pinged once only.
        assert!(h.tick(10).sends.is_empty());
        // bob answers; alice does not.
        h.send(2, "PONG :irc.test");
        let fx = h.tick(20);
        assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Ping timeout)"]);
        assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 QUIT :Ping timeout"]);
        assert_eq!(fx.close, [1]);
        assert_eq!(h.s.clients(), 1);
        // bob's answer reset its clock: pinged again 60 s after the PONG.
        assert!(h.tick(39).sends.is_empty());
        let fx = h.tick(1);
        assert_eq!(lines(&fx, 2), ["PING :irc.test"]);
        // Any line counts as activity.
        h.send(2, "PRIVMSG #a :still here");
        assert!(h.tick(45).sends.is_empty());
        // Zero interval: no pings at all.
        let mut fx = Effects::default();
        h.now += Duration::from_secs(1000);
        h.s.tick(h.now, Duration::ZERO, Duration::from_secs(30), &mut fx);
        assert!(fx.sends.is_empty());
    }

    #[test]
    fn registration_timeout() {
        let mut h = H::new();
        h.connect(1);
        h.send(1, "NICK slow");
        assert!(h.tick(29).sends.is_empty());
        let fx = h.tick(1);
        assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Registration timeout)"]);
        assert_eq!(fx.close, [1]);
        assert_eq!(h.s.clients(), 0);
        assert!(h.s.nicks.is_empty());
    }

    // ------------------------------------------------------------------------------------
    // Hostile input

    #[test]
    fn cr_and_nul_cannot_smuggle_a_second_line() {
        let mut h = H::new();
        h.register(1, "alice");
        h.register(2, "bob");
        h.send(1, "JOIN #a");
        h.send(2, "JOIN #a");
        for line in
            [&b"PRIVMSG #a :hi\rQUIT :pwned"[..], b"PRIVMSG #a :hi\0\r\n:x!y@z PRIVMSG #a :fake", b"PRIVMSG #a :hi\r"]
        {
            let fx = h.sendb(1, line);
            assert_eq!(
                fx.sends.iter().map(|(_, l)| &l[..]).collect::<Vec<_>>(),
                [&b":alice!alice@10.0.0.1 PRIVMSG #a :hi\r\n"[..]]
            );
        }
        // Cut before the text: nothing to send.
        let fx = h.sendb(1, b"PRIVMSG #a :\rtext");
        assert_eq!(cmds(&fx, 1), ["412"]);
        let fx = h.sendb(1, b"NICK bo\0b");
        assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 NICK bo"]);
        assert_eq!(h.s.clients(), 2);
    }

    #[test]
    fn long_lines() {
        let mut h = H::new();
        let long_nick = "n".repeat(NICKLEN);
        h.register(1, &long_nick);
        h.register(2, "bob");
        h.send(1, "JOIN #a");
        h.send(2, "JOIN #a");
        // A maximal line (510 bytes) is relayed, capped at 512 bytes with its new prefix.
        let head = "PRIVMSG #a :";
        let text = "é".repeat((MAX_BODY - head.len()) / 2);
        let line = format!("{head}{text}");
        assert!(line.len() <= MAX_BODY);
        let fx = h.send(1, &line);
        let out = &fx.sends[0].1;
        assert_eq!(fx.sends.len(), 1);
        assert!(out.len() <= MAX_LINE);
        assert!(out.len() >= MAX_LINE - 1);
        std::str::from_utf8(out).expect("cut on a character boundary");
        // A line cut by the engine, or over 510 bytes: 417, not processed.
        let mut fx = Effects::default();
        h.s.handle_line(1, line.as_bytes(), true, h.now, &mut fx);
        assert_eq!(lines(&fx, 1), [format!(":irc.test 417 {long_nick} :Input line was too long")]);
        let fx = h.send(1, &format!("PING {}", "x".repeat(506)));
        assert_eq!(cmds(&fx, 1), ["417"]);
        let fx = h.send(1, &format!("PING {}", "x".repeat(505)));
        assert_eq!(cmds(&fx, 1), ["PONG"]);
        assert!(fx.sends[0].1.len() <= MAX_LINE);
        assert!(lines(&fx, 1)[0].contains(&"x".repeat(450)));
    }

    #[test]
    fn ipv6_host_is_a_valid_middle_parameter() {
        let mut h = H::new();
        h.s.connect(1, IpAddr::V6(Ipv6Addr::LOCALHOST), h.now);
        h.send(1, "NICK six");
        let fx = h.send(1, "USER six 0 * :Six");
        assert_eq!(lines(&fx, 1)[0], ":irc.test 001 six :Welcome to the echoport IRC Network six!six@0::1");
        let fx = h.send(1, "WHOIS six");
        assert_eq!(lines(&fx, 1)[0], ":irc.test 311 six six six 0::1 * :Six");
    }

    #[test]
    fn garbage_never_panics_and_output_stays_well_formed() {
        /// xorshift64*: deterministic and dependency-free.
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }
            fn below(&mut self, n: usize) -> usize {
                (self.next() % n as u64) as usize
            }
        }
        let commands = [
            "NICK", "USER", "PASS", "CAP", "JOIN", "PART", "PRIVMSG", "NOTICE", "MODE", "TOPIC", "KICK", "INVITE",
            "WHO", "WHOIS", "NAMES", "LIST", "AWAY", "OPER", "KILL", "QUIT", "PING", "PONG", "TIME", "LUSERS", "MOTD",
            "ISON", "USERHOST", "WHOWAS", "VERSION",
        ];
        let words = [
            "#a", "#b", "#A", "a", "b", "c", "0", "*", "+o", "-o", "+ntimslk", "-k", "+v", "b", "op", "pw", ":x y",
            ":", "", "#a,#b", "a,b,c", "LS", "END", "REQ", "+i", "1",
        ];
        let mut rng = Rng(7);
        let mut h = with_oper();
        for id in 1..=6 {
            h.connect(id);
        }
        for step in 0..60_000 {
            let id = 1 + rng.below(6);
            if !h.s.clients.contains_key(&id) {
                h.connect(id);
            }
            let mut line: Vec<u8> = Vec::new();
            if rng.below(10) == 0 {
                let n = rng.below(80);
                line.extend((0..n).map(|_| rng.next() as u8));
            } else {
                line.extend_from_slice(commands[rng.below(commands.len())].as_bytes());
                for _ in 0..rng.below(5) {
                    line.push(b' ');
                    if rng.below(8) == 0 {
                        line.push(rng.next() as u8);
                    }
                    line.extend_from_slice(words[rng.below(words.len())].as_bytes());
                }
            }
            let mut fx = Effects::default();
            h.s.handle_line(id, &line, rng.below(50) == 0, h.now, &mut fx);
            check_lines(&fx);
            if step % 1000 == 0 {
                let fx = h.tick(40);
                check_lines(&fx);
            }
            if rng.below(200) == 0 {
                let mut fx = Effects::default();
                h.s.disconnect(id, "gone", &mut fx);
                check_lines(&fx);
            }
            // Invariants: memberships agree on both sides; nick map agrees with clients.
            if step % 97 == 0 {
                for (key, ch) in &h.s.channels {
                    assert!(!ch.members.is_empty());
                    assert_eq!(ch.members.len(), ch.flags.len());
                    for m in &ch.members {
                        assert!(h.s.clients[m].in_channel(key));
                    }
                }
                for (id, c) in &h.s.clients {
                    for key in &c.channels {
                        assert!(h.s.channels[key].has(*id));
                    }
                    if let Some(nick) = &c.nick {
                        assert_eq!(h.s.nicks[&*fold(nick)], *id);
                    }
                }
                assert_eq!(h.s.nicks.len(), h.s.clients.values().filter(|c| c.nick.is_some()).count());
                let registered = h.s.clients.values().filter(|c| c.registered).count();
                assert_eq!(h.s.registered, registered);
                assert_eq!(h.s.opers, h.s.clients.values().filter(|c| c.oper).count());
            }
        }
    }
}
