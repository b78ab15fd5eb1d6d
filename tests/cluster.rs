//! Cluster mode (issue 14): echoport processes sharing one real `redis-server` behave as one IRC
//! network. Each test starts its own Redis (tests/common/redis.rs) and its own instances (the
//! real binary, `--cluster URL --node-name nX --server-name nX.test`), each waited for with its
//! `cluster: joined the network` log line.
//!
//! Synchronisation across instances is the spec's PING/PONG barrier ([`settle`]): every line of
//! a client, PING included, goes through Redis, so a PONG from an instance means it has applied
//! everything that was in Redis before that PING. Failures are timed only where the spec gives a
//! time (a dead instance's users QUIT within seconds) or the test is about time (Redis away for
//! 5 s); every wait is bounded.

// Signals (SIGKILL of an instance, SIGSTOP of Redis) and /proc (RSS).
#![cfg(target_os = "linux")]

mod common;
#[path = "common/irc.rs"]
mod irc;
#[path = "common/redis.rs"]
mod redis;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::embedded::chat_args;
use common::{Rng, Server};
use irc::{Client, Message, WAIT, show};
use nix::sys::signal::Signal;
use redis::Redis;

/// The readiness line of an instance (logged again after each rejoin).
const JOINED: &str = "cluster: joined the network";
/// Logged when an instance splits off (Redis gone or too slow).
const LOST: &str = "cluster: lost the cluster";
/// The QUIT reason of users lost in a split or with a dead instance.
const SPLIT: &str = "*.net *.split";
/// Bound for an instance to join (or rejoin) the network: CI boxes are slow.
const JOIN_BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One echoport instance of the network at `url` (with metrics), waited for until it has joined.
fn node(url: &str, name: &str) -> Server {
    let server_name = format!("{name}.test");
    let args =
        ["--cluster", url, "--node-name", name, "--server-name", &server_name, "--metrics-listen", "127.0.0.1:0"];
    let mut s = Server::builder().args(chat_args(&args)).spawn();
    let listening = s.expect_line("listening on ", JOIN_BOUND);
    assert!(listening.contains(&format!(" cluster={url} node={name}")), "the start-up line names both: {listening}");
    wait_logged(&mut s, JOINED, 1, JOIN_BOUND);
    s
}

/// The value of the instance's metric `name` (panics if it has no such series).
#[track_caller]
fn metric(s: &mut Server, name: &str) -> u64 {
    let addr = common::metrics_addr(s);
    common::scrape(addr, name).unwrap_or_else(|| panic!("no {name} in the metrics of the instance at {}", s.addr()))
}

/// Waits until the instance's metric `name` is `want`: gauges fed by heartbeats (once a second)
/// have no other signal.
#[track_caller]
fn wait_metric(s: &mut Server, name: &str, want: u64) {
    let addr = common::metrics_addr(s);
    let mut last = None;
    if !common::poll_until(JOIN_BOUND, || {
        last = common::scrape(addr, name);
        last == Some(want)
    }) {
        panic!("{name} of the instance at {} stayed {last:?}, not {want}, for {JOIN_BOUND:?}", s.addr());
    }
}

/// Instances named `names`, each started once the one before has joined: instances started at
/// the same moment may each found a network and merge a moment later (the younger network
/// rejoins the older), which has a test of its own
/// ([`instances_started_at_the_same_moment_end_up_with_one_state`]).
fn nodes(redis: &Redis, names: &[&str]) -> Vec<Server> {
    let url = redis.url();
    names.iter().map(|n| node(&url, n)).collect()
}

/// Instances named `names`, all started at the same moment (each waited for until it has joined).
fn nodes_at_once(redis: &Redis, names: &[&str]) -> Vec<Server> {
    let url = redis.url();
    thread::scope(|s| {
        let started: Vec<_> = names.iter().map(|n| s.spawn(|| node(&url, n))).collect();
        started.into_iter().map(|h| h.join().expect("an instance failed to start")).collect()
    })
}

/// The metrics addresses of `ns`, for scraping inside loops that hold no `&mut Server`.
fn metrics_addrs(ns: &mut [Server]) -> Vec<SocketAddr> {
    ns.iter_mut().map(common::metrics_addr).collect()
}

/// True once every instance counts `n` instances in its network (heartbeats feed the gauge).
fn all_count(metrics: &[SocketAddr], n: u64) -> bool {
    metrics.iter().all(|&m| common::scrape(m, "echoport_cluster_nodes") == Some(n))
}

/// Panics unless every instance stayed in the network after logging its `n`th `joined the
/// network`: the spec makes that line the signal that an instance is part of the network, so it
/// must not be one of a network of its own that splits a moment later to merge with the others.
#[track_caller]
fn assert_joined_for_good(ns: &[Server], n: usize, what: &str) {
    let bad: Vec<String> = ns
        .iter()
        .filter_map(|s| {
            let lines = s.lines();
            let at = lines.iter().enumerate().filter(|(_, l)| l.contains(JOINED)).nth(n - 1)?.0;
            let after = lines[at..].iter().filter(|l| l.contains(JOINED) || l.contains(LOST));
            let after: Vec<&String> = after.collect();
            (after.iter().any(|l| l.contains(LOST))).then(|| after.iter().map(|l| format!("    {l}\n")).collect())
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: instances split again after logging {JOINED:?} (join {n}):\n{}",
        bad.join("  --\n")
    );
}

/// How many of the instance's log lines so far contain `what`.
fn logged(s: &Server, what: &str) -> usize {
    s.lines().iter().filter(|l| l.contains(what)).count()
}

/// Waits until the instance has logged `what` at least `n` times in all.
#[track_caller]
fn wait_logged(s: &mut Server, what: &str, n: usize, bound: Duration) {
    let mut seen = 0;
    let found = s.wait_for_line(
        |l| {
            seen += usize::from(l.contains(what));
            seen >= n
        },
        bound,
    );
    if found.is_none() {
        panic!("the instance did not log {what:?} {n} time(s) within {bound:?}\nstderr:\n{}", s.log());
    }
}

/// The barrier: every client of `clients` (closed ones skipped) syncs twice, in turn; returns what
/// each received meanwhile. After the first round every command sent before has reached Redis
/// (a client's PONG follows its earlier lines there); every PING of the second round is in Redis
/// after all of them, so its PONG comes once its instance has applied them all and queued what
/// they caused for that client.
fn settle(clients: &mut [Client]) -> Vec<Vec<Message>> {
    let mut got: Vec<Vec<Message>> = clients.iter().map(|_| Vec::new()).collect();
    for _ in 0..2 {
        for (c, g) in clients.iter_mut().zip(&mut got) {
            if !c.is_closed() {
                g.extend(c.sync());
            }
        }
    }
    got
}

/// A line as `nick COMMAND param param...` (the nick of its prefix, "" without one), the form
/// the expectations below are written in.
fn norm(m: &Message) -> String {
    let mut s = format!("{} {}", m.nick(), m.command);
    for p in &m.params {
        s.push(' ');
        s.push_str(p);
    }
    s
}

/// Asserts that `got` (what `c` received) is exactly `want`, in order.
#[track_caller]
fn assert_lines(c: &Client, got: &[Message], want: &[&str], what: &str) {
    let have: Vec<String> = got.iter().map(norm).collect();
    if have != want {
        c.fail(&format!("{what}: expected exactly {want:?}, got:\n{}", show(got)));
    }
}

/// Runs [`settle`], then asserts that client `i` got exactly `want[i]`, in order.
#[track_caller]
fn settle_expect(clients: &mut [Client], want: &[&[&str]], what: &str) {
    assert_eq!(clients.len(), want.len(), "{what}: one expectation per client");
    let got = settle(clients);
    for ((c, g), w) in clients.iter().zip(&got).zip(want) {
        assert_lines(c, g, w, what);
    }
}

/// A registered client that asked for `caps` (CAP REQ before registration).
fn with_caps(s: &Server, nick: &str, caps: &str) -> Client {
    Client::with_caps(s.addr(), nick, caps)
}

/// The nicks (with their prefixes) of a NAMES reply, sorted.
fn names(c: &mut Client, channel: &str) -> Vec<String> {
    c.send(&format!("NAMES {channel}"));
    let burst = c.collect_until(|m| m.is("366") || m.is_error_numeric(), WAIT);
    if !burst.last().unwrap().is("366") {
        c.fail(&format!("NAMES {channel} failed"));
    }
    let mut out: Vec<String> = burst
        .iter()
        .filter(|m| m.is("353"))
        .flat_map(|m| m.last().split(' ').filter(|n| !n.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    out.sort();
    out
}

/// Sends `tick` lines from every client in turn, draining them all, until `done` says so (checked
/// once per round) or `bound` passes (then panics with `what`). What else each client received is
/// appended to its entry of `seen`. Returns the rounds sent.
fn traffic(
    clients: &mut [Client],
    seen: &mut [Vec<Message>],
    channel: &str,
    bound: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> u64 {
    let deadline = Instant::now() + bound;
    let mut round = 0;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?} (after {round} rounds of traffic)");
        for c in clients.iter_mut() {
            let nick = c.name().to_owned();
            c.send(&format!("PRIVMSG {channel} :tick {nick} {round}"));
        }
        // Reading what came back paces the loop (and keeps every client's queue empty).
        for (c, seen) in clients.iter_mut().zip(seen.iter_mut()) {
            seen.extend(c.read_for(Duration::from_millis(5)).into_iter().filter(|m| !is_tick(m)));
        }
        round += 1;
    }
    round
}

/// A line of [`traffic`].
fn is_tick(m: &Message) -> bool {
    m.is("PRIVMSG") && m.last().starts_with("tick ")
}

// ---------------------------------------------------------------------------
// The Redis guard itself
// ---------------------------------------------------------------------------

/// What the outage tests rely on: stop really stops, start_again comes back on the same port,
/// pause leaves connections unanswered until resume.
#[test]
fn the_redis_guard_stops_restarts_and_pauses_its_server() {
    let mut redis = Redis::start();
    let (port, url) = (redis.port(), redis.url());
    assert_eq!(url, format!("redis://127.0.0.1:{port}/0"));
    assert!(redis.answers_ping());
    redis.stop();
    assert!(!redis.answers_ping(), "stopped, yet something answers on port {port}");
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert!(redis.answers_ping(), "started again on port {port}");
    redis.pause();
    assert!(!redis.answers_ping(), "SIGSTOPped, yet it answered");
    redis.resume();
    assert!(redis.answers_ping(), "SIGCONTed");
}

// ---------------------------------------------------------------------------
// A conversation across three instances
// ---------------------------------------------------------------------------

#[test]
fn a_conversation_across_three_instances() {
    let redis = Redis::start();
    let mut ns = nodes(&redis, &["n1", "n2", "n3"]);
    // alice on n1, bob on n2, carol on n3.
    let mut cs: Vec<Client> =
        ["alice", "bob", "carol"].iter().zip(&ns).map(|(nick, s)| Client::registered(s.addr(), nick)).collect();
    settle_expect(&mut cs, &[&[], &[], &[]], "registration shows nothing to the others");

    cs[0].join("#c");
    settle_expect(&mut cs, &[&[], &[], &[]], "alice creates #c");
    let burst = cs[1].join("#c");
    let n = burst.iter().find(|m| m.is("353")).expect("353 in bob's JOIN burst");
    assert_eq!(n.last().split(' ').collect::<BTreeSet<_>>(), BTreeSet::from(["@alice", "bob"]), "bob's NAMES: {n}");
    settle_expect(&mut cs, &[&["bob JOIN #c"], &[], &[]], "bob joins from n2");
    cs[2].join("#c");
    settle_expect(&mut cs, &[&["carol JOIN #c"], &["carol JOIN #c"], &[]], "carol joins from n3");

    cs[0].send("PRIVMSG #c :hello all");
    let want = ["alice PRIVMSG #c hello all"];
    settle_expect(&mut cs, &[&[], &want, &want], "PRIVMSG to the channel");
    cs[1].send("PRIVMSG carol :psst");
    settle_expect(&mut cs, &[&[], &[], &["bob PRIVMSG carol psst"]], "PRIVMSG to a remote nick");
    cs[2].send("NOTICE #c :heads up");
    let want = ["carol NOTICE #c heads up"];
    settle_expect(&mut cs, &[&want, &want, &[]], "NOTICE to the channel");
    cs[0].send("TOPIC #c :the topic");
    let want = ["alice TOPIC #c the topic"];
    settle_expect(&mut cs, &[&want, &want, &want], "TOPIC");
    cs[0].send("MODE #c +o bob");
    let want = ["alice MODE #c +o bob"];
    settle_expect(&mut cs, &[&want, &want, &want], "MODE +o for a remote member");
    // bob's op status came from n1: his MODE on n2 is accepted.
    cs[1].send("MODE #c +b dave!*@*");
    let want = ["bob MODE #c +b dave!*@*"];
    settle_expect(&mut cs, &[&want, &want, &want], "MODE +b by the remote op");
    cs[1].send("NICK robert");
    let want = ["bob NICK robert"];
    settle_expect(&mut cs, &[&want, &want, &want], "NICK");
    cs[1].send("KICK #c carol :out");
    let want = ["robert KICK #c carol out"];
    settle_expect(&mut cs, &[&want, &want, &want], "KICK of a member on another instance");
    let burst = cs[2].join("#c");
    let topic = burst.iter().find(|m| m.is("332")).unwrap_or_else(|| cs[2].fail("no 332 in the JOIN burst"));
    assert_eq!(topic.last(), "the topic", "the topic as n3 has it");
    settle_expect(&mut cs, &[&["carol JOIN #c"], &["carol JOIN #c"], &[]], "carol rejoins");
    cs[2].send("PART #c :later");
    let want = ["carol PART #c later"];
    settle_expect(&mut cs, &[&want, &want, &want], "PART");
    cs[2].join("#c");
    settle_expect(&mut cs, &[&["carol JOIN #c"], &["carol JOIN #c"], &[]], "carol joins again");
    cs[1].send("QUIT :gone");
    cs[1].expect_closed(WAIT);
    let want = ["robert QUIT Quit: gone"];
    settle_expect(&mut cs, &[&want, &[], &want], "QUIT");

    // IRCv3: client tags and the msgid survive the hop. dave and erin on n1, frank on n2.
    let mut ts = vec![
        with_caps(&ns[0], "dave", "message-tags server-time"),
        with_caps(&ns[0], "erin", "message-tags"),
        with_caps(&ns[1], "frank", "message-tags"),
    ];
    for c in &mut ts {
        c.join("#t");
    }
    settle(&mut ts);
    ts[0].send("@+draft/react=x TAGMSG #t");
    let got = settle(&mut ts);
    assert_lines(&ts[0], &got[0], &[], "no echo-message: dave gets nothing back");
    assert_lines(&ts[1], &got[1], &["dave TAGMSG #t"], "TAGMSG to the local member");
    assert_lines(&ts[2], &got[2], &["dave TAGMSG #t"], "TAGMSG to the remote member");
    let (local, remote) = (&got[1][0], &got[2][0]);
    assert_eq!((local.tag("+draft/react"), remote.tag("+draft/react")), (Some("x"), Some("x")), "{local} / {remote}");
    assert!(local.tag("msgid").is_some_and(|id| !id.is_empty()), "no msgid: {local}");
    assert_eq!(local.tag("msgid"), remote.tag("msgid"), "one message, one msgid: {local} / {remote}");
    ts[0].send("@+draft/reply=abc PRIVMSG #t :tagged");
    let got = settle(&mut ts);
    assert_lines(&ts[1], &got[1], &["dave PRIVMSG #t tagged"], "tagged PRIVMSG, local");
    assert_lines(&ts[2], &got[2], &["dave PRIVMSG #t tagged"], "tagged PRIVMSG, remote");
    let (local, remote) = (&got[1][0], &got[2][0]);
    assert_eq!((local.tag("+draft/reply"), remote.tag("+draft/reply")), (Some("abc"), Some("abc")));
    assert!(local.tag("msgid").is_some_and(|id| !id.is_empty()), "no msgid: {local}");
    assert_eq!(local.tag("msgid"), remote.tag("msgid"), "one message, one msgid: {local} / {remote}");

    for s in &mut ns {
        s.assert_alive();
    }
}

// ---------------------------------------------------------------------------
// Instances started together
// ---------------------------------------------------------------------------

/// Three instances started at the same moment (as a compose file starts them) and used as soon
/// as each says it joined: once the network has settled (every instance counts three), every
/// instance has the same members in a channel that users of all three joined, and a message
/// reaches all of them. Last, no instance split after saying it joined (when they happen to
/// start in one heartbeat, each may found a network of its own, and the younger rejoin the
/// oldest: then the `joined` line was not the readiness signal the spec calls it).
#[test]
fn instances_started_at_the_same_moment_end_up_with_one_state() {
    let redis = Redis::start();
    let mut ns = nodes_at_once(&redis, &["n1", "n2", "n3"]);
    let mut cs: Vec<Client> =
        ["x1", "x2", "x3"].iter().zip(&ns).map(|(nick, s)| Client::registered(s.addr(), nick)).collect();
    for c in &mut cs {
        c.join("#x");
    }
    for s in &mut ns {
        wait_metric(s, "echoport_cluster_nodes", 3);
        assert_eq!(metric(s, "echoport_cluster_joined"), 1, "joined");
    }
    settle(&mut cs);
    let views: Vec<Vec<String>> = cs.iter_mut().map(|c| names(c, "#x")).collect();
    let logs: String = ns.iter().map(|s| format!("{}\n", s.log())).collect();
    for (c, v) in cs.iter().zip(&views) {
        let mut nicks: Vec<String> = v.iter().map(|n| n.trim_start_matches(['@', '+']).to_owned()).collect();
        nicks.sort();
        assert_eq!(nicks, ["x1", "x2", "x3"], "NAMES #x from {} (all: {views:?})\nlogs:\n{logs}", c.name());
    }
    assert!(views.iter().all(|v| *v == views[0]), "NAMES #x differ: {views:?}\nlogs:\n{logs}");
    cs[0].send("PRIVMSG #x :one network");
    let want = ["x1 PRIVMSG #x one network"];
    settle_expect(&mut cs, &[&[], &want, &want], "a message after the start");
    assert_joined_for_good(&ns, 1, "started at the same moment");
}

// ---------------------------------------------------------------------------
// Nick race
// ---------------------------------------------------------------------------

/// Two clients on two instances ask for the same nick at the same moment, 20 times (half of the
/// rounds before registration, half as a nick change): every time exactly one gets it and the
/// other 433.
#[test]
fn a_nick_raced_for_on_two_instances_goes_to_exactly_one() {
    let redis = Redis::start();
    let ns = nodes(&redis, &["n1", "n2"]);
    for round in 0..20 {
        let nick = format!("race{round}");
        let registered = round % 2 == 1;
        let mut pair: Vec<Client> = ns
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if registered {
                    Client::registered(s.addr(), &format!("r{round}c{i}"))
                } else {
                    let mut c = Client::connect(s.addr(), &format!("r{round}c{i}"));
                    c.send(&format!("USER r{round}c{i} 0 * :racer"));
                    c
                }
            })
            .collect();
        let start = Barrier::new(pair.len());
        let outcomes: Vec<(Message, Client)> = thread::scope(|sc| {
            let racing: Vec<_> = pair
                .drain(..)
                .map(|mut c| {
                    let (start, nick) = (&start, &nick);
                    sc.spawn(move || {
                        start.wait();
                        c.send(&format!("NICK {nick}"));
                        let end = c.expect(
                            |m| m.is("001") || m.is("433") || (m.is("NICK") && m.last() == nick.as_str()),
                            WAIT,
                        );
                        (end, c)
                    })
                })
                .collect();
            racing.into_iter().map(|h| h.join().expect("racing client panicked")).collect()
        });
        let won: Vec<_> = outcomes.iter().filter(|(m, _)| !m.is("433")).collect();
        let lost: Vec<_> = outcomes.iter().filter(|(m, _)| m.is("433")).collect();
        let shown = outcomes.iter().map(|(m, c)| format!("{}: {m}", c.name())).collect::<Vec<_>>();
        assert!(won.len() == 1 && lost.len() == 1, "round {round} ({nick}, registered={registered}): {shown:?}");
        assert_eq!(lost[0].0.param(1), nick, "433 names the nick: {shown:?}");
        let (won, winner) = (&won[0].0, &won[0].1);
        if registered {
            assert!(won.is("NICK") && won.nick() == winner.name(), "the winner's own NICK line: {shown:?}");
        } else {
            assert!(won.is("001") && won.param(0) == nick, "001 for the nick: {shown:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Queries see remote members
// ---------------------------------------------------------------------------

#[test]
fn names_who_whois_and_list_show_members_on_other_instances() {
    let redis = Redis::start();
    let mut ns = nodes(&redis, &["n1", "n2", "n3"]);
    let nicks = ["alice", "bob", "carol"];
    let mut cs: Vec<Client> = nicks.iter().zip(&ns).map(|(nick, s)| Client::registered(s.addr(), nick)).collect();
    for c in &mut cs {
        c.join("#room");
        // In turn: alice creates the channel (and is its op) before the others join.
        c.sync();
    }
    cs[0].send("TOPIC #room :room topic");
    settle(&mut cs);
    // Each live instance keeps its presence key (5 s TTL) in Redis.
    for node in ["n1", "n2", "n3"] {
        assert!(redis.exists(&format!("echoport:0:node:{node}")), "no presence key for {node}");
    }

    for c in &mut cs {
        assert_eq!(names(c, "#room"), ["@alice", "bob", "carol"], "NAMES from {}", c.name());

        c.send("WHO #room");
        let who = c.collect_until(|m| m.is("315"), WAIT);
        let mut listed: Vec<&str> = who.iter().filter(|m| m.is("352")).map(|m| m.param(5)).collect();
        listed.sort();
        assert_eq!(listed, nicks, "WHO #room from {}:\n{}", c.name(), show(&who));

        for (i, other) in nicks.into_iter().enumerate() {
            c.send(&format!("WHOIS {other}"));
            let whois = c.collect_until(|m| m.is("318") || m.is("401"), WAIT);
            let user = whois.iter().find(|m| m.is("311"));
            assert!(user.is_some_and(|m| m.param(1) == other), "WHOIS {other} from {}:\n{}", c.name(), show(&whois));
            // 312: the server the user is on (each instance has its own --server-name).
            let server = whois.iter().find(|m| m.is("312")).map(|m| m.param(2).to_owned());
            let home = format!("n{}.test", i + 1);
            assert_eq!(server.as_deref(), Some(home.as_str()), "WHOIS {other} from {}:\n{}", c.name(), show(&whois));
            let chans = whois.iter().find(|m| m.is("319")).map(|m| m.last().to_owned()).unwrap_or_default();
            assert!(
                chans.split(' ').any(|ch| ch.trim_start_matches(['@', '+']) == "#room"),
                "WHOIS {other} from {} lacks #room:\n{}",
                c.name(),
                show(&whois)
            );
        }

        c.send("LIST");
        let list = c.collect_until(|m| m.is("323"), WAIT);
        let rooms: Vec<&Message> = list.iter().filter(|m| m.is("322")).collect();
        assert!(
            rooms.len() == 1 && rooms[0].params_match(&["*ANY*", "#room", "3", "room topic"]),
            "LIST from {}:\n{}",
            c.name(),
            show(&list)
        );
    }
    for s in &mut ns {
        assert_eq!(metric(s, "echoport_cluster_joined"), 1);
        wait_metric(s, "echoport_cluster_nodes", 3);
        assert!(metric(s, "echoport_cluster_published_total") > 0, "published_total");
        assert!(metric(s, "echoport_cluster_received_total") > 0, "received_total");
        assert_eq!(metric(s, "echoport_cluster_splits_total"), 0, "no split");
    }
}

// ---------------------------------------------------------------------------
// An instance dies
// ---------------------------------------------------------------------------

#[test]
fn kill_9_of_an_instance_quits_its_users_everywhere_and_frees_their_nicks() {
    let redis = Redis::start();
    let mut ns = nodes(&redis, &["n1", "n2", "n3"]);
    // bob and bob2 on n2 (the one killed), alice on n1, carol on n3.
    let mut cs = vec![
        Client::registered(ns[0].addr(), "alice"),
        Client::registered(ns[1].addr(), "bob"),
        Client::registered(ns[1].addr(), "bob2"),
        Client::registered(ns[2].addr(), "carol"),
    ];
    for c in &mut cs {
        c.join("#k");
    }
    settle(&mut cs);
    for s in &mut ns {
        wait_metric(s, "echoport_cluster_nodes", 3);
    }

    let killed = Instant::now();
    ns[1].signal(Signal::SIGKILL);
    let bound = Duration::from_secs(8);
    for i in [0, 3] {
        let c = &mut cs[i];
        let mut quit = BTreeSet::new();
        let left = bound.saturating_sub(killed.elapsed());
        let mut got = c.collect_until(
            |m| {
                if m.is("QUIT") {
                    quit.insert(m.nick().to_owned());
                }
                quit.len() == 2
            },
            left,
        );
        // The order in which a dead instance's users go is not specified.
        got.sort_by_key(norm);
        assert_lines(c, &got, &["bob QUIT *.net *.split", "bob2 QUIT *.net *.split"], "the users of the dead n2 QUIT");
        eprintln!("{}: both QUITs {:?} after the kill", c.name(), killed.elapsed());
    }
    for i in [0, 2] {
        let s = &mut ns[i];
        s.wait_for_line(|l| l.contains("cluster: node gone") && l.contains("node=n2"), common::BOUND)
            .unwrap_or_else(|| panic!("n{} logged no `cluster: node gone node=n2`\n{}", i + 1, s.log()));
    }
    for i in [0, 2] {
        wait_metric(&mut ns[i], "echoport_cluster_nodes", 2);
    }
    // Their nicks are free, on either surviving instance.
    cs.retain(|c| !c.name().starts_with("bob"));
    let mut newbob = Client::registered(ns[0].addr(), "bob");
    let mut newbob2 = Client::registered(ns[2].addr(), "bob2");
    newbob.join("#k");
    newbob2.join("#k");
    cs.push(newbob);
    cs.push(newbob2);
    let got = settle(&mut cs);
    for (c, got) in cs.iter().zip(&got).take(2) {
        assert_lines(c, got, &["bob JOIN #k", "bob2 JOIN #k"], "the new bob and bob2 join");
    }
    for i in [0, 2] {
        ns[i].assert_alive();
    }
}

// ---------------------------------------------------------------------------
// Redis goes away
// ---------------------------------------------------------------------------

/// Redis stopped for 5 s while messages flow, then started again on its port: every instance
/// splits and rejoins, a message sent after that reaches everyone, NAMES and TOPIC agree
/// everywhere, nothing exits.
#[test]
fn redis_stopped_for_5_s_under_traffic_then_every_instance_rejoins_and_converges() {
    let mut redis = Redis::start();
    let mut ns = nodes(&redis, &["n1", "n2", "n3"]);
    // u1 and v1 on n1, u2 on n2, u3 on n3.
    let mut cs = vec![
        Client::registered(ns[0].addr(), "u1"),
        Client::registered(ns[0].addr(), "v1"),
        Client::registered(ns[1].addr(), "u2"),
        Client::registered(ns[2].addr(), "u3"),
    ];
    for c in &mut cs {
        c.log_received = false;
        c.join("#o");
        c.sync();
    }
    cs[0].send("TOPIC #o :before the outage");
    settle(&mut cs);

    let mut seen: Vec<Vec<Message>> = cs.iter().map(|_| Vec::new()).collect();
    let t = Instant::now();
    traffic(&mut cs, &mut seen, "#o", JOIN_BOUND, "traffic before the outage", || {
        t.elapsed() >= Duration::from_millis(500)
    });
    redis.stop();
    let stopped = Instant::now();
    let lost = |ns: &[Server]| ns.iter().all(|s| logged(s, LOST) >= 1);
    let rounds =
        traffic(&mut cs, &mut seen, "#o", JOIN_BOUND, "every instance logs that it lost the cluster, 5 s pass", || {
            stopped.elapsed() >= Duration::from_secs(5) && lost(&ns)
        });
    eprintln!("{rounds} rounds of 4 messages while Redis was stopped ({:?})", stopped.elapsed());
    for s in &mut ns {
        s.assert_alive();
    }
    redis.start_again();
    let metrics = metrics_addrs(&mut ns);
    traffic(&mut cs, &mut seen, "#o", JOIN_BOUND, "every instance logs that it joined again, counts 3", || {
        ns.iter().all(|s| logged(s, JOINED) >= 2) && all_count(&metrics, 3)
    });
    for c in &mut cs {
        c.log_received = true;
    }
    for (seen, got) in seen.iter_mut().zip(settle(&mut cs)) {
        seen.extend(got.into_iter().filter(|m| !is_tick(m)));
    }
    // What the split and the rejoin looked like to each user: told of both, every user of the
    // other instances QUIT (as in a netsplit) and JOINed again.
    let on = |c: usize| [0, 0, 1, 2][c];
    for (i, (c, seen)) in cs.iter().zip(&seen).enumerate() {
        let notice = |text: &str| seen.iter().any(|m| m.is("NOTICE") && m.last().starts_with(text));
        assert!(notice("*** Network split"), "{} was not told of the split:\n{}", c.name(), show(seen));
        assert!(notice("*** Network rejoined"), "{} was not told of the rejoin:\n{}", c.name(), show(seen));
        for (j, other) in cs.iter().enumerate().filter(|&(j, _)| on(j) != on(i)) {
            let quit = seen.iter().position(|m| m.is("QUIT") && m.nick() == other.name() && m.last() == SPLIT);
            let join = seen.iter().rposition(|m| m.is("JOIN") && m.nick() == other.name() && m.param(0) == "#o");
            assert!(
                quit.is_some() && join > quit,
                "{} did not see {} (client {j}) QUIT with {SPLIT:?} and JOIN again:\n{}",
                c.name(),
                other.name(),
                show(seen)
            );
        }
    }

    cs[2].send("PRIVMSG #o :after the outage");
    let want = ["u2 PRIVMSG #o after the outage"];
    settle_expect(&mut cs, &[&want, &want, &[], &want], "a message after the rejoin");
    for c in &mut cs {
        assert_eq!(names(c, "#o"), ["@u1", "u2", "u3", "v1"], "NAMES #o from {} after the rejoin", c.name());
        c.send("TOPIC #o");
        let topic = c.expect(|m| m.is("332") || m.is("331"), WAIT);
        let name = c.name().to_owned();
        assert!(
            topic.is("332") && topic.params_match(&[&name, "#o", "before the outage"]),
            "TOPIC from {name}: {topic}"
        );
        c.sync();
    }
    for s in &mut ns {
        s.assert_alive();
        assert_eq!(metric(s, "echoport_cluster_joined"), 1, "joined again");
        assert!(metric(s, "echoport_cluster_splits_total") >= 1, "the split is counted");
        assert!(metric(s, "echoport_cluster_reconnects_total") >= 1, "the reconnect is counted");
    }
    assert_joined_for_good(&ns, 2, "after Redis came back");
}

/// Redis SIGSTOPped (connections open, nothing answered) while two clients of one instance chat:
/// the instance splits off, local delivery goes on, its memory stays bounded; after SIGCONT it
/// rejoins and messages cross instances again.
#[test]
fn a_stopped_redis_leaves_local_chat_going_with_bounded_memory() {
    const DURING: usize = 300;
    let mut redis = Redis::start();
    let mut ns = nodes(&redis, &["n1", "n2"]);
    // a and b on n1, c on n2.
    let mut cs = vec![
        Client::registered(ns[0].addr(), "a"),
        Client::registered(ns[0].addr(), "b"),
        Client::registered(ns[1].addr(), "c"),
    ];
    for c in &mut cs {
        c.join("#s");
        c.sync();
    }
    settle(&mut cs);
    for c in &mut cs {
        c.log_received = false;
    }
    let rss_before = ns[0].rss_kib();
    let mut rss_max = rss_before;

    redis.pause();
    // Until n1 notices: a talks in bursts (its lines wait for Redis, or are dropped when the
    // instance splits: pub/sub is at most once), b and c are drained.
    let mut b_got = Vec::new();
    let deadline = Instant::now() + JOIN_BOUND;
    let mut k = 0;
    while logged(&ns[0], LOST) == 0 {
        assert!(Instant::now() < deadline, "n1 did not log {LOST:?} within {JOIN_BOUND:?}\n{}", ns[0].log());
        for _ in 0..10 {
            cs[0].send(&format!("PRIVMSG #s :pre {k}"));
            k += 1;
        }
        for c in &mut cs {
            let got = c.read_for(Duration::from_millis(5));
            if c.name() == "b" {
                b_got.extend(got);
            }
        }
        rss_max = rss_max.max(ns[0].rss_kib());
    }
    assert_eq!(metric(&mut ns[0], "echoport_cluster_joined"), 0, "n1 is split off");
    let depth = metric(&mut ns[0], "echoport_cluster_queue_depth");
    assert!(depth <= 65_536, "the queue to Redis holds at most 65,536 events, not {depth}");
    // Split: now a's lines are delivered by n1 alone.
    for i in 0..DURING {
        cs[0].send(&format!("PRIVMSG #s :during {i}"));
        if i % 50 == 49 {
            b_got.extend(cs[1].read_for(Duration::from_millis(5)));
            cs[0].read_for(Duration::from_millis(1));
            rss_max = rss_max.max(ns[0].rss_kib());
        }
    }
    let last = format!("during {}", DURING - 1);
    let is_last = |m: &Message| m.is("PRIVMSG") && m.last() == last;
    if !b_got.iter().any(is_last) {
        b_got.extend(cs[1].collect_until(is_last, WAIT));
    }
    let rss_after = ns[0].rss_kib();
    rss_max = rss_max.max(rss_after);
    let during: Vec<&str> =
        b_got.iter().filter(|m| m.is("PRIVMSG") && m.last().starts_with("during ")).map(|m| m.last()).collect();
    let want: Vec<String> = (0..DURING).map(|i| format!("during {i}")).collect();
    assert_eq!(during, want, "b got a's lines sent while Redis was stopped, each once, in order");
    assert!(
        b_got.iter().any(|m| m.is("NOTICE") && m.last().starts_with("*** Network split")),
        "b was told of the split:\n{}",
        show(&b_got[..b_got.len().min(50)])
    );
    assert!(
        b_got.iter().any(|m| m.is("QUIT") && m.nick() == "c" && m.last() == SPLIT),
        "c (on n2) QUIT for b in the split"
    );
    eprintln!("n1 RSS: {rss_before} KiB before, {rss_max} KiB at most, {rss_after} KiB after ({k} lines pre-split)");
    assert!(rss_max < rss_before + 64 * 1024, "n1's RSS grew from {rss_before} KiB to {rss_max} KiB");

    // n2 has no traffic of its own: it notices by its heartbeats (the spec: within about 3 s).
    // Both split before Redis comes back, so both rejoin.
    let deadline = Instant::now() + JOIN_BOUND;
    while logged(&ns[1], LOST) == 0 {
        assert!(Instant::now() < deadline, "n2 did not log {LOST:?} within {JOIN_BOUND:?}\n{}", ns[1].log());
        for c in &mut cs {
            c.read_for(Duration::from_millis(20));
        }
    }
    redis.resume();
    let deadline = Instant::now() + JOIN_BOUND;
    let metrics = metrics_addrs(&mut ns);
    while !(ns.iter().all(|s| logged(s, JOINED) >= 2) && all_count(&metrics, 2)) {
        assert!(Instant::now() < deadline, "the instances did not rejoin within {JOIN_BOUND:?} of SIGCONT");
        for c in &mut cs {
            c.read_for(Duration::from_millis(20));
        }
    }
    for c in &mut cs {
        c.log_received = true;
    }
    settle(&mut cs);
    cs[0].send("PRIVMSG #s :back");
    let want = ["a PRIVMSG #s back"];
    settle_expect(&mut cs, &[&[], &want, &want], "a message after the rejoin");
    for s in &mut ns {
        s.assert_alive();
    }
    assert_joined_for_good(&ns, 2, "after SIGCONT");
}

// ---------------------------------------------------------------------------
// Random commands, one view
// ---------------------------------------------------------------------------

/// What an observer sees of a channel: NAMES, topic (text and setter), modes (with arguments),
/// ban masks.
#[derive(Debug, PartialEq, Eq)]
struct View {
    names: Vec<String>,
    topic: Option<(String, String)>,
    modes: Vec<String>,
    bans: Vec<String>,
}

fn view(c: &mut Client, channel: &str) -> View {
    let names = names(c, channel);
    c.send(&format!("TOPIC {channel}"));
    let got = c.collect_until(|m| m.is("333") || m.is("331") || m.is_error_numeric(), WAIT);
    let topic = match got.last().unwrap() {
        m if m.is("331") => None,
        m if m.is("333") => {
            let text = got.iter().find(|m| m.is("332")).map(|m| m.last().to_owned()).unwrap_or_default();
            Some((text, m.param(2).to_owned()))
        }
        m => c.fail(&format!("TOPIC {channel}: {m}")),
    };
    c.send(&format!("MODE {channel}"));
    let modes = c.expect(|m| m.is("324") || m.is_error_numeric(), WAIT);
    if !modes.is("324") {
        c.fail(&format!("MODE {channel}: {modes}"));
    }
    c.send(&format!("MODE {channel} +b"));
    // The 329 (creation time) after the 324 is read (and passed over) here.
    let got = c.collect_until(|m| m.is("368") || m.is_error_numeric(), WAIT);
    let mut bans: Vec<String> = got.iter().filter(|m| m.is("367")).map(|m| m.param(2).to_owned()).collect();
    bans.sort();
    View { names, topic, modes: modes.params[1..].to_vec(), bans }
}

/// A random command for actor `actor` (of `nicks`, the actors' current nicks) on `channel`.
fn random_command(rng: &mut Rng, channel: &str, nicks: &mut [String], actor: usize, seq: &mut u64) -> String {
    *seq += 1;
    let target = nicks[rng.range(0, nicks.len() as u64 - 1) as usize].clone();
    let pick = |rng: &mut Rng, xs: &[&str]| xs[rng.range(0, xs.len() as u64 - 1) as usize].to_owned();
    match rng.range(0, 10) {
        0..=1 => format!("JOIN {channel}"),
        2 => format!("PART {channel} :bye"),
        3 => format!("TOPIC {channel} :topic {seq}"),
        4 => format!("MODE {channel} {} {target}", pick(rng, &["+o", "-o", "+v", "-v"])),
        5 => format!(
            "MODE {channel} {}",
            pick(rng, &["+t", "-t", "+m", "-m", "+n", "-n", "+i", "-i", "+l 4", "-l", "+k key", "-k key"])
        ),
        6 => format!("MODE {channel} {} {target}!*@*", pick(rng, &["+b", "-b"])),
        7 => format!("KICK {channel} {target} :kicked"),
        8 => {
            // Fresh every time, so a rename never collides (the test knows every nick).
            nicks[actor] = format!("p{seq}");
            format!("NICK {}", nicks[actor])
        }
        _ => format!("PRIVMSG {channel} :message {seq}"),
    }
}

/// Random JOIN/PART/TOPIC/MODE/KICK/NICK/PRIVMSG from six clients spread over three instances,
/// sent without waiting (so they meet in Redis in whatever order), leave one channel state:
/// after the barrier, an observer on each instance sees the same NAMES, TOPIC, MODE and bans.
/// A seeded loop (6 cases of 25 commands, one channel each) over one network started once.
#[test]
fn random_commands_over_three_instances_leave_one_view_of_the_channel() {
    const SEED: u64 = 0x00c1_0000_000e;
    let redis = Redis::start();
    let ns = nodes(&redis, &["n1", "n2", "n3"]);
    let mut nicks: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    // Actors 0..6 (actor i on instance i % 3), then observers 6..9 (one per instance).
    let mut cs: Vec<Client> = nicks.iter().enumerate().map(|(i, n)| Client::registered(ns[i % 3].addr(), n)).collect();
    cs.extend((0..3).map(|i| Client::registered(ns[i].addr(), &format!("obs{i}"))));
    let mut seq = 0;
    for case in 0..6u64 {
        let channel = format!("#p{case}");
        let mut rng = Rng::new(SEED ^ case);
        // Actor 0 creates the channel and makes actors 1 and 2 ops too: an op on each instance,
        // so conflicting MODE, KICK and TOPIC meet in Redis. The observers join and stay.
        cs[0].join(&channel);
        cs[0].sync();
        for c in &mut cs[1..3] {
            c.join(&channel);
        }
        settle(&mut cs);
        cs[0].send(&format!("MODE {channel} +oo {} {}", nicks[1], nicks[2]));
        for o in &mut cs[6..] {
            o.join(&channel);
        }
        settle(&mut cs);
        let mut sent = Vec::new();
        for _ in 0..25 {
            let actor = rng.range(0, 5) as usize;
            let nick = nicks[actor].clone();
            let line = random_command(&mut rng, &channel, &mut nicks, actor, &mut seq);
            cs[actor].send(&line);
            sent.push(format!("{nick} (on n{}): {line}", actor % 3 + 1));
        }
        settle(&mut cs);
        let views: Vec<View> = cs[6..].iter_mut().map(|o| view(o, &channel)).collect();
        assert!(
            views.iter().all(|v| *v == views[0]),
            "case {case} (seed {SEED:#x}): the instances disagree on {channel}\n  commands:\n    {}\n  views (n1, n2, n3):\n{}",
            sent.join("\n    "),
            views.iter().map(|v| format!("    {v:?}\n")).collect::<String>()
        );
    }
}

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

#[test]
fn cluster_in_echo_mode_is_a_start_up_error() {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["--mode", "echo", "--listen", "127.0.0.1:0", "--cluster", "redis://127.0.0.1:1/0"]);
    cmd.env_remove("ECHOPORT_CLUSTER").env("NO_COLOR", "1");
    let ran = common::run_bounded(cmd, common::BOUND);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(2), "exit status; stderr:\n{}", ran.stderr);
    assert!(ran.stderr.contains("cluster"), "the error says what is wrong: {}", ran.stderr);
}
