//! The bridge between the completion port and Redis: two threads per instance, so no worker
//! ever waits on Redis. Workers hand encoded events to a bounded queue; the publisher thread
//! pipelines them as PUBLISHes on its own connection. The subscriber thread reads the network's
//! channel and delivers what it reads, in Redis's order, through a bounded inbox, ringing the
//! port (a user completion) so a worker picks it up.
//!
//! A connection's life is an *epoch*: the subscriber counts one each time it (re)subscribes and
//! says so with [`Inbound::Up`]. Whatever belongs to an older epoch (events queued before a
//! split, messages read before a reset) is dropped, so nothing from before a split is published
//! or applied after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Events queued for Redis, at most; a full queue means Redis cannot keep up.
pub const QUEUE_EVENTS: usize = 65_536;
/// Bytes queued for Redis, at most (a line is at most about 8.7 KB).
pub const QUEUE_BYTES: usize = 64 << 20;
/// Messages read from Redis and not yet applied, at most; past it the subscriber stops
/// reading and Redis holds the rest (up to its own output-buffer limit, when it drops us).
const INBOX: usize = 65_536;
/// How long a blocked read waits before the thread looks at its flags.
const POLL: Duration = Duration::from_millis(250);
/// How long a connect or a command may take before Redis is considered gone.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Events per pipelined batch, at most.
const BATCH: usize = 1024;
/// How long the instance's presence key outlives its last refresh (about every second).
const PRESENCE_TTL: Duration = Duration::from_secs(5);

/// What the subscriber delivers, in order.
pub enum Inbound {
    /// Subscribed (again): events published from now on are read. Carries the new epoch.
    Up(u64),
    /// The connection of `epoch` is gone (why, in words).
    Down(u64, String),
    /// A message of `epoch`'s subscription.
    Msg(u64, Vec<u8>),
}

/// Counters for /metrics.
#[derive(Default)]
pub struct BridgeStats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub reconnects: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    /// The subscriber's current epoch (0: never subscribed).
    epoch: AtomicU64,
    /// Asked by the engine or the publisher: drop the connections and start again.
    reset: AtomicBool,
    /// Why the publisher asked, for the engine's log line.
    why: std::sync::Mutex<Option<String>>,
    /// An inbox doorbell is in the port's queue and not yet answered.
    rung: AtomicBool,
    queued_bytes: AtomicUsize,
    stats: BridgeStats,
}

/// Why an event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Events,
    Bytes,
}

pub struct Bridge {
    out: Sender<(u64, Arc<[u8]>)>,
    inbox: Receiver<Inbound>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Starts both threads. `ring` is called (from the subscriber thread) when the inbox goes
    /// from empty to not empty; the handler then calls [`take`](Self::take) until it is empty.
    /// `presence` is a key and value kept in Redis with a short TTL while the instance
    /// publishes (its heartbeats make sure it does every second), so `redis-cli --scan` lists
    /// the live instances.
    pub fn spawn(
        url: &str,
        channel: String,
        presence: (String, String),
        ring: impl Fn() + Send + 'static,
    ) -> Result<Bridge, String> {
        let client = redis::Client::open(url).map_err(|e| format!("bad --cluster URL '{url}': {e}"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            reset: AtomicBool::new(false),
            why: std::sync::Mutex::new(None),
            rung: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            stats: BridgeStats::default(),
        });
        let (out, queue) = crossbeam_channel::bounded(QUEUE_EVENTS);
        let (deliver, inbox) = crossbeam_channel::bounded(INBOX);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.to_owned()).spawn(f).map_err(|e| format!("cannot start {name}: {e}"))
        };
        let (c, s, ch) = (client.clone(), shared.clone(), channel.clone());
        let subscriber = spawn("echoport-redis-sub", Box::new(move || subscribe(&c, &ch, &s, &deliver, &ring)))?;
        let s = shared.clone();
        let publisher =
            spawn("echoport-redis-pub", Box::new(move || publish(&client, &channel, &presence, &s, &queue)))?;
        Ok(Bridge { out, inbox, shared, threads: vec![subscriber, publisher] })
    }

    /// Queues `event` for Redis, tagged with the epoch the engine believes in.
    pub fn send(&self, epoch: u64, event: Arc<[u8]>) -> Result<(), Full> {
        let len = event.len();
        if self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(Full::Bytes);
        }
        match self.out.try_send((epoch, event)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                Err(Full::Events)
            }
        }
    }

    /// The next delivery, if any. Clears the doorbell first, so a delivery arriving after the
    /// inbox was found empty rings again.
    pub fn take(&self) -> Option<Inbound> {
        match self.inbox.try_recv() {
            Ok(item) => Some(item),
            Err(_) => {
                self.shared.rung.store(false, Ordering::SeqCst);
                // One that slipped in between the empty read and the store.
                self.inbox.try_recv().ok()
            }
        }
    }

    /// Drops both connections and starts again (a new epoch): the engine split from the
    /// network and wants a clean start.
    pub fn reset(&self) {
        self.shared.reset.store(true, Ordering::SeqCst);
    }

    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }

    /// Events waiting to be published.
    pub fn queue_depth(&self) -> usize {
        self.out.len()
    }

    pub fn stats(&self) -> &BridgeStats {
        &self.shared.stats
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// The publisher cannot go on: the subscriber ends its epoch with `why`.
    fn fail(&self, why: &str) {
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_owned());
        self.reset.store(true, Ordering::SeqCst);
    }
}

fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(TIMEOUT)?;
    con.set_write_timeout(Some(TIMEOUT))?;
    Ok(con)
}

/// Sleeps up to `d`, in short steps, unless asked to stop.
fn pause(shared: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while !shared.stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
    }
}

fn subscribe(client: &redis::Client, channel: &str, shared: &Shared, deliver: &Sender<Inbound>, ring: &dyn Fn()) {
    let send = |item: Inbound| {
        // Blocks while the inbox is full: the workers are behind, and Redis buffers for us.
        let mut item = item;
        loop {
            match deliver.send_timeout(item, POLL) {
                Ok(()) => break,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if !shared.stop.load(Ordering::SeqCst) => {
                    item = back
                }
                Err(_) => return,
            }
        }
        if !shared.rung.swap(true, Ordering::SeqCst) {
            ring();
        }
    };
    let mut failures = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        shared.reset.store(false, Ordering::SeqCst);
        let epoch = shared.epoch.load(Ordering::SeqCst) + 1;
        let mut con = match connect(client) {
            Ok(con) => con,
            Err(e) => {
                if failures == 0 {
                    tracing::debug!(error = %e, "cluster: cannot reach Redis; retrying every second");
                }
                failures += 1;
                pause(shared, Duration::from_secs(1));
                continue;
            }
        };
        let mut ps = con.as_pubsub();
        let subscribed = ps.set_read_timeout(Some(TIMEOUT)).and_then(|()| ps.subscribe(channel));
        if let Err(e) = subscribed.and_then(|()| ps.set_read_timeout(Some(POLL))) {
            tracing::debug!(error = %e, "cluster: cannot subscribe; retrying every second");
            failures += 1;
            pause(shared, Duration::from_secs(1));
            continue;
        }
        if epoch > 1 {
            shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        failures = 0;
        shared.epoch.store(epoch, Ordering::SeqCst);
        send(Inbound::Up(epoch));
        let why = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            if shared.reset.load(Ordering::SeqCst) {
                let why = shared.why.lock().unwrap_or_else(|e| e.into_inner()).take();
                break why.unwrap_or_else(|| "reconnecting".to_owned());
            }
            match ps.get_message() {
                Ok(msg) => {
                    shared.stats.received.fetch_add(1, Ordering::Relaxed);
                    send(Inbound::Msg(epoch, msg.get_payload_bytes().to_vec()));
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => break format!("Redis connection lost: {e}"),
            }
        };
        // Dropping a PubSub unsubscribes, waiting for an answer a dead Redis never gives.
        std::mem::forget(ps);
        drop(con);
        send(Inbound::Down(epoch, why));
        pause(shared, Duration::from_millis(200));
    }
}

fn publish(
    client: &redis::Client,
    channel: &str,
    (key, value): &(String, String),
    shared: &Shared,
    queue: &Receiver<(u64, Arc<[u8]>)>,
) {
    let mut con: Option<redis::Connection> = None;
    let mut present: Option<Instant> = None;
    let mut batch: Vec<Arc<[u8]>> = Vec::with_capacity(BATCH);
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok(first) = queue.recv_timeout(POLL) else { continue };
        let epoch = shared.epoch.load(Ordering::SeqCst);
        let mut bytes = 0;
        for (e, event) in std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok())).take(BATCH) {
            bytes += event.len();
            // Queued before the current subscription: the engine has split since, and applied it.
            if e == epoch {
                batch.push(event);
            }
        }
        shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if batch.is_empty() {
            continue;
        }
        if con.is_none() {
            con = connect(client).and_then(|c| c.set_read_timeout(Some(TIMEOUT)).map(|()| c)).ok();
        }
        let Some(c) = con.as_mut() else {
            // The subscriber finds out too, and the engine splits; these are applied locally.
            batch.clear();
            shared.fail("cannot connect to Redis to publish");
            continue;
        };
        let mut pipe = redis::pipe();
        for event in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(&event[..]).ignore();
        }
        let refresh = present.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if refresh {
            pipe.cmd("SET").arg(key).arg(value).arg("EX").arg(PRESENCE_TTL.as_secs()).ignore();
        }
        match pipe.exec(c) {
            Ok(()) => {
                shared.stats.published.fetch_add(batch.len() as u64, Ordering::Relaxed);
                if refresh {
                    present = Some(Instant::now());
                }
            }
            Err(e) => {
                con = None;
                shared.fail(&format!("publishing to Redis failed: {e}"));
            }
        }
        batch.clear();
    }
    // Stopping: no longer alive, without waiting for the key to expire.
    if let Some(c) = con.as_mut() {
        let _ = redis::cmd("DEL").arg(key).exec(c);
    }
}
