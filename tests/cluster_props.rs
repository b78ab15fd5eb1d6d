//! Property test of a network's replicas (no sockets, no Redis; tests/cluster.rs has those): the
//! same events, applied in one order by instances that each build lines only for their own
//! clients, give every client exactly the lines one server holding everyone would send it (msgids
//! and all), and leave every replica answering queries alike.

use echoport::chat::{ChatConfig, ChatServer, ClientId, Effects};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// Client ids below an instance's tag (as src/cluster/ lays them out).
const SHIFT: u32 = 40;
const INSTANCES: usize = 3;
/// Clients per instance; client 0 of instance 0 watches and never leaves.
const PER: usize = 2;
const T0_MS: u64 = 1_800_000_000_000;

fn id(client: usize) -> ClientId {
    ((client / PER + 1) << SHIFT) | (client % PER)
}

fn home(instance: usize) -> (ClientId, ClientId) {
    (!((1 << SHIFT) - 1), (instance + 1) << SHIFT)
}

fn command() -> impl Strategy<Value = String> {
    let nick = prop::sample::select(vec!["c0", "c1", "c2", "c3", "c4", "c5", "x", "y"]);
    let chan = prop::sample::select(vec!["#a", "#b", "#a,#b"]);
    let verb = prop::sample::select(vec![
        "JOIN {c}",
        "PART {c} :bye",
        "TOPIC {c} :topic by {n}",
        "MODE {c} +o {n}",
        "MODE {c} -o {n}",
        "MODE {c} +v {n}",
        "MODE {c} +t",
        "MODE {c} -t",
        "MODE {c} +b {n}!*@*",
        "MODE {c} -b {n}!*@*",
        "MODE {c} +l 3",
        "MODE {c} +i",
        "INVITE {n} {c}",
        "KICK {c} {n} :out",
        "NICK {n}",
        "PRIVMSG {c} :hello",
        "PRIVMSG {n} :psst",
        "NOTICE {c} :note",
        "@+draft/react=x TAGMSG {c}",
        "AWAY :gone",
        "AWAY",
        "LEAVE",
    ]);
    (verb, nick, chan).prop_map(|(v, n, c)| v.replace("{n}", n).replace("{c}", c))
}

/// The lines `to` got, as text, without the server-creation line (each server's own clock).
fn lines_for(fx: &Effects, to: ClientId) -> Vec<String> {
    fx.sends
        .iter()
        .filter(|(t, _)| *t == to)
        .map(|(_, l)| String::from_utf8_lossy(l).into_owned())
        .filter(|l| !l.contains(" 003 "))
        .collect()
}

struct Network {
    /// One server holding everyone and building every line: what each client must get.
    reference: ChatServer,
    replicas: Vec<ChatServer>,
    seq: u64,
}

impl Network {
    fn new() -> Network {
        let config = ChatConfig { server_name: "net.test".to_owned(), history: 4, ..ChatConfig::default() };
        let replicas = (0..INSTANCES).map(|_| ChatServer::new(config.clone())).collect();
        let mut net = Network { reference: ChatServer::new(config), replicas, seq: 0 };
        for (i, r) in net.replicas.iter_mut().enumerate() {
            r.replicate(Some(home(i)));
        }
        net
    }

    /// Applies one event everywhere and checks each client got from its own instance what the
    /// reference sent it.
    fn event(&mut self, client: usize, what: impl Fn(&mut ChatServer, u64, &mut Effects)) {
        self.seq += 1;
        let (origin, ms) = (((client / PER + 1) as u32, self.seq), T0_MS + self.seq * 1000);
        let mut all = Effects::default();
        self.reference.begin_event(Some(origin));
        what(&mut self.reference, ms, &mut all);
        for (i, r) in self.replicas.iter_mut().enumerate() {
            let mut own = Effects::only(Some(home(i)));
            r.begin_event(Some(origin));
            what(r, ms, &mut own);
            let (mask, value) = home(i);
            assert!(
                own.sends.iter().all(|(to, _)| to & mask == value),
                "instance {i} built a line for another's client"
            );
            for c in (0..INSTANCES * PER).filter(|c| c / PER == i) {
                assert_eq!(lines_for(&own, id(c)), lines_for(&all, id(c)), "client {c} on instance {i}");
            }
        }
    }

    fn line(&mut self, client: usize, line: &str) {
        self.event(client, |s, ms, fx| {
            let now = s.instant_of(ms);
            s.handle_line(id(client), line.as_bytes(), false, now, fx);
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replicas_building_only_their_own_lines_agree(cmds in prop::collection::vec((0..INSTANCES * PER, command()), 1..40)) {
        let mut net = Network::new();
        for c in 0..INSTANCES * PER {
            net.event(c, |s, ms, _| s.connect(id(c), IpAddr::V4(Ipv4Addr::new(10, 0, 0, c as u8)), s.instant_of(ms)));
            if c % 2 == 0 {
                net.line(c, "CAP REQ :message-tags server-time echo-message");
            }
            net.line(c, &format!("NICK c{c}"));
            net.line(c, &format!("USER u{c} 0 * :real {c}"));
            if c % 2 == 0 {
                net.line(c, "CAP END");
            }
        }
        for (c, command) in cmds {
            if command == "LEAVE" {
                if c != 0 {
                    net.event(c, |s, _, fx| s.disconnect(id(c), "gone", fx));
                }
            } else {
                net.line(c, &command);
            }
        }
        // Every replica answers the watcher's questions as the reference does.
        for query in ["NAMES #a", "NAMES #b", "TOPIC #a", "MODE #a", "MODE #a +b", "LIST", "LUSERS", "WHOIS c1", "WHOIS x", "WHO #b"] {
            let mut want = Effects::default();
            let now = net.reference.instant_of(T0_MS);
            net.reference.handle_line(id(0), query.as_bytes(), false, now, &mut want);
            let mut want = lines_for(&want, id(0));
            want.sort();
            for r in &mut net.replicas {
                let mut got = Effects::default();
                let now = r.instant_of(T0_MS);
                r.handle_line(id(0), query.as_bytes(), false, now, &mut got);
                // LIST and the like may list in another order; what they list must agree.
                let mut got = lines_for(&got, id(0));
                got.sort();
                prop_assert_eq!(&got, &want, "{}", query);
            }
        }
    }
}
