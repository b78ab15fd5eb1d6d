//! Chat mode (`--mode chat`) over real sockets: IRC conversations between several clients of the
//! server (embedded in the test process; the SIGTERM test runs the binary), the error numerics,
//! registration variants (LF-only lines, CAP, PASS), OPER, MOTD, and the engine's protection:
//! flood control, SendQ, ping timeout, SIGTERM, line injection.
//!
//! Synchronisation: a reply line is the signal (see tests/common/irc.rs). Absence is asserted with
//! `sync`/`assert_quiet` (a PING/PONG round trip after the server has handled the cause), never
//! with a sleep. Every wait is bounded.

// Unix signals (some tests also /proc and rlimits) drive this suite; the Windows build has its
// own, under Wine: tests/windows.rs.
#![cfg(unix)]

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::net::TcpStream;
use std::time::Instant;

use common::BOUND;
use common::embedded::chat_server;
use irc::{Client, Message, WAIT, commands, show};
use nix::sys::signal::Signal;

/// Asserts that `got` is exactly one line with `command` whose params match `params`
/// (`"*ANY*"` matches any one parameter).
#[track_caller]
fn assert_only(c: &Client, got: &[Message], command: &str, params: &[&str]) {
    let ok = got.len() == 1 && got[0].is(command) && got[0].params_match(params);
    if !ok {
        c.fail(&format!(
            "expected exactly one `{command} {}`, got {} line(s):\n{}",
            params.join(" "),
            got.len(),
            show(got)
        ));
    }
}

/// PRIVMSG/NOTICE lines in `got` (with their text) from `nick`.
fn texts_from<'a>(got: &'a [Message], nick: &str, command: &str) -> Vec<&'a str> {
    got.iter().filter(|m| m.is(command) && m.nick() == nick).map(|m| m.last()).collect()
}

/// A temporary file under the target directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("chat-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn registration_welcome_burst() {
    let server = chat_server(&[]);
    let mut c = Client::connect(server.addr(), "alice");
    let burst = c.register("alice");
    let cmds = commands(&burst);
    assert_eq!(&cmds[..4], ["001", "002", "003", "004"], "welcome burst:\n{}", show(&burst));
    assert!(cmds.contains(&"005"), "no 005 ISUPPORT:\n{}", show(&burst));
    assert_eq!(*cmds.last().unwrap(), "422", "no --motd: the burst ends with 422 ERR_NOMOTD:\n{}", show(&burst));
    for m in &burst {
        assert_eq!(m.param(0), "alice", "every numeric is addressed to the new nick: {m}");
        assert_eq!(m.prefix.as_deref(), Some("echoport"), "replies come from --server-name (default echoport): {m}");
    }
    assert!(burst[0].last().contains("alice!alice@127.0.0.1"), "001 names the full prefix: {}", burst[0]);
    let isupport: Vec<&str> =
        burst.iter().filter(|m| m.is("005")).flat_map(|m| m.params.iter().map(String::as_str)).collect();
    for token in ["CASEMAPPING=rfc1459", "CHANTYPES=#", "NICKLEN=30", "CHANNELLEN=50", "TOPICLEN=390"] {
        assert!(isupport.contains(&token), "005 lacks {token}: {isupport:?}");
    }
    // Registered: the client can use the server, and nothing else is pending.
    c.assert_quiet("after the welcome burst");
}

#[test]
fn channel_messages_fan_out_to_every_other_member_exactly_once() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    let mut carol = Client::registered(addr, "carol");
    let mut dave = Client::registered(addr, "dave");

    let burst = alice.join("#room");
    assert!(burst[0].is("JOIN") && burst[0].nick() == "alice" && burst[0].param(0) == "#room", "{}", show(&burst));
    let names = burst.iter().find(|m| m.is("353")).expect("353 on join");
    assert_eq!(names.last(), "@alice", "the creator is channel operator: {names}");

    bob.join("#room");
    let got = alice.sync();
    assert_only(&alice, &got, "JOIN", &["#room"]);
    assert_eq!(got[0].nick(), "bob");

    let burst = carol.join("#room");
    let names = burst.iter().find(|m| m.is("353")).expect("353 on join");
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@alice", "bob", "carol"], "{names}");
    alice.sync();
    bob.sync();

    for i in 0..3 {
        alice.send(&format!("PRIVMSG #room :hello {i}"));
    }
    // alice's own sync: the server has handled her messages and queued every relay.
    let echoed = alice.sync();
    assert!(echoed.is_empty(), "channel messages must not be echoed to the sender:\n{}", show(&echoed));
    for peer in [&mut bob, &mut carol] {
        let got = peer.sync();
        assert_eq!(
            texts_from(&got, "alice", "PRIVMSG"),
            ["hello 0", "hello 1", "hello 2"],
            "{}: each message exactly once, in order:\n{}",
            peer.name(),
            show(&got)
        );
        assert_eq!(got.len(), 3, "{}: nothing else:\n{}", peer.name(), show(&got));
        assert!(got.iter().all(|m| m.param(0) == "#room" && m.prefix.as_deref() == Some("alice!alice@127.0.0.1")));
    }
    dave.assert_quiet("dave is not in #room");

    // And from another member, NOTICE too.
    bob.send("NOTICE #room :bob here");
    assert!(bob.sync().is_empty());
    for peer in [&mut alice, &mut carol] {
        let got = peer.sync();
        assert_eq!(texts_from(&got, "bob", "NOTICE"), ["bob here"], "{}", show(&got));
        assert_eq!(got.len(), 1);
    }
    dave.assert_quiet("dave is not in #room");
}

/// Lines that queue for a member while its last send is in flight are held for a bigger send
/// (src/chat/cork.rs): all of them must still arrive, in order, and the last without any later
/// traffic to push it out.
#[test]
fn lines_queued_behind_a_send_all_arrive_in_order_with_nothing_after_them() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut senders = [Client::registered(addr, "s1"), Client::registered(addr, "s2")];
    let mut members: Vec<Client> = (0..4).map(|i| Client::registered(addr, &format!("m{i}"))).collect();
    for c in senders.iter_mut().chain(members.iter_mut()) {
        c.join("#room");
    }
    for c in senders.iter_mut().chain(members.iter_mut()) {
        c.sync();
    }
    // Separate writes, interleaved, so the server reads them over many receives while the
    // members' sends are in flight.
    const N: usize = 300;
    for i in 0..N {
        for (s, sender) in senders.iter_mut().enumerate() {
            sender.send(&format!("PRIVMSG #room :{s} {i}"));
        }
    }
    for m in &mut members {
        let mut next = [0usize; 2];
        let got = m.collect_until(
            |msg| {
                if msg.is("PRIVMSG") {
                    let (s, i) = msg.last().split_once(' ').expect("our text");
                    let s: usize = s.parse().expect("sender");
                    assert_eq!(i.parse::<usize>().ok(), Some(next[s]), "sender {s}'s lines in order");
                    next[s] += 1;
                }
                next == [N, N]
            },
            WAIT,
        );
        assert!(got.iter().all(|msg| msg.is("PRIVMSG")), "nothing but the relays:\n{}", show(&got));
    }
}

#[test]
fn part_with_message_is_seen_by_members_and_stops_delivery() {
    let server = chat_server(&[]);
    let mut alice = Client::registered(server.addr(), "alice");
    let mut bob = Client::registered(server.addr(), "bob");
    alice.join("#room");
    bob.join("#room");
    alice.sync();

    bob.send("PART #room :gone fishing");
    let got = bob.sync();
    assert_only(&bob, &got, "PART", &["#room", "gone fishing"]);
    assert_eq!(got[0].nick(), "bob");
    let got = alice.sync();
    assert_only(&alice, &got, "PART", &["#room", "gone fishing"]);
    assert_eq!(got[0].prefix.as_deref(), Some("bob!bob@127.0.0.1"));

    alice.send("PRIVMSG #room :after the part");
    alice.assert_quiet("no echo");
    bob.assert_quiet("bob left #room and gets no more of its messages");

    // PART without a message also works.
    alice.send("PART #room");
    let got = alice.sync();
    assert!(got.len() == 1 && got[0].is("PART") && got[0].param(0) == "#room", "{}", show(&got));
}

#[test]
fn nick_change_is_seen_once_by_channel_peers_only() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    let mut dave = Client::registered(addr, "dave");
    for ch in ["#one", "#two"] {
        alice.join(ch);
        bob.join(ch);
    }
    alice.sync();

    bob.send("NICK robert");
    let got = bob.sync();
    assert_only(&bob, &got, "NICK", &["robert"]);
    assert_eq!(got[0].prefix.as_deref(), Some("bob!bob@127.0.0.1"), "the old prefix is the source");
    let got = alice.sync();
    assert_only(&alice, &got, "NICK", &["robert"]); // once, although two channels are shared
    assert_eq!(got[0].nick(), "bob");
    dave.assert_quiet("dave shares no channel with bob");

    // The new nick is reachable, the old one is gone.
    alice.send("PRIVMSG robert :hi robert");
    alice.send("PRIVMSG bob :hi bob");
    let got = alice.sync();
    assert_only(&alice, &got, "401", &["alice", "bob", "*ANY*"]);
    let got = bob.sync();
    assert_eq!(texts_from(&got, "alice", "PRIVMSG"), ["hi robert"], "{}", show(&got));
    // The channel lists the new nick.
    alice.send("NAMES #one");
    let got = alice.sync();
    let names = got.iter().find(|m| m.is("353")).expect("353");
    assert!(names.last().split(' ').any(|n| n == "robert"), "{names}");
}

#[test]
fn quit_is_broadcast_with_its_reason_and_closes_the_connection() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    let mut carol = Client::registered(addr, "carol");
    let mut dave = Client::registered(addr, "dave");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.join("#room");
    }
    alice.sync();
    bob.sync();

    carol.send("QUIT :see you later");
    let tail = carol.expect_closed(WAIT);
    assert!(tail.iter().any(|m| m.is("ERROR")), "QUIT is acknowledged with ERROR:\n{}", show(&tail));
    for peer in [&mut alice, &mut bob] {
        let got = peer.sync();
        assert_eq!(got.len(), 1, "{}: exactly one QUIT:\n{}", peer.name(), show(&got));
        let m = &got[0];
        assert!(m.is("QUIT") && m.nick() == "carol", "{m}");
        assert!(m.last().contains("see you later"), "the reason is carried: {m}");
    }
    dave.assert_quiet("dave shares no channel with carol");

    // The nick is free again.
    let mut carol2 = Client::connect(addr, "carol2");
    carol2.register("carol");
}

#[test]
fn private_messages_between_nicks() {
    let server = chat_server(&[]);
    let mut alice = Client::registered(server.addr(), "alice");
    let mut bob = Client::registered(server.addr(), "bob");
    let mut carol = Client::registered(server.addr(), "carol");

    alice.send("PRIVMSG bob :hey bob, how are you?");
    alice.send("PRIVMSG BOB :case-insensitive");
    alice.send("NOTICE bob :a notice");
    alice.assert_quiet("no echo of private messages");
    let got = bob.sync();
    assert_eq!(got.len(), 3, "{}", show(&got));
    assert!(got[0].is("PRIVMSG") && got[0].params_match(&["bob", "hey bob, how are you?"]), "{}", got[0]);
    assert_eq!(got[0].prefix.as_deref(), Some("alice!alice@127.0.0.1"));
    assert!(got[1].is("PRIVMSG") && got[1].last() == "case-insensitive", "{}", got[1]);
    assert!(got[2].is("NOTICE") && got[2].params_match(&["bob", "a notice"]), "{}", got[2]);
    carol.assert_quiet("a private message reaches only its target");

    bob.send("PRIVMSG alice :fine, thanks");
    bob.sync();
    let got = alice.sync();
    assert_eq!(texts_from(&got, "bob", "PRIVMSG"), ["fine, thanks"]);
}

#[test]
fn error_numerics_before_registration() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut taken = Client::registered(addr, "taken");

    let mut c = Client::connect(addr, "unregistered");
    // 451: a command that needs registration.
    c.send("JOIN #room");
    let got = c.sync();
    assert_only(&c, &got, "451", &["*", "*ANY*"]);
    c.send("PRIVMSG taken :hi");
    let got = c.sync();
    assert_only(&c, &got, "451", &["*", "*ANY*"]);
    // 431: NICK without a nick.
    c.send("NICK");
    let got = c.sync();
    assert_only(&c, &got, "431", &["*", "*ANY*"]);
    // 432: erroneous nicks.
    for bad in ["1abc", "a,b", "#chan", "nick!x", "a@b"] {
        c.send(&format!("NICK {bad}"));
        let got = c.sync();
        assert_only(&c, &got, "432", &["*", bad, "*ANY*"]);
    }
    // 433: in use, compared case-insensitively (rfc1459 mapping: [ is the upper case of {).
    c.send("NICK TAKEN");
    let got = c.sync();
    assert_only(&c, &got, "433", &["*", "TAKEN", "*ANY*"]);
    // 461: USER without enough parameters.
    c.send("USER onlyone");
    let got = c.sync();
    assert_only(&c, &got, "461", &["*", "USER", "*ANY*"]);
    // None of that registered it; a valid NICK/USER still does.
    c.send("NICK fine");
    c.send("USER fine 0 * :Fine");
    c.finish_registration();
    taken.assert_quiet("nothing reached the other client");

    let mut d = Client::connect(addr, "rfc1459");
    d.register("x[y]");
    let mut e = Client::connect(addr, "rfc1459-folded");
    e.send("NICK X{Y}");
    let got = e.sync();
    assert_only(&e, &got, "433", &["*", "X{Y}", "*ANY*"]);
}

#[test]
fn error_numerics_after_registration() {
    let server = chat_server(&[]);
    let addr = server.addr();
    let mut alice = Client::registered(addr, "alice");
    let mut bob = Client::registered(addr, "bob");
    alice.join("#room");
    alice.sync();

    let cases: &[(&str, &str, &[&str])] = &[
        ("PRIVMSG nobody :hi", "401", &["bob", "nobody", "*ANY*"]),
        ("PART #nowhere", "403", &["bob", "#nowhere", "*ANY*"]),
        ("JOIN nochanprefix", "403", &["bob", "nochanprefix", "*ANY*"]),
        // #room is +n by default: a non-member cannot send to it.
        ("PRIVMSG #room :from outside", "404", &["bob", "#room", "*ANY*"]),
        ("PRIVMSG", "411", &["bob", "*ANY*"]),
        ("PRIVMSG alice", "412", &["bob", "*ANY*"]),
        ("PRIVMSG alice :", "412", &["bob", "*ANY*"]),
        ("FROBNICATE now", "421", &["bob", "FROBNICATE", "*ANY*"]),
        ("NICK", "431", &["bob", "*ANY*"]),
        ("NICK 9lives", "432", &["bob", "9lives", "*ANY*"]),
        ("NICK ALICE", "433", &["bob", "ALICE", "*ANY*"]),
        ("JOIN", "461", &["bob", "JOIN", "*ANY*"]),
        ("PART", "461", &["bob", "PART", "*ANY*"]),
        ("USER bob 0 * :again", "462", &["bob", "*ANY*"]),
        ("PASS whatever", "462", &["bob", "*ANY*"]),
    ];
    for (line, numeric, params) in cases {
        bob.send(line);
        let got = bob.sync();
        if !(got.len() == 1 && got[0].is(numeric) && got[0].params_match(params)) {
            bob.fail(&format!("`{line}`: expected `{numeric} {}`, got:\n{}", params.join(" "), show(&got)));
        }
    }
    // None of those reached alice (in particular not the refused channel message).
    alice.assert_quiet("errors are private to their sender");
    // bob is still fully usable.
    bob.send("PRIVMSG alice :still here");
    bob.sync();
    let got = alice.sync();
    assert_eq!(texts_from(&got, "bob", "PRIVMSG"), ["still here"]);
}

#[test]
fn plain_lf_lines_as_nc_sends_them() {
    let server = chat_server(&[]);
    let mut peer = Client::registered(server.addr(), "peer");
    peer.join("#room");

    // A client that terminates lines with LF only and splits writes anywhere.
    let mut nc = Client::connect(server.addr(), "nc");
    nc.send_raw(b"NICK nc\nUSER nc 0 * :netcat user\n");
    let burst = nc.finish_registration();
    for m in &burst {
        assert!(m.raw.ends_with(b"\r"), "the server always terminates lines with CR LF: {:?}", m.raw);
    }
    nc.send_raw(b"JOIN #room\n");
    nc.expect(|m| m.is("366"), WAIT);
    nc.send_raw(b"PRIVMSG #ro");
    nc.send_raw(b"om :typed by hand\nPRIVMSG peer :and a private one\n");
    nc.send_raw(b"PING :lf-done\n");
    let got = nc.collect_until(|m| m.is("PONG") && m.last() == "lf-done", WAIT);
    assert_eq!(got.len(), 1, "nothing but the PONG:\n{}", show(&got));
    let got = peer.sync();
    let texts: Vec<(&str, &str)> = got.iter().filter(|m| m.is("PRIVMSG")).map(|m| (m.param(0), m.last())).collect();
    assert_eq!(texts, [("#room", "typed by hand"), ("peer", "and a private one")], "{}", show(&got));
    // Mixed terminators on one connection, and an empty line, are fine too.
    nc.send_raw(b"\nPRIVMSG peer :crlf\r\nPRIVMSG peer :lf\n");
    nc.sync();
    let got = peer.sync();
    assert_eq!(texts_from(&got, "nc", "PRIVMSG"), ["crlf", "lf"], "{}", show(&got));
}

#[test]
fn cap_ls_302_holds_registration_until_cap_end() {
    let server = chat_server(&[]);
    let mut c = Client::connect(server.addr(), "modern");
    c.send("CAP LS 302");
    c.send("NICK modern");
    c.send("USER modern 0 * :Modern Client");
    let got = c.sync();
    assert!(
        got.iter().any(|m| m.is("CAP") && m.param(1) == "LS"),
        "CAP LS is answered (an empty list is fine):\n{}",
        show(&got)
    );
    assert!(!got.iter().any(|m| m.is("001")), "no 001 before CAP END:\n{}", show(&got));
    c.send("CAP END");
    let burst = c.finish_registration();
    assert_eq!(burst[0].command, "001", "{}", show(&burst));
    assert_eq!(burst[0].param(0), "modern");
}

#[test]
fn password_is_required_with_password_flag() {
    let server = chat_server(&["--password", "s3cret"]);
    let addr = server.addr();

    let mut good = Client::connect(addr, "good");
    good.send("PASS s3cret");
    good.register("good");

    let mut none = Client::connect(addr, "nopass");
    none.send("NICK nopass");
    none.send("USER nopass 0 * :No Pass");
    let tail = none.expect_closed(WAIT);
    assert!(!tail.iter().any(|m| m.is("001")), "registered without PASS:\n{}", show(&tail));
    assert!(tail.iter().any(|m| m.is("464")), "464 ERR_PASSWDMISMATCH:\n{}", show(&tail));
    assert!(tail.last().is_some_and(|m| m.is("ERROR")), "ends with ERROR:\n{}", show(&tail));

    let mut wrong = Client::connect(addr, "wrongpass");
    wrong.send("PASS guess");
    wrong.send("NICK wrongpass");
    wrong.send("USER wrongpass 0 * :Wrong Pass");
    let tail = wrong.expect_closed(WAIT);
    assert!(!tail.iter().any(|m| m.is("001")), "registered with a wrong PASS:\n{}", show(&tail));
    assert!(tail.iter().any(|m| m.is("464")), "464 ERR_PASSWDMISMATCH:\n{}", show(&tail));
    assert!(tail.last().is_some_and(|m| m.is("ERROR")), "ends with ERROR:\n{}", show(&tail));

    // PASS without its parameter.
    let mut empty = Client::connect(addr, "emptypass");
    empty.send("PASS");
    let got = empty.sync();
    assert_only(&empty, &got, "461", &["*", "PASS", "*ANY*"]);

    // The good client was never disturbed.
    good.assert_quiet("other clients' failed logins");
}

#[test]
fn oper_with_oper_credentials_and_whois_313() {
    let server = chat_server(&["--oper", "admin:change-me", "--oper", "second:pw2"]);
    let addr = server.addr();
    let mut op = Client::registered(addr, "op");
    let mut other = Client::registered(addr, "other");

    other.send("WHOIS op");
    let got = other.sync();
    assert!(got.iter().any(|m| m.is("311")) && got.iter().any(|m| m.is("318")), "{}", show(&got));
    assert!(!got.iter().any(|m| m.is("313")), "not an operator yet:\n{}", show(&got));

    op.send("OPER admin wrong-password");
    let got = op.sync();
    assert_only(&op, &got, "464", &["op", "*ANY*"]);
    op.send("OPER nobody change-me");
    let got = op.sync();
    assert!(got.len() == 1 && (got[0].is("464") || got[0].is("491")), "unknown oper name:\n{}", show(&got));
    op.send("OPER admin");
    let got = op.sync();
    assert_only(&op, &got, "461", &["op", "OPER", "*ANY*"]);

    op.send("OPER admin change-me");
    let got = op.sync();
    let ok = got.iter().find(|m| m.is("381")).unwrap_or_else(|| op.fail(&format!("no 381:\n{}", show(&got))));
    assert_eq!(ok.param(0), "op");
    assert!(!got.iter().any(|m| m.is_error_numeric()), "{}", show(&got));

    other.send("WHOIS op");
    let got = other.sync();
    let m313 = got.iter().find(|m| m.is("313")).unwrap_or_else(|| other.fail(&format!("no 313:\n{}", show(&got))));
    assert_eq!(&m313.params[..2], ["other", "op"], "{m313}");
    assert!(got.last().unwrap().is("318"), "{}", show(&got));

    // The second credential pair works too.
    other.send("OPER second pw2");
    let got = other.sync();
    assert!(got.iter().any(|m| m.is("381")), "{}", show(&got));
}

#[test]
fn motd_file_is_sent_at_registration_and_on_request() {
    let motd = TempFile::new("motd.txt", "Welcome to the test network.\nBe nice.\n\nLast line\n");
    let server = chat_server(&["--motd", motd.0.to_str().unwrap()]);
    let mut c = Client::connect(server.addr(), "reader");
    let burst = c.register("reader");
    let start = burst.iter().position(|m| m.is("375")).unwrap_or_else(|| c.fail("no 375 RPL_MOTDSTART"));
    let motd_lines: Vec<&str> = burst[start + 1..].iter().take_while(|m| m.is("372")).map(|m| m.last()).collect();
    assert_eq!(motd_lines, ["- Welcome to the test network.", "- Be nice.", "- ", "- Last line"], "{}", show(&burst));
    assert!(burst.last().unwrap().is("376"), "ends with 376:\n{}", show(&burst));
    assert!(!burst.iter().any(|m| m.is("422")), "{}", show(&burst));

    c.send("MOTD");
    let got = c.sync();
    assert_eq!(commands(&got), ["375", "372", "372", "372", "372", "376"], "{}", show(&got));
}

#[test]
fn flood_control_drops_only_the_flooder() {
    let server = chat_server(&["--flood-rate", "1", "--flood-burst", "5"]);
    let addr = server.addr();
    // Each client here sends at most 5 lines in all, within the burst allowance.
    let mut bob = Client::registered(addr, "bob");
    let mut carol = Client::registered(addr, "carol");
    let mut flooder = Client::registered(addr, "flooder");
    bob.join("#room");
    carol.join("#room");
    flooder.join("#room");

    let mut lines = Vec::new();
    for i in 0..50 {
        lines.extend_from_slice(format!("PRIVMSG #room :flood {i}\r\n").as_bytes());
    }
    flooder.send_raw(&lines);
    let tail = flooder.expect_closed(WAIT);
    let error = tail.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| flooder.fail("no ERROR line"));
    assert!(error.last().contains("Excess Flood"), "{error}");

    for peer in [&mut bob, &mut carol] {
        let quit = peer.expect(|m| m.is("QUIT") && m.nick() == "flooder", WAIT);
        assert!(quit.last().contains("Excess Flood"), "{}: {quit}", peer.name());
    }
    // The flood stopped at the allowance: the members saw only its first few lines.
    let floods = |c: &Client| c.log().matches("PRIVMSG #room :flood ").count();
    for c in [&bob, &carol] {
        assert!(floods(c) <= 6, "{}: {} flood lines were relayed:\n{}", c.name(), floods(c), c.log());
    }
    // Others are unaffected.
    bob.send("PRIVMSG #room :still here");
    let got = carol.expect(|m| m.is("PRIVMSG") && m.nick() == "bob", WAIT);
    assert_eq!(got.last(), "still here");
    assert!(!bob.is_closed() && !carol.is_closed());
}

#[test]
fn sendq_exceeded_drops_a_client_that_never_reads() {
    // The reader's queue counts bytes queued or in flight until the server has handled the send's
    // completion, which may lag behind the reader having read them. A batch (3 x ~430 bytes)
    // keeps even three batches' worth under --sendq-bytes if the server reads a whole batch in one
    // go and queues it for the reader before posting the first send.
    const BATCH: usize = 3;
    let server = chat_server(&["--sendq-bytes", "4096"]);
    let addr = server.addr();

    let mut reader = Client::registered(addr, "reader");
    let mut flooder = Client::registered(addr, "flooder");
    // The non-reader gets a small receive buffer so the kernel cannot absorb much for it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), WAIT).unwrap();
    let mut slow = Client::from_stream(TcpStream::from(sock), "slow");
    slow.register("slow");
    for c in [&mut reader, &mut flooder, &mut slow] {
        c.join("#flood");
    }
    reader.sync();
    flooder.sync();
    slow.sync();
    reader.log_received = false;
    slow.log_received = false;

    // From now on `slow` never reads. The flooder sends batches; the reader reads each batch
    // completely before the next is sent, so its own queue stays small.
    let filler = "x".repeat(400);
    let mut seq = 0usize;
    let mut quit: Option<Message> = None;
    let mut batches_after_quit = 0;
    let start = Instant::now();
    while batches_after_quit < 3 {
        assert!(
            start.elapsed() < BOUND && seq < 200_000,
            "no `QUIT :SendQ exceeded` for the non-reader after {seq} messages of {} bytes in {:?}",
            filler.len(),
            start.elapsed()
        );
        let mut batch = String::new();
        for i in seq..seq + BATCH {
            batch.push_str(&format!("PRIVMSG #flood :{i:08} {filler}\r\n"));
        }
        flooder.send_raw(batch.as_bytes());
        let last = format!("{:08}", seq + BATCH - 1);
        let got = reader.collect_until(|m| m.is("PRIVMSG") && m.last().starts_with(&last), WAIT);
        for m in got {
            if m.is("PRIVMSG") {
                let want = format!("{seq:08} {filler}");
                if m.nick() != "flooder" || m.last() != want {
                    reader.fail(&format!("message {seq}: expected `{want:.20}...` from flooder, got {m}"));
                }
                seq += 1;
            } else if m.is("QUIT") && m.nick() == "slow" {
                assert!(quit.is_none(), "a second QUIT for slow: {m}");
                quit = Some(m);
            } else {
                reader.fail(&format!("unexpected line {m}"));
            }
        }
        if quit.is_some() {
            batches_after_quit += 1;
        }
    }
    let quit = quit.unwrap();
    assert!(quit.last().contains("SendQ exceeded"), "{quit}");
    eprintln!("the non-reader was dropped after {seq} messages in {:?}", start.elapsed());
    // The reader got every message, in order, exactly once (checked above); the flooder was not
    // affected either.
    let got = flooder.sync();
    assert!(got.iter().all(|m| m.is("QUIT") && m.nick() == "slow"), "{}", show(&got));
    // The non-reader's connection is closed: draining what the kernel holds ends in EOF.
    slow.expect_closed(WAIT);
    let got = reader.sync();
    assert!(got.is_empty(), "{}", show(&got));
}

#[test]
fn ping_timeout_drops_a_silent_client_and_keeps_one_that_answers() {
    let server = chat_server(&["--ping-interval", "1", "--ping-timeout", "1"]);
    let addr = server.addr();
    let mut answers = Client::registered(addr, "answers");
    answers.join("#room");
    let mut silent = Client::connect(addr, "silent");
    silent.auto_pong = false;
    silent.register("silent");
    silent.join("#room");

    std::thread::scope(|s| {
        let silent_thread = s.spawn(move || {
            // PINGs are passed through unanswered until the server gives up.
            let error = silent.expect(|m| m.is("ERROR"), WAIT);
            assert!(error.last().contains("Ping timeout"), "{error}");
            silent.expect_closed(WAIT);
            assert!(silent.pings_seen >= 1, "the server never sent a PING:\n{}", silent.log());
            assert_eq!(silent.pings_answered, 0);
        });
        let quit = answers.expect(|m| m.is("QUIT") && m.nick() == "silent", WAIT);
        assert!(quit.last().contains("Ping timeout"), "{quit}");
        // Keep answering across two more PING rounds: longer than the timeout, still connected.
        let before = answers.pings_answered;
        answers.expect_ping(WAIT);
        answers.expect_ping(WAIT);
        assert!(answers.pings_answered >= before + 2);
        let got = answers.sync();
        assert!(got.is_empty(), "{}", show(&got));
        silent_thread.join().unwrap();
    });
}

#[test]
fn sigterm_sends_error_closes_clients_and_exits_0() {
    let mut server = common::chat_server(&[]);
    let mut alice = Client::registered(server.addr(), "alice");
    let mut bob = Client::registered(server.addr(), "bob");
    alice.join("#room");
    bob.join("#room");
    alice.sync();
    // An unregistered connection is closed too. Its PING round trip shows the server has
    // accepted it (a connection still in the listen backlog at shutdown is simply reset).
    let mut unregistered = Client::connect(server.addr(), "unregistered");
    unregistered.sync();
    server.signal(Signal::SIGTERM);
    for c in [&mut alice, &mut bob, &mut unregistered] {
        let tail = c.expect_closed(WAIT);
        let error = tail.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| c.fail("no ERROR before EOF"));
        assert!(error.last().to_ascii_lowercase().contains("shutting down"), "{error}");
    }
    let status = server.wait_exit(BOUND);
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    server.expect_line("shutdown complete", BOUND);
}

#[test]
fn bare_cr_or_nul_in_a_message_never_becomes_a_second_line() {
    let server = chat_server(&[]);
    let mut alice = Client::registered(server.addr(), "alice");
    let mut bob = Client::registered(server.addr(), "bob");
    alice.join("#inj");
    bob.join("#inj");
    alice.sync();

    let attacks: &[&[u8]] = &[
        b"PRIVMSG #inj :before1\rQUIT :injected1\r\n",
        b"PRIVMSG #inj :before2\r:evil!e@evil PRIVMSG #inj :injected2\r\n",
        b"PRIVMSG #inj :before3\0:evil!e@evil PRIVMSG #inj :injected3\r\n",
        b"PRIVMSG bob :before4\r:evil!e@evil KICK #inj bob :injected4\r\n",
        b"PRIVMSG bob :before5\0\r\nPRIVMSG bob :before6\r\r\n",
        b"NOTICE #inj :before7\r\0\rinjected7\n",
    ];
    for a in attacks {
        alice.send_raw(a);
    }
    let got = alice.sync();
    assert!(got.is_empty(), "{}", show(&got));
    let got = bob.sync();
    for m in &got {
        let body = m.raw.strip_suffix(b"\r").unwrap_or_else(|| bob.fail(&format!("line without CR LF: {:?}", m.raw)));
        assert!(
            !body.contains(&b'\r') && !body.contains(&b'\0'),
            "a relayed line carries a bare CR or NUL: {:?}",
            m.raw
        );
        assert_eq!(m.nick(), "alice", "a line bob received did not come from alice: {m}");
        assert!(m.is("PRIVMSG") || m.is("NOTICE"), "{m}");
        assert!(m.last().starts_with("before"), "text from after the CR/NUL arrived as its own message: {m}");
    }
    let texts: Vec<&str> = got.iter().map(|m| m.last()).collect();
    let mut seen = texts.clone();
    seen.dedup();
    assert_eq!(seen.len(), texts.len(), "a message was delivered twice:\n{}", show(&got));
    assert!(got.len() <= 7, "more lines than messages sent:\n{}", show(&got));
    // Whatever the server did with the rest of the line, alice is still in the channel, and so is bob.
    alice.send("NAMES #inj");
    let got = alice.sync();
    let names = got.iter().find(|m| m.is("353")).expect("353");
    let mut members: Vec<&str> = names.last().split(' ').collect();
    members.sort_unstable();
    assert_eq!(members, ["@alice", "bob"]);
}

#[test]
fn nicks_and_channels_are_case_insensitive() {
    let server = chat_server(&[]);
    let mut alice = Client::registered(server.addr(), "Alice");
    let mut bob = Client::registered(server.addr(), "bob");
    alice.join("#Room");
    bob.join("#ROOM");
    let got = alice.sync();
    assert!(got.len() == 1 && got[0].is("JOIN") && got[0].nick() == "bob", "one channel:\n{}", show(&got));
    bob.send("PRIVMSG #room :lower case");
    bob.send("PRIVMSG ALICE :upper case");
    bob.sync();
    let got = alice.sync();
    let texts: Vec<(&str, &str)> = got.iter().map(|m| (m.param(0), m.last())).collect();
    assert_eq!(texts.len(), 2, "{}", show(&got));
    assert_eq!(texts[0].1, "lower case");
    assert_eq!(texts[1].1, "upper case");
}
