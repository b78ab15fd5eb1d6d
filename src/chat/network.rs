//! Chat as one network of instances (`--cluster`, see src/cluster/ and docs/cluster.md): what
//! each event means, and this instance's membership.
//!
//! Joined, an instance applies nothing of its own clients directly: each connect, line and
//! departure is published and applied when Redis hands it back, in the order Redis saw it,
//! with everyone else's. So every replica goes through the same states, the nick race has one
//! winner, and a channel's messages have one order. Events not yet back are kept: if the
//! instance splits from the network before they return, it applies them itself.
//!
//! Membership, all decided by what is in Redis's order:
//! - Alone: split, or not connected yet. Serves its own clients by itself.
//! - Joining: connected, sent a hello; buffers what follows it until the member with the lowest
//!   tag sends the state as of that hello. No member heard from within [`SEED_AFTER`]: it
//!   proposes to found the network; the first proposal in Redis's order founds it, and the other
//!   proposers (instances started, or back from an outage, at the same moment) say hello again.
//! - Joined: loads the snapshot, applies what it buffered, and publishes a burst of the clients
//!   it kept while alone; everyone (itself too) merges that burst where it falls in the order.
//!
//! Heartbeats every second; a member unheard for [`GONE_AFTER`] is declared gone by whoever
//! notices (the first declaration in the order counts). An instance that does not hear its
//! own heartbeat back for that long, or finds itself declared gone, splits and starts again.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::homed;
use super::{Chat, Effects, Port, State};
use crate::cluster::bridge::{Bridge, Inbound};
use crate::cluster::{Envelope, Event, Network, TAG_SHIFT, channel_of, presence_key};
use crate::limits::Limit;

/// The user completion that says the bridge's inbox has deliveries.
pub(super) const RING: u64 = 1;
/// A member not heard from this long is gone; so is Redis, if our own heartbeat takes this long.
const GONE_AFTER: Duration = Duration::from_secs(3);
/// A hello nobody answers: no network yet, so this instance starts it.
const SEED_AFTER: Duration = Duration::from_secs(3);
/// A hello heard by a network that sends no snapshot (its answering member just died): again.
const RETRY_AFTER: Duration = Duration::from_secs(6);
/// Deliveries handled per lock hold: other work gets the lock between batches.
const BATCH: usize = 256;
/// Messages a joining instance buffers while waiting for its snapshot, at most.
const JOIN_BUFFER: usize = 200_000;
/// Events published and not yet back, at most (the bridge's queue plus what Redis is working on).
const PENDING: usize = 2 * crate::cluster::bridge::QUEUE_EVENTS;
/// What other instances' clients quit with when they split from us.
const SPLIT: &str = "*.net *.split";

pub(super) struct Net {
    tag: u32,
    name: String,
    phase: Phase,
    /// The bridge's epoch this membership lives in; deliveries of others are stale.
    epoch: u64,
    network: Network,
    members: BTreeMap<u32, Member>,
    /// Our events sent and not yet back: (seq, encoded envelope).
    pending: VecDeque<(u64, Arc<[u8]>)>,
    next_seq: u64,
    /// When our own last event came back.
    last_echo: Instant,
    /// Ever joined: a later join is a rejoin, and local users are told.
    was_joined: bool,
    splits: u64,
}

struct Member {
    name: String,
    last_seen: Instant,
    /// We published its Gone and wait for it to come round.
    declared: bool,
}

enum Phase {
    Alone,
    /// `hello_ms`: when the hello went (Unix ms), to tell a network started after it (which
    /// never saw it) from one that will answer it.
    Joining {
        nonce: u64,
        since: Instant,
        hello_ms: u64,
        hello_back: bool,
        heard: bool,
        /// We proposed to found the network (no member heard from); the first proposal in
        /// Redis's order founds it.
        seed_sent: bool,
        buffer: Vec<Envelope>,
    },
    Joined,
}

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

impl Net {
    pub(super) fn new(name: String) -> Net {
        // 24 bits, never 0: the high bits of every client id made here.
        let tag = (random() % ((1 << 24) - 1)) as u32 + 1;
        Net {
            tag,
            name,
            phase: Phase::Alone,
            epoch: 0,
            network: Network::default(),
            members: BTreeMap::new(),
            pending: VecDeque::new(),
            next_seq: 0,
            last_echo: Instant::now(),
            was_joined: false,
            splits: 0,
        }
    }

    /// The first client id of this instance.
    pub(super) fn first_id(&self) -> usize {
        (self.tag as usize) << TAG_SHIFT
    }

    fn joined(&self) -> bool {
        matches!(self.phase, Phase::Joined)
    }

    pub(super) fn home(&self) -> (usize, usize) {
        (!((1usize << TAG_SHIFT) - 1), self.first_id())
    }

    fn envelope(&mut self, event: &Event) -> (u64, Arc<[u8]>) {
        self.next_seq += 1;
        (self.next_seq, Envelope::encode(self.tag, self.next_seq, event).into())
    }

    /// Becomes a member of `network`, whose members are `members`.
    fn enter(&mut self, network: Network, members: impl IntoIterator<Item = (u32, String)>) {
        let now = Instant::now();
        self.network = network;
        self.members =
            members.into_iter().map(|(tag, name)| (tag, Member { name, last_seen: now, declared: false })).collect();
        self.phase = Phase::Joined;
        self.last_echo = now;
    }
}

fn tag_of(id: usize) -> u32 {
    (id >> TAG_SHIFT) as u32
}

impl Chat {
    pub(super) fn start_bridge(&self, port: &Port) -> Result<(), String> {
        let Some(url) = &self.settings.cluster else { return Ok(()) };
        let ring = {
            let port = port.clone();
            move || port.post_user(RING)
        };
        let (name, tag) = {
            let st = self.lock();
            let net = st.net.as_ref().ok_or("no cluster membership")?;
            (net.name.clone(), net.tag)
        };
        let presence = (presence_key(url, &name), format!("{tag:06x}"));
        let bridge = Bridge::spawn(url, channel_of(url), presence, ring)?;
        let _ = self.bridge.set(bridge);
        Ok(())
    }

    fn bridge(&self) -> Option<&Bridge> {
        self.bridge.get()
    }

    /// A client event of this instance: published when joined, applied now otherwise.
    pub(super) fn event(&self, st: &mut State, event: Event, fx: &mut Effects) {
        let Some(net) = st.net.as_mut().filter(|n| n.joined()) else {
            self.apply_event(st, &event, fx);
            return;
        };
        let (seq, bytes) = net.envelope(&event);
        let sent = match self.bridge() {
            Some(bridge) if net.pending.len() < PENDING => bridge.send(net.epoch, bytes.clone()).is_ok(),
            _ => false,
        };
        if sent {
            net.pending.push_back((seq, bytes));
        } else {
            self.stats.limits.hit(Limit::ClusterQueueFull, None);
            self.split(st, "the queue to Redis is full (Redis too slow)", fx);
            self.apply_event(st, &event, fx);
        }
    }

    /// `id` left (its connection closed, or its timers ran out) for `reason`.
    pub(super) fn leave_event(&self, st: &mut State, id: usize, reason: &str, now: Instant, fx: &mut Effects) {
        let ms = st.server.unix_ms(now);
        self.event(st, Event::Leave { id: id as u64, ms, reason: reason.to_owned() }, fx);
    }

    /// A membership event of ours; failing to queue it is a split like any other.
    fn publish(&self, st: &mut State, event: &Event, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        let (_, bytes) = net.envelope(event);
        let epoch = net.epoch;
        if self.bridge().is_none_or(|b| b.send(epoch, bytes).is_err()) {
            self.stats.limits.hit(Limit::ClusterQueueFull, None);
            self.split(st, "the queue to Redis is full (Redis too slow)", fx);
        }
    }

    /// The bridge rang: apply what it delivered, a batch per lock hold.
    pub(super) fn on_cluster(&self, port: &Port) {
        let Some(bridge) = self.bridge() else { return };
        loop {
            let mut fx = self.effects();
            let mut pending = super::Pending::default();
            let (checks, more) = {
                let mut st = self.lock();
                let mut n = 0;
                let mut more = false;
                while n < BATCH {
                    let Some(item) = bridge.take() else { break };
                    self.inbound(&mut st, item, &mut fx);
                    n += 1;
                    more = n == BATCH;
                }
                let checks = std::mem::take(&mut fx.verify);
                self.apply(&st, fx, &mut pending);
                (checks, more)
            };
            // Only our own clients' passwords are ours to check.
            let checks = checks.into_iter().filter(|v| self.lock().sockets.contains_key(&v.id)).collect();
            self.verify(port, checks, &mut pending);
            self.settle(port, pending);
            if !more {
                return;
            }
        }
    }

    fn inbound(&self, st: &mut State, item: Inbound, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        match item {
            Inbound::Up(epoch) => {
                net.epoch = epoch;
                if matches!(net.phase, Phase::Alone) {
                    self.hello(st, fx);
                }
            }
            Inbound::Down(epoch, why) if epoch == net.epoch => match net.phase {
                Phase::Joined => self.split(st, &why, fx),
                _ => net.phase = Phase::Alone,
            },
            Inbound::Down(..) => {}
            Inbound::Msg(epoch, bytes) if epoch == net.epoch => {
                let Some(env) = Envelope::decode(&bytes) else {
                    tracing::warn!(
                        bytes = bytes.len(),
                        "cluster: undecodable message on the network's channel; ignored"
                    );
                    return;
                };
                if env.from == net.tag {
                    net.last_echo = Instant::now();
                    while net.pending.front().is_some_and(|(seq, _)| *seq <= env.seq) {
                        net.pending.pop_front();
                    }
                }
                match &mut net.phase {
                    Phase::Alone => {}
                    Phase::Joining { nonce, hello_ms, hello_back, heard, buffer, .. } => {
                        if !*hello_back {
                            *hello_back = env.from == net.tag
                                && matches!(env.event, Event::Hello { nonce: n, .. } if n == *nonce);
                            return;
                        }
                        match env.event {
                            Event::Snapshot { to, nonce: n, network, members, state }
                                if to == net.tag && n == *nonce =>
                            {
                                let buffered = std::mem::take(buffer);
                                self.complete_join(st, network, members, &state, buffered, fx);
                            }
                            Event::Heartbeat { joined: true, network, .. } if network.since_ms > *hello_ms => {
                                // A network started after our hello: it will never answer that one.
                                self.hello(st, fx);
                            }
                            Event::Seed { nonce: n, network } if env.from == net.tag && n == *nonce => {
                                self.found(st, network, fx);
                            }
                            Event::Seed { .. } if env.from != net.tag => {
                                // Another founds the network (its proposal came first; ours, if
                                // any, comes later and is ignored): ask it for the state.
                                self.hello(st, fx);
                            }
                            _ => {
                                *heard |=
                                    env.from != net.tag && matches!(env.event, Event::Heartbeat { joined: true, .. });
                                if buffer.len() < JOIN_BUFFER {
                                    buffer.push(env);
                                } else {
                                    tracing::warn!("cluster: no snapshot in {JOIN_BUFFER} messages; trying again");
                                    net.phase = Phase::Alone;
                                    self.hello(st, fx);
                                }
                            }
                        }
                    }
                    Phase::Joined => self.joined_event(st, env, fx),
                }
            }
            Inbound::Msg(..) => {}
        }
    }

    fn hello(&self, st: &mut State, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        let nonce = random();
        let (since, hello_ms) = (Instant::now(), st.server.unix_ms(Instant::now()));
        net.phase = Phase::Joining {
            nonce,
            since,
            hello_ms,
            hello_back: false,
            heard: false,
            seed_sent: false,
            buffer: Vec::new(),
        };
        let hello = Event::Hello { name: net.name.clone(), nonce };
        self.publish(st, &hello, fx);
    }

    fn complete_join(
        &self,
        st: &mut State,
        network: Network,
        members: Vec<(u32, String)>,
        state: &[u8],
        buffered: Vec<Envelope>,
        fx: &mut Effects,
    ) {
        // What we held alone (only our own clients): merged by all where the burst lands.
        let ours = st.server.snapshot();
        if let Err(e) = st.server.restore(state) {
            tracing::error!(error = %e, "cluster: cannot load the network's state; staying alone");
            // restore reads everything before it changes anything: our own state is intact.
            if let Some(net) = st.net.as_mut() {
                net.phase = Phase::Alone;
            }
            return;
        }
        let Some(net) = st.net.as_mut() else { return };
        net.enter(network, members);
        st.server.replicate(Some(net.home()));
        let burst = Event::Burst { name: net.name.clone(), state: ours };
        self.publish(st, &burst, fx);
        for env in buffered {
            self.joined_event(st, env, fx);
        }
    }

    fn joined_event(&self, st: &mut State, env: Envelope, fx: &mut Effects) {
        st.server.begin_event(Some((env.from, env.seq)));
        self.network_event(st, env, fx);
        st.server.begin_event(None);
    }

    fn network_event(&self, st: &mut State, env: Envelope, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        let from = env.from;
        match env.event {
            Event::Heartbeat { joined, network, .. } => {
                if let Some(m) = net.members.get_mut(&from) {
                    m.last_seen = Instant::now();
                } else if joined && from != net.tag && network < net.network {
                    // Two networks on one Redis (each started while it could not see the other):
                    // the younger one rejoins the older.
                    self.split(st, "found an older network on the same Redis", fx);
                }
            }
            Event::Hello { .. } if from == net.tag => {}
            Event::Hello { nonce, .. } => {
                if net.members.remove(&from).is_some() {
                    // A member saying hello again has lost its state: forget its clients first.
                    st.server.drop_clients(|id| tag_of(id) == from, SPLIT, fx);
                }
                let Some(net) = st.net.as_ref() else { return };
                if net.members.keys().next() == Some(&net.tag) {
                    let members = net.members.iter().map(|(t, m)| (*t, m.name.clone())).collect();
                    let snapshot =
                        Event::Snapshot { to: from, nonce, network: net.network, members, state: st.server.snapshot() };
                    self.publish(st, &snapshot, fx);
                }
            }
            Event::Snapshot { .. } | Event::Seed { .. } => {}
            Event::Burst { name, state } => {
                net.members.insert(from, Member { name: name.clone(), last_seen: Instant::now(), declared: false });
                let (ours, count) = (from == net.tag, net.members.len());
                if let Err(e) = st.server.merge(&state, fx) {
                    tracing::error!(node = %name, error = %e, "cluster: cannot merge an instance's clients");
                }
                if ours {
                    self.joined(st, count, fx);
                } else {
                    tracing::info!(node = %name, nodes = count, "cluster: node joined");
                }
            }
            Event::Gone { node } if node == net.tag => self.split(st, "the network declared this server gone", fx),
            Event::Gone { node } => {
                if let Some(m) = net.members.remove(&node) {
                    tracing::warn!(node = %m.name, "cluster: node gone");
                    st.server.drop_clients(|id| tag_of(id) == node, SPLIT, fx);
                }
            }
            event => {
                // A client event: from a member (or ourselves, between our snapshot and our
                // burst); anything else is from an instance the network has let go.
                if from == net.tag || net.members.contains_key(&from) {
                    self.apply_event(st, &event, fx);
                }
            }
        }
    }

    /// Cut off from the network: its clients quit for ours, ours are told, our own events not
    /// yet back are applied here, and the bridge starts over.
    fn split(&self, st: &mut State, why: &str, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        if !net.joined() {
            return;
        }
        net.phase = Phase::Alone;
        net.members.clear();
        net.splits += 1;
        let (home, tag) = (net.home(), net.tag);
        let pending: Vec<_> = net.pending.drain(..).collect();
        tracing::warn!(why, "cluster: lost the cluster, serving local users only");
        st.server.replicate(None);
        st.server.drop_clients(|id| !homed(home, id), SPLIT, fx);
        // Both sides go on numbering messages: ours from a base of our own.
        let now_ms = st.server.unix_ms(Instant::now());
        st.server.renumber_msgids((now_ms << 20) | (u64::from(tag) & 0xf_ffff));
        let text = format!("*** Network split: {why}; only users on this server are reachable until it rejoins");
        st.server.notice_all(|id| homed(home, id), &text, fx);
        for (_, bytes) in pending {
            if let Some(env) = Envelope::decode(&bytes) {
                self.apply_event(st, &env.event, fx);
            }
        }
        if let Some(bridge) = self.bridge() {
            bridge.reset();
        }
    }

    /// Once a second: heartbeat, declare silent members gone, notice our own silence, and move a
    /// join along.
    pub(super) fn network_tick(&self, st: &mut State, now: Instant, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        match &net.phase {
            Phase::Alone => return,
            Phase::Joined if now.saturating_duration_since(net.last_echo) > GONE_AFTER => {
                self.split(st, "no answer from Redis for 3 s", fx);
                return;
            }
            Phase::Joined => {
                let silent: Vec<u32> = net
                    .members
                    .iter_mut()
                    .filter(|(tag, m)| {
                        **tag != net.tag && !m.declared && now.saturating_duration_since(m.last_seen) > GONE_AFTER
                    })
                    .map(|(tag, m)| {
                        m.declared = true;
                        *tag
                    })
                    .collect();
                for node in silent {
                    self.publish(st, &Event::Gone { node }, fx);
                }
            }
            Phase::Joining { since, hello_back, heard, seed_sent, nonce, .. } => {
                let waited = now.saturating_duration_since(*since);
                if *hello_back && !*heard && !*seed_sent && waited > SEED_AFTER {
                    let seed = Event::Seed {
                        nonce: *nonce,
                        network: Network { since_ms: st.server.unix_ms(now), seed: net.tag },
                    };
                    if let Phase::Joining { seed_sent, .. } = &mut net.phase {
                        *seed_sent = true;
                    }
                    self.publish(st, &seed, fx);
                } else if waited > RETRY_AFTER {
                    self.hello(st, fx);
                    return;
                }
            }
        }
        let Some(net) = st.net.as_ref() else { return };
        let beat = Event::Heartbeat { name: net.name.clone(), joined: net.joined(), network: net.network };
        self.publish(st, &beat, fx);
    }

    /// Our proposal to found the network came first: we are the network.
    fn found(&self, st: &mut State, network: Network, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        net.enter(network, [(net.tag, net.name.clone())]);
        st.server.replicate(Some(net.home()));
        self.joined(st, 1, fx);
    }

    /// We are a member now, of a network of `count`: say so, and tell local users if this is a
    /// rejoin.
    fn joined(&self, st: &mut State, count: usize, fx: &mut Effects) {
        let Some(net) = st.net.as_mut() else { return };
        tracing::info!(nodes = count, "cluster: joined the network");
        if std::mem::replace(&mut net.was_joined, true) {
            let home = net.home();
            let text = format!("*** Network rejoined: {count} servers");
            st.server.notice_all(|id| homed(home, id), &text, fx);
        }
    }

    pub(super) fn cluster_counters(&self, net: &Net) -> Vec<(&'static str, &'static str, u64)> {
        let (depth, stats) = match self.bridge() {
            Some(b) => (b.queue_depth() as u64, Some(b.stats())),
            None => (0, None),
        };
        let load = |f: fn(&crate::cluster::bridge::BridgeStats) -> &std::sync::atomic::AtomicU64| {
            stats.map_or(0, |s| f(s).load(std::sync::atomic::Ordering::Relaxed))
        };
        vec![
            ("echoport_cluster_joined", "1 while this instance is part of the network.", u64::from(net.joined())),
            ("echoport_cluster_nodes", "Instances in the network, as this one sees it.", net.members.len() as u64),
            ("echoport_cluster_queue_depth", "Events waiting to be published to Redis.", depth),
            ("echoport_cluster_published_total", "Events published to Redis.", load(|s| &s.published)),
            ("echoport_cluster_received_total", "Messages received from Redis.", load(|s| &s.received)),
            (
                "echoport_cluster_reconnects_total",
                "Connections to Redis made again after one was lost.",
                load(|s| &s.reconnects),
            ),
            ("echoport_cluster_splits_total", "Times this instance split from the network.", net.splits),
        ]
    }
}

impl Chat {
    /// One client event, applied to the state.
    fn apply_event(&self, st: &mut State, event: &Event, fx: &mut Effects) {
        let server = &mut st.server;
        match event {
            Event::Connect { id, ip, secure, ms, server: name } => {
                let id = *id as usize;
                server.connect(id, *ip, server.instant_of(*ms));
                server.set_home_server(id, name);
                if *secure {
                    server.set_secure(id);
                }
            }
            Event::Line { id, ms, truncated, line } => {
                let id = *id as usize;
                let too_long = server.handle_line(id, line, *truncated, server.instant_of(*ms), fx);
                // Counted where the client is, as without a network.
                if let Some(socket) = st.sockets.get(&id).filter(|_| too_long) {
                    self.hit(Limit::LineTooLong, socket);
                }
            }
            Event::Leave { id, reason, .. } => server.disconnect(*id as usize, reason, fx),
            Event::Verified { id, token, ok, ms } => {
                server.verified(*id as usize, *token, *ok, server.instant_of(*ms), fx)
            }
            _ => {}
        }
    }
}
