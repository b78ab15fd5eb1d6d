//! Channel lists (+b, +e, +I, the m: mute), STATUSMSG and bot mode (+B).

use super::*;

/// 1 = chanop (op of #chan), 2 = bar, both registered; bar not in #chan.
fn chan_and_bar() -> H {
    let mut h = H::new();
    h.register(1, "chanop");
    h.register(2, "bar");
    h.send(1, "JOIN #chan");
    h
}

// irctest: chmodes/ban.py testBan
#[test]
fn ban_keeps_out_until_lifted() {
    let mut h = chan_and_bar();
    let fx = h.send(1, "MODE #chan +b bar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan +b bar!*@*"]);
    let fx = h.send(2, "JOIN #chan");
    assert_eq!(lines(&fx, 2), [":irc.test 474 bar #chan :Cannot join channel (+b)"]);
    let fx = h.send(1, "MODE #chan -b bar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan -b bar!*@*"]);
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
}

// irctest: chmodes/ban.py testBanList
#[test]
fn ban_list_has_setter_and_time() {
    let mut h = chan_and_bar();
    h.now += Duration::from_secs(7);
    h.send(1, "MODE #chan +b bar!*@*");
    for query in ["MODE #chan +b", "MODE #chan b"] {
        let fx = h.send(2, query);
        assert_eq!(
            lines(&fx, 2),
            [
                ":irc.test 367 bar #chan bar!*@* chanop!chanop@10.0.0.1 1000000007",
                ":irc.test 368 bar #chan :End of channel ban list",
            ]
        );
    }
    let fx = h.send(1, "MODE #chan e");
    assert_eq!(lines(&fx, 1), [":irc.test 349 chanop #chan :End of channel exception list"]);
    h.send(1, "MODE #chan +eI a!b@c d!e@f");
    let fx = h.send(1, "MODE #chan eI");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 348 chanop #chan a!b@c chanop!chanop@10.0.0.1 1000000007",
            ":irc.test 349 chanop #chan :End of channel exception list",
            ":irc.test 346 chanop #chan d!e@f chanop!chanop@10.0.0.1 1000000007",
            ":irc.test 347 chanop #chan :End of channel invite list",
        ]
    );
}

// irctest: chmodes/ban.py testBanException
#[test]
fn exception_lets_a_banned_client_in() {
    let mut h = chan_and_bar();
    h.send(1, "MODE #chan +b ba*!*@*");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["474"]);
    let fx = h.send(1, "MODE #chan +e *ar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan +e *ar!*@*"]);
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
}

// irctest: chmodes/ban.py testCaseInsensitive
#[test]
fn removal_compares_under_case_mapping() {
    let mut h = chan_and_bar();
    h.send(1, "MODE #chan +b BAR!*@*");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["474"]);
    // Adding what is there in another case changes nothing.
    assert!(h.send(1, "MODE #chan +b bar!*@*").sends.is_empty());
    let fx = h.send(1, "MODE #chan -b bar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan -b BAR!*@*"]);
    assert!(h.send(1, "MODE #chan -b bar!*@*").sends.is_empty(), "not on the list any more");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
}

#[test]
fn banned_member_is_checked_when_speaking_with_its_current_nick() {
    let mut h = chan_and_bar();
    h.send(2, "JOIN #chan");
    h.send(1, "MODE #chan +b bad*!*@*");
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :hi")), [1]);
    h.send(2, "NICK badbar");
    let fx = h.send(2, "PRIVMSG #chan :hi");
    assert_eq!(lines(&fx, 2), [":irc.test 404 badbar #chan :Cannot send to channel"]);
    assert!(h.send(2, "NOTICE #chan :hi").sends.is_empty());
    // Voice and op speak through a ban; nobody else is checked against the list.
    h.send(1, "MODE #chan +v badbar");
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :voiced")), [1]);
    h.send(1, "MODE #chan -v badbar");
    h.send(2, "NICK bar");
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :hi")), [1]);
    // An outsider banned from a -n channel cannot speak into it either.
    h.register(3, "badout");
    h.send(1, "MODE #chan -n");
    assert_eq!(cmds(&h.send(3, "PRIVMSG #chan :x"), 3), ["404"]);
}

// irctest: chmodes/mute_extban.py testMuteExtban, testMuteExtbanVoiced, testMuteExtbanExempt,
// testCapitalization
#[test]
fn mute_extban_lets_join_but_not_speak() {
    let mut h = chan_and_bar();
    let fx = h.send(1, "MODE #chan +b m:BAR!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan +b m:BAR!*@*"]);
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
    let fx = h.send(2, "MODE #chan +b");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 367 bar #chan m:BAR!*@* chanop!chanop@10.0.0.1 1000000000");
    let fx = h.send(2, "PRIVMSG #chan :hi from bar");
    assert_eq!(lines(&fx, 2), [":irc.test 404 bar #chan :Cannot send to channel"]);
    // +v exempts.
    h.send(1, "MODE #chan +v bar");
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :voiced")), [1]);
    h.send(1, "MODE #chan -v bar");
    assert_eq!(cmds(&h.send(2, "PRIVMSG #chan :x"), 2), ["404"]);
    // An m: exception exempts from the mute (not from a ban: see below).
    h.send(1, "MODE #chan +e m:*!*bar@*");
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :excepted")), [1]);
    h.send(1, "MODE #chan -e m:*!*bar@*");
    let fx = h.send(1, "MODE #chan -b m:bar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan -b m:BAR!*@*"]);
    assert_eq!(recipients(&h.send(2, "PRIVMSG #chan :free")), [1]);
    // A mute exception does not lift a join ban.
    h.send(2, "PART #chan");
    h.send(1, "MODE #chan +be bar!*@* m:bar!*@*");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["474"]);
}

// irctest: chmodes/invite_exception.py testInviteException, testInviteExceptionRemoval,
// testInviteExceptionWithoutInviteOnly, testInviteExceptionMultipleMasks
#[test]
fn invite_exception_opens_an_invite_only_channel() {
    let mut h = chan_and_bar();
    h.register(3, "baz");
    h.send(1, "MODE #chan +I baz!*@*");
    assert_eq!(cmds(&h.send(3, "JOIN #chan"), 3)[0], "JOIN", "+I without +i changes nothing");
    h.send(3, "PART #chan");
    h.send(1, "MODE #chan +i");
    assert_eq!(lines(&h.send(2, "JOIN #chan"), 2), [":irc.test 473 bar #chan :Cannot join channel (+i)"]);
    let fx = h.send(1, "MODE #chan +I bar!*@*");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan +I bar!*@*"]);
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
    assert_eq!(cmds(&h.send(3, "JOIN #chan"), 3)[0], "JOIN");
    h.send(2, "PART #chan");
    h.send(1, "MODE #chan -I bar!*@*");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["473"]);
    // +I does not get past a ban, a key or a limit.
    h.send(3, "PART #chan");
    h.send(1, "MODE #chan +b baz!*@*");
    assert_eq!(cmds(&h.send(3, "JOIN #chan"), 3), ["474"]);
}

// irctest: chmodes/limit.py testLimitWithInvite
#[test]
fn invitation_gets_past_the_limit_but_not_a_ban_or_key() {
    let mut h = chan_and_bar();
    h.send(1, "MODE #chan +l 1");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["471"]);
    h.send(1, "INVITE bar #chan");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2)[0], "JOIN");
    h.send(2, "PART #chan");
    h.send(1, "MODE #chan +b bar!*@*");
    h.send(1, "INVITE bar #chan");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["474"]);
    h.send(1, "MODE #chan -b+k bar!*@* sesame");
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["475"]);
    assert_eq!(cmds(&h.send(2, "JOIN #chan sesame"), 2)[0], "JOIN");
}

#[test]
fn masks_are_completed_and_bad_ones_refused() {
    let mut h = chan_and_bar();
    for (given, stored) in [
        ("nick", "nick!*@*"),
        ("nick!user", "nick!user@*"),
        ("user@host", "*!user@host"),
        ("10.0.0.2", "*!*@10.0.0.2"),
        ("0::1", "*!*@0::1"),
        ("!@", "*!*@*"),
        ("m:nick", "m:nick!*@*"),
    ] {
        let fx = h.send(1, &format!("MODE #chan +b {given}"));
        assert_eq!(lines(&fx, 1), [format!(":chanop!chanop@10.0.0.1 MODE #chan +b {stored}")], "{given}");
    }
    // The host form bans bar (10.0.0.2).
    assert_eq!(cmds(&h.send(2, "JOIN #chan"), 2), ["474"]);
    for bad in [":x", "m::x", &"x".repeat(100), "m:"] {
        let fx = h.sendb(1, format!("MODE #chan +b {bad}").replace("+b :", "+b ::").as_bytes());
        assert_eq!(lines(&fx, 1), [":irc.test 696 chanop #chan b * :Invalid mask"], "{bad}");
    }
    // Not an operator: refused, but looking is fine.
    let fx = h.send(2, "MODE #chan +b x");
    assert_eq!(lines(&fx, 2), [":irc.test 482 bar #chan :You're not channel operator"]);
}

#[test]
fn lists_hold_maxlist_entries_in_all() {
    let mut h = chan_and_bar();
    for i in 0..MAXLIST {
        let mode = ["b", "e", "I"][i % 3];
        let fx = h.send(1, &format!("MODE #chan +{mode} n{i}"));
        assert_eq!(cmds(&fx, 1), ["MODE"], "{i}");
    }
    let fx = h.send(1, "MODE #chan +e one!more@*");
    assert_eq!(lines(&fx, 1), [":irc.test 478 chanop #chan one!more@* :Channel list is full"]);
    h.send(1, "MODE #chan -b n0");
    assert_eq!(cmds(&h.send(1, "MODE #chan +e one!more@*"), 1), ["MODE"]);
    let fx = h.send(1, "MODE #chan b");
    assert_eq!(cmds(&fx, 1).len(), 34, "33 bans and the end");
    // Each list goes once per command, however often it is asked for.
    let fx = h.send(1, &format!("MODE #chan {}", "b".repeat(400)));
    assert_eq!(cmds(&fx, 1).len(), 34);
}

#[test]
fn many_long_masks_are_announced_over_several_lines() {
    let mut h = chan_and_bar();
    h.send(2, "JOIN #chan");
    // 13 masks of 35 bytes fit the command; completed (+4 bytes each) they do not fit one line.
    let masks: Vec<String> = (0..13).map(|i| format!("{i:02}{}", "x".repeat(33))).collect();
    let fx = h.send(1, &format!("MODE #chan +{} {}", "b".repeat(13), masks.join(" ")));
    let got = lines(&fx, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    let announced: Vec<String> = got.iter().flat_map(|l| l.split(' ').skip(4).map(str::to_owned)).collect();
    let want: Vec<String> = masks.iter().map(|m| format!("{m}!*@*")).collect();
    assert_eq!(announced, want);
    for l in &got {
        assert!(l.starts_with(":chanop!chanop@10.0.0.1 MODE #chan +b"), "{l}");
    }
}

// irctest: statusmsg.py testStatusmsgFromOp, testStatusmsgFromRegular
#[test]
fn statusmsg_reaches_ops_or_voiced_only() {
    let mut h = chan_and_bar();
    h.register(3, "joe");
    h.register(4, "schmoe");
    for id in 2..=4 {
        h.send(id, "JOIN #chan");
    }
    h.send(1, "MODE #chan +o schmoe");
    h.send(1, "MODE #chan +v joe");
    let fx = h.send(4, "PRIVMSG @#CHAN :for operators");
    assert_eq!(recipients(&fx), [1]);
    assert_eq!(lines(&fx, 1), [":schmoe!schmoe@10.0.0.4 PRIVMSG @#chan :for operators"]);
    let fx = h.send(2, "NOTICE +#chan :for voiced and ops");
    assert_eq!(recipients(&fx), [1, 3, 4]);
    assert_eq!(lines(&fx, 3), [":bar!bar@10.0.0.2 NOTICE +#chan :for voiced and ops"]);
    // The channel's own checks still apply.
    h.register(5, "out");
    assert_eq!(lines(&h.send(5, "PRIVMSG @#chan :x"), 5), [":irc.test 404 out #chan :Cannot send to channel"]);
    assert_eq!(lines(&h.send(5, "PRIVMSG @#nochan :x"), 5), [":irc.test 401 out @#nochan :No such nick/channel"]);
    // Not a status prefix: a nick lookup, as before.
    assert_eq!(cmds(&h.send(5, "PRIVMSG @bar :x"), 5), ["401"]);
}

// irctest: bot_mode.py testBotMode, testBotWhois, testBotWhox
#[test]
fn bot_mode_shows_in_whois_and_who() {
    let mut h = chan_and_bar();
    let fx = h.send(2, "MODE bar +B");
    assert_eq!(lines(&fx, 2), [":bar!bar@10.0.0.2 MODE bar +B"]);
    assert!(h.s.clients[&2].bot);
    assert_eq!(lines(&h.send(2, "MODE bar"), 2), [":irc.test 221 bar +B"]);
    let fx = h.send(1, "WHOIS bar");
    assert!(lines(&fx, 1).contains(&":irc.test 335 chanop bar :is a bot".to_owned()), "{:?}", lines(&fx, 1));
    h.send(2, "JOIN #chan");
    h.send(1, "MODE #chan +v bar");
    let fx = h.send(1, "WHO #chan");
    assert_eq!(lines(&fx, 1)[1], ":irc.test 352 chanop #chan bar 10.0.0.2 irc.test bar H+B :0 Real bar");
    let fx = h.send(2, "MODE bar -B");
    assert_eq!(lines(&fx, 2), [":bar!bar@10.0.0.2 MODE bar -B"]);
    assert!(!lines(&h.send(1, "WHOIS bar"), 1).iter().any(|l| l.contains(" 335 ")));
}
