//! Property test over the chat protocol logic (no sockets): random sessions of IRC-shaped and
//! garbage lines from several clients never panic and never produce a malformed line. The same
//! driver backs the cargo-fuzz target in fuzz/.

use echoport::chat::drive::drive;
use proptest::prelude::*;

/// A line's content: mostly IRC commands with hostile parameters, sometimes raw bytes.
fn content() -> impl Strategy<Value = Vec<u8>> {
    let command = prop::sample::select(vec![
        "NICK",
        "USER",
        "JOIN",
        "PART",
        "PRIVMSG",
        "NOTICE",
        "TOPIC",
        "MODE",
        "KICK",
        "INVITE",
        "NAMES",
        "LIST",
        "WHO",
        "WHOIS",
        "QUIT",
        "PING",
        "PONG",
        "AWAY",
        "OPER",
        "CAP",
        "PASS",
        "TIME",
        "ISON",
        "TAGMSG",
        "SETNAME",
        "CHATHISTORY",
        "MARKREAD",
        "REDACT",
        "CHGHOST",
        "MONITOR",
        "WHOWAS",
    ]);
    let word = prop::sample::select(vec![
        "alice",
        "Bob",
        "#chan",
        "#Chan",
        "#a,#b",
        "0",
        "+o",
        "-o+v",
        "+kl",
        "key",
        "10",
        "op",
        "pw",
        ":hi there",
        ":\r:evil PRIVMSG #chan :x",
        ":\0nul",
        "*",
        "LS",
        "302",
        "END",
        "REQ",
        "LATEST",
        "BETWEEN",
        "msgid=x",
        "timestamp=2001-09-09T01:46:40.000Z",
        ":message-tags echo-message -batch",
        "",
        ":",
        "#",
        "&x",
        "[a]",
    ]);
    // IRCv3 tag sections: labels, client-only tags with escapes, server tags, and junk.
    let tags = prop::sample::select(vec![
        "",
        "",
        "",
        "@label=L1 ",
        "@+draft/reply=abc;+draft/react=\\:)\\s ",
        "@time=x;msgid=y;+a ",
        "@;;=;+=;+/x=\\ ",
        "@label=;label=\\n\\r\\0 ",
        "@+example.com/x=1;bot ",
    ]);
    let irc = (tags, command, prop::collection::vec(word, 0..5)).prop_map(|(t, c, ws)| {
        let mut line = t.as_bytes().to_vec();
        line.extend_from_slice(c.as_bytes());
        for w in ws {
            line.push(b' ');
            line.extend_from_slice(w.as_bytes());
        }
        line
    });
    prop_oneof![8 => irc, 1 => prop::collection::vec(any::<u8>(), 0..600)]
}

/// A record's first byte (see `drive`): mostly a whole line for one of the clients, sometimes
/// part of one (high bit set), a reconnect (0xFF) or a clock jump (0xFE).
fn record_kind() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0u8..=0x7F, 1 => 0x80u8..=0xFF]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_every_output_line_well_formed(
        lines in prop::collection::vec((record_kind(), content()), 1..60)
    ) {
        let mut session = Vec::new();
        for (client, line) in lines {
            session.push(client);
            session.extend(line.into_iter().filter(|&b| b != b'\n'));
            session.push(b'\n');
        }
        drive(&session);
    }
}
