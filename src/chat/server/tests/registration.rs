//! Registration (CAP, PASS, NICK, USER), the welcome burst, nick changes, QUIT and disconnects.

use super::*;

fn with_password() -> H {
    H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        password: Some("sesame".to_owned()),
        ..ChatConfig::default()
    })
}

#[test]
fn registration_nick_then_user() {
    let mut h = H::new();
    h.connect(1);
    assert!(h.send(1, "NICK alice").sends.is_empty());
    let fx = h.send(1, "USER al 0 * :Alice Liddell");
    let got = lines(&fx, 1);
    assert_eq!(got[0], ":irc.test 001 alice :Welcome to the echoport IRC Network alice!al@10.0.0.1");
    assert_eq!(got[1], format!(":irc.test 002 alice :Your host is irc.test, running version {VERSION}"));
    assert!(got[2].starts_with(":irc.test 003 alice :This server was created "));
    assert_eq!(got[3], format!(":irc.test 004 alice irc.test {VERSION} Biow CIbeiklmnostv Ibeklov"));
    assert_eq!(
        got[4],
        ":irc.test 005 alice CASEMAPPING=rfc1459 CHANTYPES=# NICKLEN=30 CHANNELLEN=50 \
         TOPICLEN=390 PREFIX=(ov)@+ CHANMODES=beI,k,l,Cimnst NETWORK=echoport CHANLIMIT=#:50 \
         KICKLEN=255 AWAYLEN=200 USERLEN=10 KEYLEN=23 :are supported by this server"
    );
    assert_eq!(
        got[5],
        ":irc.test 005 alice HOSTLEN=63 MODES=12 TARGMAX=JOIN:,PART:,NAMES:,LIST:,WHOIS:1,KICK:4,\
         PRIVMSG:4,NOTICE:4 EXCEPTS=e INVEX=I EXTBAN=,m MAXLIST=beI:100 MONITOR=100 STATUSMSG=@+ BOT=B ELIST=CMNTU WHOX \
         :are supported by this server"
    );
    assert_eq!(
        &got[6..],
        [
            ":irc.test 251 alice :There are 1 users and 0 invisible on 1 servers",
            ":irc.test 255 alice :I have 1 clients and 0 servers",
            ":irc.test 265 alice 1 1 :Current local users 1, max 1",
            ":irc.test 266 alice 1 1 :Current global users 1, max 1",
            ":irc.test 422 alice :MOTD File is missing",
        ]
    );
    assert!(fx.close.is_empty());
    assert_eq!(h.s.clients(), 1);
}

#[test]
fn registration_user_then_nick_and_motd() {
    let mut h = H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        motd: Some(vec!["hello".to_owned(), "world".to_owned()]),
        ..ChatConfig::default()
    });
    h.connect(1);
    assert!(h.send(1, "USER bob 0 * :Bob").sends.is_empty());
    let fx = h.send(1, "NICK bob");
    let got = lines(&fx, 1);
    assert_eq!(got[0], ":irc.test 001 bob :Welcome to the echoport IRC Network bob!bob@10.0.0.1");
    assert_eq!(
        &got[got.len() - 4..],
        [
            ":irc.test 375 bob :- irc.test Message of the day - ",
            ":irc.test 372 bob :- hello",
            ":irc.test 372 bob :- world",
            ":irc.test 376 bob :End of MOTD command",
        ]
    );
    let fx = h.send(1, "MOTD");
    assert_eq!(cmds(&fx, 1), ["375", "372", "372", "376"]);
}

#[test]
fn cap_negotiation_holds_registration_until_cap_end() {
    let mut h = H::new();
    h.connect(1);
    let fx = h.send(1, "CAP LS 302");
    assert_eq!(lines(&fx, 1), [format!(":irc.test CAP * LS :{OFFERED}")]);
    assert!(h.send(1, "NICK carol").sends.is_empty());
    assert!(h.send(1, "USER carol 0 * :Carol").sends.is_empty());
    // sasl is not offered without accounts, so the whole request is refused.
    let fx = h.send(1, "CAP REQ :multi-prefix sasl");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * NAK :multi-prefix sasl"]);
    // CAP LS 302 turned cap-notify on.
    let fx = h.send(1, "CAP LIST");
    assert_eq!(lines(&fx, 1), [":irc.test CAP * LIST :cap-notify"]);
    let fx = h.send(1, "cap bogus");
    assert_eq!(lines(&fx, 1), [":irc.test 410 carol bogus :Invalid CAP command"]);
    let fx = h.send(1, "CAP END");
    assert_eq!(cmds(&fx, 1)[0], "001");
    // After registration CAP still answers, with the nick, and holds nothing.
    let fx = h.send(1, "CAP LS");
    assert_eq!(lines(&fx, 1), [format!(":irc.test CAP carol LS :{OFFERED}")]);
    let fx = h.send(1, "CAP REQ :-cap-notify");
    assert_eq!(lines(&fx, 1), [":irc.test CAP carol ACK :-cap-notify"]);
    let fx = h.send(1, "CAP LIST");
    assert_eq!(lines(&fx, 1), [":irc.test CAP carol LIST :"]);
    let fx = h.send(1, "PING x");
    assert_eq!(cmds(&fx, 1), ["PONG"]);
    // A first message of CAP LIST is answered the same way.
    h.connect(2);
    let fx = h.send(2, "CAP LIST");
    assert_eq!(lines(&fx, 2), [":irc.test CAP * LIST :"]);
    let fx = h.send(2, "CAP");
    assert_eq!(lines(&fx, 2), [":irc.test 461 * CAP :Not enough parameters"]);
}

#[test]
fn pass_right_registers() {
    let mut h = with_password();
    h.connect(1);
    assert!(h.send(1, "PASS sesame").sends.is_empty());
    h.send(1, "NICK foo");
    let fx = h.send(1, "USER foo * * :Realname");
    assert_eq!(cmds(&fx, 1)[0], "001");
    let fx = h.send(1, "PASS sesame");
    assert_eq!(lines(&fx, 1), [":irc.test 462 foo :You may not reregister"]);
}

#[test]
fn pass_wrong_or_missing_or_late_is_464_error_and_close() {
    for script in
        [&["PASS wrong", "NICK foo", "USER foo * * :Realname"][..], &["NICK foo", "USER foo * * :Realname"][..]]
    {
        let mut h = with_password();
        h.connect(1);
        let mut fx = Effects::default();
        for line in script {
            fx = h.send(1, line);
        }
        assert_eq!(
            lines(&fx, 1),
            [":irc.test 464 foo :Password incorrect", "ERROR :Closing Link: 10.0.0.1 (Bad password)",]
        );
        assert_eq!(fx.close, [1]);
        assert_eq!(h.s.clients(), 0);
        // The nick is free again and later lines for the id are ignored.
        assert!(h.send(1, "PASS sesame").sends.is_empty());
        assert!(h.s.nicks.is_empty());
    }
    let mut h = with_password();
    h.connect(1);
    h.send(1, "PASS");
    let fx = h.send(1, "PASS");
    assert_eq!(lines(&fx, 1), [":irc.test 461 * PASS :Not enough parameters"]);
}

#[test]
fn nick_errors() {
    let mut h = H::new();
    h.register(1, "alice");
    h.connect(2);
    let fx = h.send(2, "NICK");
    assert_eq!(lines(&fx, 2), [":irc.test 431 * :No nickname given"]);
    let fx = h.send(2, "NICK :");
    assert_eq!(lines(&fx, 2), [":irc.test 431 * :No nickname given"]);
    for bad in ["1abc", "-dash", "a.b", "x@y", "#chan", "é", &"n".repeat(31)] {
        let fx = h.send(2, &format!("NICK {bad}"));
        assert_eq!(lines(&fx, 2), [format!(":irc.test 432 * {bad} :Erroneous nickname")], "{bad}");
    }
    let fx = h.sendb(2, b"NICK a\xffb");
    assert_eq!(cmds(&fx, 2), ["432"]);
    let fx = h.send(2, "NICK ALICE");
    assert_eq!(lines(&fx, 2), [":irc.test 433 * ALICE :Nickname is already in use"]);
    for good in ["[x]", "`x", "_x-1", "^{}|\\", &"n".repeat(30)] {
        assert!(valid_nick(good.as_bytes()), "{good}");
    }
    // Registered client: errors carry its nick.
    let fx = h.send(1, "NICK 9x");
    assert_eq!(lines(&fx, 1), [":irc.test 432 alice 9x :Erroneous nickname"]);
}

#[test]
fn early_nick_collision_only_one_registers() {
    let mut h = H::new();
    h.connect(1);
    h.connect(2);
    assert!(h.send(1, "NICK foo").sends.is_empty());
    let fx = h.send(2, "NICK foo");
    assert_eq!(lines(&fx, 2), [":irc.test 433 * foo :Nickname is already in use"]);
    let fx = h.send(1, "USER u * * :R");
    assert_eq!(cmds(&fx, 1)[0], "001");
    let fx = h.send(2, "USER u * * :R");
    assert!(fx.sends.is_empty(), "no nick yet: still unregistered");
    let fx = h.send(2, "NICK foo2");
    assert_eq!(cmds(&fx, 2)[0], "001");
}

#[test]
fn unregistered_and_user_errors() {
    let mut h = H::new();
    h.connect(1);
    for line in ["JOIN #a", "PRIVMSG x :y", "WHOIS x", "MODE x", "FOO"] {
        let fx = h.send(1, line);
        assert_eq!(lines(&fx, 1), [":irc.test 451 * :You have not registered"]);
    }
    assert!(h.send(1, "NOTICE x :y").sends.is_empty());
    let fx = h.send(1, "PING tok");
    assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :tok"]);
    assert!(h.send(1, "PONG tok").sends.is_empty());
    h.send(1, "NICK foo");
    let fx = h.send(1, "USER username * * :");
    assert_eq!(lines(&fx, 1), [":irc.test 461 foo USER :Not enough parameters"]);
    let fx = h.send(1, "USER username *");
    assert_eq!(cmds(&fx, 1), ["461"]);
    let fx = h.send(1, "USER us@er!x * * :R");
    assert_eq!(cmds(&fx, 1)[0], "001");
    assert_eq!(h.s.clients[&1].prefix, b"foo!userx@10.0.0.1");
    let fx = h.send(1, "USER again * * :R");
    assert_eq!(lines(&fx, 1), [":irc.test 462 foo :You may not reregister"]);
}

#[test]
fn misc_errors_and_empty_lines() {
    let mut h = H::new();
    h.register(1, "alice");
    let fx = h.send(1, "FROBNICATE a b");
    assert_eq!(lines(&fx, 1), [":irc.test 421 alice FROBNICATE :Unknown command"]);
    let fx = h.send(1, "averyveryverylongcommandname");
    assert_eq!(cmds(&fx, 1), ["421"]);
    assert!(h.send(1, "").sends.is_empty());
    assert!(h.send(1, "    ").sends.is_empty());
    assert!(h.send(1, ":prefix.only").sends.is_empty());
    let fx = h.send(1, "PING");
    assert_eq!(lines(&fx, 1), [":irc.test 409 alice :No origin specified"]);
    let fx = h.send(1, "PING :");
    assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :"]);
    let fx = h.send(1, "ping :a b");
    assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :a b"]);
    // A prefix sent by the client is ignored.
    let fx = h.send(1, ":bob!x@y PING z");
    assert_eq!(lines(&fx, 1), [":irc.test PONG irc.test :z"]);
    for (line, cmd) in [
        ("JOIN", "JOIN"),
        ("PART", "PART"),
        ("TOPIC", "TOPIC"),
        ("MODE", "MODE"),
        ("KICK #a", "KICK"),
        ("INVITE bob", "INVITE"),
        ("OPER x", "OPER"),
        ("ISON", "ISON"),
        ("USERHOST", "USERHOST"),
    ] {
        let fx = h.send(1, line);
        assert_eq!(lines(&fx, 1), [format!(":irc.test 461 alice {cmd} :Not enough parameters")], "{line}");
    }
}

#[test]
fn nick_change_reaches_each_peer_once() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.register(3, "carol");
    h.send(1, "JOIN #a,#b");
    h.send(2, "JOIN #a,#b");
    let fx = h.send(1, "NICK alicia");
    let want = ":alice!alice@10.0.0.1 NICK alicia";
    assert_eq!(lines(&fx, 1), [want]);
    assert_eq!(lines(&fx, 2), [want], "once, though two channels are shared");
    assert!(lines(&fx, 3).is_empty());
    assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
    // The old nick is free, the new one taken; the prefix follows.
    let fx = h.send(3, "PRIVMSG alice :x");
    assert_eq!(cmds(&fx, 3), ["401"]);
    let fx = h.send(3, "PRIVMSG ALICIA :x");
    assert_eq!(lines(&fx, 1), [":carol!carol@10.0.0.3 PRIVMSG alicia :x"]);
    let fx = h.send(2, "PRIVMSG #a :hi");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG #a :hi"]);
    let fx = h.send(1, "PRIVMSG #a :me");
    assert_eq!(lines(&fx, 2), [":alicia!alice@10.0.0.1 PRIVMSG #a :me"]);
    // Case variant of one's own nick: allowed; the same nick: nothing.
    let fx = h.send(1, "NICK Alicia");
    assert_eq!(lines(&fx, 1), [":alicia!alice@10.0.0.1 NICK Alicia"]);
    assert!(h.send(1, "NICK Alicia").sends.is_empty());
    let fx = h.send(2, "NICK ALICIA");
    assert_eq!(lines(&fx, 2), [":irc.test 433 bob ALICIA :Nickname is already in use"]);
    let fx = h.send(2, "NICK");
    assert_eq!(cmds(&fx, 2), ["431"]);
    h.send(2, "NICK alice");
    assert_eq!(h.s.find_nick(b"ALICE"), Some(2));
}

#[test]
fn quit_reaches_each_peer_once_and_frees_everything() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.register(3, "carol");
    h.register(4, "dave");
    h.send(1, "JOIN #a,#b");
    h.send(2, "JOIN #a,#b");
    h.send(3, "JOIN #b");
    let fx = h.send(1, "QUIT :gone fishing");
    assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Quit: gone fishing)"]);
    let want = ":alice!alice@10.0.0.1 QUIT :Quit: gone fishing";
    assert_eq!(lines(&fx, 2), [want]);
    assert_eq!(lines(&fx, 3), [want]);
    assert!(lines(&fx, 4).is_empty());
    assert_eq!(fx.close, [1]);
    assert_eq!(h.s.clients(), 3);
    assert_eq!(h.s.channels(), 2);
    // Lines after QUIT and a later disconnect do nothing.
    assert!(h.send(1, "PRIVMSG #a :ghost").sends.is_empty());
    let mut fx = Effects::default();
    h.s.disconnect(1, "EOF", &mut fx);
    assert!(fx.sends.is_empty() && fx.close.is_empty());
    // The nick is free.
    h.connect(5);
    h.send(5, "NICK alice");
    let fx = h.send(5, "USER a * * :A");
    assert_eq!(cmds(&fx, 5)[0], "001");
    // QUIT without a reason; the last member leaving removes the channel.
    let fx = h.send(3, "QUIT");
    assert_eq!(lines(&fx, 3), ["ERROR :Closing Link: 10.0.0.3 (Client Quit)"]);
    assert_eq!(lines(&fx, 2), [":carol!carol@10.0.0.3 QUIT :Client Quit"]);
    let mut fx = Effects::default();
    h.s.disconnect(2, "Connection reset by peer", &mut fx);
    assert!(fx.sends.is_empty());
    assert_eq!(h.s.channels(), 0);
    // A reason that is not UTF-8 goes out as it came.
    let fx = h.sendb(4, b"QUIT :caf\xe9");
    assert_eq!(&*fx.sends[0].1, b"ERROR :Closing Link: 10.0.0.4 (Quit: caf\xe9)\r\n");
    // An unregistered client quits quietly.
    h.connect(6);
    let fx = h.send(6, "QUIT :bye");
    assert_eq!(lines(&fx, 6), ["ERROR :Closing Link: 10.0.0.6 (Quit: bye)"]);
    assert_eq!(fx.close, [6]);
}

#[test]
fn disconnect_broadcasts_reason() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.send(1, "JOIN #a");
    h.send(2, "JOIN #a");
    let mut fx = Effects::default();
    h.s.disconnect(1, "SendQ exceeded", &mut fx);
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 QUIT :SendQ exceeded"]);
    assert!(fx.close.is_empty());
    assert_eq!(h.s.registered, 1);
    let fx = h.send(2, "NAMES #a");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 353 bob = #a :bob");
}

#[test]
fn lusers_counts() {
    let mut h = H::new();
    h.register(1, "alice");
    h.connect(2);
    h.send(1, "JOIN #a");
    let fx = h.send(1, "LUSERS");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 251 alice :There are 1 users and 0 invisible on 1 servers",
            ":irc.test 253 alice 1 :unknown connection(s)",
            ":irc.test 254 alice 1 :channels formed",
            ":irc.test 255 alice :I have 1 clients and 0 servers",
            ":irc.test 265 alice 1 1 :Current local users 1, max 1",
            ":irc.test 266 alice 1 1 :Current global users 1, max 1",
        ]
    );
}
