//! Chat mode: an IRC-compatible server on the completion port.
//!
//! The IRC logic ([`server`]) is a pure function of (state, client, line) -> lines to send and
//! connections to close; this module only moves bytes. The completion-port rule for chat: a
//! connection has at most one receive outstanding, re-armed only after the sends its input caused
//! have been queued (and posted, where no send was in flight). A broadcast shares one `Arc` line
//! among all recipients; each client's queue is bounded by `--sendq-bytes`, so a client that stops
//! reading is dropped ("SendQ exceeded") instead of growing server memory or delaying others.

mod conn;
mod cork;
#[doc(hidden)]
pub mod drive;
mod network;
pub mod passwords;
pub mod server;

pub use server::{ChatConfig, ChatServer, ClientId, Effects, Expired};

use crate::cluster::Event;
use crate::config::ChatSettings;
use crate::limits::Limit;
use crate::port::{Completion, CompletionPort, OpError, Socket};
use crate::stats::{Stats, WorkerStats, bump};
use crate::worker::Handler;
use conn::{Conn, Feed};
use server::idhash::IdMap;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// A chat connection's socket, carrying its [`Conn`], and the port they are associated with.
type ChatSocket = Arc<Socket<Conn>>;
type Port = CompletionPort<Conn>;

/// How long a connection told to go (QUIT, an ERROR line) may take to receive its last lines.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The chat handler: one for all connections.
pub struct Chat {
    state: Mutex<State>,
    settings: ChatSettings,
    /// Where limit hits are counted.
    stats: Arc<Stats>,
    /// The next client id (in a cluster, below the instance's tag).
    next_id: AtomicUsize,
    /// `--cluster`: the link to Redis, started with the port.
    bridge: OnceLock<crate::cluster::bridge::Bridge>,
    /// `--cluster`: which client ids are this instance's own (`id & mask == value`), the only
    /// ones it builds lines for.
    home: Option<(ClientId, ClientId)>,
    /// Connections whose next send waits for the end of the batch.
    cork: cork::Cork,
}

struct State {
    server: ChatServer,
    sockets: IdMap<ClientId, ChatSocket>,
    /// `--cluster`: this instance's membership of the network.
    net: Option<network::Net>,
}

/// What applying effects left to do once the state lock is released.
#[derive(Default)]
struct Pending {
    /// Sockets with lines queued and no send in flight: sent at the end of the batch (cork.rs).
    kick: Vec<ChatSocket>,
    /// Sockets to close now (nothing left to send).
    close: Vec<ChatSocket>,
    /// Clients whose send queue overflowed.
    overflowed: Vec<ChatSocket>,
}

impl Chat {
    pub fn new(settings: ChatSettings, motd: Option<Vec<String>>, stats: Arc<Stats>) -> Self {
        let config = ChatConfig {
            server_name: settings.server_name.clone(),
            password: settings.password.clone(),
            motd,
            opers: settings.oper_list(),
            accounts: settings.account_list(),
            network: "echoport".to_owned(),
            server_info: settings.server_info.clone(),
            max_body: settings.max_line_bytes.saturating_sub(2),
            utf8_only: settings.utf8_only,
            history: settings.history,
            history_bytes: settings.history_bytes,
            sts: settings.sts_port.map(|port| (port, settings.sts_duration.as_secs())),
        };
        let net = settings.cluster.as_ref().map(|_| network::Net::new(settings.node().to_owned()));
        let first_id = net.as_ref().map_or(0, network::Net::first_id);
        let home = net.as_ref().map(network::Net::home);
        let state = Mutex::new(State { server: ChatServer::new(config), sockets: IdMap::default(), net });
        Chat {
            state,
            settings,
            stats,
            next_id: AtomicUsize::new(first_id),
            bridge: OnceLock::new(),
            home,
            cork: cork::Cork::default(),
        }
    }

    /// Effects to fill: in a network, only with lines for this instance's clients.
    fn effects(&self) -> Effects {
        Effects::only(self.home)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the lines of `fx` on their connections. Runs under the state lock, so every
    /// client sees lines in the order the server produced them.
    fn apply(&self, st: &State, fx: Effects, pending: &mut Pending) {
        debug_assert!(fx.verify.is_empty(), "password checks are taken out (to run unlocked) before apply");
        for (id, line) in fx.sends {
            let Some(socket) = st.sockets.get(&id) else { continue };
            let conn = socket.context();
            let mut out = conn.output();
            if out.dead {
                continue;
            }
            out.bytes += line.len();
            // Only what the server still holds counts: not the part of the send in flight that
            // the kernel has already taken (a reading client is not dropped for being mid-send).
            if out.bytes > self.settings.sendq_bytes
                && out.bytes.saturating_sub(socket.posted_send_progress()) > self.settings.sendq_bytes
            {
                out.dead = true;
                out.queue.clear();
                pending.overflowed.push(socket.clone());
                continue;
            }
            out.queue.push_back(line);
            if !out.sending {
                out.sending = true;
                pending.kick.push(socket.clone());
            }
        }
        for id in fx.close {
            let Some(socket) = st.sockets.get(&id) else { continue };
            let conn = socket.context();
            let mut out = conn.output();
            out.closing_since.get_or_insert_with(Instant::now);
            if !out.sending && !out.dead {
                out.dead = true;
                pending.close.push(socket.clone());
            }
        }
    }

    /// Holds queued lines for the batch's end, closes finished connections, and drops overflowing
    /// ones (whose QUIT may queue more lines elsewhere: loop until settled).
    fn settle(&self, port: &Port, mut pending: Pending) {
        loop {
            self.cork.hold(port, pending.kick.drain(..));
            for socket in pending.close.drain(..) {
                self.forget(port, &socket);
            }
            let overflowed = std::mem::take(&mut pending.overflowed);
            if overflowed.is_empty() {
                return;
            }
            for socket in overflowed {
                self.hit(Limit::SendQ, &socket);
                self.disconnect(&socket, "SendQ exceeded", &mut pending);
                port.close(&socket);
            }
        }
    }

    /// Hands everything queued for `socket` to the port as one send, or clears `sending`.
    fn send_queued(&self, port: &Port, socket: &ChatSocket) {
        let conn = socket.context();
        let mut out = conn.output();
        if out.dead || out.queue.is_empty() {
            out.sending = false;
            // Nothing in flight any more: an idle connection keeps no queue space.
            out.queue = VecDeque::new();
            // Everything owed is sent: a closing connection can go now.
            let finished = out.closing() && !std::mem::replace(&mut out.dead, true);
            drop(out);
            if finished {
                self.forget(port, socket);
            }
            return;
        }
        // The next batch is likely about this size: one allocation for it now, instead of a
        // queue regrown from empty (4, 8, 16, ... lines) on every send under a broadcast.
        let next = VecDeque::with_capacity(out.queue.len());
        let lines = std::mem::replace(&mut out.queue, next);
        drop(out);
        port.post_send(socket, lines);
    }

    /// The IRC side of a connection ending: QUIT to its channels, nick freed.
    fn disconnect(&self, socket: &ChatSocket, reason: &str, pending: &mut Pending) {
        let mut fx = self.effects();
        let mut st = self.lock();
        let id = socket.context().id;
        // Gone from here at once; in a network, from the state when its leaving comes round.
        if st.sockets.remove(&id).is_some() {
            self.leave_event(&mut st, id, reason, Instant::now(), &mut fx);
        }
        self.apply(&st, fx, pending);
    }

    /// Closes a connection whose queued lines are all sent.
    fn forget(&self, port: &Port, socket: &ChatSocket) {
        let mut pending = Pending::default();
        self.disconnect(socket, "Connection closed", &mut pending);
        port.close(socket);
        self.settle(port, pending);
    }

    /// A connection failed or its peer left: no more sends to it.
    fn drop_client(&self, port: &Port, socket: &ChatSocket, reason: &str) {
        socket.context().output().dead = true;
        let mut pending = Pending::default();
        self.disconnect(socket, reason, &mut pending);
        port.close(socket);
        self.settle(port, pending);
    }

    fn on_input(&self, port: &Port, socket: &ChatSocket, data: &[u8]) {
        let conn = socket.context();
        let now = Instant::now();
        let mut fx = self.effects();
        let mut pending = Pending::default();
        let mut too_long = 0;
        let (feed, checks) = {
            let mut input = conn.input();
            let mut st = self.lock();
            let st = &mut *st;
            let clustered = st.net.is_some();
            let feed = input.feed(data, now, |line, truncated| {
                if clustered {
                    let ms = st.server.unix_ms(now);
                    let event = Event::Line { id: conn.id as u64, ms, truncated, line: line.to_vec() };
                    self.event(st, event, &mut fx);
                } else {
                    too_long += u64::from(st.server.handle_line(conn.id, line, truncated, now, &mut fx));
                }
            });
            let checks = std::mem::take(&mut fx.verify);
            self.apply(st, fx, &mut pending);
            (feed, checks)
        };
        self.verify(port, checks, &mut pending);
        if too_long > 0 {
            self.stats.limits.hit_n(Limit::LineTooLong, too_long, peer_ip(socket));
        }
        if feed == Feed::Flood && self.error_and_close(socket, "Excess Flood", &mut pending) {
            self.hit(Limit::Flood, socket);
        }
        self.settle(port, pending);
        // Re-armed after the sends this input caused were queued and posted.
        if !conn.output().closing() {
            port.post_recv(socket);
        }
    }

    /// Checks passwords against their hashes (slow on purpose: argon2 takes tens of ms) with no
    /// lock held, then gives the state machine the answers. The connection's next receive is
    /// posted only after this, so a client has one check running at most. An answer can ask for
    /// another check (a line held behind the first one was a second attempt): that runs too,
    /// bounded by the lines one receive held and by the failures allowed.
    fn verify(&self, port: &Port, mut checks: Vec<server::Verify>, pending: &mut Pending) {
        if !checks.is_empty() {
            port.blocking();
        }
        while !checks.is_empty() {
            let answers: Vec<(bool, server::Verify)> = checks.into_iter().map(|v| (v.check(), v)).collect();
            let now = Instant::now();
            let mut fx = self.effects();
            let mut st = self.lock();
            let ms = st.server.unix_ms(now);
            for (ok, v) in answers {
                self.event(&mut st, Event::Verified { id: v.id as u64, token: v.token, ok, ms }, &mut fx);
            }
            checks = std::mem::take(&mut fx.verify);
            self.apply(&st, fx, pending);
        }
    }

    /// Tells the client why it is being dropped, then [`leave`](Self::leave)s.
    fn error_and_close(&self, socket: &ChatSocket, reason: &str, pending: &mut Pending) -> bool {
        let line = closing_link(socket.peer_addr().ok(), reason);
        self.leave(socket, reason, Some(line), pending)
    }

    /// Drops the client from the IRC state (QUIT with `reason` to its channels) and closes its
    /// connection once the lines already owed to it, then `farewell`, are sent. False (and
    /// nothing done) if it is already on its way out.
    fn leave(&self, socket: &ChatSocket, reason: &str, farewell: Option<Vec<u8>>, pending: &mut Pending) -> bool {
        let conn = socket.context();
        let mut fx = self.effects();
        let mut st = self.lock();
        let leaving = {
            let out = conn.output();
            out.closing() || out.dead
        };
        if leaving {
            return false;
        }
        let id = conn.id;
        if let Some(line) = farewell {
            fx.sends.push((id, Arc::from(line)));
        }
        fx.close.push(id);
        self.apply(&st, fx, pending);
        let mut fx = self.effects();
        self.leave_event(&mut st, id, reason, Instant::now(), &mut fx);
        self.apply(&st, fx, pending);
        true
    }

    /// Counts a limit hit by one client (and maybe logs it).
    fn hit(&self, limit: Limit, socket: &Socket<Conn>) {
        self.stats.limits.hit(limit, peer_ip(socket));
    }

    /// Once a second, over every connection: `--line-timeout` drops a client whose current line
    /// has been arriving for too long (a slowloris holds a connection by never finishing one),
    /// and a connection told to go that has not taken its last lines within [`CLOSE_GRACE`] is
    /// closed anyway (a client that stopped reading would otherwise keep it open for ever).
    fn sweep(&self, port: &Port, now: Instant, pending: &mut Pending) {
        // Each connection's locks are taken alone, never under the state lock (on_input takes
        // them the other way round).
        let sockets: Vec<ChatSocket> = self.lock().sockets.values().cloned().collect();
        let mut stuck = Vec::new();
        for socket in sockets {
            let conn = socket.context();
            let closing_since = conn.output().closing_since;
            if let Some(since) = closing_since {
                if now.saturating_duration_since(since) >= CLOSE_GRACE {
                    conn.output().dead = true;
                    stuck.push(socket);
                }
                continue;
            }
            let slow = self.settings.line_timeout.is_some_and(|limit| conn.input().unfinished_for(now) >= limit);
            if slow && self.error_and_close(&socket, "Read timeout", pending) {
                self.hit(Limit::LineTimeout, &socket);
            }
        }
        for socket in stuck {
            tracing::debug!(id = socket.context().id, "closing connection did not take its last lines; closed");
            self.forget(port, &socket);
        }
    }
}

/// The line a client is sent before the server closes its connection.
fn closing_link(peer: Option<SocketAddr>, reason: &str) -> Vec<u8> {
    let host = peer.map_or_else(|| "*".to_owned(), |a| a.ip().to_string());
    format!("ERROR :Closing Link: {host} ({reason})\r\n").into_bytes()
}

fn peer_ip(socket: &Socket<Conn>) -> Option<IpAddr> {
    socket.peer_addr().ok().map(|a| a.ip())
}

impl Handler for Chat {
    type Conn = Conn;

    fn conn(&self, _peer: SocketAddr) -> Conn {
        let s = &self.settings;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Conn::new(id, s.flood_rate, s.flood_burst, s.max_line_bytes, Instant::now())
    }

    fn started(&self, port: &Port) -> Result<(), String> {
        self.start_bridge(port)
    }

    fn on_accept(&self, port: &Port, socket: &ChatSocket) {
        let now = Instant::now();
        let ip = socket.peer_addr().map_or(std::net::Ipv4Addr::LOCALHOST.into(), |a| a.ip());
        let id = socket.context().id;
        let mut fx = self.effects();
        let mut pending = Pending::default();
        {
            let mut st = self.lock();
            st.sockets.insert(id, socket.clone());
            let ms = st.server.unix_ms(now);
            let server = self.settings.server_name.clone();
            self.event(&mut st, Event::Connect { id: id as u64, ip, secure: socket.is_tls(), ms, server }, &mut fx);
            self.apply(&st, fx, &mut pending);
        }
        self.settle(port, pending);
    }

    fn on_completion(&self, port: &Port, completion: Completion<Conn>, stats: &WorkerStats) {
        match completion {
            Completion::Recv { socket, result: Ok(buf) } if buf.is_empty() => {
                // A half-close (`printf 'NICK ...' | nc`) still wants the replies it is owed.
                let mut pending = Pending::default();
                self.leave(&socket, "Remote host closed the connection", None, &mut pending);
                self.settle(port, pending);
            }
            Completion::Recv { socket, result: Ok(buf) } => {
                bump(&stats.bytes_in, buf.len() as u64);
                bump(&stats.messages, 1);
                self.on_input(port, &socket, &buf);
            }
            Completion::Send { socket, result: Ok(sent) } => {
                bump(&stats.bytes_out, sent as u64);
                let mut out = socket.context().output();
                out.bytes = out.bytes.saturating_sub(sent);
                // With no send in flight, `bytes` is what is queued.
                let hold = !out.queue.is_empty() && out.bytes < cork::CORK_BYTES && !out.dead && !out.closing();
                drop(out);
                if hold {
                    self.cork.hold(port, [socket]);
                } else {
                    self.send_queued(port, &socket);
                }
            }
            Completion::Recv { socket, result: Err(OpError::Shutdown) } => {
                let mut pending = Pending::default();
                self.error_and_close(&socket, "Server shutting down", &mut pending);
                self.settle(port, pending);
            }
            Completion::Recv { socket, result: Err(e) } | Completion::Send { socket, result: Err(e) } => {
                let peer_gone =
                    |e: &io::Error| matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe);
                if matches!(&e, OpError::Io(e) if !peer_gone(e)) {
                    bump(&stats.errors, 1);
                }
                tracing::debug!(id = socket.context().id, error = %e, "connection error");
                self.drop_client(port, &socket, &format!("Read error: {e}"));
            }
            Completion::User(network::RING) => self.on_cluster(port),
            Completion::User(cork::FLUSH) => {
                for socket in self.cork.release() {
                    self.send_queued(port, &socket);
                }
            }
            Completion::User(_) => {}
        }
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let st = self.lock();
        let users = st.server.clients() as u64;
        let mut all = vec![("echoport_chat_clients", "Chat clients connected (registered or not).", users)];
        if let Some(net) = &st.net {
            all.extend(self.cluster_counters(net));
        }
        all
    }

    fn refusal(&self, peer: SocketAddr, reason: &str) -> Option<Vec<u8>> {
        Some(closing_link(Some(peer), reason))
    }

    fn tick(&self, port: &Port) {
        let now = Instant::now();
        let mut fx = self.effects();
        let mut pending = Pending::default();
        let expired = {
            let mut st = self.lock();
            let expired = st.server.tick(now, self.settings.ping_interval, self.settings.ping_timeout, &mut fx);
            for (id, reason) in std::mem::take(&mut fx.depart) {
                self.leave_event(&mut st, id, reason, now, &mut fx);
            }
            self.network_tick(&mut st, now, &mut fx);
            self.apply(&st, fx, &mut pending);
            expired
        };
        let limits = &self.stats.limits;
        limits.hit_n(Limit::RegistrationTimeout, expired.registration as u64, None);
        limits.hit_n(Limit::PingTimeout, expired.ping as u64, None);
        self.sweep(port, now, &mut pending);
        self.settle(port, pending);
    }
}

/// Reads the message-of-the-day file into lines.
pub fn read_motd(path: &std::path::Path) -> io::Result<Vec<String>> {
    let text = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&text).lines().map(|l| l.chars().take(400).collect()).collect())
}
