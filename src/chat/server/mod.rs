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
//! - A line longer than 510 bytes after its IRCv3 tag section, or with a tag section longer than
//!   4096 bytes (or cut by the engine), is refused with 417 ERR_INPUTTOOLONG and not processed: a
//!   cut command could do something its sender did not mean.
//! - A line is cut at its first CR or NUL before parsing (see [`echoport_irc::sanitize`]): what
//!   follows is dropped, so a relayed PRIVMSG can never carry a second line to its recipients.
//! - Nicks and channel names compare under rfc1459 case mapping; they are shown as their owner
//!   (or the channel's creator) spelled them.
//! - New channels get modes `+nt`, and their creator is channel operator.
//! - Bans (+b), exceptions (+e) and invite exceptions (+I) hold `nick!user@host` masks (partial
//!   ones completed: `nick` is `nick!*@*`), at most MAXLIST in all per channel; `m:<mask>` in +b
//!   mutes (may join, may not speak). Bans are checked when speaking too, against the sender's
//!   current prefix. An INVITE lets a client past +i and +l, not past +b or +k.
//! - MONITOR, STATUSMSG (`@#chan`, `+#chan`) and user mode +B (bot) as in IRCv3 / modern docs.
//! - IRCv3 (caps.rs, tags.rs, notify.rs): every capability in CAP LS can be enabled and
//!   disabled at any time. Lines are built plain; one pass after each command adds what each
//!   recipient enabled: `time` on every line (server-time), `msgid` on every line from a user and
//!   the sender's client-only tags on relayed messages (message-tags), `account` (account-tag),
//!   `bot`, and the label (labeled-response: the label on a single reply, a `labeled-response`
//!   batch around several, `ACK` for none; a message to oneself labels only the echo).
//!   A host changes only by an operator's CHGHOST; peers with chghost are told.
//! - `NAMES a,b` answers 353 for each visible channel, then one 366 naming the argument as sent
//!   (as irctest expects for multi-target NAMES); `NAMES` alone lists every visible channel and
//!   ends with `366 * `.
//! - 341 RPL_INVITING is `<client> <nick> <channel>` (the order modern clients and irctest expect,
//!   and what ngIRCd and InspIRCd send) rather than RFC 2812's `<channel> <nick>`.
//! - WHO with a mask (not a channel) shows `*` as the channel; `WHO #chan` shows the channel and
//!   the member's `@`/`+`.
//! - NAMES and `WHO #chan` list members in the channel's fan-out order: joining order until
//!   someone leaves, when the member listed last takes the leaver's place. That keeps leaving
//!   O(1) in a channel of any size; the RFCs set no order, and clients sort the list themselves.
//! - WHOWAS remembers the last 1000 nicks given up (by QUIT, disconnect, KILL or NICK), at most 8
//!   per nick, without wildcards; LUSERS counts only registered clients as users (255 included)
//!   and gives 265/266 with the current and highest counts; WHO takes WHOX fields (354); LIST
//!   takes the ELIST terms C, M, N, T and U.

mod accounts;
mod caps;
mod channels;
mod clock;
mod elist;
mod history;
pub mod idhash;
mod info;
mod lists;
mod markread;
mod membership;
mod messages;
mod modes;
mod monitor;
mod notify;
mod oper;
mod queries;
mod registration;
mod replica;
mod replies;
mod sasl;
mod state;
mod statusmsg;
mod tags;
#[cfg(test)]
mod tests;
mod whowas;

pub use accounts::Verify;
pub use channels::valid_channel;
pub use registration::valid_nick;
pub use replica::homed;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use echoport_irc::tags::split_tags;
use echoport_irc::{LineBuilder, MAX_BODY, MAX_CLIENT_TAGS, Message, sanitize};

use caps::Caps;
use clock::format_time;
use idhash::IdMap;
use lists::MAXLIST;
use monitor::{MONITOR_LIMIT, Monitors};
use state::{Channel, Client, Key};
use tags::Tagger;

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
/// Longest host CHGHOST sets (ISUPPORT HOSTLEN).
pub const HOSTLEN: usize = 63;
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
    /// (name, password) pairs for OPER; a password starting with `$` is an argon2 or bcrypt hash.
    pub opers: Vec<(String, String)>,
    /// (name, argon2 or bcrypt hash) pairs for SASL PLAIN; none = no SASL.
    pub accounts: Vec<(String, String)>,
    /// For 005 NETWORK=. Default `echoport`.
    pub network: String,
    /// The server's description (LINKS, WHOIS 312); None says "`<network>` IRC server".
    pub server_info: Option<String>,
    /// The longest line a client may send without its tags and CR LF; longer ones get 417.
    /// Default (and most) [`MAX_BODY`].
    pub max_body: usize,
    /// Refuse lines that are not UTF-8 with `FAIL <command> INVALID_UTF8`, and advertise
    /// ISUPPORT UTF8ONLY. Off by default: IRC is a byte protocol, and bytes are relayed as sent.
    pub utf8_only: bool,
    /// Messages kept per channel for CHATHISTORY; 0 keeps none and offers no
    /// draft/chathistory.
    pub history: usize,
    /// Bytes of history kept, all channels together.
    pub history_bytes: usize,
    /// IRCv3 STS: the TLS port plain clients are sent to, and the policy's duration in seconds
    /// for clients already on TLS; `None` advertises no policy.
    pub sts: Option<(u16, u64)>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            server_name: "echoport".to_owned(),
            password: None,
            motd: None,
            opers: Vec::new(),
            accounts: Vec::new(),
            network: "echoport".to_owned(),
            server_info: None,
            max_body: MAX_BODY,
            utf8_only: false,
            history: 0,
            history_bytes: 64 << 20,
            sts: None,
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
    /// Passwords to check against hashes with no lock held; each answer goes back through
    /// [`ChatServer::verified`] (see `accounts.rs`).
    pub verify: Vec<Verify>,
    /// Replicated only (see [`ChatServer::replicate`]): local clients whose timers ran out, to
    /// be removed with this reason through the network's log, not here.
    pub depart: Vec<(ClientId, &'static str)>,
    /// A network's instance builds lines only for its own clients: `(mask, value)` keeps the
    /// sends to ids with `id & mask == value` and drops the rest unbuilt. `None` keeps all.
    pub only: Option<(ClientId, ClientId)>,
}

impl Effects {
    /// Effects that keep only the sends to the clients `(mask, value)` picks (see [`Effects::only`]).
    pub fn only(home: Option<(ClientId, ClientId)>) -> Effects {
        Effects { only: home, ..Effects::default() }
    }

    fn send(&mut self, id: ClientId, line: Arc<[u8]>) {
        if self.only.is_none_or(|home| homed(home, id)) {
            self.sends.push((id, line));
        }
    }
}

/// The chat server's whole state.
pub struct ChatServer {
    config: ChatConfig,
    clients: IdMap<ClientId, Client>,
    nicks: HashMap<Key, ClientId>,
    channels: HashMap<Key, Channel>,
    /// The channels holding an invitation for each client that has one (the other side of
    /// `Channel::invited`), so a departing client's invitations go without a scan. Clients never
    /// invited have no entry.
    invites: IdMap<ClientId, HashSet<Key>>,
    /// Who MONITORs which nick, both ways.
    monitors: Monitors,
    next_seq: u64,
    registered: usize,
    opers: usize,
    /// Registered clients with user mode +i (LUSERS 251).
    invisible: usize,
    /// The most clients registered at once since start (LUSERS 265/266).
    max_registered: usize,
    whowas: whowas::WhoWas,
    /// An instant and the Unix time (milliseconds) at that instant: converts `Instant`s to
    /// timestamps.
    clock: (Instant, u64),
    accounts: accounts::Accounts,
    created: String,
    isupport: Vec<Vec<u8>>,
    tagger: Tagger,
    /// Bytes of channel history held (history.rs), at most `config.history_bytes`.
    history_bytes: usize,
    /// The latest `now` passed in, for events that come without one.
    latest: Instant,
    /// A replica of a network's state (replica.rs): `(mask, value)` picks this instance's own
    /// clients (`id & mask == value`), the only ones its timers act on.
    home: Option<(ClientId, ClientId)>,
}

impl ChatServer {
    pub fn new(config: ChatConfig) -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let unix = unix_ms / 1000;
        let isupport = [
            "CASEMAPPING=rfc1459".to_owned(),
            "CHANTYPES=#".to_owned(),
            format!("NICKLEN={NICKLEN}"),
            format!("CHANNELLEN={CHANNELLEN}"),
            format!("TOPICLEN={TOPICLEN}"),
            "PREFIX=(ov)@+".to_owned(),
            "CHANMODES=beI,k,l,Cimnst".to_owned(),
            format!("NETWORK={}", config.network),
            format!("CHANLIMIT=#:{MAX_CHANNELS}"),
            format!("KICKLEN={KICKLEN}"),
            format!("AWAYLEN={AWAYLEN}"),
            format!("USERLEN={USERLEN}"),
            format!("KEYLEN={KEYLEN}"),
            format!("HOSTLEN={HOSTLEN}"),
            "MODES=12".to_owned(),
            format!(
                "TARGMAX=JOIN:,PART:,NAMES:,LIST:,WHOIS:1,KICK:{MAX_KICKS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS}"
            ),
            "EXCEPTS=e".to_owned(),
            "INVEX=I".to_owned(),
            "EXTBAN=,m".to_owned(),
            format!("MAXLIST=beI:{MAXLIST}"),
            format!("MONITOR={MONITOR_LIMIT}"),
            "STATUSMSG=@+".to_owned(),
            "BOT=B".to_owned(),
            "ELIST=CMNTU".to_owned(),
            "WHOX".to_owned(),
        ]
        .into_iter()
        .chain(config.utf8_only.then(|| "UTF8ONLY".to_owned()))
        .chain((config.history > 0).then(|| format!("CHATHISTORY={}", history::MAX_REPLY)))
        .chain((config.history > 0).then(|| "MSGREFTYPES=msgid,timestamp".to_owned()))
        .map(String::into_bytes)
        .collect();
        ChatServer {
            accounts: accounts::Accounts::new(&config.accounts),
            created: format_time(unix),
            config,
            clients: IdMap::default(),
            nicks: HashMap::new(),
            channels: HashMap::new(),
            invites: IdMap::default(),
            monitors: Monitors::default(),
            next_seq: 0,
            registered: 0,
            opers: 0,
            invisible: 0,
            max_registered: 0,
            whowas: whowas::WhoWas::default(),
            clock: (Instant::now(), unix_ms),
            isupport,
            tagger: Tagger::new(unix_ms),
            history_bytes: 0,
            latest: Instant::now(),
            home: None,
        }
    }

    /// A new connection from `ip` (the IP text is the host part of the client's prefix).
    /// Marks a connected client as being on TLS (WHOIS 671, the STS policy it is shown).
    pub fn set_secure(&mut self, id: ClientId) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.secure = true;
        }
    }

    /// Says which server of the network a connected client is on (WHOIS 312).
    pub fn set_home_server(&mut self, id: ClientId, server: &str) {
        let other = server != self.config.server_name;
        if let Some(c) = self.clients.get_mut(&id) {
            c.server = other.then(|| server.as_bytes().into());
        }
    }

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
                nick_ts: 0,
                user: None,
                realname: Vec::new(),
                pass: None,
                cap_negotiating: false,
                caps: Caps::default(),
                cap_302: false,
                account: None,
                registered: false,
                prefix: Vec::new(),
                channels: Vec::new(),
                away: None,
                invisible: false,
                oper: false,
                bot: false,
                secure: false,
                server: None,
                wallops: false,
                connected: now,
                signon: self.unix(now),
                last_active: now,
                last_message: now,
                ping_sent: None,
                auth: accounts::Auth::default(),
                read_markers: Vec::new(),
            },
        );
    }

    /// One line from the client, without its CR/LF terminator; `truncated` if the engine cut it.
    /// Returns true if the line was refused as too long (417), for the engine's counters.
    pub fn handle_line(&mut self, id: ClientId, line: &[u8], truncated: bool, now: Instant, fx: &mut Effects) -> bool {
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        client.last_active = now;
        client.ping_sent = None;
        self.latest = self.latest.max(now);
        if client.auth.checking() {
            self.hold_line(id, line, truncated, fx);
            return false;
        }
        let registered = client.registered;
        // Lengths as sent: a line cut short by a NUL is still a line that was too long.
        let (tags, body) = split_tags(line);
        if truncated || tags.len() > MAX_CLIENT_TAGS || body.len() > self.config.max_body {
            self.reply(fx, id, "417", &[], "Input line was too long");
            return true;
        }
        let Some(msg) = Message::parse(sanitize(line)) else {
            return false;
        };
        let label = self.label_of(id, msg.tags);
        let src = self.source(id);
        let start = fx.sends.len();
        if self.config.utf8_only && std::str::from_utf8(line).is_err() {
            let text = "Message rejected: this network takes UTF-8 only";
            self.fail(fx, id, &msg.command.to_ascii_uppercase(), b"INVALID_UTF8", &[], text);
        } else {
            self.dispatch(id, &msg, registered, now, fx);
        }
        self.tag_event(fx, start, now, &src, label.map(|l| (id, l)));
        false
    }

    fn dispatch(&mut self, id: ClientId, msg: &Message, registered: bool, now: Instant, fx: &mut Effects) {
        let mut buf = [0u8; 16];
        let command = msg.command_upper(&mut buf).unwrap_or(b"");
        match command {
            b"CAP" => self.cmd_cap(id, msg, now, fx),
            b"AUTHENTICATE" => self.cmd_authenticate(id, msg, fx),
            b"PASS" => self.cmd_pass(id, msg, fx),
            b"NICK" => self.cmd_nick(id, msg, now, fx),
            b"USER" => self.cmd_user(id, msg, now, fx),
            b"PING" => self.cmd_ping(id, msg, fx),
            b"PONG" => {}
            b"TAGMSG" if registered => self.cmd_tagmsg(id, msg, now, fx),
            // Only for clients that enabled it: its batch needs batch and server-time too.
            b"REDACT" if registered && self.caps_of(id).has(Caps::MESSAGE_REDACTION) => self.cmd_redact(id, msg, fx),
            b"MARKREAD" if registered && self.caps_of(id).has(Caps::READ_MARKER) => self.cmd_markread(id, msg, fx),
            b"CHATHISTORY" if registered && self.caps_of(id).has(Caps::CHATHISTORY) => {
                self.cmd_chathistory(id, msg, fx)
            }
            b"SETNAME" if registered => self.cmd_setname(id, msg, fx),
            b"QUIT" => self.cmd_quit(id, msg, fx),
            b"NOTICE" if !registered => {}
            _ if !registered => self.reply(fx, id, "451", &[], "You have not registered"),
            b"PRIVMSG" => self.cmd_message(id, msg, false, now, fx),
            b"NOTICE" => self.cmd_message(id, msg, true, now, fx),
            b"JOIN" => self.cmd_join(id, msg, now, fx),
            b"PART" => self.cmd_part(id, msg, fx),
            b"TOPIC" => self.cmd_topic(id, msg, now, fx),
            b"NAMES" => self.cmd_names(id, msg, fx),
            b"LIST" => self.cmd_list(id, msg, now, fx),
            b"MODE" => self.cmd_mode(id, msg, now, fx),
            b"KICK" => self.cmd_kick(id, msg, fx),
            b"INVITE" => self.cmd_invite(id, msg, fx),
            b"WHO" => self.cmd_who(id, msg, now, fx),
            b"WHOIS" => self.cmd_whois(id, msg, now, fx),
            b"WHOWAS" => self.cmd_whowas(id, msg, fx),
            b"AWAY" => self.cmd_away(id, msg, fx),
            b"OPER" => self.cmd_oper(id, msg, fx),
            b"KILL" => self.cmd_kill(id, msg, fx),
            b"CHGHOST" => self.cmd_chghost(id, msg, fx),
            b"TIME" => self.cmd_time(id, msg, now, fx),
            b"MOTD" => self.send_motd(id, fx),
            b"LUSERS" => self.send_lusers(id, fx),
            b"VERSION" => self.cmd_version(id, fx),
            b"ISON" => self.cmd_ison(id, msg, fx),
            b"USERHOST" => self.cmd_userhost(id, msg, fx),
            b"MONITOR" => self.cmd_monitor(id, msg, fx),
            b"INFO" => self.cmd_info(id, msg, fx),
            b"HELP" | b"HELPOP" => self.cmd_help(id, msg, fx),
            b"LINKS" => self.cmd_links(id, msg, fx),
            b"WALLOPS" => self.cmd_wallops(id, msg, fx),
            _ => self.reply(fx, id, "421", &[msg.command], "Unknown command"),
        }
    }

    /// The connection is gone (EOF, error, ping timeout, SendQ exceeded): QUIT with `reason` to
    /// channel peers, free the nick and memberships. Idempotent.
    /// Its QUIT lines carry the time of the latest event the server was given (a tick comes
    /// every second).
    pub fn disconnect(&mut self, id: ClientId, reason: &str, fx: &mut Effects) {
        let (src, start) = (self.source(id), fx.sends.len());
        self.remove_client(id, reason.as_bytes(), fx);
        self.tag_event(fx, start, self.latest, &src, None);
    }

    /// Called about once a second: PING clients idle longer than `ping_interval` (once); drop
    /// those that did not answer within `ping_timeout` after that ("Ping timeout") and those
    /// that did not register within `ping_timeout` of connecting ("Registration timeout").
    /// A zero `ping_interval` turns pinging off; a zero `ping_timeout` turns both drops off.
    /// Returns how many clients it dropped, by reason.
    pub fn tick(&mut self, now: Instant, ping_interval: Duration, ping_timeout: Duration, fx: &mut Effects) -> Expired {
        self.latest = self.latest.max(now);
        let mut to_ping = Vec::new();
        let mut expired = Vec::new();
        for (&id, c) in &self.clients {
            if !self.is_home(id) {
                continue;
            }
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
            let (src, start) = (self.source(id), fx.sends.len());
            self.send_error(fx, id, reason.as_bytes());
            if self.home.is_some() {
                fx.depart.push((id, reason));
            } else {
                self.remove_client(id, reason.as_bytes(), fx);
            }
            self.tag_event(fx, start, now, &src, None);
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
}
