//! Conformance of chat mode with the RFC 1459/2812 client protocol, modelled on what the upstream
//! irctest suite (progval/irctest, irctest/server_tests/) checks in its RFC-basics selection:
//! connection_registration, join, part, messages, pingpong, quit, names, topic, list, who and
//! isupport, without the tests marked services, IRCv3, implementation-specific, strict or
//! deprecated. These are our own tests written from the behaviour those tests expect (and the
//! RFCs); each names the upstream test it mirrors.
//!
//! Conventions taken from irctest so that the expectations are the same: the server is named
//! `My.Little.Server`, the operator credentials are `operuser`/`operpassword`, the server password
//! (where one is set) is `testpassword`, and flood control is off (irctest configures servers that
//! way). irctest's "getMessages" (everything the server sends in reply) is `Client::sync` here: a
//! PING/PONG round trip instead of a quiet period; its "getMessage" is `Client::next`.
//!
//! Upstream tests that do not apply here, and why:
//! - connection_registration.py testPassAfterNickuser (strict), testIrc301CapLs and
//!   testEmptyCapList (IRCv3); join.py testJoinAllMessages (strict),
//!   testJoinPartiallyInvalidLabeledResponse (IRCv3); messages.py testLineTooLong (IRCv3
//!   message-tags), testNoCTCPMode (Ergo); quit.py NoCTCPTestCase (Ergo); names.py *1459 and
//!   *NoArgument* (deprecated); who.py WhoServicesTestCase testWhoxAccount (services),
//!   testWhoUsernameRealName/testWhoRealNameSpaces (skipped upstream); isupport.py testValues
//!   (compares with values each upstream controller declares).
//! - The queries section at the end (WHOX, ELIST, WHOWAS, LUSERS, INFO, HELP, LINKS, WALLOPS)
//!   also covers who.py's WHOX tests (IRCv3) and the Modern tests of list.py, whowas.py, lusers.py,
//!   info.py, help.py, links.py and wallops.py. list.py testListCreationTime/testListTopicTime
//!   wait minutes under faketime; here only their bounds are checked over sockets, the minutes
//!   are in the unit tests (src/chat/server/tests/queries_ext.rs). whowas.py testWhowasWildcard
//!   and testWhowasNoParamRfc are deprecated and not followed (no wildcards; 431 alone).
//! - messages.py testLineAtLimit/testLineBeyondLimit are marked Ergo-specific upstream; they are
//!   included below anyway because issue 4 specifies the 512-byte limit with 417.

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::collections::HashMap;

use common::embedded::Server;
use irc::{Client, Message, WAIT, isupport, show};

const SERVER_NAME: &str = "My.Little.Server";
const PASSWORD: &str = "testpassword";

/// A chat server configured the way irctest configures the servers it tests, embedded in the test
/// process: these tests look at nothing but the protocol.
fn server(extra: &[&str]) -> Server {
    let mut args =
        vec!["--mode", "chat", "--server-name", SERVER_NAME, "--flood-rate", "0", "--oper", "operuser:operpassword"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// irctest's addClient: a connection, not registered.
fn add_client(s: &Server, name: &str) -> Client {
    Client::connect(s.addr(), name)
}

/// irctest's connectClient: registered, with everything it was sent so far drained. Returns the
/// welcome burst too.
fn connect_client_burst(s: &Server, nick: &str) -> (Client, Vec<Message>) {
    let mut c = Client::connect(s.addr(), nick);
    let mut burst = c.register(nick);
    burst.extend(c.sync());
    (c, burst)
}

fn connect_client(s: &Server, nick: &str) -> Client {
    connect_client_burst(s, nick).0
}

/// irctest's joinChannel: JOIN, wait for the join burst, drain.
fn join_channel(c: &mut Client, channel: &str) {
    c.join(channel);
    c.sync();
}

/// irctest's getRegistrationMessage: the next line that is not a NOTICE (`None` on EOF).
fn registration_message(c: &mut Client) -> Option<Message> {
    loop {
        let m = c.next_or_closed(WAIT)?;
        if !m.is("NOTICE") {
            return Some(m);
        }
    }
}

/// One expected parameter.
#[derive(Clone, Copy)]
enum P<'a> {
    /// Exactly this.
    Is(&'a str),
    /// Anything.
    Any,
    /// Equal ignoring ASCII case (irctest's InsensitiveStr).
    NoCase(&'a str),
    /// Satisfies the predicate; the text describes it (as irctest's StrRe pattern would).
    Like(&'a str, fn(&str) -> bool),
}

impl P<'_> {
    fn matches(&self, got: &str) -> bool {
        match self {
            P::Is(s) => got == *s,
            P::Any => true,
            P::NoCase(s) => got.eq_ignore_ascii_case(s),
            P::Like(_, f) => f(got),
        }
    }

    fn describe(&self) -> String {
        match self {
            P::Is(s) => format!("{s:?}"),
            P::Any => "ANY".to_owned(),
            P::NoCase(s) => format!("{s:?} (any case)"),
            P::Like(d, _) => format!("/{d}/"),
        }
    }
}

fn describe(command: &str, params: &[P]) -> String {
    let ps: Vec<String> = params.iter().map(P::describe).collect();
    format!("{command} [{}]", ps.join(", "))
}

fn matches(m: &Message, command: &str, params: &[P]) -> bool {
    m.is(command) && m.params.len() == params.len() && m.params.iter().zip(params).all(|(g, p)| p.matches(g))
}

/// irctest's assertMessageMatch: fails with the expected and the actual line.
#[track_caller]
fn assert_msg(c: &Client, m: &Message, command: &str, params: &[P]) {
    if !matches(m, command, params) {
        c.fail(&format!("expected {}\n       got {m}  (params {:?})", describe(command, params), m.params));
    }
}

/// irctest's assertIn(m.command, ...).
#[track_caller]
fn assert_cmd_in(c: &Client, m: &Message, commands: &[&str]) {
    if !commands.iter().any(|cmd| m.is(cmd)) {
        c.fail(&format!("expected one of {commands:?}, got {m}"));
    }
}

fn command_set(msgs: &[Message]) -> std::collections::BTreeSet<String> {
    msgs.iter().map(|m| m.command.clone()).collect()
}

// Patterns used as irctest's StrRe.
fn names_symbol(s: &str) -> bool {
    matches!(s, "=" | "*" | "@")
}

fn optional_prefix_is(s: &str, nick: &str) -> bool {
    s.strip_prefix(['@', '+']).unwrap_or(s) == nick
}

// ---------------------------------------------------------------------------------------------
// connection_registration.py
// ---------------------------------------------------------------------------------------------

// irctest: connection_registration.py testPassBeforeNickuser
#[test]
fn registration_pass_before_nick_user_is_welcomed() {
    let s = server(&["--password", PASSWORD]);
    let mut c = add_client(&s, "foo");
    c.send(&format!("PASS {PASSWORD}"));
    c.send("NICK foo");
    c.send("USER username * * :Realname");
    let m = registration_message(&mut c).unwrap_or_else(|| c.fail("closed instead of 001"));
    if !m.is("001") {
        c.fail(&format!("did not get 001 after correct PASS+NICK+USER: {m}"));
    }
}

// irctest: connection_registration.py testNoPassword
#[test]
fn registration_without_required_pass_is_not_welcomed() {
    let s = server(&["--password", PASSWORD]);
    let mut c = add_client(&s, "foo");
    c.send("NICK foo");
    c.send("USER username * * :Realname");
    let m = registration_message(&mut c).unwrap_or_else(|| c.fail("closed without a reply"));
    assert!(!m.is("001"), "got 001 after NICK+USER but missing PASS");
}

// irctest: connection_registration.py testWrongPassword
#[test]
fn registration_with_wrong_pass_gets_464_then_error() {
    let s = server(&["--password", PASSWORD]);
    let mut c = add_client(&s, "foo");
    c.send(&format!("PASS {PASSWORD}garbage"));
    c.send("NICK foo");
    c.send("USER username * * :Realname");
    let m = registration_message(&mut c).unwrap_or_else(|| c.fail("closed without a reply"));
    assert!(!m.is("001"), "got 001 after NICK+USER but incorrect PASS");
    assert_cmd_in(&c, &m, &["464", "ERROR"]);
    if m.is("464") {
        // "MUST close the connection with ERROR" (modern-irc).
        let m = registration_message(&mut c).unwrap_or_else(|| c.fail("464 not followed by ERROR (closed)"));
        assert_cmd_in(&c, &m, &["ERROR"]);
    }
    c.expect_closed(WAIT);
}

// irctest: connection_registration.py testConnectionRegistration
#[test]
fn registration_burst_is_001_to_005_lusers_then_motd() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("NICK foo");
    c.send("USER foo * * :foo");
    let next = |c: &mut Client| registration_message(c).unwrap_or_else(|| c.fail("closed during registration"));
    for numeric in ["001", "002", "003"] {
        let m = next(&mut c);
        assert_msg(&c, &m, numeric, &[P::Is("foo"), P::Any]);
    }
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    let m = next(&mut c);
    let mut want =
        vec![P::Is("foo"), P::Is(SERVER_NAME), P::Any, P::Like("[a-zA-Z]+", letters), P::Like("[a-zA-Z]+", letters)];
    if m.params.len() == 6 {
        want.push(P::Like("[a-zA-Z]+", letters));
    }
    assert_msg(&c, &m, "004", &want);

    let mut m = next(&mut c);
    assert!(m.is("005"), "no 005 after 004: {m}");
    while m.is("005") {
        assert_eq!(m.param(0), "foo", "{m}");
        assert!(m.params.len() >= 2, "{m}");
        m = next(&mut c);
    }
    if m.is("396") {
        m = next(&mut c);
    }
    while ["250", "251", "252", "253", "254", "255", "265", "266"].iter().any(|n| m.is(n)) {
        m = next(&mut c);
    }
    if m.is("MODE") || m.is("221") {
        assert_eq!(m.param(0), "foo", "{m}");
        assert!(m.params.len() >= 2, "{m}");
        m = next(&mut c);
    }
    if m.is("375") {
        assert_msg(&c, &m, "375", &[P::Is("foo"), P::Any]);
        m = next(&mut c);
        while m.is("372") {
            assert_msg(&c, &m, "372", &[P::Is("foo"), P::Any]);
            m = next(&mut c);
        }
        assert_msg(&c, &m, "376", &[P::Is("foo"), P::Any]);
    } else {
        assert_msg(&c, &m, "422", &[P::Is("foo"), P::Any]);
    }
}

// irctest: connection_registration.py testQuitDisconnects
#[test]
fn quit_closes_the_connection() {
    let s = server(&[]);
    let mut c = connect_client(&s, "foo");
    c.send("QUIT");
    c.expect_closed(WAIT);
}

// irctest: connection_registration.py testQuitErrors
#[test]
fn quit_is_acknowledged_with_error() {
    let s = server(&[]);
    let mut c = connect_client(&s, "foo");
    c.send("QUIT");
    let tail = c.expect_closed(WAIT);
    assert!(tail.iter().any(|m| m.is("ERROR")), "did not receive ERROR as a reply to QUIT:\n{}", show(&tail));
}

// irctest: connection_registration.py testNickCollision
#[test]
fn nick_collision_with_a_registered_user() {
    let s = server(&[]);
    let _foo = connect_client(&s, "foo");
    let mut c = add_client(&s, "second");
    c.send("NICK foo");
    c.send("USER username * * :Realname");
    let m = registration_message(&mut c).unwrap_or_else(|| c.fail("closed without a reply"));
    assert!(!m.is("001"), "received 001 after registering with the nick of a registered user");
}

// irctest: connection_registration.py testEarlyNickCollision
#[test]
fn early_nick_collision_registers_exactly_one() {
    let s = server(&[]);
    let mut c1 = add_client(&s, "client1");
    let mut c2 = add_client(&s, "client2");
    c1.send("NICK foo");
    c2.send("NICK foo");
    c1.send("USER username * * :Realname");
    let _ = c2.try_send_raw(b"USER username * * :Realname\r\n");
    let cmd1 = registration_message(&mut c1).map(|m| m.command);
    let cmd2 = registration_message(&mut c2).map(|m| m.command);
    let pair = (cmd1.as_deref(), cmd2.as_deref());
    assert_ne!(pair, (Some("001"), Some("001")), "both registering clients got 001 for the same nick");
    assert!(cmd1.as_deref() == Some("001") || cmd2.as_deref() == Some("001"), "neither got 001: {pair:?}");
}

// irctest: connection_registration.py testEmptyRealname
#[test]
fn empty_realname_is_refused_with_461() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("NICK foo");
    c.send("USER username * * :");
    let m = registration_message(&mut c).unwrap_or_else(|| c.fail("closed without a reply"));
    assert_msg(&c, &m, "461", &[P::Like("(\\*|foo)", |s| s == "*" || s == "foo"), P::Is("USER"), P::Any]);
}

// irctest: connection_registration.py testNonutf8Realname
#[test]
fn non_utf8_realname_is_accepted_or_rejected_cleanly() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("NICK foo");
    c.send_raw(b"USER username * * :i\xe8rc\xe9\r\n");
    let m = c.expect(|m| m.is("001") || m.is("ERROR") || m.is("FAIL"), WAIT);
    if !m.is("001") {
        return; // rejected: nothing more to check
    }
    c.sync();
    c.send("WHOIS foo");
    let got = c.sync();
    assert!(
        got.iter().any(|m| m.raw.windows(8).any(|w| w == b"username")),
        "WHOIS does not show the user name:\n{}",
        show(&got)
    );
}

// irctest: connection_registration.py testNonutf8Username
#[test]
fn non_ascii_username_is_accepted_or_rejected_cleanly() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("NICK foo");
    c.send("USER 😊😊😊😊😊😊😊😊😊😊 * * :realname");
    let m = c.expect(|m| m.is("001") || m.is("468") || m.is("ERROR"), WAIT);
    if !m.is("001") {
        return; // rejected: nothing more to check
    }
    c.sync();
    c.send("WHOIS foo");
    let got = c.sync();
    assert!(
        got.iter().any(|m| m.raw.windows(8).any(|w| w == b"realname")),
        "WHOIS does not show the real name:\n{}",
        show(&got)
    );
    for m in &got {
        assert!(
            std::str::from_utf8(&m.raw).is_ok(),
            "a WHOIS line is not valid UTF-8 (cut inside a character?): {:?}",
            m.raw
        );
    }
}

// ---------------------------------------------------------------------------------------------
// join.py
// ---------------------------------------------------------------------------------------------

// irctest: join.py testJoinNamreply
#[test]
fn join_namreply_lists_the_members() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("JOIN #chan");
    let got = c_foo.sync();
    let n353: Vec<&Message> = got.iter().filter(|m| m.is("353")).collect();
    assert!(!n353.is_empty(), "no 353 after JOIN:\n{}", show(&got));
    for m in n353 {
        assert_msg(
            &c_foo,
            m,
            "353",
            &[
                P::Is("foo"),
                P::Like("[=*@]", names_symbol),
                P::Is("#chan"),
                P::Like("[@+]?foo", |s| optional_prefix_is(s, "foo")),
            ],
        );
    }

    let mut c_bar = connect_client(&s, "bar");
    c_bar.send("JOIN #chan");
    let got = c_bar.sync();
    let n353: Vec<&Message> = got.iter().filter(|m| m.is("353")).collect();
    assert!(!n353.is_empty(), "no 353 after JOIN:\n{}", show(&got));
    let both = |s: &str| {
        let v: Vec<&str> = s.split(' ').collect();
        v.len() == 2
            && ((optional_prefix_is(v[0], "foo") && v[1] == "bar")
                || (v[0] == "bar" && optional_prefix_is(v[1], "foo")))
    };
    for m in n353 {
        assert_msg(
            &c_bar,
            m,
            "353",
            &[
                P::Is("bar"),
                P::Like("[=*@]", names_symbol),
                P::Is("#chan"),
                P::Like("([@+]?foo bar|bar [@+]?foo)", both),
            ],
        );
    }
}

// irctest: join.py testJoinTwice
#[test]
fn join_twice_is_harmless() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("JOIN #chan");
    let m = c_foo.next(WAIT);
    assert_msg(&c_foo, &m, "JOIN", &[P::Is("#chan")]);
    c_foo.sync();
    c_foo.send("JOIN #chan");
    // There may be no reply at all; if NAMES comes, it is right.
    for m in c_foo.sync().iter().filter(|m| m.is("353")) {
        assert_msg(
            &c_foo,
            m,
            "353",
            &[
                P::Is("foo"),
                P::Like("[=*@]", names_symbol),
                P::Is("#chan"),
                P::Like("[@+]?foo", |s| optional_prefix_is(s, "foo")),
            ],
        );
    }
}

// irctest: join.py testJoinPartiallyInvalid
#[test]
fn join_list_with_one_invalid_name_joins_the_valid_one() {
    let s = server(&[]);
    let (mut c_foo, burst) = connect_client_burst(&s, "foo");
    let targmax = isupport(&burst).get("TARGMAX").cloned().unwrap_or_default();
    let join_max = targmax.split(',').find_map(|t| t.strip_prefix("JOIN:")).unwrap_or("4");
    assert!(join_max.is_empty() || join_max.parse::<u32>().unwrap() >= 2, "multi-channel JOIN: TARGMAX={targmax}");

    c_foo.send("JOIN #valid,inv@lid");
    let got = c_foo.sync();
    let errors = ["476", "403", "448", "479"];
    let received = command_set(&got);
    for want in ["353", "366", "JOIN"] {
        assert!(received.contains(want), "no {want} in:\n{}", show(&got));
    }
    for cmd in &received {
        assert!(
            ["353", "366", "JOIN", "MODE"].contains(&cmd.as_str()) || errors.contains(&cmd.as_str()),
            "unexpected {cmd}:\n{}",
            show(&got)
        );
    }
    let errs: Vec<&Message> = got.iter().filter(|m| errors.iter().any(|e| m.is(e))).collect();
    assert_eq!(errs.len(), 1, "expected 1 error for 'inv@lid':\n{}", show(&got));
    assert_msg(&c_foo, errs[0], &errs[0].command, &[P::Is("foo"), P::Is("inv@lid"), P::Any]);
}

// ---------------------------------------------------------------------------------------------
// part.py
// ---------------------------------------------------------------------------------------------

// irctest: part.py testPartNotInEmptyChannel
#[test]
fn part_of_a_channel_that_does_not_exist() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PART #chan");
    let m = c_foo.next(WAIT);
    assert_cmd_in(&c_foo, &m, &["442", "403"]);
}

// irctest: part.py testPartNotInNonEmptyChannel
#[test]
fn part_of_a_channel_one_is_not_in() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    let mut c_bar = connect_client(&s, "bar");
    c_foo.send("JOIN #chan");
    c_foo.sync();
    c_bar.send("PART #chan");
    let m = c_bar.next(WAIT);
    assert_cmd_in(&c_bar, &m, &["442"]);
    c_bar.assert_quiet("after 442");
}

fn part_scenario(part_line: &str, want: &[P]) {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    c_bar.send("JOIN #chan");
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "JOIN", &[P::Is("#chan")]);
    let mut c_baz = connect_client(&s, "baz");
    c_baz.send("JOIN #chan");
    let m = c_baz.next(WAIT);
    assert_msg(&c_baz, &m, "JOIN", &[P::Is("#chan")]);
    c_bar.sync();
    c_baz.sync();

    c_bar.send(part_line);
    // Both the parting client and the other member get the PART.
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "PART", want);
    let m = c_baz.next(WAIT);
    assert_msg(&c_baz, &m, "PART", want);
}

// irctest: part.py testBasicPart
#[test]
fn part_is_sent_to_the_parting_client_and_the_members() {
    part_scenario("PART #chan", &[P::Is("#chan")]);
}

// irctest: part.py testBasicPartRfc2812
#[test]
fn part_message_is_relayed_rfc2812() {
    part_scenario("PART #chan :bye everyone", &[P::Is("#chan"), P::Is("bye everyone")]);
}

// irctest: part.py testPartMessage
#[test]
fn part_message_is_relayed() {
    part_scenario("PART #chan :bye everyone", &[P::Is("#chan"), P::Is("bye everyone")]);
}

// ---------------------------------------------------------------------------------------------
// messages.py
// ---------------------------------------------------------------------------------------------

fn channel_message(command: &str) {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("JOIN #chan");
    let mut c_bar = connect_client(&s, "bar");
    c_bar.send("JOIN #chan");
    c_bar.sync();
    c_foo.sync();
    c_foo.send(&format!("{command} #chan :hello there"));
    c_foo.sync();
    let got: Vec<Message> = c_bar.sync().into_iter().filter(|m| m.is(command)).collect();
    assert_eq!(got.len(), 1, "expected one {command}:\n{}", show(&got));
    assert_msg(&c_bar, &got[0], command, &[P::Is("#chan"), P::Is("hello there")]);
}

// irctest: messages.py testPrivmsg
#[test]
fn privmsg_to_a_channel() {
    channel_message("PRIVMSG");
}

// irctest: messages.py testNotice
#[test]
fn notice_to_a_channel() {
    channel_message("NOTICE");
}

// irctest: messages.py testPrivmsgNonexistentChannel
#[test]
fn privmsg_to_a_nonexistent_channel() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PRIVMSG #nonexistent :hello there");
    let m = c_foo.next(WAIT);
    assert_cmd_in(&c_foo, &m, &["401", "403", "404"]);
}

// irctest: messages.py testPrivmsgToUser
#[test]
fn privmsg_to_a_user() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    let mut c_bar = connect_client(&s, "bar");
    c_foo.send("PRIVMSG bar :hey there!");
    c_foo.sync();
    let got: Vec<Message> = c_bar.sync().into_iter().filter(|m| m.is("PRIVMSG")).collect();
    assert_eq!(got.len(), 1, "expected one PRIVMSG:\n{}", show(&got));
    assert_msg(&c_bar, &got[0], "PRIVMSG", &[P::Is("bar"), P::Is("hey there!")]);
}

// irctest: messages.py testPrivmsgNonexistentUser
#[test]
fn privmsg_to_a_nonexistent_user() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PRIVMSG bar :hey there!");
    let m = c_foo.next(WAIT);
    assert_cmd_in(&c_foo, &m, &["401"]);
}

// irctest: messages.py testNoticeNonexistentChannel
#[test]
fn notice_to_a_nonexistent_channel_gets_no_reply() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("NOTICE #nonexistent :hello there");
    c_foo.assert_quiet("automatic replies must never be sent in response to a NOTICE");
}

// irctest: messages.py testLineAtLimit (marked Ergo upstream; issue 4 specifies the limit)
#[test]
fn line_of_exactly_512_bytes_is_processed() {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    let line = format!("PING {}", "x".repeat(512 - 7));
    assert_eq!(line.len(), 510);
    c_bar.send(&line);
    let m = c_bar.next(WAIT);
    assert!(m.is("PONG"), "expected PONG, got {m}");
    assert!(m.last().contains(&"x".repeat(450)), "{m}");
}

// irctest: messages.py testLineBeyondLimit (marked Ergo upstream; issue 4 specifies 417)
#[test]
fn line_over_512_bytes_gets_417_and_the_connection_survives() {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    let line = format!("PING {}", "x".repeat(512 - 6));
    assert_eq!(line.len(), 511);
    c_bar.send(&line);
    let m = c_bar.next(WAIT);
    assert_cmd_in(&c_bar, &m, &["417"]);
    join_channel(&mut c_bar, "#test_channel");
}

// ---------------------------------------------------------------------------------------------
// pingpong.py
// ---------------------------------------------------------------------------------------------

// irctest: pingpong.py testPing
#[test]
fn ping_is_answered_with_pong_from_the_server() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PING abcdef");
    let m = c_foo.next(WAIT);
    assert_msg(&c_foo, &m, "PONG", &[P::Is(SERVER_NAME), P::Is("abcdef")]);
}

// irctest: pingpong.py testPingNoToken
#[test]
fn ping_without_a_token() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PING");
    let m = c_foo.next(WAIT);
    if m.is("409") {
        assert_msg(&c_foo, &m, "409", &[P::Is("foo"), P::Any]);
    } else {
        assert_msg(&c_foo, &m, "461", &[P::Is("foo"), P::Is("PING"), P::Any]);
    }
}

// irctest: pingpong.py testPingEmptyToken
#[test]
fn ping_with_an_empty_token() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("PING :");
    let m = c_foo.next(WAIT);
    if m.is("PONG") {
        assert_msg(&c_foo, &m, "PONG", &[P::Is(SERVER_NAME), P::Is("")]);
    } else if m.is("409") {
        assert_msg(&c_foo, &m, "409", &[P::Is("foo"), P::Any]);
    } else {
        assert_msg(&c_foo, &m, "461", &[P::Is("foo"), P::Is("PING"), P::Any]);
    }
}

// ---------------------------------------------------------------------------------------------
// quit.py
// ---------------------------------------------------------------------------------------------

// irctest: quit.py ChannelQuitTestCase.testQuit
#[test]
fn quit_is_seen_by_channel_members_with_its_reason() {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    join_channel(&mut c_bar, "#chan");
    let mut c_qux = connect_client(&s, "qux");
    c_qux.send("JOIN #chan");
    c_qux.sync();
    c_bar.sync();
    c_qux.send("QUIT :qux out");
    c_qux.expect_closed(WAIT);
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "QUIT", &[P::Like(".*qux out.*", |s| s.contains("qux out"))]);
    assert!(m.prefix.as_deref().unwrap_or("").starts_with("qux"), "the source is the quitter: {m}");
}

// ---------------------------------------------------------------------------------------------
// names.py
// ---------------------------------------------------------------------------------------------

// irctest: names.py testNames2812
#[test]
fn names_of_a_channel() {
    let s = server(&[]);
    let mut nick1 = connect_client(&s, "nick1");
    nick1.send("JOIN #chan");
    nick1.sync();
    let mut nick2 = connect_client(&s, "nick2");
    nick2.send("JOIN #chan");
    nick2.sync();
    nick1.sync();

    nick1.send("NAMES #chan");
    let m = nick1.next(WAIT);
    assert_msg(
        &nick1,
        &m,
        "353",
        &[
            P::Is("nick1"),
            P::Is("="),
            P::Is("#chan"),
            P::Like("(nick2 @nick1|@nick1 nick2)", |s| s == "nick2 @nick1" || s == "@nick1 nick2"),
        ],
    );
    let m = nick1.next(WAIT);
    assert_msg(&nick1, &m, "366", &[P::Is("nick1"), P::Is("#chan"), P::Any]);
}

// irctest: names.py testNames2812Secret
#[test]
fn names_of_a_secret_channel_use_the_at_symbol() {
    let s = server(&[]);
    let mut nick1 = connect_client(&s, "nick1");
    nick1.send("JOIN #chan");
    nick1.send("MODE #chan +s");
    nick1.sync();
    nick1.send("NAMES #chan");
    let got = nick1.sync();
    assert!(got.len() >= 2, "{}", show(&got));
    assert_msg(
        &nick1,
        &got[0],
        "353",
        &[P::Is("nick1"), P::Is("@"), P::Is("#chan"), P::Like("@nick1 ?", |s| s.trim_end() == "@nick1")],
    );
    assert_msg(&nick1, &got[1], "366", &[P::Is("nick1"), P::Is("#chan"), P::Any]);

    let mut nick2 = connect_client(&s, "nick2");
    nick2.send("JOIN #chan");
    let got = nick2.sync();
    let n353: Vec<&Message> = got.iter().filter(|m| m.is("353")).collect();
    assert!(!n353.is_empty(), "{}", show(&got));
    for m in n353 {
        assert_msg(&nick2, m, "353", &[P::Is("nick2"), P::Is("@"), P::Is("#chan"), P::Any]);
    }
}

// irctest: names.py testNamesMultipleChannels2812
#[test]
fn names_of_several_channels() {
    let s = server(&[]);
    let (mut nick1, burst) = connect_client_burst(&s, "nick1");
    let targmax = isupport(&burst).get("TARGMAX").cloned().unwrap_or_default();
    let names_max = targmax.split(',').find_map(|t| t.strip_prefix("NAMES:")).unwrap_or("1");
    assert_ne!(names_max, "1", "multi-target NAMES is advertised (TARGMAX={targmax}), so this test applies");

    nick1.send("JOIN #chan1");
    nick1.send("JOIN #chan2");
    nick1.sync();
    nick1.send("NAMES #chan1,#chan2");
    let m = nick1.next(WAIT);
    assert_msg(&nick1, &m, "353", &[P::Is("nick1"), P::Is("="), P::Is("#chan1"), P::Is("@nick1")]);
    let m = nick1.next(WAIT);
    assert_msg(&nick1, &m, "353", &[P::Is("nick1"), P::Is("="), P::Is("#chan2"), P::Is("@nick1")]);
    let m = nick1.next(WAIT);
    assert_msg(&nick1, &m, "366", &[P::Is("nick1"), P::Is("#chan1,#chan2"), P::Any]);
}

// irctest: names.py testNamesInvalidChannel
#[test]
fn names_of_an_invalid_channel_name() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("NAMES invalid");
    let m = c_foo.next(WAIT);
    assert_msg(&c_foo, &m, "366", &[P::Is("foo"), P::Is("invalid"), P::Any]);
}

// irctest: names.py testNamesNonexistingChannel
#[test]
fn names_of_a_nonexistent_channel() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("NAMES #nonexisting");
    let m = c_foo.next(WAIT);
    assert_msg(&c_foo, &m, "366", &[P::Is("foo"), P::Is("#nonexisting"), P::Any]);
}

// ---------------------------------------------------------------------------------------------
// topic.py
// ---------------------------------------------------------------------------------------------

fn two_in_chan(s: &Server) -> (Client, Client) {
    let mut c_foo = connect_client(s, "foo");
    join_channel(&mut c_foo, "#chan");
    let mut c_bar = connect_client(s, "bar");
    join_channel(&mut c_bar, "#chan");
    c_foo.sync();
    c_bar.sync();
    (c_foo, c_bar)
}

// irctest: topic.py testTopic
#[test]
fn topic_change_is_sent_to_members() {
    let s = server(&[]);
    let (mut c_foo, mut c_bar) = two_in_chan(&s);
    c_foo.send("TOPIC #chan :T0P1C");
    let m = c_foo.next(WAIT);
    assert!(!m.is("482"), "the channel creator may set the topic: {m}");
    assert_msg(&c_foo, &m, "TOPIC", &[P::Is("#chan"), P::Is("T0P1C")]);
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "TOPIC", &[P::Is("#chan"), P::Is("T0P1C")]);
}

// irctest: topic.py testTopicUnchanged
#[test]
fn topic_set_to_the_same_text_is_not_rebroadcast() {
    let s = server(&[]);
    let (mut c_foo, mut c_bar) = two_in_chan(&s);
    c_foo.send("TOPIC #chan :T0P1C");
    c_foo.sync();
    c_bar.sync();
    c_foo.send("TOPIC #chan :T0P1C");
    let to_foo = c_foo.sync();
    let to_bar = c_bar.sync();
    assert!(to_bar.is_empty(), "unchanged topic was transmitted to the other member:\n{}", show(&to_bar));
    assert!(to_foo.is_empty(), "unchanged topic was echoed to its setter:\n{}", show(&to_foo));
}

// irctest: topic.py testTopicMode
#[test]
fn topic_lock_mode_refuses_non_operators() {
    let s = server(&[]);
    let (mut c_foo, mut c_bar) = two_in_chan(&s);
    c_foo.send("MODE #chan +t");
    c_foo.sync();
    c_bar.sync();
    c_bar.send("TOPIC #chan :T0P1C");
    let m = c_bar.next(WAIT);
    if !m.is("482") {
        c_bar.fail(&format!("non-op user was not refused use of TOPIC: {m}"));
    }
    c_foo.assert_quiet("a refused TOPIC reaches no one");

    c_foo.send("MODE #chan -t");
    c_foo.sync();
    c_bar.send("TOPIC #chan :T0P1C");
    let m = c_bar.next(WAIT);
    assert!(!m.is("482"), "user was refused TOPIC whereas +t was not set: {m}");
    let m = c_foo.next(WAIT);
    assert_msg(&c_foo, &m, "TOPIC", &[P::Is("#chan"), P::Is("T0P1C")]);
}

// irctest: topic.py testTopicNonexistentChannel
#[test]
fn topic_of_a_nonexistent_channel() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    c_foo.send("TOPIC #chan");
    let m = c_foo.next(WAIT);
    assert_cmd_in(&c_foo, &m, &["403", "443"]);
}

// irctest: topic.py testUnsetTopicResponses
#[test]
fn unset_topic_responses() {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    c_bar.send("JOIN #test");
    let got = c_bar.sync();
    assert!(!got.iter().any(|m| m.is("331")), "RPL_NOTOPIC on creating a channel:\n{}", show(&got));

    let mut c_baz = connect_client(&s, "baz");
    c_baz.send("JOIN #test");
    let got = c_baz.sync();
    assert!(!got.iter().any(|m| m.is("331")), "RPL_NOTOPIC on joining:\n{}", show(&got));
    c_baz.send("TOPIC #test");
    let got = c_baz.sync();
    assert!(got.iter().any(|m| m.is("331")), "explicit TOPIC gets RPL_NOTOPIC:\n{}", show(&got));
    c_bar.sync();

    c_bar.send("TOPIC #test :new topic");
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "TOPIC", &[P::Is("#test"), P::Is("new topic")]);
    let m = c_baz.next(WAIT);
    assert_msg(&c_baz, &m, "TOPIC", &[P::Is("#test"), P::Is("new topic")]);

    c_bar.send("TOPIC #test :");
    let m = c_bar.next(WAIT);
    assert_msg(&c_bar, &m, "TOPIC", &[P::Is("#test"), P::Is("")]);
    let m = c_baz.next(WAIT);
    assert_msg(&c_baz, &m, "TOPIC", &[P::Is("#test"), P::Is("")]);

    let mut c_qux = connect_client(&s, "qux");
    c_qux.send("join #test");
    let got = c_qux.sync();
    assert!(!got.iter().any(|m| m.is("331")), "RPL_NOTOPIC on joining after the topic was unset:\n{}", show(&got));
}

// irctest: topic.py testTopicPrivileges
#[test]
fn topic_privileges_with_mode_t_and_voice() {
    let s = server(&[]);
    let mut c_bar = connect_client(&s, "bar");
    join_channel(&mut c_bar, "#chan");
    c_bar.send("MODE #chan +t");
    let replies = command_set(&c_bar.sync());
    assert!(!replies.contains("482"), "{replies:?}");
    c_bar.send("TOPIC #chan :new topic");
    let replies = command_set(&c_bar.sync());
    assert!(replies.contains("TOPIC") && !replies.contains("482"), "{replies:?}");

    let mut c_qux = connect_client(&s, "qux");
    join_channel(&mut c_qux, "#chan");
    c_qux.send("TOPIC #chan :new topic");
    let replies = command_set(&c_qux.sync());
    assert!(replies.contains("482") && !replies.contains("TOPIC"), "{replies:?}");

    c_bar.send("MODE #chan +v qux");
    let replies = command_set(&c_bar.sync());
    assert!(replies.contains("MODE") && !replies.contains("482"), "{replies:?}");

    // +v does not allow changing the topic of a +t channel.
    c_qux.send("TOPIC #chan :new topic");
    let replies = command_set(&c_qux.sync());
    assert!(replies.contains("482") && !replies.contains("TOPIC"), "{replies:?}");

    // RPL_TOPIC and RPL_TOPICTIME on join.
    let mut c_buzz = connect_client(&s, "buzz");
    c_buzz.send("JOIN #chan");
    let got = c_buzz.sync();
    let topic = got.iter().find(|m| m.is("332")).unwrap_or_else(|| c_buzz.fail("no 332 on join"));
    assert_msg(&c_buzz, topic, "332", &[P::Is("buzz"), P::Is("#chan"), P::Is("new topic")]);
    assert_eq!(got.iter().filter(|m| m.is("333")).count(), 1, "{}", show(&got));
}

// ---------------------------------------------------------------------------------------------
// list.py
// ---------------------------------------------------------------------------------------------

// irctest: list.py testListEmpty
#[test]
fn list_with_no_channels() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    let mut c_bar = connect_client(&s, "bar");
    c_foo.sync();
    c_bar.send("LIST");
    let mut m = c_bar.next(WAIT);
    if m.is("321") {
        m = c_bar.next(WAIT);
    }
    while m.is("322") && m.param(1).starts_with('&') {
        m = c_bar.next(WAIT);
    }
    assert!(!m.is("322"), "LIST gives a channel whereas there is none: {m}");
    assert_cmd_in(&c_bar, &m, &["323"]);
}

// irctest: list.py testListOne
#[test]
fn list_with_one_channel() {
    let s = server(&[]);
    let mut c_foo = connect_client(&s, "foo");
    let mut c_bar = connect_client(&s, "bar");
    c_foo.send("JOIN #chan");
    c_foo.sync();
    c_bar.send("LIST");
    let mut m = c_bar.next(WAIT);
    if m.is("321") {
        m = c_bar.next(WAIT);
    }
    assert!(!m.is("323"), "LIST ended without listing the channel: {m}");
    assert_cmd_in(&c_bar, &m, &["322"]);
    assert_eq!(m.param(1), "#chan", "{m}");
    let mut m = c_bar.next(WAIT);
    while m.is("322") && m.param(1).starts_with('&') {
        m = c_bar.next(WAIT);
    }
    assert!(!m.is("322"), "LIST gives two channels whereas there is one: {m}");
    assert_cmd_in(&c_bar, &m, &["323"]);
}

// ---------------------------------------------------------------------------------------------
// who.py
// ---------------------------------------------------------------------------------------------

const WHO_USER: &str = "myusernam";
const WHO_REAL: &str = "My UniqueReal Name";

/// who.py's _init: coolNick (with a known user and real name) and otherNick, both in #chan.
fn who_init(s: &Server) -> (Client, Client) {
    let mut c1 = add_client(s, "coolNick");
    c1.send("NICK coolNick");
    c1.send(&format!("USER {WHO_USER} 0 * :{WHO_REAL}"));
    c1.finish_registration();
    c1.sync();
    c1.send("JOIN #chan");
    c1.sync();
    let mut c2 = connect_client(s, "otherNick");
    c2.send("JOIN #chan");
    c2.sync();
    (c1, c2)
}

fn user_like(s: &str) -> bool {
    s.strip_prefix('~').unwrap_or(s) == WHO_USER
}

fn host_like(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b))
}

/// "[0-9]+ (0042 )?My UniqueReal Name": hop count, then the real name.
fn realname_like(s: &str) -> bool {
    let Some((hops, rest)) = s.split_once(' ') else { return false };
    !hops.is_empty()
        && hops.bytes().all(|b| b.is_ascii_digit())
        && (rest == WHO_REAL || rest == format!("0042 {WHO_REAL}"))
}

fn hops_then_anything(s: &str) -> bool {
    s.split_once(' ').is_some_and(|(h, _)| !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()))
}

/// who.py's _checkReply: a 352 about coolNick as seen by otherNick, with `flags` (plus `@` when
/// the reply names #chan, where coolNick is operator).
#[track_caller]
fn check_who_reply(c: &Client, reply: &Message, flags: &str) {
    let with_chan = format!("{flags}@");
    let (chan, flags) = if reply.param(1) == "*" { ("*", flags) } else { ("#chan", with_chan.as_str()) };
    assert_msg(
        c,
        reply,
        "352",
        &[
            P::Is("otherNick"),
            P::Is(chan),
            P::Like("~?myusernam", user_like),
            P::Like("[0-9A-Za-z_:.-]+", host_like),
            P::Is(SERVER_NAME),
            P::Is("coolNick"),
            P::Is(flags),
            P::Like("[0-9]+ (0042 )?My UniqueReal Name", realname_like),
        ],
    );
}

fn sort_by_nick(replies: &mut [Message]) {
    replies.sort_by(|a, b| a.param(5).cmp(b.param(5)));
}

// irctest: who.py testWhoStar
#[test]
fn who_star() {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    c2.send("WHO *");
    let mut got = c2.sync();
    assert_eq!(got.len(), 3, "unexpected number of messages:\n{}", show(&got));
    let end = got.pop().unwrap();
    sort_by_nick(&mut got);
    check_who_reply(&c2, &got[0], "H");
    assert_msg(&c2, &end, "315", &[P::Is("otherNick"), P::Is("*"), P::Any]);
}

fn who_nick(mask: &str, away: bool, oper: bool, flags: &str) {
    let s = server(&[]);
    let (mut c1, mut c2) = who_init(&s);
    if oper {
        c1.send("OPER operuser operpassword");
        let got = c1.sync();
        assert!(got.iter().any(|m| m.is("381")), "OPER failed:\n{}", show(&got));
    }
    if away {
        c1.send("AWAY :be right back");
        c1.sync();
    }
    c2.sync();
    c2.send(&format!("WHO {mask}"));
    let got = c2.sync();
    assert_eq!(got.len(), 2, "unexpected number of messages:\n{}", show(&got));
    check_who_reply(&c2, &got[0], flags);
    assert_msg(&c2, &got[1], "315", &[P::Is("otherNick"), P::NoCase(mask), P::Any]);
}

// irctest: who.py testWhoNick[exact]
#[test]
fn who_nick_exact() {
    who_nick("coolNick", false, false, "H");
}

// irctest: who.py testWhoNick[casefolded]
#[test]
fn who_nick_casefolded() {
    who_nick("coolnick", false, false, "H");
}

// irctest: who.py testWhoNick[mask]
#[test]
fn who_nick_mask() {
    who_nick("coolni*", false, false, "H");
}

// irctest: who.py testWhoNickAway[exact]
#[test]
fn who_nick_away_exact() {
    who_nick("coolNick", true, false, "G");
}

// irctest: who.py testWhoNickAway[casefolded]
#[test]
fn who_nick_away_casefolded() {
    who_nick("coolnick", true, false, "G");
}

// irctest: who.py testWhoNickAway[mask]
#[test]
fn who_nick_away_mask() {
    who_nick("coolni*", true, false, "G");
}

// irctest: who.py testWhoNickOper[exact]
#[test]
fn who_nick_oper_exact() {
    who_nick("coolNick", false, true, "H*");
}

// irctest: who.py testWhoNickOper[casefolded]
#[test]
fn who_nick_oper_casefolded() {
    who_nick("coolnick", false, true, "H*");
}

// irctest: who.py testWhoNickOper[mask]
#[test]
fn who_nick_oper_mask() {
    who_nick("coolni*", false, true, "H*");
}

// irctest: who.py testWhoNickAwayAndOper[exact]
#[test]
fn who_nick_away_and_oper_exact() {
    who_nick("coolNick", true, true, "G*");
}

// irctest: who.py testWhoNickAwayAndOper[casefolded]
#[test]
fn who_nick_away_and_oper_casefolded() {
    who_nick("coolnick", true, true, "G*");
}

// irctest: who.py testWhoNickAwayAndOper[mask]
#[test]
fn who_nick_away_and_oper_mask() {
    who_nick("coolni*", true, true, "G*");
}

fn who_chan(mask: &str, oper: bool) {
    let s = server(&[]);
    let (mut c1, mut c2) = who_init(&s);
    if oper {
        c1.send("OPER operuser operpassword");
        let got = c1.sync();
        assert!(got.iter().any(|m| m.is("381")), "OPER failed:\n{}", show(&got));
    }
    c1.send("AWAY :be right back");
    c1.sync();
    c2.sync();
    c2.send(&format!("WHO {mask}"));
    let mut got = c2.sync();
    assert_eq!(got.len(), 3, "unexpected number of messages:\n{}", show(&got));
    let end = got.pop().unwrap();
    sort_by_nick(&mut got);
    assert_msg(
        &c2,
        &got[0],
        "352",
        &[
            P::Is("otherNick"),
            P::Is("#chan"),
            P::Like("~?myusernam", user_like),
            P::Like("[0-9A-Za-z_:.-]+", host_like),
            P::Is(SERVER_NAME),
            P::Is("coolNick"),
            P::Is(if oper { "G*@" } else { "G@" }),
            P::Like("[0-9]+ (0042 )?My UniqueReal Name", realname_like),
        ],
    );
    assert_msg(
        &c2,
        &got[1],
        "352",
        &[
            P::Is("otherNick"),
            P::Is("#chan"),
            P::Any,
            P::Any,
            P::Is(SERVER_NAME),
            P::Is("otherNick"),
            P::Is("H"),
            P::Like("[0-9]+ .*", hops_then_anything),
        ],
    );
    assert_msg(&c2, &end, "315", &[P::Is("otherNick"), P::NoCase(mask), P::Any]);
}

// irctest: who.py testWhoChan[exact]
#[test]
fn who_channel_exact() {
    who_chan("#chan", false);
}

// irctest: who.py testWhoChan[casefolded]
#[test]
fn who_channel_casefolded() {
    who_chan("#CHAN", false);
}

// irctest: who.py testWhoChan[exact], in the upstream revision where coolNick is also an
// IRC operator (flags "G*@")
#[test]
fn who_channel_oper_and_away_exact() {
    who_chan("#chan", true);
}

// irctest: who.py testWhoChan[casefolded], operator revision (flags "G*@")
#[test]
fn who_channel_oper_and_away_casefolded() {
    who_chan("#CHAN", true);
}

// irctest: who.py testWhoMultiChan
#[test]
fn who_channel_names_the_channel_asked_for() {
    let s = server(&[]);
    let (mut c1, mut c2) = who_init(&s);
    c1.send("JOIN #otherchan");
    c1.sync();
    c2.send("JOIN #otherchan");
    c2.sync();
    for chan in ["#chan", "#otherchan"] {
        c2.send(&format!("WHO {chan}"));
        let mut got = c2.sync();
        assert_eq!(got.len(), 3, "unexpected number of messages:\n{}", show(&got));
        let end = got.pop().unwrap();
        sort_by_nick(&mut got);
        for (reply, nick) in got.iter().zip(["coolNick", "otherNick"]) {
            assert_msg(
                &c2,
                reply,
                "352",
                &[P::Is("otherNick"), P::Is(chan), P::Any, P::Any, P::Is(SERVER_NAME), P::Is(nick), P::Any, P::Any],
            );
        }
        assert_msg(&c2, &end, "315", &[P::Is("otherNick"), P::NoCase(chan), P::Any]);
    }
}

// irctest: who.py testWhoNickNotExists
#[test]
fn who_nonexistent_nick_gets_only_end_of_who() {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    c2.send("WHO idontexist");
    let got = c2.sync();
    assert_eq!(got.len(), 1, "{}", show(&got));
    assert_msg(&c2, &got[0], "315", &[P::Is("otherNick"), P::NoCase("idontexist"), P::Any]);
}

// irctest: who.py testWhoInvisible
#[test]
fn who_mask_hides_invisible_users_not_sharing_a_channel() {
    let s = server(&[]);
    let mut evan = connect_client(&s, "evan");
    evan.send("MODE evan +i");
    evan.sync();
    let mut shivaram = connect_client(&s, "shivaram");
    shivaram.send("WHO eva*");
    let got = shivaram.sync();
    assert_eq!(command_set(&got), ["315".to_owned()].into(), "{}", show(&got));
    // Invisibility is not respected for a plain nick, only for masks.
    shivaram.send("WHO evan");
    let got = shivaram.sync();
    assert_eq!(command_set(&got), ["352".to_owned(), "315".to_owned()].into(), "{}", show(&got));
    // Nor between users who share a channel.
    join_channel(&mut evan, "#test");
    join_channel(&mut shivaram, "#test");
    shivaram.send("WHO eva*");
    let got = shivaram.sync();
    assert_eq!(command_set(&got), ["352".to_owned(), "315".to_owned()].into(), "{}", show(&got));
}

// ---------------------------------------------------------------------------------------------
// isupport.py
// ---------------------------------------------------------------------------------------------

// irctest: isupport.py testParameters
#[test]
fn isupport_lines_are_well_formed() {
    let s = server(&[]);
    let (c, burst) = connect_client_burst(&s, "foo");
    let lines: Vec<&Message> = burst.iter().filter(|m| m.is("005")).collect();
    assert!(!lines.is_empty(), "no 005 in the welcome burst");
    for m in lines {
        if m.params.len() < 3 || m.more_than_15_params || m.param(0) != "foo" {
            c.fail(&format!("malformed 005 ({} params): {m}", m.params.len()));
        }
        for tok in &m.params[1..m.params.len() - 1] {
            assert!(tok.is_ascii(), "non-ASCII 005 token {tok:?}");
        }
    }
}

#[test]
fn the_parameter_count_check_sees_a_16th() {
    // Guards the check above: the parser folds a 16th parameter into the 15th.
    let m = Message::parse(b":s 005 foo 1 2 3 4 5 6 7 8 9 10 11 12 13 14 :are supported\r");
    assert!(m.more_than_15_params, "{:?}", m.params);
    let m = Message::parse(b":s 005 foo 1 2 3 4 5 6 7 8 9 10 11 12 13 :are supported\r");
    assert!(!m.more_than_15_params && m.params.len() == 15, "{:?}", m.params);
}

// irctest: isupport.py testPrefix
#[test]
fn isupport_prefix_maps_o_to_at_and_v_to_plus() {
    let s = server(&[]);
    let (_c, burst) = connect_client_burst(&s, "foo");
    let tokens = isupport(&burst);
    let prefix = tokens.get("PREFIX").expect("PREFIX is advertised");
    if prefix.is_empty() {
        return;
    }
    let (modes, prefixes) = prefix
        .strip_prefix('(')
        .and_then(|p| p.split_once(')'))
        .unwrap_or_else(|| panic!("PREFIX={prefix} does not have the form (modes)prefixes"));
    assert!(!modes.is_empty() && modes.bytes().all(|b| b.is_ascii_alphabetic()), "PREFIX={prefix}");
    assert!(!prefixes.is_empty() && !prefixes.contains(' '), "PREFIX={prefix}");
    assert_eq!(modes.len(), prefixes.len(), "mismatched modes and prefixes: PREFIX={prefix}");
    let o = modes.find('o').expect("o in PREFIX");
    let v = modes.find('v').expect("v in PREFIX");
    assert!(o < v, "'o' is not before 'v': PREFIX={prefix}");
    for (mode, before) in [('h', 'o'), ('q', 'o')] {
        if let Some(i) = modes.find(mode) {
            let j = modes.find(before).unwrap();
            assert!(if mode == 'h' { j < i } else { i < j }, "PREFIX={prefix}");
        }
    }
    let map: HashMap<char, char> = modes.chars().zip(prefixes.chars()).collect();
    assert_eq!(map[&'o'], '@', "PREFIX={prefix}");
    assert_eq!(map[&'v'], '+', "PREFIX={prefix}");
    for (mode, sym) in [('h', '%'), ('q', '~'), ('a', '&')] {
        if let Some(got) = map.get(&mode) {
            assert_eq!(*got, sym, "PREFIX={prefix}");
        }
    }
}

// irctest: isupport.py testTargmax
#[test]
fn isupport_targmax_is_well_formed() {
    let s = server(&[]);
    let (_c, burst) = connect_client_burst(&s, "foo");
    let tokens = isupport(&burst);
    let targmax = tokens.get("TARGMAX").expect("TARGMAX is advertised");
    for part in targmax.split(',') {
        let ok = part.split_once(':').is_some_and(|(cmd, n)| {
            !cmd.is_empty() && cmd.bytes().all(|b| b.is_ascii_uppercase()) && n.bytes().all(|b| b.is_ascii_digit())
        });
        assert!(ok, "invalid TARGMAX key:value {part:?} in TARGMAX={targmax}");
    }
}

// ---------------------------------------------------------------------------------------------
// ---- queries: WHOX (who.py), LIST with ELIST (list.py), WHOWAS (whowas.py), LUSERS (lusers.py),
// ---- INFO (info.py), HELP (help.py), LINKS (links.py), WALLOPS (wallops.py)
// ---------------------------------------------------------------------------------------------

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn h_then_optional_at(s: &str) -> bool {
    s == "H" || s == "H@"
}

fn chan_or_star(s: &str) -> bool {
    s == "#chan" || s == "*"
}

fn whox_full_scenario(fields: &str) {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    c2.send(&format!("WHO coolNick {fields}"));
    let got = c2.sync();
    assert_eq!(got.len(), 2, "unexpected number of messages: {}", show(&got));
    assert_msg(
        &c2,
        &got[0],
        "354",
        &[
            P::Is("otherNick"),
            P::Is("123"),
            P::Like("#chan|*", chan_or_star),
            P::Like("~?myusernam", user_like),
            P::Any,
            P::Any,
            P::Is(SERVER_NAME),
            P::Is("coolNick"),
            P::Like("H@?", h_then_optional_at),
            P::Any,
            P::Like("[0-9]", |s| s.len() == 1 && digits(s)),
            P::Is("0"),
            P::Any,
            P::Is(WHO_REAL),
        ],
    );
    assert_msg(&c2, &got[1], "315", &[P::Is("otherNick"), P::NoCase("coolNick"), P::Any]);
}

// irctest: who.py testWhoxFull
#[test]
fn whox_full() {
    whox_full_scenario("%tcuihsnfdlaor,123");
}

// irctest: who.py testWhoxFullReversed
#[test]
fn whox_full_reversed() {
    let reversed: String = "tcuihsnfdlaor".chars().rev().collect();
    whox_full_scenario(&format!("%{reversed},123"));
}

// irctest: who.py testWhoxOneChar
#[test]
fn whox_one_char() {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    for c in "cuihsnfdlaor".chars() {
        let query = format!("WHO coolNick %{c}");
        whox_one_reply(&mut c2, &query, &[P::Is("otherNick"), P::Like(".+", |s| !s.is_empty())]);
    }
}

// irctest: who.py testWhoxToken
#[test]
fn whox_token() {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    whox_one_reply(&mut c2, "WHO coolNick %tn,321", &[P::Is("otherNick"), P::Is("321"), P::Is("coolNick")]);
}

// irctest: who.py testWhoxNoAccount (WhoServicesTestCase; no services needed without an account)
#[test]
fn whox_no_account() {
    let s = server(&[]);
    let (_c1, mut c2) = who_init(&s);
    whox_one_reply(&mut c2, "WHO coolNick %na", &[P::Is("otherNick"), P::Is("coolNick"), P::Is("0")]);
}

/// Sends a WHOX query about coolNick and checks its one 354 line, then the 315.
#[track_caller]
fn whox_one_reply(c2: &mut Client, query: &str, want: &[P]) {
    c2.send(query);
    let got = c2.sync();
    assert_eq!(got.len(), 2, "{query}: unexpected number of messages: {}", show(&got));
    assert_msg(c2, &got[0], "354", want);
    assert_msg(c2, &got[1], "315", &[P::Is("otherNick"), P::NoCase("coolNick"), P::Any]);
}

#[test]
fn isupport_advertises_whox_and_elist() {
    let s = server(&[]);
    let (_c, burst) = connect_client_burst(&s, "foo");
    let tokens = isupport(&burst);
    assert_eq!(tokens.get("WHOX").map(String::as_str), Some(""), "{}", show(&burst));
    assert_eq!(tokens.get("ELIST").map(String::as_str), Some("CMNTU"), "{}", show(&burst));
}

/// list.py's _parseChanList: the channels a LIST lists (up to its 323).
#[track_caller]
fn chan_list(c: &mut Client, line: &str) -> std::collections::BTreeSet<String> {
    c.send(line);
    let got = c.collect_until(|m| m.is("323"), WAIT);
    got.iter().filter(|m| m.is("322") && !m.param(1).starts_with('&')).map(|m| m.param(1).to_owned()).collect()
}

fn set(names: &[&str]) -> std::collections::BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

// irctest: list.py testListMask
#[test]
fn list_mask() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    let mut bar = connect_client(&s, "bar");
    join_channel(&mut foo, "#chan1");
    join_channel(&mut foo, "#chan2");
    assert_eq!(chan_list(&mut bar, "LIST *an1"), set(&["#chan1"]));
    assert_eq!(chan_list(&mut bar, "LIST *an2"), set(&["#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST #c*n2"), set(&["#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST *an3"), set(&[]));
    assert_eq!(chan_list(&mut bar, "LIST #ch*"), set(&["#chan1", "#chan2"]));
}

// irctest: list.py testListNotMask
#[test]
fn list_not_mask() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    join_channel(&mut foo, "#chan1");
    join_channel(&mut foo, "#chan2");
    let mut bar = connect_client(&s, "bar");
    assert_eq!(chan_list(&mut bar, "LIST !*an1"), set(&["#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST !*an2"), set(&["#chan1"]));
    assert_eq!(chan_list(&mut bar, "LIST !#c*n2"), set(&["#chan1"]));
    assert_eq!(chan_list(&mut bar, "LIST !*an3"), set(&["#chan1", "#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST !#ch*"), set(&[]));
}

// irctest: list.py testListUsers
#[test]
fn list_users() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    join_channel(&mut foo, "#chan1");
    join_channel(&mut foo, "#chan2");
    let mut bar = connect_client(&s, "bar");
    join_channel(&mut bar, "#chan2");
    let mut baz = connect_client(&s, "baz");
    assert_eq!(chan_list(&mut baz, "LIST >0"), set(&["#chan1", "#chan2"]));
    assert_eq!(chan_list(&mut baz, "LIST <1"), set(&[]));
    assert_eq!(chan_list(&mut baz, "LIST <100"), set(&["#chan1", "#chan2"]));
    assert_eq!(chan_list(&mut baz, "LIST >1"), set(&["#chan2"]));
    assert_eq!(chan_list(&mut baz, "LIST <2"), set(&["#chan1"]));
    assert_eq!(chan_list(&mut baz, "LIST <100"), set(&["#chan1", "#chan2"]));
}

// irctest: list.py testListCreationTime and testListTopicTime, the parts that need no waiting
// (C<0 and T<0 match nothing, C<10 and T<10 everything just made).
#[test]
fn list_creation_and_topic_time_bounds() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    join_channel(&mut foo, "#chan1");
    join_channel(&mut foo, "#chan2");
    foo.send("TOPIC #chan1 :First channel");
    foo.send("TOPIC #chan2 :Second channel");
    foo.sync();
    let mut bar = connect_client(&s, "bar");
    assert_eq!(chan_list(&mut bar, "LIST C<0"), set(&[]));
    assert_eq!(chan_list(&mut bar, "LIST C<10"), set(&["#chan1", "#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST C>10"), set(&[]));
    assert_eq!(chan_list(&mut bar, "LIST T<0"), set(&[]));
    assert_eq!(chan_list(&mut bar, "LIST T<10"), set(&["#chan1", "#chan2"]));
    assert_eq!(chan_list(&mut bar, "LIST T>10"), set(&[]));
}

/// irctest's connectClient with an ident: user name `ident`, real name "Realname".
fn connect_ident(s: &Server, nick: &str, ident: &str) -> Client {
    let mut c = add_client(s, nick);
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {ident} 0 * :Realname"));
    c.finish_registration();
    c.sync();
    c
}

/// A client sends QUIT and is gone.
fn quit(mut c: Client) {
    c.send("QUIT :bye");
    c.expect_closed(WAIT);
}

/// Everything up to and including the first 369.
#[track_caller]
fn whowas_reply(c: &mut Client, line: &str) -> Vec<Message> {
    c.send(line);
    c.collect_until(|m| m.is("369"), WAIT)
}

// irctest: whowas.py testWhowasNumerics
#[test]
fn whowas_numerics() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    quit(connect_ident(&s, "nick2", "username"));
    let mut got = whowas_reply(&mut c1, "WHOWAS nick2");
    let end = got.pop().unwrap();
    assert_msg(&c1, &end, "369", &[P::Is("nick1"), P::Is("nick2"), P::Any]);
    assert!(!got.is_empty(), "no 314");
    for m in &got {
        if m.is("314") {
            let user = |s: &str| s.strip_prefix('~').unwrap_or(s) == "username";
            assert_msg(
                &c1,
                m,
                "314",
                &[
                    P::Is("nick1"),
                    P::Is("nick2"),
                    P::Like("~?username", user),
                    P::Like("[0-9A-Za-z_:.-]+", host_like),
                    P::Is("*"),
                    P::Is("Realname"),
                ],
            );
        } else {
            assert_msg(&c1, m, "312", &[P::Is("nick1"), P::Is("nick2"), P::Is(SERVER_NAME), P::Any]);
        }
    }
}

// irctest: whowas.py testWhowasEnd
#[test]
fn whowas_end() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    quit(connect_client(&s, "nick2"));
    let got = whowas_reply(&mut c1, "WHOWAS nick2");
    assert_msg(&c1, got.last().unwrap(), "369", &[P::Is("nick1"), P::Is("nick2"), P::Any]);
    assert_eq!(c1.sync(), [], "nothing after 369");
}

/// whowas.py's _testWhowasMultiple.
fn whowas_multiple(second_result: bool, command: &str) {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    quit(connect_ident(&s, "nick2", "ident2"));
    quit(connect_ident(&s, "nick2", "ident3"));
    let mut got = whowas_reply(&mut c1, command).into_iter();
    let mut next = || got.next().unwrap_or_else(|| panic!("{command}: reply ended early"));
    let entry = |ident: &'static str| {
        [P::Is("nick1"), P::Is("nick2"), P::Like(ident, |_| true), P::Any, P::Is("*"), P::Is("Realname")]
    };
    let m = next();
    assert_msg(&c1, &m, "314", &entry("ident3"));
    assert_eq!(m.param(2).trim_start_matches('~'), "ident3", "{m}");
    let mut m = next();
    while m.is("338") || m.is("312") {
        m = next();
    }
    if second_result {
        assert_msg(&c1, &m, "314", &entry("ident2"));
        assert_eq!(m.param(2).trim_start_matches('~'), "ident2", "{m}");
        m = next();
        while m.is("338") || m.is("312") {
            m = next();
        }
    }
    assert_msg(&c1, &m, "369", &[P::Is("nick1"), P::Is("nick2"), P::Any]);
}

// irctest: whowas.py testWhowasMultiple
#[test]
fn whowas_multiple_newest_first() {
    whowas_multiple(true, "WHOWAS nick2");
}

// irctest: whowas.py testWhowasCount1
#[test]
fn whowas_count1() {
    whowas_multiple(false, "WHOWAS nick2 1");
}

// irctest: whowas.py testWhowasCount2
#[test]
fn whowas_count2() {
    whowas_multiple(true, "WHOWAS nick2 2");
}

// irctest: whowas.py testWhowasCountNegative
#[test]
fn whowas_count_negative() {
    whowas_multiple(true, "WHOWAS nick2 -1");
}

// irctest: whowas.py testWhowasCountZero
#[test]
fn whowas_count_zero() {
    whowas_multiple(true, "WHOWAS nick2 0");
}

// irctest: whowas.py testWhowasNoParamModern
#[test]
fn whowas_no_param_modern() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    c1.send("WHOWAS");
    let m = c1.next(WAIT);
    assert_msg(&c1, &m, "431", &[P::Is("nick1"), P::Any]);
}

// irctest: whowas.py testWhowasNoSuchNick
#[test]
fn whowas_no_such_nick() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    c1.send("WHOWAS nick2");
    let m = c1.next(WAIT);
    assert_msg(&c1, &m, "406", &[P::Is("nick1"), P::Is("nick2"), P::Any]);
    let m = c1.next(WAIT);
    assert_msg(&c1, &m, "369", &[P::Is("nick1"), P::Is("nick2"), P::Any]);
}

/// lusers.py's LusersResult: what one LUSERS reply says.
#[derive(Debug, Default)]
struct Lusers {
    visible: i64,
    invisible: i64,
    opers: Option<i64>,
    unregistered: Option<i64>,
    local: (i64, i64),
    global: (i64, i64),
}

/// The numbers in `s` (words that are integers, commas and signs allowed around them).
fn numbers(s: &str) -> Vec<i64> {
    s.split(' ').filter_map(|w| w.trim_end_matches(',').parse().ok()).collect()
}

/// lusers.py's getLusers (with 265/266 required, as testLusersFull does).
#[track_caller]
fn get_lusers(c: &mut Client, nick: &str) -> Lusers {
    c.send("LUSERS");
    let got = c.sync();
    let by: HashMap<&str, &Message> = got.iter().map(|m| (m.command.as_str(), m)).collect();
    assert_eq!(by.len(), got.len(), "duplicated numerics: {}", show(&got));
    for m in &got {
        assert_eq!(m.param(0), nick, "{m}");
    }
    let get = |code: &str| *by.get(code).unwrap_or_else(|| c.fail(&format!("no {code} in {}", show(&got))));
    let l251 = get("251");
    assert_eq!(l251.params.len(), 2, "{l251}");
    let n251 = numbers(l251.last());
    assert_eq!(n251.len(), 3, "{l251}");
    let count = |code: &str| {
        by.get(code).map(|m| {
            assert_msg(c, m, code, &[P::Is(nick), P::Like("[0-9]+", digits), P::Any]);
            m.param(1).parse().unwrap()
        })
    };
    let (l255, l265, l266) = (get("255"), get("265"), get("266"));
    assert_eq!(l265.params.len(), 4, "{l265}");
    assert_eq!(l266.params.len(), 4, "{l266}");
    let pair = |m: &Message| (m.param(1).parse().unwrap(), m.param(2).parse().unwrap());
    let n255 = numbers(l255.last());
    let local: (i64, i64) = pair(l265);
    assert_eq!(n255.first(), Some(&local.0), "255 and 265 disagree: {l255} / {l265}");
    count("254");
    Lusers {
        visible: n251[0],
        invisible: n251[1],
        opers: count("252"),
        unregistered: count("253"),
        local,
        global: pair(l266),
    }
}

/// lusers.py's assertLusersResult.
#[track_caller]
fn assert_lusers(l: &Lusers, unregistered: i64, total: i64, max: i64) {
    assert!(l.unregistered.is_none_or(|u| u == unregistered), "{l:?}");
    assert!(l.visible >= 0 && l.invisible >= 0 && l.visible + l.invisible == total, "{l:?}");
    assert_eq!((l.local, l.global), ((total, max), (total, max)), "{l:?}");
}

// irctest: lusers.py BasicLusersTestCase testLusersFull
#[test]
fn lusers_full() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    assert_lusers(&get_lusers(&mut bar, "bar"), 0, 1, 1);
    let mut qux = connect_client(&s, "qux");
    assert_lusers(&get_lusers(&mut qux, "qux"), 0, 2, 2);
    quit(qux);
    assert_lusers(&get_lusers(&mut bar, "bar"), 0, 1, 2);
}

/// lusers.py's _synchronize: PING before registration, answered by PONG or 451.
fn synchronize_unregistered(c: &mut Client) {
    c.send("PING PARAM");
    c.expect(|m| m.is("PONG") || m.is("451"), WAIT);
}

// irctest: lusers.py LusersUnregisteredTestCase testLusersFull
#[test]
fn lusers_unregistered_full() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    assert_lusers(&get_lusers(&mut bar, "bar"), 0, 1, 1);
    let mut qux = add_client(&s, "qux");
    qux.send("NICK qux");
    synchronize_unregistered(&mut qux);
    assert_lusers(&get_lusers(&mut bar, "bar"), 1, 1, 1);
    let mut bat = add_client(&s, "bat");
    bat.send("NICK bat");
    synchronize_unregistered(&mut bat);
    assert_lusers(&get_lusers(&mut bar, "bar"), 2, 1, 1);
    qux.send("USER u s e r");
    qux.expect_cmd("001");
    assert_lusers(&get_lusers(&mut bar, "bar"), 1, 2, 2);
    bat.send("QUIT");
    bat.expect_closed(WAIT);
    assert_lusers(&get_lusers(&mut bar, "bar"), 0, 2, 2);
}

// irctest: lusers.py LuserOpersTestCase testLuserOpers (marked Ergo upstream; the counts are
// plain RFC 2812 252)
#[test]
fn luser_opers() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    let l = get_lusers(&mut bar, "bar");
    assert_lusers(&l, 0, 1, 1);
    assert!(l.opers.is_none_or(|n| n == 0), "{l:?}");
    bar.send("OPER operuser operpassword");
    bar.expect_cmd("381");
    bar.sync();
    assert_eq!(get_lusers(&mut bar, "bar").opers, Some(1));
    let mut qux = connect_client(&s, "qux");
    qux.send("OPER operuser operpassword");
    qux.expect_cmd("381");
    qux.sync();
    let l = get_lusers(&mut bar, "bar");
    assert_lusers(&l, 0, 2, 2);
    assert_eq!(l.opers, Some(2));
    bar.send("MODE bar -o");
    bar.expect_cmd("MODE");
    assert_eq!(get_lusers(&mut bar, "bar").opers, Some(1));
    quit(qux);
    let l = get_lusers(&mut bar, "bar");
    assert_lusers(&l, 0, 1, 2);
    assert!(l.opers.is_none_or(|n| n == 0), "{l:?}");
}

// irctest: lusers.py ErgoInvisibleDefaultTestCase testLusers, with +i set by hand (echoport has
// no default user modes): the invisible count follows MODE and QUIT.
#[test]
fn lusers_counts_invisible_users() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    bar.send("MODE bar +i");
    bar.sync();
    let mut qux = connect_client(&s, "qux");
    qux.send("MODE qux +i");
    qux.sync();
    let l = get_lusers(&mut bar, "bar");
    assert_lusers(&l, 0, 2, 2);
    assert_eq!((l.invisible, l.visible), (2, 0));
    bar.send("MODE bar -i");
    bar.expect_cmd("MODE");
    let l = get_lusers(&mut bar, "bar");
    assert_eq!((l.invisible, l.visible), (1, 1));
    quit(qux);
    let l = get_lusers(&mut bar, "bar");
    assert_lusers(&l, 0, 1, 2);
    assert_eq!((l.invisible, l.visible), (0, 1));
}

fn oper(c: &mut Client) {
    c.send("OPER operuser operpassword");
    c.expect_cmd("381");
    c.sync();
}

/// INFO's reply: 371s then one 374.
#[track_caller]
fn assert_info(c: &mut Client, line: &str) {
    c.send(line);
    let mut got = c.sync();
    let end = got.pop().unwrap_or_else(|| c.fail("no reply to INFO"));
    assert_msg(c, &end, "374", &[P::Is("nick"), P::Any]);
    for m in &got {
        assert_msg(c, m, "371", &[P::Is("nick"), P::Any]);
    }
}

// irctest: info.py testInfo
#[test]
fn info() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    oper(&mut c);
    assert_info(&mut c, "INFO");
}

// irctest: info.py testInfoTarget (target-server, target-wildcard, target-nick)
#[test]
fn info_target() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    oper(&mut c);
    for target in [SERVER_NAME, "*Little*", "nick"] {
        assert_info(&mut c, &format!("INFO {target}"));
    }
}

// irctest: info.py testInfoNosuchserver
#[test]
fn info_nosuchserver() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    oper(&mut c);
    for target in ["invalid.server.example", "invalidserver"] {
        c.send(&format!("INFO {target}"));
        let m = c.next(WAIT);
        assert_msg(&c, &m, "402", &[P::Is("nick"), P::Is(target), P::Any]);
    }
}

/// help.py's _assertValidHelp: 704, 705s, 706, each naming `subject` (any case) or anything.
#[track_caller]
fn assert_valid_help(c: &Client, got: &[Message], subject: Option<&str>) {
    let subject = match subject {
        Some(s) => P::NoCase(s),
        None => P::Any,
    };
    let (first, rest) = got.split_first().unwrap_or_else(|| c.fail("no reply to HELP"));
    let (last, middle) = rest.split_last().unwrap_or_else(|| c.fail("HELP reply of one line"));
    assert_msg(c, first, "704", &[P::Is("nick"), subject, P::Any]);
    for m in middle {
        assert_msg(c, m, "705", &[P::Is("nick"), subject, P::Any]);
    }
    assert_msg(c, last, "706", &[P::Is("nick"), subject, P::Any]);
}

// irctest: help.py testHelpNoArg (HELP and HELPOP)
#[test]
fn help_no_arg() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    for command in ["HELP", "HELPOP"] {
        c.send(command);
        let got = c.sync();
        assert_valid_help(&c, &got, None);
    }
}

// irctest: help.py testHelpPrivmsg (HELP and HELPOP)
#[test]
fn help_privmsg() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    for command in ["HELP", "HELPOP"] {
        c.send(&format!("{command} PRIVMSG"));
        let got = c.sync();
        assert_valid_help(&c, &got, Some("PRIVMSG"));
    }
}

// irctest: help.py testHelpUnknownSubject (HELP and HELPOP)
#[test]
fn help_unknown_subject() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    for command in ["HELP", "HELPOP"] {
        c.send(&format!("{command} THISISNOTACOMMAND"));
        let got = c.sync();
        assert_eq!(got.len(), 1, "{}", show(&got));
        assert_msg(&c, &got[0], "524", &[P::Is("nick"), P::NoCase("THISISNOTACOMMAND"), P::Any]);
    }
}

// irctest: links.py testLinksSingleServer. Upstream also wants the server description to be
// "test server" (its controllers configure it); echoport's is "<network> IRC server", not
// configurable, so only the hop count before it is checked.
#[test]
fn links_single_server() {
    let s = server(&[]);
    let mut c = connect_client(&s, "nick");
    c.send("LINKS");
    let mut got = c.sync();
    let end = got.pop().unwrap_or_else(|| c.fail("no reply to LINKS"));
    assert_msg(&c, &end, "365", &[P::Is("nick"), P::Is("*"), P::Any]);
    assert_eq!(got.len(), 1, "{}", show(&got));
    let info = |s: &str| s.strip_prefix("0 ").is_some_and(|rest| !rest.is_empty());
    assert_msg(&c, &got[0], "364", &[P::Is("nick"), P::Is(SERVER_NAME), P::Is(SERVER_NAME), P::Like("0 .+", info)]);
}

// irctest: wallops.py testWallops
#[test]
fn wallops() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    let mut c2 = connect_client(&s, "nick2");
    let mut c3 = connect_client(&s, "nick3");
    c2.send("MODE nick2 -w");
    c2.sync();
    c3.send("MODE nick3 +w");
    c3.sync();
    oper(&mut c1);
    c1.send("WALLOPS :hi everyone");
    let is_wallops = |m: &Message| m.is("WALLOPS") && m.nick() == "nick1" && m.params.len() == 1;
    for m in c1.sync() {
        assert!(is_wallops(&m) && m.last().ends_with("hi everyone"), "{m}");
    }
    let got = c3.sync();
    assert_eq!(got.len(), 1, "{}", show(&got));
    assert!(is_wallops(&got[0]) && got[0].last().ends_with("hi everyone"), "{}", got[0]);
    c2.assert_quiet("server sent WALLOPS to a user without +w");
}

// irctest: wallops.py testWallopsPrivileges
#[test]
fn wallops_privileges() {
    let s = server(&[]);
    let mut c1 = connect_client(&s, "nick1");
    c1.send("WALLOPS :hi everyone");
    let m = c1.next(WAIT);
    assert_msg(&c1, &m, "481", &[P::Is("nick1"), P::Any]);
}

// ---- IRCv3: capability negotiation, message tags and the capabilities built on them ----

/// irctest's connectClient with `capabilities`: CAP LS 302, CAP REQ (which must be ACKed), NICK,
/// USER, CAP END, and the welcome burst drained.
fn connect_with_caps(s: &Server, nick: &str, caps: &str) -> Client {
    let mut c = Client::with_caps(s.addr(), nick, caps);
    c.sync();
    c
}

// irctest: cap.py testReqOne, testReqTwo, testReqOneThenOne, testNoReq
#[test]
fn cap_req_ack_list_and_registration_waits_for_cap_end() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("CAP LS 302");
    let ls = c.expect_cmd("CAP");
    assert!(ls.params_match(&["*", "LS"]) || ls.param(1) == "LS", "{ls}");
    for cap in ["message-tags", "server-time", "echo-message", "labeled-response", "batch", "multi-prefix"] {
        assert!(ls.last().split(' ').any(|c| c == cap), "CAP LS lacks {cap}: {ls}");
    }
    c.send("USER foo foo foo :foo");
    c.send("NICK foo");
    c.send("CAP REQ :multi-prefix");
    let m = registration_message(&mut c).unwrap();
    assert!(m.is("CAP") && m.param(1) == "ACK" && m.last().trim() == "multi-prefix", "{m}");
    c.send("CAP REQ :userhost-in-names");
    let m = registration_message(&mut c).unwrap();
    assert!(m.is("CAP") && m.param(1) == "ACK", "{m}");
    c.send("CAP LIST");
    let m = registration_message(&mut c).unwrap();
    let mut listed: Vec<&str> = m.last().split(' ').filter(|w| !w.is_empty()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["cap-notify", "multi-prefix", "userhost-in-names"], "{m}");
    c.send("CAP END");
    let m = registration_message(&mut c).unwrap();
    assert!(m.is("001"), "expected 001 after CAP END, got {m}");
}

// irctest: cap.py testNakWhole, testNakExactString, testReqUnavailable
#[test]
fn cap_req_with_an_unknown_cap_is_refused_whole() {
    let s = server(&[]);
    let mut c = add_client(&s, "foo");
    c.send("CAP LS 302");
    c.expect_cmd("CAP");
    c.send("CAP REQ :multi-prefix foo-bar-baz");
    let m = c.expect_cmd("CAP");
    assert!(m.params_match(&["*", "NAK", "multi-prefix foo-bar-baz"]), "{m}");
    c.send("CAP LIST");
    let m = c.expect_cmd("CAP");
    assert!(!m.last().contains("multi-prefix"), "a NAK enabled something: {m}");
}

// irctest: message_tags.py testBasic
#[test]
fn message_tags_relay_client_tags_only_to_those_that_asked() {
    let s = server(&[]);
    let mut alice = connect_with_caps(&s, "alice", "message-tags");
    let mut bob = connect_with_caps(&s, "bob", "message-tags echo-message");
    let mut carol = connect_client(&s, "carol");
    let mut dave = connect_with_caps(&s, "dave", "server-time");
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        join_channel(c, "#test");
    }
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.sync();
    }
    alice.send("@+baz=bat;fizz=buzz PRIVMSG #test hi");
    let m = bob.expect_cmd("PRIVMSG");
    assert_eq!((m.tag("+baz"), m.tag("fizz")), (Some("bat"), None), "{m}");
    assert!(m.tag("msgid").is_some_and(|id| !id.is_empty()), "{m}");
    let m = carol.expect_cmd("PRIVMSG");
    assert!(m.tags.is_empty() && m.line().starts_with(':'), "carol asked for no tags: {m}");
    let m = dave.expect_cmd("PRIVMSG");
    assert!(m.tag("time").is_some() && m.tag("+baz").is_none(), "{m}");
    bob.send(r"@+buzz=fizz\:buzz;cat=dog;+steel=wootz TAGMSG #test");
    let echo = bob.expect_cmd("TAGMSG");
    let relay = alice.expect_cmd("TAGMSG");
    for m in [&echo, &relay] {
        assert_eq!((m.tag("+buzz"), m.tag("+steel"), m.tag("cat")), (Some("fizz;buzz"), Some("wootz"), None), "{m}");
    }
    assert_eq!(echo.tag("msgid"), relay.tag("msgid"));
    carol.assert_quiet("TAGMSG to a client without message-tags");
    dave.assert_quiet("TAGMSG to a client with server-time only");
}

// irctest: message_tags.py testLengthLimits
#[test]
fn message_tags_length_limits() {
    let s = server(&[]);
    let mut alice = connect_with_caps(&s, "alice", "message-tags echo-message");
    let mut bob = connect_with_caps(&s, "bob", "message-tags");
    join_channel(&mut alice, "#test");
    join_channel(&mut bob, "#test");
    alice.sync();
    let max_tagmsg = format!("@foo=bar;+baz={} TAGMSG #test", "a".repeat(4081));
    alice.send(&max_tagmsg);
    let echo = alice.expect_cmd("TAGMSG");
    let relay = bob.expect_cmd("TAGMSG");
    assert_eq!(echo.tag("+baz").map(str::len), Some(4081));
    assert_eq!(relay.tag("+baz").map(str::len), Some(4081));
    assert_eq!(echo.tag("msgid"), relay.tag("msgid"));
    alice.send(&format!("@foo=bar;+baz={} TAGMSG #test", "a".repeat(4082)));
    assert!(alice.next(WAIT).is("417"));
    bob.assert_quiet("an overlong tag section is not relayed");
    // At the limit of both parts: accepted, the text possibly cut to fit the relayed line.
    alice.send(&format!("@foo=bar;+baz={} PRIVMSG #test {}", "a".repeat(4081), "b".repeat(496)));
    let echo = alice.next(WAIT);
    if !echo.is("417") {
        let relay = bob.expect_cmd("PRIVMSG");
        for m in [&echo, &relay] {
            assert_eq!(m.tag("+baz").map(str::len), Some(4081), "{m}");
            assert!(m.last().len() >= 400 && m.last().bytes().all(|b| b == b'b'), "{m}");
        }
    }
    alice.send(&format!("@foo=bar;+baz={} PRIVMSG #test {}", "a".repeat(4082), "b".repeat(495)));
    assert!(alice.next(WAIT).is("417"));
    bob.assert_quiet("an overlong tag section is not relayed");
}

// irctest: labeled_responses.py testNoBatchForSingleMessage, testEmptyBatchForNoResponse,
// testBatchedJoinMessages, testUnknownCommand, testLabeledPrivmsgResponsesToClient
#[test]
fn labeled_responses() {
    let s = server(&[]);
    let mut c = connect_with_caps(&s, "bar", "batch labeled-response message-tags server-time echo-message");
    let mut other = connect_client(&s, "carl");
    c.send("@label=98765 PING adhoctestline");
    let m = c.next(WAIT);
    assert!(m.is("PONG") && m.tag("label") == Some("98765") && m.last() == "adhoctestline", "{m}");
    c.send("@label=98765 PONG adhoctestline");
    let m = c.next(WAIT);
    assert!(m.is("ACK") && m.tag("label") == Some("98765"), "{m}");
    c.send("@label=deadbeef NONEXISTENT_COMMAND");
    let m = c.next(WAIT);
    assert!(m.is("421") && m.tag("label") == Some("deadbeef"), "{m}");
    c.send("@label=12345 JOIN #xyz");
    let start = c.next(WAIT);
    assert!(
        start.is("BATCH") && start.param(1) == "labeled-response" && start.tag("label") == Some("12345"),
        "{start}"
    );
    let id = start.param(0).strip_prefix('+').unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{start}");
    let inner = c.collect_until(|m| m.is("BATCH"), WAIT);
    let (end, inner) = inner.split_last().unwrap();
    assert_eq!(end.param(0), format!("-{id}"));
    assert!(inner.len() >= 2, "{}", show(inner));
    assert!(inner.iter().all(|m| m.tag("batch") == Some(id.as_str())), "{}", show(inner));
    c.send("@label=12345 PRIVMSG carl :hi");
    let m = c.next(WAIT);
    assert!(m.is("PRIVMSG") && m.tag("label") == Some("12345"), "{m}");
    let m = other.expect_cmd("PRIVMSG");
    assert!(m.tags.is_empty(), "the recipient never sees the label: {m}");
}

// irctest: echo_message.py testEchoMessage (PRIVMSG, NOTICE) and server-time's format
#[test]
fn echo_message_and_server_time() {
    let s = server(&[]);
    let mut alice = connect_with_caps(&s, "alice", "echo-message server-time");
    let mut bob = connect_client(&s, "bob");
    join_channel(&mut alice, "#chan");
    join_channel(&mut bob, "#chan");
    alice.sync();
    for command in ["PRIVMSG", "NOTICE"] {
        alice.send(&format!("{command} #chan :hello everyone"));
        let echo = alice.expect_cmd(command);
        assert!(echo.params_match(&["#chan", "hello everyone"]) && echo.nick() == "alice", "{echo}");
        let time = echo.tag("time").expect("server-time");
        let ok = time.len() == 24
            && time.ends_with('Z')
            && time.as_bytes()[10] == b'T'
            && time.as_bytes()[19] == b'.'
            && time.bytes().filter(u8::is_ascii_digit).count() == 17;
        assert!(ok, "not RFC 3339 with milliseconds: {time}");
        let got = bob.expect_cmd(command);
        assert!(got.tags.is_empty() && got.params_match(&["#chan", "hello everyone"]), "{got}");
    }
}

// irctest: extended_join.py, away_notify.py testAwayNotifyOnJoin, multi_prefix.py,
// setname.py testSetname, invite.py testInviteNotify-style
#[test]
fn extended_join_away_notify_multi_prefix_userhost_in_names_setname() {
    let s = server(&[]);
    let mut alice = connect_with_caps(
        &s,
        "alice",
        "extended-join away-notify multi-prefix userhost-in-names setname invite-notify",
    );
    let mut bob = connect_client(&s, "bob");
    join_channel(&mut alice, "#c");
    bob.send("AWAY :lunch");
    bob.sync();
    join_channel(&mut bob, "#c");
    let join = alice.expect_cmd("JOIN");
    assert!(join.params_match(&["#c", "*", "Test user bob"]), "extended-join: {join}");
    let away = alice.expect_cmd("AWAY");
    assert!(away.nick() == "bob" && away.last() == "lunch", "{away}");
    bob.send("AWAY");
    let away = alice.expect_cmd("AWAY");
    assert!(away.params.is_empty(), "{away}");
    alice.send("MODE #c +v alice");
    alice.sync();
    alice.send("NAMES #c");
    let names = alice.expect_numeric("353");
    assert_eq!(names.last(), "@+alice!alice@127.0.0.1 bob!bob@127.0.0.1");
    bob.send("SETNAME :Robert Tables");
    bob.sync();
    let m = alice.expect_cmd("SETNAME");
    assert!(m.nick() == "bob" && m.last() == "Robert Tables", "{m}");
    bob.send("INVITE carl #c");
    bob.sync();
    alice.assert_quiet("no INVITE for a nick that does not exist");
}

// ---------------------------------------------------------------------------------------------
// ---- lists: chmodes/ban.py, invite_exception.py, mute_extban.py, limit.py (invite), monitor.py,
// statusmsg.py, bot_mode.py ----
// Not mirrored: mute_extban.py testISupport and the extban char (irctest's controller declares
// `extban_mute_char`; ours is `m`, ISUPPORT EXTBAN=,m); the echo-message halves of the mute tests
// and bot_mode.py's `bot` tag tests (IRCv3 caps, the lead's); monitor.py's extended-monitor tests.
// ---------------------------------------------------------------------------------------------

/// The next line for `c` (irctest's getMessage), which must have this command.
#[track_caller]
fn next_is(c: &mut Client, command: &str) -> Message {
    let m = c.next(WAIT);
    if !m.is(command) {
        c.fail(&format!("expected {command}, got {m}"));
    }
    m
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

// irctest's StrRe("chanop(!.*@.*)?").
fn chanop_prefix(s: &str) -> bool {
    s == "chanop" || s.strip_prefix("chanop!").is_some_and(|r| r.contains('@'))
}

// irctest: chmodes/ban.py testBan
#[test]
fn ban_test_ban() {
    let s = server(&[]);
    let mut chanop = connect_client(&s, "chanop");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +b bar!*@*");
    next_is(&mut chanop, "MODE");
    let mut bar = connect_client(&s, "Bar");
    bar.send("JOIN #chan");
    next_is(&mut bar, "474");
    chanop.send("MODE #chan -b bar!*@*");
    next_is(&mut chanop, "MODE");
    bar.send("JOIN #chan");
    next_is(&mut bar, "JOIN");
}

// irctest: chmodes/ban.py testBanList
#[test]
fn ban_test_ban_list() {
    let s = server(&[]);
    let mut c = connect_client(&s, "chanop");
    join_channel(&mut c, "#chan");
    c.send("MODE #chan +b bar!*@*");
    next_is(&mut c, "MODE");
    c.send("MODE #chan +b");
    expect_one_list_entry(&mut c, "367", "368");
}

/// The reply to a list query (`MODE #chan +b`, `+e`, `+I`) when the list holds `bar!*@*`, set
/// by chanop: one `entry` line with setter and time, then `end`.
#[track_caller]
fn expect_one_list_entry(c: &mut Client, entry: &str, end: &str) {
    let m = c.next(WAIT);
    let want = [
        P::Is("chanop"),
        P::Is("#chan"),
        P::Is("bar!*@*"),
        P::Like("chanop(!.*@.*)?", chanop_prefix),
        P::Like("[0-9]+", is_digits),
    ];
    assert_msg(c, &m, entry, &want);
    let m = c.next(WAIT);
    assert_msg(c, &m, end, &[P::Is("chanop"), P::Is("#chan"), P::Any]);
}

// irctest: chmodes/ban.py testBanException (with its CHANMODES/EXCEPTS checks)
#[test]
fn ban_test_ban_exception() {
    let s = server(&[]);
    let (mut chanop, burst) = connect_client_burst(&s, "chanop");
    let tokens = isupport(&burst);
    let mode = tokens.get("EXCEPTS").map(String::as_str).filter(|m| !m.is_empty()).unwrap_or("e");
    let chanmodes = tokens.get("CHANMODES").expect("CHANMODES");
    assert!(chanmodes.split(',').next().unwrap().contains(mode), "'{mode}' not in group A of CHANMODES={chanmodes}");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +b ba*!*@*");
    chanop.sync();
    let mut bar = connect_client(&s, "Bar");
    bar.send("JOIN #chan");
    next_is(&mut bar, "474");
    chanop.send(&format!("MODE #chan +{mode} *ar!*@*"));
    next_is(&mut chanop, "MODE");
    bar.send("JOIN #chan");
    next_is(&mut bar, "JOIN");
}

// irctest: chmodes/ban.py testCaseInsensitive
#[test]
fn ban_test_case_insensitive() {
    let s = server(&[]);
    let mut chanop = connect_client(&s, "chanop");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +b BAR!*@*");
    next_is(&mut chanop, "MODE");
    let mut bar = connect_client(&s, "Bar");
    bar.send("JOIN #chan");
    next_is(&mut bar, "474");
    chanop.send("MODE #chan -b bar!*@*");
    next_is(&mut chanop, "MODE");
    bar.send("JOIN #chan");
    next_is(&mut bar, "JOIN");
}

/// invite_exception.py's getInviteExceptionMode: INVEX (or `I`), in group A of CHANMODES.
fn invex_mode(burst: &[Message]) -> String {
    let tokens = isupport(burst);
    let mode = tokens.get("INVEX").filter(|m| !m.is_empty()).cloned().unwrap_or_else(|| "I".to_owned());
    let chanmodes = tokens.get("CHANMODES").expect("CHANMODES");
    assert!(chanmodes.split(',').next().unwrap().contains(&mode), "'{mode}' not in group A of CHANMODES={chanmodes}");
    mode
}

// irctest: chmodes/invite_exception.py testInviteException, testInviteExceptionRemoval
#[test]
fn invite_exception_test_invite_exception_and_removal() {
    let s = server(&[]);
    let (mut chanop, burst) = connect_client_burst(&s, "chanop");
    let mode = invex_mode(&burst);
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +i");
    chanop.sync();
    let mut bar = connect_client(&s, "Bar");
    bar.send("JOIN #chan");
    next_is(&mut bar, "473");
    chanop.send(&format!("MODE #chan +{mode} bar!*@*"));
    let m = chanop.next(WAIT);
    assert_msg(&chanop, &m, "MODE", &[P::Is("#chan"), P::Is(&format!("+{mode}")), P::Is("bar!*@*")]);
    bar.send("JOIN #chan");
    next_is(&mut bar, "JOIN");
    bar.send("PART #chan");
    bar.sync();
    chanop.sync();
    chanop.send(&format!("MODE #chan -{mode} bar!*@*"));
    let m = chanop.next(WAIT);
    assert_msg(&chanop, &m, "MODE", &[P::Is("#chan"), P::Is(&format!("-{mode}")), P::Is("bar!*@*")]);
    bar.send("JOIN #chan");
    next_is(&mut bar, "473");
}

// irctest: chmodes/invite_exception.py testInviteExceptionList
#[test]
fn invite_exception_test_invite_exception_list() {
    let s = server(&[]);
    let (mut chanop, burst) = connect_client_burst(&s, "chanop");
    let mode = invex_mode(&burst);
    join_channel(&mut chanop, "#chan");
    chanop.send(&format!("MODE #chan +{mode} bar!*@*"));
    next_is(&mut chanop, "MODE");
    chanop.send(&format!("MODE #chan +{mode}"));
    expect_one_list_entry(&mut chanop, "346", "347");
}

// irctest: chmodes/invite_exception.py testInviteExceptionWithoutInviteOnly,
// testInviteExceptionMultipleMasks
#[test]
fn invite_exception_test_multiple_masks_and_without_invite_only() {
    let s = server(&[]);
    let mut chanop = connect_client(&s, "chanop");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +I bar!*@*");
    next_is(&mut chanop, "MODE");
    let mut qux = connect_client(&s, "qux");
    qux.send("JOIN #chan");
    next_is(&mut qux, "JOIN");
    chanop.send("MODE #chan +i");
    chanop.sync();
    let mut bar = connect_client(&s, "Bar");
    bar.send("JOIN #chan");
    next_is(&mut bar, "JOIN");
    let mut baz = connect_client(&s, "Baz");
    baz.send("JOIN #chan");
    next_is(&mut baz, "473");
    chanop.sync();
    chanop.send("MODE #chan +I baz!*@*");
    next_is(&mut chanop, "MODE");
    baz.send("JOIN #chan");
    next_is(&mut baz, "JOIN");
}

/// mute_extban.py's setup: chanop in #chan mutes `nick` (m:<nick>!*@*), `nick` (user name
/// `ident`) joins; both drained.
fn muted(nick: &str) -> (Server, Client, Client) {
    let s = server(&[]);
    let (mut chanop, burst) = connect_client_burst(&s, "chanop");
    let extban = isupport(&burst).get("EXTBAN").cloned().unwrap_or_default();
    let (prefix, types) = extban.split_once(',').expect("EXTBAN=<prefix>,<types>");
    assert!(prefix.is_empty() && types.contains('m'), "EXTBAN={extban}");
    join_channel(&mut chanop, "#chan");
    chanop.send(&format!("MODE #chan +b m:{nick}!*@*"));
    let replies = chanop.sync();
    assert!(command_set(&replies).contains("MODE") && !command_set(&replies).contains("482"), "{}", show(&replies));
    let mut c = connect_client(&s, nick);
    join_channel(&mut c, "#chan");
    chanop.sync();
    (s, chanop, c)
}

/// `c` says something in #chan: refused with 404, chanop hears nothing.
#[track_caller]
fn refused_to_speak(c: &mut Client, chanop: &mut Client) {
    c.send("PRIVMSG #chan :hi");
    let replies = c.sync();
    assert!(command_set(&replies).contains("404"), "{}", show(&replies));
    chanop.assert_quiet("a muted client's message must not reach the channel");
}

/// `c` says something in #chan: no error, and chanop hears it.
#[track_caller]
fn speaks(c: &mut Client, chanop: &mut Client) {
    c.send("PRIVMSG #chan :hi again");
    c.assert_quiet("a PRIVMSG that went through gets no reply");
    let got = chanop.sync();
    assert!(got.len() == 1 && matches(&got[0], "PRIVMSG", &[P::Is("#chan"), P::Is("hi again")]), "{}", show(&got));
}

// irctest: chmodes/mute_extban.py testMuteExtban (without echo-message, an IRCv3 cap)
#[test]
fn mute_extban_test_mute_extban() {
    let (_s, mut chanop, mut bar) = muted("bar");
    bar.send("MODE #chan +b");
    let m = bar.next(WAIT);
    assert_msg(
        &bar,
        &m,
        "367",
        &[P::Is("bar"), P::Is("#chan"), P::Is("m:bar!*@*"), P::Like("chanop(!.*)?", chanop_prefix), P::Any],
    );
    bar.sync();
    refused_to_speak(&mut bar, &mut chanop);
    chanop.send("MODE #chan -b m:bar!*@*");
    let replies = chanop.sync();
    assert!(command_set(&replies).contains("MODE"), "{}", show(&replies));
    bar.sync();
    speaks(&mut bar, &mut chanop);
}

// irctest: chmodes/mute_extban.py testMuteExtbanVoiced
#[test]
fn mute_extban_test_mute_extban_voiced() {
    let (_s, mut chanop, mut qux) = muted("qux");
    refused_to_speak(&mut qux, &mut chanop);
    chanop.send("MODE #chan +v qux");
    chanop.sync();
    qux.sync();
    speaks(&mut qux, &mut chanop);
}

// irctest: chmodes/mute_extban.py testMuteExtbanExempt (the user name is the nick here, where
// irctest sets "evan")
#[test]
fn mute_extban_test_mute_extban_exempt() {
    let (_s, mut chanop, mut qux) = muted("qux");
    refused_to_speak(&mut qux, &mut chanop);
    chanop.send("MODE #chan +e m:*!*qux@*");
    let replies = chanop.sync();
    assert!(command_set(&replies).contains("MODE"), "{}", show(&replies));
    qux.sync();
    speaks(&mut qux, &mut chanop);
}

// irctest: chmodes/mute_extban.py testCapitalization
#[test]
fn mute_extban_test_capitalization() {
    let s = server(&[]);
    let mut chanop = connect_client(&s, "chanop");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +b m:BAR!*@*");
    chanop.sync();
    let mut bar = connect_client(&s, "Bar");
    join_channel(&mut bar, "#chan");
    chanop.sync();
    refused_to_speak(&mut bar, &mut chanop);
    chanop.send("MODE #chan -b m:bar!*@*");
    let replies = chanop.sync();
    assert!(command_set(&replies).contains("MODE"), "{}", show(&replies));
    bar.sync();
    speaks(&mut bar, &mut chanop);
}

// irctest: chmodes/limit.py testLimitWithInvite
#[test]
fn limit_test_limit_with_invite() {
    let s = server(&[]);
    let mut chanop = connect_client(&s, "chanop");
    join_channel(&mut chanop, "#chan");
    chanop.send("MODE #chan +l 1");
    chanop.sync();
    let mut user2 = connect_client(&s, "user2");
    user2.send("JOIN #chan");
    let m = user2.next(WAIT);
    assert_msg(&user2, &m, "471", &[P::Is("user2"), P::Is("#chan"), P::Any]);
    chanop.send("INVITE user2 #chan");
    chanop.sync();
    user2.sync();
    user2.send("JOIN #chan");
    let m = user2.next(WAIT);
    assert_msg(&user2, &m, "JOIN", &[P::Is("#chan")]);
}

fn is_mononline(m: &Message, nick: &str) -> bool {
    m.is("730") && m.params.len() == 2 && m.params[1].split('!').next() == Some(nick)
}

fn is_monoffline(m: &Message, nick: &str) -> bool {
    m.is("731") && m.params.len() == 2 && m.params[1] == nick
}

#[track_caller]
fn assert_mononline(c: &mut Client, nick: &str) {
    let m = c.next(WAIT);
    if !is_mononline(&m, nick) {
        c.fail(&format!("expected 730 for {nick}, got {m}"));
    }
}

#[track_caller]
fn assert_monoffline(c: &mut Client, nick: &str) {
    let m = c.next(WAIT);
    if !is_monoffline(&m, nick) {
        c.fail(&format!("expected 731 for {nick}, got {m}"));
    }
}

// irctest: monitor.py testMonitorOneDisconnected, testMonitorOneConnectionWithQuit (and the
// ISUPPORT token every MONITOR test needs)
#[test]
fn monitor_test_monitor_one_disconnected_and_with_quit() {
    let s = server(&[]);
    let (mut foo, burst) = connect_client_burst(&s, "foo");
    assert!(isupport(&burst).contains_key("MONITOR"), "MONITOR is advertised");
    foo.send("MONITOR + bar");
    assert_monoffline(&mut foo, "bar");
    let bar = connect_client(&s, "bar");
    assert_mononline(&mut foo, "bar");
    quit(bar);
    assert_monoffline(&mut foo, "bar");
    let _bar = connect_client(&s, "bar");
    assert_mononline(&mut foo, "bar");
}

// irctest: monitor.py testMonitorOneConnected, testMonitorConnectedAndDisconnected
#[test]
fn monitor_test_monitor_connected_and_disconnected() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    let bar = connect_client(&s, "bar");
    foo.send("MONITOR + bar,baz");
    let (m1, m2) = (foo.next(WAIT), foo.next(WAIT));
    let (on, off) = if m1.is("731") { (m2, m1) } else { (m1, m2) };
    assert!(is_mononline(&on, "bar") && is_monoffline(&off, "baz"), "got {on} and {off}");
    quit(bar);
    assert_monoffline(&mut foo, "bar");
}

// irctest: monitor.py testUnmonitor
#[test]
fn monitor_test_unmonitor() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    foo.send("MONITOR + bar");
    foo.sync();
    let bar = connect_client(&s, "bar");
    assert_mononline(&mut foo, "bar");
    foo.send("MONITOR - bar");
    foo.assert_quiet("MONITOR - gets no reply");
    quit(bar);
    foo.assert_quiet("an unmonitored nick's departure is no news");
}

// irctest: monitor.py testMonitorForbidsMasks
#[test]
fn monitor_test_monitor_forbids_masks() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    foo.send("MONITOR + *!username@localhost");
    foo.send("MONITOR + *!username@127.0.0.1");
    for m in foo.sync() {
        assert_cmd_in(&foo, &m, &["731", "432"]);
    }
    let _bar = connect_client(&s, "bar");
    foo.assert_quiet("a client watching hostmasks must not hear of a matching client");
}

// irctest: monitor.py testTwoMonitoringOneRemove
#[test]
fn monitor_test_two_monitoring_one_remove() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    let mut bar = connect_client(&s, "bar");
    foo.send("MONITOR + qux");
    bar.send("MONITOR + qux");
    foo.sync();
    bar.sync();
    bar.send("MONITOR - qux");
    bar.assert_quiet("MONITOR - gets no reply");
    let _qux = connect_client(&s, "qux");
    assert!(!foo.sync().is_empty(), "no message after a MONITORed client connected");
    bar.assert_quiet("a nick no longer monitored is no news");
}

// irctest: monitor.py testMonitorClear, testMonitorList
#[test]
fn monitor_test_monitor_clear_and_list() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    let subjects = |c: &mut Client| {
        c.send("MONITOR L");
        let got = c.sync();
        let end = got.last().unwrap_or_else(|| c.fail("no reply to MONITOR L"));
        assert_msg(c, end, "733", &[P::Is("bar"), P::Any]);
        let mut set = std::collections::BTreeSet::new();
        for m in got.iter().filter(|m| m.is("732")) {
            assert_eq!(m.param(0), "bar");
            set.extend(m.param(1).split(',').map(str::to_owned));
        }
        set.into_iter().collect::<Vec<String>>()
    };
    assert!(subjects(&mut bar).is_empty());
    bar.send("MONITOR + qux");
    bar.sync();
    assert_eq!(subjects(&mut bar), ["qux"]);
    bar.send("MONITOR + bazbat");
    bar.sync();
    assert_eq!(subjects(&mut bar), ["bazbat", "qux"]);
    bar.send("MONITOR - qux");
    bar.sync();
    assert_eq!(subjects(&mut bar), ["bazbat"]);
    bar.send("MONITOR C");
    bar.send("MONITOR L");
    next_is(&mut bar, "733");
}

// irctest: monitor.py testMonitorStatus
#[test]
fn monitor_test_monitor_status() {
    let s = server(&[]);
    let mut foo = connect_client(&s, "foo");
    let _bar = connect_client(&s, "bar");
    foo.send("MONITOR + bar,baz");
    foo.sync();
    foo.send("MONITOR S");
    let mut got = foo.sync();
    assert_eq!(got.len(), 2, "{}", show(&got));
    got.sort_by(|a, b| a.command.cmp(&b.command));
    assert!(is_mononline(&got[0], "bar") && is_monoffline(&got[1], "baz"), "{}", show(&got));
}

// irctest: monitor.py testNickChange
#[test]
fn monitor_test_nick_change() {
    let s = server(&[]);
    let mut bar = connect_client(&s, "bar");
    bar.send("MONITOR + qux");
    bar.sync();
    let mut baz = connect_client(&s, "baz");
    bar.assert_quiet("baz is not monitored");
    baz.send("NICK qux");
    baz.sync();
    let m = bar.sync().into_iter().next().unwrap_or_else(|| bar.fail("no 730 after NICK qux"));
    assert!(is_mononline(&m, "qux") && m.param(0) == "bar", "{m}");
    baz.send("NICK QUX");
    baz.sync();
    bar.assert_quiet("no numerics for a case change");
    baz.send("NICK bazbat");
    baz.sync();
    let m = bar.sync().into_iter().next().unwrap_or_else(|| bar.fail("no 731 after NICK bazbat"));
    assert_msg(&bar, &m, "731", &[P::Is("bar"), P::Is("QUX")]);
}

/// statusmsg.py's setup: chanop (op), joe and schmoe in #chan; NAMES as schmoe joined checked.
fn statusmsg_channel() -> (Server, Client, Client, Client) {
    let s = server(&[]);
    let (mut chanop, burst) = connect_client_burst(&s, "chanop");
    assert!(isupport(&burst).get("STATUSMSG").is_some_and(|v| v.contains('@')), "STATUSMSG with @");
    join_channel(&mut chanop, "#chan");
    let mut joe = connect_client(&s, "joe");
    join_channel(&mut joe, "#chan");
    let mut schmoe = connect_client(&s, "schmoe");
    schmoe.send("join #chan");
    let names: std::collections::BTreeSet<String> = schmoe
        .sync()
        .iter()
        .filter(|m| m.is("353"))
        .flat_map(|m| m.last().split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(names, ["@chanop", "joe", "schmoe"].map(str::to_owned).into(), "unexpected names");
    chanop.sync();
    joe.sync();
    (s, chanop, joe, schmoe)
}

/// schmoe sends to @#chan: no reply, chanop gets it as sent, joe gets nothing.
fn statusmsg_reaches_ops(chanop: &mut Client, joe: &mut Client, schmoe: &mut Client) {
    schmoe.send("privmsg @#chan :this message is for operators");
    schmoe.assert_quiet("PRIVMSG @#chan was refused");
    let got: Vec<Message> = chanop.sync().into_iter().filter(|m| m.is("PRIVMSG")).collect();
    assert_eq!(got.len(), 1, "{}", show(&got));
    assert_msg(chanop, &got[0], "PRIVMSG", &[P::Is("@#chan"), P::Is("this message is for operators")]);
    let got: Vec<Message> = joe.sync().into_iter().filter(|m| m.is("PRIVMSG")).collect();
    assert!(got.is_empty(), "a non-operator got a STATUSMSG: {}", show(&got));
}

// irctest: statusmsg.py testStatusmsgFromOp
#[test]
fn statusmsg_test_statusmsg_from_op() {
    let (_s, mut chanop, mut joe, mut schmoe) = statusmsg_channel();
    chanop.send("MODE #chan +o schmoe");
    chanop.sync();
    schmoe.sync();
    joe.sync();
    statusmsg_reaches_ops(&mut chanop, &mut joe, &mut schmoe);
}

// irctest: statusmsg.py testStatusmsgFromRegular
#[test]
fn statusmsg_test_statusmsg_from_regular() {
    let (_s, mut chanop, mut joe, mut schmoe) = statusmsg_channel();
    statusmsg_reaches_ops(&mut chanop, &mut joe, &mut schmoe);
}

/// bot_mode.py's _initBot: botnick sets +<BOT> and sees it echoed.
fn bot(s: &Server) -> Client {
    let (_c, burst) = connect_client_burst(s, "modegettr");
    let mode = isupport(&burst).get("BOT").cloned().expect("BOT is advertised");
    assert_eq!(mode.len(), 1, "BOT={mode}");
    let mut bot = connect_client(s, "botnick");
    bot.send(&format!("MODE botnick +{mode}"));
    let m = bot.next(WAIT);
    let is_mode = |p: &str| p.strip_prefix('+').unwrap_or(p) == "B";
    assert_msg(&bot, &m, "MODE", &[P::Is("botnick"), P::Like("\\+?B", is_mode)]);
    bot
}

// irctest: bot_mode.py testBotMode
#[test]
fn bot_mode_test_bot_mode() {
    let s = server(&[]);
    bot(&s);
}

// irctest: bot_mode.py testBotWhois
#[test]
fn bot_mode_test_bot_whois() {
    let s = server(&[]);
    let _bot = bot(&s);
    let mut user = connect_client(&s, "usernick");
    user.send("WHOIS botnick");
    let got: Vec<Message> = user.sync().into_iter().filter(|m| m.is("335")).collect();
    assert_eq!(got.len(), 1, "expected exactly one RPL_WHOISBOT: {}", show(&got));
    assert_msg(&user, &got[0], "335", &[P::Is("usernick"), P::Is("botnick"), P::Any]);
}

// irctest: bot_mode.py testBotWhox
#[test]
fn bot_mode_test_bot_whox() {
    let s = server(&[]);
    let mut bot = bot(&s);
    let mut user = connect_client(&s, "usernick");
    join_channel(&mut bot, "#chan");
    join_channel(&mut user, "#chan");
    bot.sync();
    user.send("WHO #chan");
    let (m1, m2) = (next_is(&mut user, "352"), next_is(&mut user, "352"));
    let m = if m1.param(5) == "botnick" { m1 } else { m2 };
    let has_b = |f: &str| f.contains('B');
    let want =
        [P::Is("usernick"), P::Is("#chan"), P::Any, P::Any, P::Any, P::Is("botnick"), P::Like(".*B.*", has_b), P::Any];
    assert_msg(&user, &m, "352", &want);
}

// ---------------------------------------------------------------------------------------------
// ---- Accounts: SASL PLAIN (sasl.py) and OPER against hashes ----
// Accounts come from a config file, as users declare them; the hashes are made here at the
// lowest argon2 costs (the server checks with whatever costs a hash names). Registration is held
// off simply by sending AUTHENTICATE before NICK/USER: AUTHENTICATE does not need CAP REQ sasl.
// ---------------------------------------------------------------------------------------------

/// An argon2id hash of `password` at the lowest costs.
fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(8, 1, 1, None).expect("valid costs");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon2.hash_password(password.as_bytes()).expect("argon2 hashes").to_string()
}

fn b64(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let mut buf = vec![0; bytes.len() * 4 / 3 + 4];
    Base64::encode(bytes, &mut buf).expect("buffer large enough").to_owned()
}

/// A config file, removed on drop.
struct AccountsFile(std::path::PathBuf);

impl Drop for AccountsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// irctest's registerUser for each (account, password), as a config file for `--config`.
fn accounts_file(accounts: &[(&str, &str)]) -> AccountsFile {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let items: Vec<String> = accounts.iter().map(|(name, pw)| format!("\"{name}:{}\"", cheap_hash(pw))).collect();
    let name = format!("echoport-accounts-{}-{}.toml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, format!("account = [{}]\n", items.join(", "))).expect("write the config file");
    AccountsFile(path)
}

/// A server with `jilles`/`sesame` (and `accounts`), plus `extra` flags.
fn sasl_server(accounts: &[(&str, &str)], extra: &[&str]) -> (Server, AccountsFile) {
    let mut all = vec![("jilles", "sesame")];
    all.extend_from_slice(accounts);
    let file = accounts_file(&all);
    let mut args = vec!["--config", file.0.to_str().expect("UTF-8 temp path")];
    args.extend_from_slice(extra);
    (server(&args), file)
}

/// `AUTHENTICATE PLAIN`, answered with `AUTHENTICATE +` (after the reply to any CAP LS sent).
fn start_plain(c: &mut Client) {
    c.send("AUTHENTICATE PLAIN");
    let m = loop {
        let m = registration_message(c).expect("an answer to AUTHENTICATE PLAIN");
        if !m.is("CAP") {
            break m;
        }
    };
    assert_msg(c, &m, "AUTHENTICATE", &[P::Is("+")]);
}

/// irctest's confirmSuccessfulAuth: 900 for `account`, then 903.
fn confirm_successful_auth(c: &mut Client, account: &str) {
    let m = registration_message(c).expect("900");
    assert_msg(c, &m, "900", &[P::Any, P::Any, P::Is(account), P::Any]);
    let m = registration_message(c).expect("903");
    assert_msg(c, &m, "903", &[P::Any, P::Any]);
}

// irctest: sasl.py testPlain (and testPlainReAuthenticate's 907 branch)
#[test]
fn sasl_plain_success_then_907() {
    let (s, _file) = sasl_server(&[("foo", "sesame")], &[]);
    let mut c = add_client(&s, "c");
    start_plain(&mut c);
    c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBzZXNhbWU=");
    confirm_successful_auth(&mut c, "jilles");
    let burst = c.register("user");
    assert!(burst.iter().any(|m| m.is("001")), "{}", show(&burst));
    c.sync();
    c.send("AUTHENTICATE PLAIN");
    let m = registration_message(&mut c).expect("907");
    assert_msg(&c, &m, "907", &[P::Is("user"), P::Any]);
}

// irctest: sasl.py testPlainNoAuthzid, testPlainNonAscii
#[test]
fn sasl_plain_without_authzid_and_with_a_non_ascii_password() {
    let password = "é".repeat(100);
    let (s, _file) = sasl_server(&[("foo", &password)], &[]);
    let mut c = add_client(&s, "c");
    start_plain(&mut c);
    c.send("AUTHENTICATE AGppbGxlcwBzZXNhbWU=");
    confirm_successful_auth(&mut c, "jilles");
    let mut c = add_client(&s, "d");
    start_plain(&mut c);
    c.send(&format!("AUTHENTICATE {}", b64(format!("foo\0foo\0{password}").as_bytes())));
    confirm_successful_auth(&mut c, "foo");
}

// irctest: sasl.py testPlainFailure, testRetryAfterFail
#[test]
fn sasl_plain_wrong_password_904_then_retry() {
    let (s, _file) = sasl_server(&[], &[]);
    let mut c = add_client(&s, "c");
    start_plain(&mut c);
    c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBtaWxsZXQ=");
    let m = registration_message(&mut c).expect("904");
    assert_msg(&c, &m, "904", &[P::Is("*"), P::Any]);
    start_plain(&mut c);
    c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBzZXNhbWU=");
    confirm_successful_auth(&mut c, "jilles");
}

// The limit on wrong passwords (README, chat mode): the third closes the connection.
#[test]
fn sasl_third_wrong_password_closes_the_connection() {
    let (s, _file) = sasl_server(&[], &[]);
    let mut c = add_client(&s, "c");
    for _ in 0..2 {
        start_plain(&mut c);
        c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBtaWxsZXQ=");
        let m = registration_message(&mut c).expect("904");
        assert_msg(&c, &m, "904", &[P::Is("*"), P::Any]);
    }
    start_plain(&mut c);
    c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBtaWxsZXQ=");
    let got = c.expect_closed(WAIT);
    assert!(got.iter().any(|m| m.is("904")), "{}", show(&got));
    let error = got.iter().find(|m| m.is("ERROR")).unwrap_or_else(|| c.fail(&format!("no ERROR:\n{}", show(&got))));
    assert!(error.last().contains("Too many failed authentication attempts"), "{error}");
}

// irctest: sasl.py testAbort
#[test]
fn sasl_abort_906() {
    let (s, _file) = sasl_server(&[], &[]);
    let mut c = add_client(&s, "c");
    start_plain(&mut c);
    c.send("AUTHENTICATE *");
    let m = registration_message(&mut c).expect("906");
    assert_msg(&c, &m, "906", &[P::Is("*"), P::Any]);
}

// irctest: sasl.py testMechanismNotAvailable, testSaslMechsContent (strict)
#[test]
fn sasl_unknown_mechanism_908_then_904() {
    let (s, _file) = sasl_server(&[], &[]);
    let mut c = add_client(&s, "c");
    c.send("AUTHENTICATE FOO");
    let m = registration_message(&mut c).expect("908");
    let mech = |s: &str| {
        s.split(',').all(|m| {
            (1..=20).contains(&m.len())
                && m.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
    };
    assert_msg(&c, &m, "908", &[P::Is("*"), P::Like("([A-Z0-9_-]{1,20})(,[A-Z0-9_-]{1,20})*", mech), P::Any]);
    assert_eq!(m.param(1), "PLAIN");
    let m = registration_message(&mut c).expect("904");
    assert_msg(&c, &m, "904", &[P::Is("*"), P::Any]);
}

// irctest: sasl.py testPlainLargeEquals400 and testPlainLarge800 (a last chunk of exactly 400
// bytes is followed by `+`), testPlainLarge (a shorter last chunk ends it), testSaslTooLong
#[test]
fn sasl_plain_chunked_payloads() {
    let equals400 = "bar".repeat(97);
    let large800 = "x".repeat(592);
    let large = "bar".repeat(100);
    let (s, _file) = sasl_server(&[("foo", &equals400), ("big", &large800), ("mid", &large)], &[]);
    for (account, password, chunks) in [("foo", &equals400, 1), ("big", &large800, 2)] {
        let auth = b64(format!("{account}\0{account}\0{password}").as_bytes());
        assert_eq!(auth.len(), 400 * chunks, "bad test");
        let mut c = add_client(&s, account);
        start_plain(&mut c);
        for i in 0..chunks {
            c.send(&format!("AUTHENTICATE {}", &auth[400 * i..400 * (i + 1)]));
        }
        c.send("AUTHENTICATE +");
        confirm_successful_auth(&mut c, account);
    }
    let auth = b64(format!("mid\0mid\0{large}").as_bytes());
    let mut c = add_client(&s, "mid");
    start_plain(&mut c);
    c.send(&format!("AUTHENTICATE {}", &auth[..400]));
    c.send(&format!("AUTHENTICATE {}", &auth[400..]));
    confirm_successful_auth(&mut c, "mid");

    let mut c = add_client(&s, "long");
    start_plain(&mut c);
    c.send(&format!("AUTHENTICATE {}", "A".repeat(450)));
    let m = registration_message(&mut c).expect("905");
    assert_msg(&c, &m, "905", &[P::Is("*"), P::Any]);
}

// irctest: sasl.py testNickUserDuringSasl and testRegistrationDuringSasl
#[test]
fn sasl_registration_during_an_exchange() {
    let (s, _file) = sasl_server(&[], &[]);
    let mut c = add_client(&s, "c");
    c.send("CAP LS 302");
    start_plain(&mut c);
    c.send("NICK foo");
    c.send("USER foo * * :Test");
    c.send("AUTHENTICATE amlsbGVzAGppbGxlcwBzZXNhbWU=");
    confirm_successful_auth(&mut c, "jilles");
    c.send("CAP END");
    c.expect_numeric("001");

    let mut c = add_client(&s, "d");
    c.send("CAP LS 302");
    start_plain(&mut c);
    c.send("NICK reguser");
    c.send("USER reguser 0 * :Test");
    c.send("CAP END");
    let got = c.collect_until(|m| m.is("001"), WAIT);
    assert!(got.iter().any(|m| m.is("906")), "an exchange cut short by registration:\n{}", show(&got));
}

// OPER against an argon2 hash given with --oper (its commas do not split the flag).
#[test]
fn oper_with_a_hashed_password() {
    let oper = format!("root:{}", cheap_hash("rootpw"));
    let (s, _file) = sasl_server(&[], &["--oper", &oper]);
    let mut c = connect_client(&s, "boss");
    c.send("OPER root wrong");
    let got = c.sync();
    assert!(got.iter().any(|m| m.is("464")) && !got.iter().any(|m| m.is("381")), "{}", show(&got));
    c.send("OPER root rootpw");
    let got = c.sync();
    assert!(got.iter().any(|m| m.is("381")), "OPER failed:\n{}", show(&got));
    assert!(got.iter().any(|m| m.is("MODE") && m.param(1) == "+o"), "{}", show(&got));
    // The plain-text operator of every server in this file still works alongside.
    let mut d = connect_client(&s, "other");
    d.send("OPER operuser operpassword");
    let got = d.sync();
    assert!(got.iter().any(|m| m.is("381")), "{}", show(&got));
}

// The slow part runs outside the chat state lock. An operator's deliberately costly hash (about a
// second) is being checked while a channel peer speaks: the peer's message reaches the checking
// client before its 381. Under the lock the message could only be handled after the check, and
// the 381 would come first on that same connection. The proof is an order, not a time. On epoll
// the worker hands the reactor to another thread first (CompletionPort::blocking); on io_uring a
// ring is its owner's, so the claim holds across rings: the two clients, connected one after the
// other, are on different rings on any box with two cores or more.
#[test]
fn a_slow_hash_check_does_not_stall_other_clients() {
    use argon2::password_hash::PasswordHasher;
    let params = argon2::Params::new(64 * 1024, 10, 1, None).expect("valid costs");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let slow = argon2.hash_password(b"rootpw").expect("argon2 hashes").to_string();
    let s = server(&["--workers", "4", "--oper", &format!("root:{slow}")]);
    let mut c = connect_client(&s, "boss");
    let mut other = connect_client(&s, "other");
    join_channel(&mut c, "#x");
    join_channel(&mut other, "#x");
    c.sync();
    c.send("OPER root rootpw");
    // A round trip of the peer's first lets the server pick up the OPER (a correct server passes
    // either way; this makes a server that checks under the lock fail more surely).
    other.sync();
    other.send("PRIVMSG #x :meanwhile");
    other.sync();
    let first = c.expect(|m| m.is("PRIVMSG") || m.is("381"), WAIT);
    assert!(first.is("PRIVMSG") && first.last() == "meanwhile", "the check held everyone up: {first} came first");
    c.expect_numeric("381");
}

// ---- IRCv3 draft/chathistory ----

// irctest: chathistory.py testChathistory[LATEST], testChathistory[BEFORE] (msgid references),
// testChathistoryNoEventPlayback (only messages are kept)
#[test]
fn chathistory_replays_what_members_saw() {
    let s = server(&["--history", "100"]);
    let caps = "message-tags server-time echo-message batch labeled-response draft/chathistory";
    let mut c = connect_with_caps(&s, "bar", caps);
    join_channel(&mut c, "#chan");
    let mut echoes = Vec::new();
    for i in 0..10 {
        c.send(&format!("TOPIC #chan :topic {i}"));
        c.send(&format!("PRIVMSG #chan :this is message {i}"));
        echoes.push(c.expect_cmd("PRIVMSG"));
    }
    c.sync();
    let replay = |c: &mut Client, line: &str| {
        c.send(line);
        let open = c.expect_cmd("BATCH");
        assert!(open.params_match(&["", "chathistory", "#chan"]) || open.param(1) == "chathistory", "{open}");
        let id = open.param(0).strip_prefix('+').unwrap().to_owned();
        let got = c.collect_until(|m| m.is("BATCH"), WAIT);
        let (end, inner) = got.split_last().unwrap();
        assert_eq!(end.param(0), format!("-{id}"));
        assert!(inner.iter().all(|m| m.tag("batch") == Some(id.as_str()) && m.is("PRIVMSG")), "{}", show(inner));
        inner
            .iter()
            .map(|m| (m.tag("time").unwrap().to_owned(), m.tag("msgid").unwrap().to_owned(), m.last().to_owned()))
            .collect::<Vec<_>>()
    };
    let seen: Vec<_> = echoes
        .iter()
        .map(|m| (m.tag("time").unwrap().to_owned(), m.tag("msgid").unwrap().to_owned(), m.last().to_owned()))
        .collect();
    assert_eq!(replay(&mut c, "CHATHISTORY LATEST #chan * 100"), seen);
    assert_eq!(replay(&mut c, "CHATHISTORY LATEST #chan * 5"), seen[5..]);
    assert_eq!(replay(&mut c, &format!("CHATHISTORY BEFORE #chan msgid={} 100", seen[6].1)), seen[..6]);
    // Messages sent back to back share a millisecond, so references by time are left to the
    // unit tests, which run on a fake clock.
    assert_eq!(replay(&mut c, &format!("CHATHISTORY AFTER #chan msgid={} 3", seen[3].1)), seen[4..7]);
}
