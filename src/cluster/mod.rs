//! Several instances as one chat network over Redis (`--cluster`). The transport lives here:
//! the [`bridge`] threads and the events on the wire; what the events mean to chat is
//! src/chat/network.rs.
//!
//! Design (docs/cluster.md): one Redis pub/sub channel per network carries every instance's
//! events; every instance applies all of them in the order Redis delivered them, its own
//! included, so every instance holds the same network state (state machine replication over
//! Redis's total order). Events are small and self-contained: a client's line, its arrival and
//! departure, a password check's answer, and the membership traffic (heartbeats, a joining
//! instance's hello and the snapshot it is sent, an instance's clients brought back after a
//! split, an instance declared gone).

pub mod bridge;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One message on the network's channel.
#[derive(Serialize, Deserialize, Debug)]
pub struct Envelope {
    /// The sending instance's tag (random per start; the high bits of its clients' ids).
    pub from: u32,
    /// Counts the sender's events, so it can match its own as they come back.
    pub seq: u64,
    pub event: Event,
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Event {
    /// A client connected to the sender, whose server name is `server`.
    Connect { id: u64, ip: IpAddr, secure: bool, ms: u64, server: String },
    /// One line from a client (without CR LF); `truncated` if the framer cut it.
    Line { id: u64, ms: u64, truncated: bool, line: Vec<u8> },
    /// A client is gone.
    Leave { id: u64, ms: u64, reason: String },
    /// The answer to a password check the client's instance ran.
    Verified { id: u64, token: u64, ok: bool, ms: u64 },
    /// Every second from every instance.
    Heartbeat { name: String, joined: bool, network: Network },
    /// An instance wants to join: the member with the lowest tag answers with a snapshot.
    Hello { name: String, nonce: u64 },
    /// The state at the point of `to`'s hello, and the members then.
    Snapshot { to: u32, nonce: u64, network: Network, members: Vec<(u32, String)>, state: Vec<u8> },
    /// No member answered the sender's hello: it proposes to found the network. The first
    /// proposal in the order does; the other proposers say hello again.
    Seed { nonce: u64, network: Network },
    /// The sender's own clients (all it held while split, maybe none), merged by everyone; with
    /// it the sender is a member.
    Burst { name: String, state: Vec<u8> },
    /// `node` stopped heartbeating; its clients are gone.
    Gone { node: u32 },
}

/// A network's identity: when and by whom it was started. Two networks that find each other
/// (both started while Redis was unreachable between them) merge into the older one.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Network {
    pub since_ms: u64,
    pub seed: u32,
}

impl Envelope {
    /// The bytes of `Envelope { from, seq, event }`, from a borrowed event (the sender keeps
    /// it: applied here if it never comes back).
    pub fn encode(from: u32, seq: u64, event: &Event) -> Vec<u8> {
        // A struct is its fields in order in postcard, so the tuple is the envelope. Plain data
        // into a Vec cannot fail.
        postcard::to_allocvec(&(from, seq, event)).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The bits of a client id below an instance's tag.
pub const TAG_SHIFT: u32 = 40;

/// The pub/sub channel of the network at `url`. Pub/sub ignores Redis's database numbers, so
/// the database is part of the channel's name: `redis://h/1` and `redis://h/2` are two networks.
pub fn channel_of(url: &str) -> String {
    let db = url
        .rsplit_once('/')
        .filter(|(head, _)| head.contains("://") && !head.ends_with('/'))
        .and_then(|(_, db)| db.parse::<u32>().ok())
        .unwrap_or(0);
    format!("echoport:{db}:events")
}

/// The key that says an instance is alive (5 s TTL): `echoport:DB:node:NAME`, beside the
/// network's channel.
pub fn presence_key(url: &str, node: &str) -> String {
    let channel = channel_of(url);
    format!("{}node:{node}", channel.strip_suffix("events").unwrap_or(&channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let event = Event::Line { id: 7 << TAG_SHIFT | 1, ms: 5, truncated: false, line: b"PRIVMSG #a :hi".to_vec() };
        let back = Envelope::decode(&Envelope::encode(7, 3, &event)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{:?}", Envelope { from: 7, seq: 3, event }));
        assert!(Envelope::decode(b"\xff\xff\xff").is_none());
    }

    #[test]
    fn the_database_names_the_channel() {
        assert_eq!(channel_of("redis://127.0.0.1:6379/2"), "echoport:2:events");
        assert_eq!(channel_of("redis://127.0.0.1:6379"), "echoport:0:events");
        assert_eq!(channel_of("redis://127.0.0.1:6379/"), "echoport:0:events");
        assert_eq!(presence_key("redis://h:1/3", "chat-a"), "echoport:3:node:chat-a");
    }
}
