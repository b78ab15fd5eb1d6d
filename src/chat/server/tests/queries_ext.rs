//! WHOX, LIST with ELIST terms, WHOWAS, LUSERS, INFO, HELP, LINKS and WALLOPS (+w), after
//! irctest's who.py, list.py, whowas.py, lusers.py, info.py, help.py, links.py and wallops.py.

use super::queries::who_setup;
use super::*;

fn end_of_who(mask: &str) -> String {
    format!(":irc.test 315 otherNick {mask} :End of WHO list")
}

#[test]
fn whox_full_in_canonical_order_whatever_the_order_asked() {
    let mut h = who_setup();
    h.now += Duration::from_secs(3);
    let want = ":irc.test 354 otherNick 123 * myusernam 10.0.0.1 10.0.0.1 irc.test coolNick H 0 3 0 n/a \
                :My UniqueReal Name";
    let fx = h.send(2, "WHO coolNick %tcuihsnfdlaor,123");
    assert_eq!(lines(&fx, 2), [want.to_owned(), end_of_who("coolNick")]);
    let reversed: String = "tcuihsnfdlaor".chars().rev().collect();
    let fx = h.send(2, &format!("WHO coolNick %{reversed},123"));
    assert_eq!(lines(&fx, 2), [want.to_owned(), end_of_who("coolNick")]);
    // In a channel: the channel and the member's status.
    let fx = h.send(2, "WHO #chan %cnf");
    assert_eq!(
        lines(&fx, 2),
        [
            ":irc.test 354 otherNick #chan coolNick :H@".to_owned(),
            ":irc.test 354 otherNick #chan otherNick :H".to_owned(),
            end_of_who("#chan"),
        ]
    );
}

#[test]
fn whox_one_char() {
    let mut h = who_setup();
    for (c, want) in [
        ('c', "*"),
        ('u', "myusernam"),
        ('i', "10.0.0.1"),
        ('h', "10.0.0.1"),
        ('s', "irc.test"),
        ('n', "coolNick"),
        ('f', "H"),
        ('d', "0"),
        ('l', "0"),
        ('a', "0"),
        ('o', "n/a"),
        ('r', "My UniqueReal Name"),
    ] {
        let fx = h.send(2, &format!("WHO coolNick %{c}"));
        assert_eq!(lines(&fx, 2), [format!(":irc.test 354 otherNick :{want}"), end_of_who("coolNick")], "%{c}");
    }
}

#[test]
fn whox_token_and_account() {
    let mut h = who_setup();
    let fx = h.send(2, "WHO coolNick %tn,321");
    assert_eq!(lines(&fx, 2), [":irc.test 354 otherNick 321 :coolNick".to_owned(), end_of_who("coolNick")]);
    // A token that is not 1-3 digits is not echoed.
    let fx = h.send(2, "WHO coolNick %tn,1234");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 354 otherNick 0 :coolNick");
    // who.py testWhoxNoAccount, and an account once there is one.
    let fx = h.send(2, "WHO coolNick %na");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 354 otherNick coolNick :0");
    h.s.clients.get_mut(&1).unwrap().account = Some(b"coolAcct".to_vec());
    let fx = h.send(2, "WHO coolNick %na");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 354 otherNick coolNick :coolAcct");
}

#[test]
fn whox_fields_are_not_the_operator_filter() {
    let mut h = who_setup();
    // `o` after `%` is the op-level field; before it, "operators only".
    let fx = h.send(2, "WHO * %no");
    assert_eq!(cmds(&fx, 2), ["354", "354", "315"]);
    let fx = h.send(2, "WHO * o%n");
    assert_eq!(cmds(&fx, 2), ["315"]);
    h.send(1, "OPER operuser operpassword");
    let fx = h.send(2, "WHO * o%nf");
    assert_eq!(lines(&fx, 2), [":irc.test 354 otherNick coolNick :H*".to_owned(), end_of_who("*")]);
    // Plain WHO is unchanged.
    let fx = h.send(2, "WHO coolNick");
    assert_eq!(cmds(&fx, 2), ["352", "315"]);
}

/// The channels a LIST lists, in order.
fn listed(h: &mut H, id: ClientId, line: &str) -> Vec<String> {
    let fx = h.send(id, line);
    let got = lines(&fx, id);
    assert!(got.first().is_some_and(|l| l.contains(" 321 ")), "{got:?}");
    assert!(got.last().is_some_and(|l| l.contains(" 323 ")), "{got:?}");
    got.iter().filter(|l| l.contains(" 322 ")).map(|l| l.split(' ').nth(3).unwrap_or("").to_owned()).collect()
}

#[test]
fn list_mask_and_not_mask() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.send(1, "JOIN #chan1");
    h.send(1, "JOIN #chan2");
    for (q, want) in [
        ("LIST *an1", &["#chan1"][..]),
        ("LIST *an2", &["#chan2"]),
        ("LIST #c*n2", &["#chan2"]),
        ("LIST *an3", &[]),
        ("LIST #ch*", &["#chan1", "#chan2"]),
        ("LIST #CH*", &["#chan1", "#chan2"]),
        ("LIST !*an1", &["#chan2"]),
        ("LIST !*an2", &["#chan1"]),
        ("LIST !#c*n2", &["#chan1"]),
        ("LIST !*an3", &["#chan1", "#chan2"]),
        ("LIST !#ch*", &[]),
        ("LIST #chan2,#chan1", &["#chan2", "#chan1"]),
        ("LIST #chan1,*2", &["#chan1", "#chan2"]),
        ("LIST #nonexistent", &[]),
    ] {
        assert_eq!(listed(&mut h, 2, q), want, "{q}");
    }
    // Secret channels stay hidden from non-members whatever the terms.
    h.send(1, "MODE #chan2 +s");
    assert_eq!(listed(&mut h, 2, "LIST #ch*"), ["#chan1"]);
    assert_eq!(listed(&mut h, 2, "LIST #chan2"), Vec::<String>::new());
    assert_eq!(listed(&mut h, 1, "LIST #chan2"), ["#chan2"]);
}

#[test]
fn list_users() {
    let mut h = H::new();
    h.register(1, "foo");
    h.send(1, "JOIN #chan1");
    h.send(1, "JOIN #chan2");
    h.register(2, "bar");
    h.send(2, "JOIN #chan2");
    h.register(3, "baz");
    for (q, want) in [
        ("LIST >0", &["#chan1", "#chan2"][..]),
        ("LIST <1", &[]),
        ("LIST <100", &["#chan1", "#chan2"]),
        ("LIST >1", &["#chan2"]),
        ("LIST <2", &["#chan1"]),
        ("LIST >0,<2", &["#chan1"]),
        ("LIST >1,*1", &[]),
        ("LIST >x", &["#chan1", "#chan2"]),
    ] {
        assert_eq!(listed(&mut h, 3, q), want, "{q}");
    }
}

#[test]
fn list_creation_time() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.send(1, "JOIN #chan1");
    h.now += Duration::from_secs(121);
    h.send(1, "JOIN #chan2");
    h.now += Duration::from_secs(61);
    for (q, want) in [
        ("LIST C>2", &["#chan1"][..]),
        ("LIST C<2", &["#chan2"]),
        ("LIST C<0", &[]),
        ("LIST C>0", &["#chan1", "#chan2"]),
        ("LIST C<10", &["#chan1", "#chan2"]),
        ("LIST c>2", &["#chan1"]),
    ] {
        assert_eq!(listed(&mut h, 2, q), want, "{q}");
    }
}

#[test]
fn list_topic_time() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.send(1, "JOIN #chan1");
    h.send(1, "JOIN #chan2");
    h.send(1, "JOIN #notopic");
    h.send(1, "TOPIC #chan1 :First channel");
    h.now += Duration::from_secs(121);
    h.send(1, "TOPIC #chan2 :Second channel");
    h.now += Duration::from_secs(61);
    for (q, want) in [
        ("LIST T>2", &["#chan1"][..]),
        ("LIST T<2", &["#chan2"]),
        ("LIST T<0", &[]),
        ("LIST T>0", &["#chan1", "#chan2"]),
        ("LIST T<10", &["#chan1", "#chan2"]),
        ("LIST", &["#chan1", "#chan2", "#notopic"]),
    ] {
        assert_eq!(listed(&mut h, 1, q), want, "{q}");
    }
}

/// Registers `nick` on `id` with user name `user` and real name "Realname", as irctest does.
fn connect_as(h: &mut H, id: ClientId, nick: &str, user: &str) {
    h.connect(id);
    h.send(id, &format!("NICK {nick}"));
    let fx = h.send(id, &format!("USER {user} 0 * :Realname"));
    assert_eq!(cmds(&fx, id)[0], "001");
}

#[test]
fn whowas_numerics_and_end() {
    let mut h = H::new();
    h.register(1, "nick1");
    connect_as(&mut h, 2, "nick2", "username");
    h.send(2, "QUIT :bye");
    let fx = h.send(1, "WHOWAS nick2");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 314 nick1 nick2 username 10.0.0.2 * :Realname",
            ":irc.test 312 nick1 nick2 irc.test :Sunday September 9 2001 -- 01:46:40 +00:00",
            ":irc.test 369 nick1 nick2 :End of WHOWAS",
        ]
    );
}

#[test]
fn whowas_multiple_newest_first_and_count() {
    let mut h = H::new();
    h.register(1, "nick1");
    connect_as(&mut h, 2, "nick2", "ident2");
    h.send(2, "QUIT :bye");
    h.now += Duration::from_secs(1);
    connect_as(&mut h, 3, "nick2", "ident3");
    let mut fx = Effects::default();
    h.s.disconnect(3, "Connection reset", &mut fx);
    let user = |l: &String| l.split(' ').nth(4).unwrap_or("").to_owned();
    for (q, n) in [
        ("WHOWAS nick2", 2),
        ("WHOWAS nick2 1", 1),
        ("WHOWAS nick2 2", 2),
        ("WHOWAS nick2 -1", 2),
        ("WHOWAS NICK2 0", 2),
    ] {
        let fx = h.send(1, q);
        let got = lines(&fx, 1);
        let users: Vec<String> = got.iter().filter(|l| l.contains(" 314 ")).map(user).collect();
        assert_eq!(users, ["ident3", "ident2"][..n], "{q}: {got:?}");
        assert_eq!(cmds(&fx, 1).len(), 2 * n + 1, "{q}: {got:?}");
        assert!(got[2 * n].contains(" 369 nick1 "), "{q}: {got:?}");
    }
}

#[test]
fn whowas_no_such_nick_no_param_and_nick_changes() {
    let mut h = H::new();
    h.register(1, "nick1");
    let fx = h.send(1, "WHOWAS nick2");
    assert_eq!(
        lines(&fx, 1),
        [":irc.test 406 nick1 nick2 :There was no such nickname", ":irc.test 369 nick1 nick2 :End of WHOWAS"]
    );
    let fx = h.send(1, "WHOWAS");
    assert_eq!(lines(&fx, 1), [":irc.test 431 nick1 :No nickname given"]);
    // A nick given up for another is history too; nicks never registered are not.
    h.connect(2);
    h.send(2, "NICK early");
    h.send(2, "NICK later");
    h.send(2, "USER u 0 * :Realname");
    h.send(2, "NICK renamed");
    let fx = h.send(1, "WHOWAS later,early,nick1");
    assert_eq!(cmds(&fx, 1), ["314", "312", "406", "406", "369"], "{:?}", lines(&fx, 1));
    assert_eq!(lines(&fx, 1)[4], ":irc.test 369 nick1 later,early,nick1 :End of WHOWAS");
    let fx = h.send(1, "WHOWAS a,b,c,d,later");
    assert_eq!(cmds(&fx, 1), ["406", "406", "406", "406", "369"], "only the first MAX_TARGETS");
}

#[test]
fn whowas_history_is_bounded() {
    let mut h = H::new();
    h.register(1, "watcher");
    h.connect(2);
    h.send(2, "NICK a0");
    h.send(2, "USER u 0 * :Realname");
    // One client cycling through 3000 nicks, back to "same" after each: 6000 nicks given up.
    for i in 1..3000 {
        h.send(2, &format!("NICK a{i}"));
        h.send(2, "NICK same");
    }
    let (ring, indexed) = h.s.whowas.len();
    assert!(ring <= 1000 && indexed <= ring, "{ring} entries, {indexed} indexed");
    let fx = h.send(1, "WHOWAS same");
    assert_eq!(cmds(&fx, 1).iter().filter(|c| *c == "314").count(), 8, "a few per nick");
    let fx = h.send(1, "WHOWAS a2999");
    assert_eq!(cmds(&fx, 1), ["314", "312", "369"]);
    let fx = h.send(1, "WHOWAS a1");
    assert_eq!(cmds(&fx, 1), ["406", "369"], "aged out");
}

/// LUSERS as numbers: (251 visible, 251 invisible, 252, 253, 254, 255, 265/266 current, max).
fn lusers(h: &mut H, id: ClientId) -> [usize; 8] {
    let fx = h.send(id, "LUSERS");
    let got = lines(&fx, id);
    let nums = |l: &str| -> Vec<usize> { l.split([' ', ',']).skip(2).filter_map(|w| w.parse().ok()).collect() };
    let find = |code: &str| got.iter().find(|l| l.split(' ').nth(1) == Some(code)).map(|l| nums(l));
    let one = |code: &str| find(code).map_or(0, |n| n[0]);
    let l251 = find("251").unwrap();
    let l255 = find("255").unwrap();
    let (l265, l266) = (find("265").unwrap(), find("266").unwrap());
    // 265 and 266: `<n> <max> :Current ... users <n>, max <max>`, the same numbers here.
    assert_eq!(l265, l266);
    assert_eq!(l265[..2], l265[2..]);
    assert_eq!(l255[0], l265[0], "255 counts what 265 does");
    [l251[0], l251[1], one("252"), one("253"), one("254"), l255[0], l265[0], l265[1]]
}

#[test]
fn lusers_full_unregistered_invisible_opers() {
    let mut h = with_oper();
    h.register(1, "bar");
    assert_eq!(lusers(&mut h, 1), [1, 0, 0, 0, 0, 1, 1, 1]);
    h.connect(2);
    h.send(2, "NICK qux");
    h.connect(3);
    h.send(3, "NICK bat");
    assert_eq!(lusers(&mut h, 1), [1, 0, 0, 2, 0, 1, 1, 1]);
    h.send(2, "USER u s e r");
    assert_eq!(lusers(&mut h, 1), [2, 0, 0, 1, 0, 2, 2, 2]);
    h.send(3, "QUIT");
    assert_eq!(lusers(&mut h, 1), [2, 0, 0, 0, 0, 2, 2, 2]);
    h.send(2, "MODE qux +i");
    h.send(1, "MODE bar +i");
    h.send(1, "MODE bar +i");
    h.send(1, "JOIN #c");
    assert_eq!(lusers(&mut h, 1), [0, 2, 0, 0, 1, 2, 2, 2]);
    h.send(1, "MODE bar -i");
    h.send(1, "OPER operuser operpassword");
    h.send(2, "OPER operuser operpassword");
    assert_eq!(lusers(&mut h, 1), [1, 1, 2, 0, 1, 2, 2, 2]);
    h.send(1, "MODE bar -o");
    h.send(2, "QUIT");
    assert_eq!(lusers(&mut h, 1), [1, 0, 0, 0, 1, 1, 1, 2]);
}

#[test]
fn info_lines_then_end() {
    let mut h = H::new();
    h.register(1, "nick");
    for q in ["INFO", "INFO irc.test", "INFO *.test", "INFO nick"] {
        let fx = h.send(1, q);
        let c = cmds(&fx, 1);
        assert_eq!(c.last().map(String::as_str), Some("374"), "{q}");
        assert!(c.len() > 1 && c[..c.len() - 1].iter().all(|c| c == "371"), "{q}: {c:?}");
    }
    let fx = h.send(1, "INFO invalid.server.example");
    assert_eq!(lines(&fx, 1), [":irc.test 402 nick invalid.server.example :No such server"]);
}

#[test]
fn help_and_helpop() {
    let mut h = H::new();
    h.register(1, "nick");
    for command in ["HELP", "HELPOP"] {
        let fx = h.send(1, command);
        let got = lines(&fx, 1);
        assert_eq!(got[0], ":irc.test 704 nick * :Help topics (HELP <topic>):");
        assert!(
            got[1].starts_with(":irc.test 705 nick * :AUTHENTICATE AWAY CAP CHATHISTORY CHGHOST HELP INFO "),
            "{got:?}"
        );
        assert_eq!(got[2], ":irc.test 706 nick * :End of /HELP");
        let fx = h.send(1, &format!("{command} privmsg"));
        assert_eq!(
            lines(&fx, 1),
            [
                ":irc.test 704 nick PRIVMSG :PRIVMSG <target>{,<target>} :<text>",
                ":irc.test 705 nick PRIVMSG :Sends <text> to users or channels.",
                ":irc.test 706 nick PRIVMSG :End of /HELP",
            ]
        );
        let fx = h.send(1, &format!("{command} THISISNOTACOMMAND"));
        assert_eq!(lines(&fx, 1), [":irc.test 524 nick THISISNOTACOMMAND :No help available on this topic"]);
    }
}

#[test]
fn every_command_has_help() {
    let mut h = H::new();
    h.register(1, "nick");
    for command in [
        "AWAY", "CAP", "HELP", "INFO", "INVITE", "ISON", "JOIN", "KICK", "KILL", "LINKS", "LIST", "LUSERS", "MODE",
        "MOTD", "NAMES", "NICK", "NOTICE", "OPER", "PART", "PASS", "PING", "PRIVMSG", "QUIT", "TIME", "TOPIC", "USER",
        "USERHOST", "VERSION", "WALLOPS", "WHO", "WHOIS", "WHOWAS",
    ] {
        assert_eq!(cmds(&h.send(1, &format!("HELP {command}")), 1)[0], "704", "{command}");
    }
}

#[test]
fn links_single_server() {
    let mut h = H::new();
    h.register(1, "nick");
    for q in ["LINKS", "LINKS *.test", "LINKS irc.test *"] {
        let fx = h.send(1, q);
        assert_eq!(lines(&fx, 1)[0], ":irc.test 364 nick irc.test irc.test :0 echoport IRC server", "{q}");
        assert_eq!(cmds(&fx, 1), ["364", "365"], "{q}");
    }
    assert_eq!(lines(&h.send(1, "LINKS"), 1)[1], ":irc.test 365 nick * :End of /LINKS list");
    let fx = h.send(1, "LINKS other.server");
    assert_eq!(lines(&fx, 1), [":irc.test 365 nick other.server :End of /LINKS list"]);
}

#[test]
fn wallops_to_users_with_w() {
    let mut h = with_oper();
    h.register(1, "nick1");
    h.register(2, "nick2");
    h.register(3, "nick3");
    let fx = h.send(1, "WALLOPS :hi everyone");
    assert_eq!(lines(&fx, 1), [":irc.test 481 nick1 :Permission Denied- You're not an IRC operator"]);
    assert!(h.send(2, "MODE nick2 -w").sends.is_empty());
    let fx = h.send(3, "MODE nick3 +w");
    assert_eq!(lines(&fx, 3), [":nick3!nick3@10.0.0.3 MODE nick3 +w"]);
    assert_eq!(lines(&h.send(3, "MODE nick3"), 3), [":irc.test 221 nick3 +w"]);
    h.send(1, "OPER operuser operpassword");
    let fx = h.send(1, "WALLOPS");
    assert_eq!(lines(&fx, 1), [":irc.test 461 nick1 WALLOPS :Not enough parameters"]);
    let fx = h.send(1, "WALLOPS :hi everyone");
    assert_eq!(recipients(&fx), [3]);
    assert_eq!(lines(&fx, 3), [":nick1!nick1@10.0.0.1 WALLOPS :hi everyone"]);
    h.send(1, "MODE nick1 +wi");
    let fx = h.send(1, "WALLOPS :again");
    assert_eq!(recipients(&fx), [1, 3]);
    assert_eq!(lines(&h.send(1, "MODE nick1"), 1), [":irc.test 221 nick1 +iow"]);
}

#[test]
fn server_info_is_the_description_in_links_and_whois() {
    let mut h = H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        server_info: Some("test server".to_owned()),
        ..ChatConfig::default()
    });
    h.register(1, "nick");
    let fx = h.send(1, "LINKS");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 364 nick irc.test irc.test :0 test server");
    let fx = h.send(1, "WHOIS nick");
    assert!(lines(&fx, 1).contains(&":irc.test 312 nick nick irc.test :test server".to_owned()), "{:?}", lines(&fx, 1));
}
