//! The limits echoport enforces on clients: how often each was hit (for stats and /metrics), a
//! rate-limited log line when one is (so an attack shows in the log without flooding it), and
//! the per-IP connection table behind `--max-conns-per-ip`.

use crate::port::CompletionPort;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one log line per limit in this window; the next one says how many were held back.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// A limit that can be hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A connection was refused: `--max-conns` were open.
    MaxConns,
    /// A connection was refused: its address already had `--max-conns-per-ip` open.
    MaxConnsPerIp,
    /// Accepting paused: the process ran out of file descriptors.
    OutOfFds,
    /// Echo: a connection was closed after `--idle-timeout` without traffic.
    IdleTimeout,
    /// Chat: a client did not register within `--ping-timeout`.
    RegistrationTimeout,
    /// Chat: a client did not answer a PING within `--ping-timeout`.
    PingTimeout,
    /// Chat: a client left a line unfinished for `--line-timeout` (slowloris).
    LineTimeout,
    /// Chat: a client sent a line longer than `--max-line-bytes` (answered with 417).
    LineTooLong,
    /// Chat: a client sent lines faster than `--flood-rate` / `--flood-burst` allow.
    Flood,
    /// Chat: a client's queued output passed `--sendq-bytes`.
    SendQ,
    /// A TLS connection did not finish its handshake within `--tls-handshake-timeout`.
    TlsHandshakeTimeout,
    /// Chat with `--cluster`: the queue of events to Redis was full (Redis too slow); the
    /// instance split from the network rather than hold more.
    ClusterQueueFull,
}

impl Limit {
    pub const ALL: [Limit; 12] = [
        Limit::MaxConns,
        Limit::MaxConnsPerIp,
        Limit::OutOfFds,
        Limit::IdleTimeout,
        Limit::RegistrationTimeout,
        Limit::PingTimeout,
        Limit::LineTimeout,
        Limit::LineTooLong,
        Limit::Flood,
        Limit::SendQ,
        Limit::TlsHandshakeTimeout,
        Limit::ClusterQueueFull,
    ];

    /// The label in /metrics and the key in stats log lines.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxConns => "max_conns",
            Limit::MaxConnsPerIp => "max_conns_per_ip",
            Limit::OutOfFds => "out_of_fds",
            Limit::IdleTimeout => "idle_timeout",
            Limit::RegistrationTimeout => "registration_timeout",
            Limit::PingTimeout => "ping_timeout",
            Limit::LineTimeout => "line_timeout",
            Limit::LineTooLong => "line_too_long",
            Limit::Flood => "flood",
            Limit::SendQ => "sendq",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
            Limit::ClusterQueueFull => "cluster_queue_full",
        }
    }

    /// What happened, for the log line.
    fn event(self) -> &'static str {
        match self {
            Limit::MaxConns => "connection refused: --max-conns reached",
            Limit::MaxConnsPerIp => "connection refused: --max-conns-per-ip reached for its address",
            Limit::OutOfFds => "accept paused: out of file descriptors; existing clients are still served",
            Limit::IdleTimeout => "connection closed: --idle-timeout",
            Limit::RegistrationTimeout => "client dropped: did not register within --ping-timeout",
            Limit::PingTimeout => "client dropped: no PONG within --ping-timeout",
            Limit::LineTimeout => "client dropped: line left unfinished for --line-timeout",
            Limit::LineTooLong => "line rejected: longer than --max-line-bytes",
            Limit::Flood => "client dropped: Excess Flood (--flood-rate/--flood-burst)",
            Limit::SendQ => "client dropped: SendQ exceeded (--sendq-bytes)",
            Limit::TlsHandshakeTimeout => {
                "connection closed: TLS handshake not finished within --tls-handshake-timeout"
            }
            Limit::ClusterQueueFull => "split from the network: the queue of events to Redis is full",
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|&l| l == self).unwrap_or(0)
    }
}

/// Hit counters and log throttles for every [`Limit`].
#[derive(Debug)]
pub struct Limits {
    hits: [AtomicU64; Limit::ALL.len()],
    /// Per limit: when the last line was logged and how many hits went unlogged since.
    logged: [Mutex<Option<(Instant, u64)>>; Limit::ALL.len()],
}

impl Default for Limits {
    fn default() -> Self {
        Limits { hits: std::array::from_fn(|_| AtomicU64::new(0)), logged: std::array::from_fn(|_| Mutex::new(None)) }
    }
}

impl Limits {
    /// Counts a hit and logs it, unless this limit was logged within the last 10 seconds.
    pub fn hit(&self, limit: Limit, peer: Option<IpAddr>) {
        self.hit_n(limit, 1, peer);
    }

    /// [`hit`](Self::hit) `n` times at once (a sweep that expired `n` connections); 0 does nothing.
    pub fn hit_n(&self, limit: Limit, n: u64, peer: Option<IpAddr>) {
        if n == 0 {
            return;
        }
        self.hits[limit.index()].fetch_add(n, Ordering::Relaxed);
        let Some(suppressed) = self.should_log(limit, Instant::now(), n) else { return };
        let peer = peer.map(|ip| ip.to_string());
        let peer = peer.as_deref().unwrap_or("-");
        let (name, event) = (limit.name(), limit.event());
        // Refusals and descriptor exhaustion concern the whole server; the rest, one client.
        if matches!(limit, Limit::MaxConns | Limit::OutOfFds) {
            tracing::warn!(limit = name, peer, suppressed, "{event}");
        } else {
            tracing::info!(limit = name, peer, suppressed, "{event}");
        }
    }

    /// `Some(hits held back since the last line)` when a line may be logged now for `n` new hits.
    fn should_log(&self, limit: Limit, now: Instant, n: u64) -> Option<u64> {
        let mut logged = self.logged[limit.index()].lock().unwrap_or_else(|e| e.into_inner());
        match &mut *logged {
            Some((at, held)) if now.saturating_duration_since(*at) < LOG_WINDOW => {
                *held += n;
                None
            }
            last => {
                // The line stands for one hit; the rest of a batch counts as held back.
                let held = last.map_or(0, |(_, held)| held) + (n - 1);
                *last = Some((now, 0));
                Some(held)
            }
        }
    }

    pub fn count(&self, limit: Limit) -> u64 {
        self.hits[limit.index()].load(Ordering::Relaxed)
    }

    /// Every limit with its hit count, in [`Limit::ALL`] order.
    pub fn counts(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL.iter().map(|&l| (l, self.count(l)))
    }
}

/// `--max-conns-per-ip`: how many connections each address has open.
///
/// IPv6 addresses count by /64, the block one host or subscriber is usually given, so an attacker
/// cannot walk around the cap by rotating addresses inside it. IPv4-mapped IPv6 counts as IPv4.
/// The table lives beside the port, not in its sockets: with no cap set, connections pay nothing.
#[derive(Debug)]
pub struct PerIpCap {
    max: u32,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Open connections per address group; groups with none are removed.
    open: HashMap<IpAddr, u32>,
    /// The group of each open connection, by its port key.
    groups: HashMap<usize, IpAddr>,
}

/// One admitted connection's place in its address's count. Dropped unused (the connection could
/// not be set up), it is given back at once; see [`keep_until_closed`](Self::keep_until_closed).
#[derive(Debug)]
pub struct PeerSlot {
    cap: Arc<PerIpCap>,
    group: IpAddr,
    kept: bool,
}

impl PerIpCap {
    /// `None` when `max` is 0 (no cap).
    pub fn new(max: u32) -> Option<Arc<Self>> {
        (max > 0).then(|| Arc::new(PerIpCap { max, table: Mutex::new(Table::default()) }))
    }

    /// Gives the slots of connections back as they close. The port must have no close hook yet.
    pub fn watch<C: Send + Sync + 'static>(self: &Arc<Self>, port: &CompletionPort<C>) {
        let cap = self.clone();
        let installed = port.on_close(Box::new(move |key| cap.release(key)));
        // Without the hook no slot would ever be given back: addresses would lock themselves out.
        assert!(installed, "the port already has a close hook");
    }

    /// A slot for one more connection from `ip`, or `None` if it already has the maximum.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let group = group(ip);
        let mut table = self.lock();
        let count = table.open.entry(group).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot { cap: self.clone(), group, kept: false })
    }

    /// The connection with port key `key` closed.
    pub fn release(&self, key: usize) {
        let mut table = self.lock();
        if let Some(group) = table.groups.remove(&key) {
            table.give_back(group);
        }
    }

    /// Connections open from `ip`'s group.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> u32 {
        self.lock().open.get(&group(ip)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Table {
    fn give_back(&mut self, group: IpAddr) {
        if let Some(count) = self.open.get_mut(&group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Forget the address so the table holds only addresses with open connections.
                self.open.remove(&group);
            }
        }
    }
}

impl PeerSlot {
    /// Holds the slot until [`PerIpCap::release`] is called with `key` (the port's close hook,
    /// see [`PerIpCap::watch`]). Call it before anything is posted on the socket, so it cannot
    /// have closed already.
    pub fn keep_until_closed(mut self, key: usize) {
        let previous = self.cap.lock().groups.insert(key, self.group);
        debug_assert!(previous.is_none(), "key {key} is still held by an open connection");
        self.kept = true;
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if !self.kept {
            self.cap.lock().give_back(self.group);
        }
    }
}

/// The address a connection counts against.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_counts_by_address_until_release() {
        let cap = PerIpCap::new(2).unwrap();
        cap.admit(ip("10.0.0.1")).unwrap().keep_until_closed(1);
        cap.admit(ip("10.0.0.1")).unwrap().keep_until_closed(2);
        assert!(cap.admit(ip("10.0.0.1")).is_none(), "third from one address");
        cap.admit(ip("10.0.0.2")).expect("another address has its own count").keep_until_closed(3);
        cap.release(1);
        assert_eq!(cap.open(ip("10.0.0.1")), 1);
        cap.release(1);
        assert_eq!(cap.open(ip("10.0.0.1")), 1, "a key is released once");
        assert!(cap.admit(ip("10.0.0.1")).is_some(), "a freed slot can be reused");
    }

    #[test]
    fn an_unused_slot_is_given_back_when_dropped() {
        let cap = PerIpCap::new(1).unwrap();
        drop(cap.admit(ip("10.0.0.1")).unwrap());
        assert_eq!(cap.open(ip("10.0.0.1")), 0);
    }

    #[test]
    fn table_forgets_addresses_with_nothing_open() {
        let cap = PerIpCap::new(1).unwrap();
        for i in 0..1000u32 {
            cap.admit(IpAddr::from(i.to_be_bytes())).unwrap().keep_until_closed(i as usize);
            cap.release(i as usize);
        }
        let table = cap.lock();
        assert!(table.open.is_empty() && table.groups.is_empty());
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let cap = PerIpCap::new(1).unwrap();
        let _x = cap.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(cap.admit(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        assert!(cap.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = cap.admit(ip("192.0.2.7")).unwrap();
        assert!(cap.admit(ip("::ffff:192.0.2.7")).is_none(), "mapped form of the same address");
    }

    #[test]
    fn zero_means_no_cap() {
        assert!(PerIpCap::new(0).is_none());
    }

    #[test]
    fn hits_are_all_counted_but_logged_once_per_window() {
        let limits = Limits::default();
        let t0 = Instant::now();
        assert_eq!(limits.should_log(Limit::Flood, t0, 1), Some(0));
        assert_eq!(limits.should_log(Limit::Flood, t0 + Duration::from_secs(1), 1), None);
        assert_eq!(limits.should_log(Limit::Flood, t0 + Duration::from_secs(2), 3), None);
        assert_eq!(limits.should_log(Limit::SendQ, t0, 1), Some(0), "each limit has its own window");
        assert_eq!(limits.should_log(Limit::Flood, t0 + LOG_WINDOW, 1), Some(4), "reports what it held back");
        for _ in 0..5 {
            limits.hit(Limit::MaxConns, None);
        }
        assert_eq!(limits.count(Limit::MaxConns), 5);
        assert_eq!(limits.count(Limit::Flood), 0);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
    }
}
