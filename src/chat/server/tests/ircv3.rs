//! IRCv3: capability negotiation, tags on what the server sends, labeled responses, and the
//! capabilities that change what peers hear (echo-message, extended-join, away-notify,
//! multi-prefix, userhost-in-names, setname, invite-notify).

use super::*;

/// Registers `id` as `nick` with `caps` enabled (CAP REQ during registration).
fn register_with(h: &mut H, id: ClientId, nick: &str, caps: &str) {
    h.connect(id);
    h.send(id, "CAP LS 302");
    let fx = h.send(id, &format!("CAP REQ :{caps}"));
    assert_eq!(cmds(&fx, id), ["CAP"]);
    assert!(lines(&fx, id)[0].contains(" ACK "), "{:?}", lines(&fx, id));
    h.send(id, &format!("NICK {nick}"));
    h.send(id, &format!("USER {nick} 0 * :Real {nick}"));
    let fx = h.send(id, "CAP END");
    assert_eq!(cmds(&fx, id)[0], "001");
}

/// The tags of a line as (key, raw value) pairs, and the line without them.
fn split(line: &str) -> (Vec<(String, String)>, String) {
    match line.strip_prefix('@') {
        Some(rest) => {
            let (tags, body) = rest.split_once(' ').unwrap();
            let tags = tags
                .split(';')
                .map(|t| match t.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (t.to_owned(), String::new()),
                })
                .collect();
            (tags, body.to_owned())
        }
        None => (Vec::new(), line.to_owned()),
    }
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn cap_req_is_all_or_nothing_and_list_shows_what_is_on() {
    let mut h = H::new();
    h.connect(1);
    let fx = h.send(1, "CAP LS");
    assert_eq!(lines(&fx, 1), [format!(":irc.test CAP * LS :{OFFERED}")]);
    let fx = h.send(1, "CAP REQ :multi-prefix bogus");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * NAK :multi-prefix bogus"]);
    let fx = h.send(1, "CAP LIST");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * LIST :"], "a NAK enables nothing");
    let fx = h.send(1, "CAP REQ :multi-prefix userhost-in-names");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * ACK :multi-prefix userhost-in-names"]);
    let fx = h.send(1, "CAP REQ :-multi-prefix");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * ACK :-multi-prefix"]);
    let fx = h.send(1, "CAP LIST");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * LIST :userhost-in-names"]);
    // Without CAP LS 302, cap-notify is off and LS shows no values.
    assert!(!h.s.caps_of(1).has(Caps::CAP_NOTIFY));
}

#[test]
fn server_time_and_msgid_tag_a_broadcast_once_per_capability_set() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "message-tags");
    register_with(&mut h, 2, "bob", "message-tags server-time");
    register_with(&mut h, 3, "carol", "server-time");
    register_with(&mut h, 5, "erin", "message-tags server-time");
    h.register(4, "dave");
    for id in 1..=5 {
        h.send(id, "JOIN #c");
    }
    h.now += Duration::from_millis(1_234);
    let fx = h.send(1, "@+draft/react=\\:)\\s;fizz=buzz;+bad/=x PRIVMSG #c :hi");
    let (bob, body) = split(&lines(&fx, 2)[0]);
    assert_eq!(body, ":alice!alice@10.0.0.1 PRIVMSG #c :hi");
    assert_eq!(tag(&bob, "+draft/react"), Some("\\:)\\s"), "client tags relayed, escaped as sent");
    assert_eq!(tag(&bob, "fizz"), None, "a server tag from a client is not relayed");
    assert_eq!(tag(&bob, "time"), Some("2001-09-09T01:46:41.234Z"));
    let msgid = tag(&bob, "msgid").unwrap().to_owned();
    assert!(!msgid.is_empty());
    let (carol, _) = split(&lines(&fx, 3)[0]);
    assert_eq!(carol, [("time".to_owned(), "2001-09-09T01:46:41.234Z".to_owned())], "server-time only");
    assert_eq!(lines(&fx, 4), [":alice!alice@10.0.0.1 PRIVMSG #c :hi"], "no caps, no tags");
    // Bob and erin enabled the same caps: they share one tagged line.
    let line = |id| fx.sends.iter().find(|(to, _)| *to == id).unwrap().1.clone();
    assert!(Arc::ptr_eq(&line(2), &line(5)));
    // The next message has another msgid.
    let fx = h.send(1, "PRIVMSG #c :again");
    let (bob2, _) = split(&lines(&fx, 2)[0]);
    assert_ne!(tag(&bob2, "msgid").unwrap(), msgid);
    assert_eq!(tag(&bob2, "+draft/react"), None);
    // Numerics from the server carry time but no msgid.
    let fx = h.send(2, "PING x");
    let (tags, _) = split(&lines(&fx, 2)[0]);
    assert_eq!(tags.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["time"]);
}

#[test]
fn tagmsg_reaches_only_message_tags_clients_and_echo_message_echoes() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "message-tags echo-message");
    register_with(&mut h, 2, "bob", "message-tags");
    register_with(&mut h, 3, "carol", "server-time");
    for id in 1..=3 {
        h.send(id, "JOIN #c");
    }
    let fx = h.send(1, "@+typing=active TAGMSG #c");
    assert_eq!(recipients(&fx), [2, 1], "bob, then the echo; not carol");
    let (echo, body) = split(&lines(&fx, 1)[0]);
    assert_eq!(body, ":alice!alice@10.0.0.1 TAGMSG #c");
    let (relay, _) = split(&lines(&fx, 2)[0]);
    assert_eq!(tag(&echo, "+typing"), Some("active"));
    assert_eq!(tag(&echo, "msgid"), tag(&relay, "msgid"));
    // To a nick without message-tags: nothing is delivered, the echo still comes.
    let fx = h.send(1, "@+typing=active TAGMSG carol");
    assert_eq!(recipients(&fx), [1]);
    let fx = h.send(1, "TAGMSG");
    assert_eq!(cmds(&fx, 1), ["411"]);
    // echo-message on PRIVMSG to a nick and a channel.
    let fx = h.send(1, "PRIVMSG bob :yo");
    assert_eq!(recipients(&fx), [2, 1]);
    let fx = h.send(2, "PRIVMSG #c :no echo for bob");
    assert_eq!(recipients(&fx), [1, 3]);
}

#[test]
fn labeled_responses_ack_label_or_batch() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "batch labeled-response echo-message");
    h.register(2, "bob");
    let fx = h.send(1, "@label=a1 PONG x");
    assert_eq!(lines(&fx, 1), ["@label=a1 :irc.test ACK"]);
    let fx = h.send(1, "@label=a2 PING tok");
    assert_eq!(lines(&fx, 1), ["@label=a2 :irc.test PONG irc.test :tok"]);
    let fx = h.send(1, "@label=a3 NOSUCH");
    assert_eq!(cmds(&fx, 1), ["421"]);
    assert!(lines(&fx, 1)[0].starts_with("@label=a3 "));
    let fx = h.send(1, "@label=a4 JOIN #x");
    let got = lines(&fx, 1);
    assert_eq!(cmds(&fx, 1), ["BATCH", "JOIN", "353", "366", "BATCH"]);
    let (open, body) = split(&got[0]);
    assert_eq!(tag(&open, "label"), Some("a4"));
    let reference = body.split(' ').nth(2).unwrap().strip_prefix('+').unwrap().to_owned();
    assert!(body.ends_with(" labeled-response"));
    assert!(reference.bytes().all(|b| b.is_ascii_alphanumeric()), "{reference}");
    for line in &got[1..4] {
        assert_eq!(tag(&split(line).0, "batch"), Some(reference.as_str()));
    }
    assert_eq!(got[4], format!(":irc.test BATCH -{reference}"));
    // A message to oneself arrives twice: only the echo is labeled, and no batch is needed.
    let fx = h.send(1, "@label=a5 PRIVMSG alice :me");
    let got = lines(&fx, 1);
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().filter(|l| l.starts_with("@label=a5 ")).count(), 1, "{got:?}");
    // The recipient never sees the label; without the capability a label is ignored.
    let fx = h.send(1, "@label=a6 PRIVMSG bob :hi");
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG bob :hi"]);
    assert_eq!(lines(&fx, 1), ["@label=a6 :alice!alice@10.0.0.1 PRIVMSG bob :hi"]);
    let fx = h.send(2, "@label=b1 PONG x");
    assert!(fx.sends.is_empty());
    // An overlong label is ignored too.
    let fx = h.send(1, &format!("@label={} PONG x", "l".repeat(65)));
    assert!(fx.sends.is_empty());
}

#[test]
fn tag_section_and_body_have_their_own_limits() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "message-tags echo-message");
    register_with(&mut h, 2, "bob", "message-tags");
    h.send(1, "JOIN #t");
    h.send(2, "JOIN #t");
    // 4096 bytes of tag section, '@' and the space included: accepted and relayed whole.
    let at_limit = format!("@foo=bar;+baz={} TAGMSG #t", "a".repeat(4081));
    assert_eq!(at_limit.find("TAGMSG"), Some(4096));
    let fx = h.send(1, &at_limit);
    assert_eq!(recipients(&fx), [2, 1]);
    assert_eq!(tag(&split(&lines(&fx, 2)[0]).0, "+baz").map(str::len), Some(4081));
    let over = format!("@foo=bar;+baz={} TAGMSG #t", "a".repeat(4082));
    let fx = h.send(1, &over);
    assert_eq!(cmds(&fx, 1), ["417"]);
    assert_eq!(recipients(&fx), [1]);
    // The body keeps its 510 bytes after the tags.
    let fx = h.send(1, &format!("@+a=b PRIVMSG #t :{}", "b".repeat(510 - 12)));
    assert_eq!(cmds(&fx, 2), ["PRIVMSG"]);
    let fx = h.send(1, &format!("@+a=b PRIVMSG #t :{}", "b".repeat(511 - 12)));
    assert_eq!(cmds(&fx, 1), ["417"]);
}

#[test]
fn join_away_names_who_and_whois_in_the_forms_asked_for() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "extended-join away-notify multi-prefix userhost-in-names");
    h.register(2, "bob");
    h.send(1, "JOIN #c");
    h.send(2, "AWAY :lunch");
    let fx = h.send(2, "JOIN #c");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 JOIN #c * :Real bob", ":bob!bob@10.0.0.2 AWAY :lunch"]);
    assert_eq!(lines(&fx, 2)[0], ":bob!bob@10.0.0.2 JOIN #c", "plain JOIN without extended-join");
    let fx = h.send(2, "AWAY");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 AWAY"]);
    h.send(1, "MODE #c +v alice");
    let fx = h.send(1, "NAMES #c");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 353 alice = #c :@+alice!alice@10.0.0.1 bob!bob@10.0.0.2");
    let fx = h.send(2, "NAMES #c");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 353 bob = #c :@alice bob");
    let fx = h.send(1, "WHO #c");
    assert!(lines(&fx, 1)[0].contains(" H@+ :0 "), "{:?}", lines(&fx, 1));
    let fx = h.send(1, "WHOIS alice");
    assert!(lines(&fx, 1).iter().any(|l| l.ends_with(" 319 alice alice :@+#c")), "{:?}", lines(&fx, 1));
}

#[test]
fn setname_and_invite_notify() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "setname invite-notify");
    h.register(2, "bob");
    h.register(3, "carol");
    h.send(1, "JOIN #c");
    h.send(2, "JOIN #c");
    let fx = h.send(2, "SETNAME :Robert Tables");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 SETNAME :Robert Tables"]);
    assert!(lines(&fx, 2).is_empty(), "bob did not enable setname");
    let fx = h.send(1, "WHOIS bob");
    assert!(lines(&fx, 1)[0].ends_with(":Robert Tables"));
    let fx = h.send(1, &format!("SETNAME :{}", "x".repeat(101)));
    assert_eq!(lines(&fx, 1), [":irc.test FAIL SETNAME INVALID_REALNAME :Realname is too long"]);
    let fx = h.send(1, "SETNAME :Alice A.");
    assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 SETNAME :Alice A."], "told to oneself too");
    let fx = h.send(2, "INVITE carol #c");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 INVITE carol #c"]);
    // In a +i channel only operators hear of invitations (bob is not one).
    h.send(1, "MODE #c +i");
    let fx = h.send(1, "INVITE carol #c");
    assert!(lines(&fx, 2).is_empty());
}

#[test]
fn utf8_only_refuses_other_bytes_with_a_labeled_fail() {
    let mut h = H::with(ChatConfig { server_name: "irc.test".to_owned(), utf8_only: true, ..ChatConfig::default() });
    register_with(&mut h, 1, "alice", "batch labeled-response echo-message");
    h.register(2, "bob");
    h.send(1, "JOIN #q");
    h.send(2, "JOIN #q");
    let fx = h.sendb(1, b"@label=xyz PRIVMSG #q hi\xaa");
    assert_eq!(
        lines(&fx, 1),
        ["@label=xyz :irc.test FAIL PRIVMSG INVALID_UTF8 :Message rejected: this network takes UTF-8 only"]
    );
    assert!(lines(&fx, 2).is_empty());
    let fx = h.send(1, "PRIVMSG #q :caf\u{e9} ok");
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG #q :caf\u{e9} ok"]);
    h.connect(3);
    let fx = h.sendb(3, b"USER \xe8rc\xe9 * * :x");
    assert_eq!(cmds(&fx, 3), ["FAIL"]);
}

#[test]
fn a_bot_s_messages_carry_the_bot_tag_and_statusmsg_echoes_as_sent() {
    let mut h = H::new();
    h.register(1, "botnick");
    register_with(&mut h, 2, "user", "message-tags echo-message");
    h.send(1, "MODE botnick +B");
    let fx = h.send(1, "PRIVMSG user :beep");
    let (tags, _) = split(&lines(&fx, 2)[0]);
    assert_eq!(tag(&tags, "bot"), Some(""), "{tags:?}");
    let fx = h.send(2, "PRIVMSG botnick :hi");
    assert!(lines(&fx, 2).iter().all(|l| !l.contains("bot;") && !l.contains(";bot ")), "not a bot");
    h.send(2, "JOIN #c");
    let fx = h.send(2, "PRIVMSG @#c :ops only");
    assert!(lines(&fx, 2)[0].ends_with(" PRIVMSG @#c :ops only"), "{:?}", lines(&fx, 2));
}

#[test]
fn extended_monitor_tells_watchers_outside_shared_channels() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "extended-monitor away-notify");
    register_with(&mut h, 3, "carol", "away-notify");
    h.register(2, "bob");
    h.send(1, "MONITOR + bob");
    h.send(3, "MONITOR + bob");
    let fx = h.send(2, "AWAY :gone");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 AWAY :gone"]);
    assert!(lines(&fx, 3).is_empty(), "carol did not enable extended-monitor");
    // A watcher who also shares a channel hears it once.
    h.send(1, "JOIN #c");
    h.send(2, "JOIN #c");
    let fx = h.send(2, "AWAY");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 AWAY"]);
}

#[test]
fn an_operator_s_chghost_reaches_peers_with_the_capability() {
    let mut h = with_oper();
    register_with(&mut h, 1, "alice", "chghost");
    h.register(2, "bob");
    h.register(3, "carol");
    h.send(1, "JOIN #c");
    h.send(2, "JOIN #c");
    h.send(3, "JOIN #c");
    let fx = h.send(2, "CHGHOST carol cloak users.example");
    assert_eq!(cmds(&fx, 2), ["481"]);
    h.send(2, "OPER operuser operpassword");
    let fx = h.send(2, "CHGHOST carol cloak users.example");
    assert_eq!(lines(&fx, 1), [":carol!carol@10.0.0.3 CHGHOST cloak users.example"]);
    assert!(lines(&fx, 3).is_empty() && lines(&fx, 2).is_empty(), "no chghost capability");
    let fx = h.send(3, "PRIVMSG #c :new me");
    assert_eq!(lines(&fx, 1), [":carol!cloak@users.example PRIVMSG #c :new me"]);
    let fx = h.send(2, "CHGHOST carol bad@user host");
    assert_eq!(cmds(&fx, 2), ["FAIL"]);
}

#[test]
fn invite_alone_lists_invitations_and_plus_c_refuses_ctcp_but_action() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.send(1, "JOIN #chan");
    h.send(1, "INVITE bar #chan");
    let fx = h.send(2, "INVITE");
    assert_eq!(lines(&fx, 2), [":irc.test 336 bar #chan", ":irc.test 337 bar :End of /INVITE list"]);
    h.send(2, "JOIN #chan");
    let fx = h.send(2, "INVITE");
    assert_eq!(cmds(&fx, 2), ["337"]);
    let fx = h.send(1, "MODE #chan +C");
    assert_eq!(lines(&fx, 2), [":foo!foo@10.0.0.1 MODE #chan +C"]);
    let fx = h.send(2, "PRIVMSG #chan :\x01ACTION waves\x01");
    assert_eq!(recipients(&fx), [1]);
    let fx = h.send(2, "PRIVMSG #chan :\x01PING 1\x01");
    assert_eq!(lines(&fx, 2), [":irc.test 404 bar #chan :Cannot send to channel (+C)"]);
    assert_eq!(recipients(&fx), [2]);
}

#[test]
fn read_markers_only_increase_and_come_with_a_join() {
    let mut h = H::new();
    register_with(&mut h, 1, "alice", "draft/read-marker");
    let fx = h.send(1, "MARKREAD #nosuchtarget");
    assert_eq!(lines(&fx, 1), [":irc.test MARKREAD #nosuchtarget *"]);
    let fx = h.send(1, "JOIN #test");
    assert_eq!(cmds(&fx, 1), ["JOIN", "353", "MARKREAD", "366"]);
    let fx = h.send(1, "MARKREAD #Test timestamp=2019-06-01T12:00:00.000Z");
    assert_eq!(lines(&fx, 1), [":irc.test MARKREAD #Test timestamp=2019-06-01T12:00:00.000Z"]);
    let fx = h.send(1, "MARKREAD #test timestamp=2019-01-01T00:00:00.000Z");
    assert_eq!(lines(&fx, 1), [":irc.test MARKREAD #test timestamp=2019-06-01T12:00:00.000Z"], "never decreases");
    h.send(1, "PART #test");
    let fx = h.send(1, "JOIN #test");
    assert!(lines(&fx, 1).contains(&":irc.test MARKREAD #test timestamp=2019-06-01T12:00:00.000Z".to_owned()));
    for bad in ["MARKREAD #test *", "MARKREAD #test timestamp=not-a-timestamp"] {
        let fx = h.send(1, bad);
        assert!(lines(&fx, 1)[0].starts_with(":irc.test FAIL MARKREAD INVALID_PARAMS #test "), "{bad}");
    }
    let fx = h.send(1, "MARKREAD");
    assert!(lines(&fx, 1)[0].starts_with(":irc.test FAIL MARKREAD NEED_MORE_PARAMS "));
    for i in 0..100 {
        h.send(1, &format!("MARKREAD #c{i} timestamp=2020-01-01T00:00:00.000Z"));
    }
    assert_eq!(h.s.clients[&1].read_markers.len(), markread::MAX_MARKERS, "bounded");
    h.register(2, "bob");
    let fx = h.send(2, "MARKREAD #test");
    assert_eq!(cmds(&fx, 2), ["421"], "only with the capability");
}
