//! AWAY, WHO, WHOIS, WHOWAS, ISON, TIME and VERSION.

use super::*;

/// The set-up of irctest's WHO tests (who.py): coolNick (myusernam, "My UniqueReal Name") and
/// otherNick in #chan.
pub(super) fn who_setup() -> H {
    let mut h = with_oper();
    h.connect(1);
    h.send(1, "NICK coolNick");
    h.send(1, "USER myusernam 0 * :My UniqueReal Name");
    h.send(1, "JOIN #chan");
    h.register(2, "otherNick");
    h.send(2, "JOIN #chan");
    h
}

#[test]
fn away() {
    let mut h = H::new();
    h.register(1, "bar");
    h.register(2, "qux");
    let fx = h.send(1, "AWAY :I'm not here right now");
    assert_eq!(lines(&fx, 1), [":irc.test 306 bar :You have been marked as being away"]);
    let fx = h.send(2, "PRIVMSG bar :what's up");
    assert_eq!(lines(&fx, 2), [":irc.test 301 qux bar :I'm not here right now"]);
    assert_eq!(lines(&fx, 1).len(), 1);
    assert!(lines(&h.send(2, "NOTICE bar :x"), 2).is_empty());
    let fx = h.send(2, "WHOIS bar");
    assert!(lines(&fx, 2).contains(&":irc.test 301 qux bar :I'm not here right now".to_owned()));
    let fx = h.send(2, "USERHOST bar qux nobody");
    assert_eq!(lines(&fx, 2), [":irc.test 302 qux :bar=-bar@10.0.0.1 qux=+qux@10.0.0.2"]);
    let fx = h.send(1, "AWAY");
    assert_eq!(lines(&fx, 1), [":irc.test 305 bar :You are no longer marked as being away"]);
    let fx = h.send(2, "PRIVMSG bar :what's up");
    assert!(lines(&fx, 2).is_empty());
}

#[test]
fn who_masks_nicks_and_channels() {
    let mut h = who_setup();
    let coolnick = ":irc.test 352 otherNick * myusernam 10.0.0.1 irc.test coolNick";
    for mask in ["coolNick", "coolnick", "coolni*", "COOL?ICK"] {
        let fx = h.send(2, &format!("WHO {mask}"));
        assert_eq!(
            lines(&fx, 2),
            [format!("{coolnick} H :0 My UniqueReal Name"), format!(":irc.test 315 otherNick {mask} :End of WHO list"),]
        );
    }
    let fx = h.send(2, "WHO *");
    assert_eq!(cmds(&fx, 2), ["352", "352", "315"]);
    assert_eq!(lines(&fx, 2)[1], ":irc.test 352 otherNick * otherNick 10.0.0.2 irc.test otherNick H :0 Real otherNick");
    assert_eq!(lines(&fx, 2)[2], ":irc.test 315 otherNick * :End of WHO list");
    let fx = h.send(2, "WHO");
    assert_eq!(cmds(&fx, 2), ["352", "352", "315"]);
    let fx = h.send(2, "WHO idontexist");
    assert_eq!(lines(&fx, 2), [":irc.test 315 otherNick idontexist :End of WHO list"]);
    h.send(1, "AWAY :be right back");
    h.send(1, "OPER operuser operpassword");
    let fx = h.send(2, "WHO coolNick");
    assert_eq!(lines(&fx, 2)[0], format!("{coolnick} G* :0 My UniqueReal Name"));
    for mask in ["#chan", "#CHAN"] {
        let fx = h.send(2, &format!("WHO {mask}"));
        assert_eq!(
            lines(&fx, 2),
            [
                ":irc.test 352 otherNick #chan myusernam 10.0.0.1 irc.test coolNick G*@ \
                 :0 My UniqueReal Name"
                    .to_owned(),
                ":irc.test 352 otherNick #chan otherNick 10.0.0.2 irc.test otherNick H \
                 :0 Real otherNick"
                    .to_owned(),
                format!(":irc.test 315 otherNick {mask} :End of WHO list"),
            ]
        );
    }
    let fx = h.send(2, "WHO * o");
    assert_eq!(cmds(&fx, 2), ["352", "315"]);
    // Invisible users: hidden from mask queries unless a channel is shared.
    h.register(3, "stranger");
    h.send(1, "MODE coolNick +i");
    let fx = h.send(3, "WHO *");
    assert_eq!(cmds(&fx, 3), ["352", "352", "315"]);
    assert!(!lines(&fx, 3).iter().any(|l| l.contains("coolNick")));
    let fx = h.send(3, "WHO coolNick");
    assert_eq!(cmds(&fx, 3), ["352", "315"], "an exact nick is shown");
    let fx = h.send(3, "WHO #chan");
    assert_eq!(cmds(&fx, 3), ["352", "315"]);
    let fx = h.send(2, "WHO *");
    assert_eq!(cmds(&fx, 2), ["352", "352", "352", "315"]);
    // Secret channels: nothing for outsiders.
    h.send(1, "MODE #chan +s");
    let fx = h.send(3, "WHO #chan");
    assert_eq!(cmds(&fx, 3), ["315"]);
}

#[test]
fn whois() {
    let mut h = who_setup();
    h.now += Duration::from_secs(7);
    h.send(1, "JOIN #secret");
    h.send(1, "MODE #secret +s");
    let fx = h.send(2, "WHOIS coolnick");
    assert_eq!(
        lines(&fx, 2),
        [
            ":irc.test 311 otherNick coolNick myusernam 10.0.0.1 * :My UniqueReal Name",
            ":irc.test 319 otherNick coolNick :@#chan",
            ":irc.test 312 otherNick coolNick irc.test :echoport IRC server",
            ":irc.test 317 otherNick coolNick 7 1000000000 :seconds idle, signon time",
            ":irc.test 318 otherNick coolnick :End of WHOIS list",
        ]
    );
    let fx = h.send(1, "WHOIS irc.test coolNick");
    assert_eq!(lines(&fx, 1)[1], ":irc.test 319 coolNick coolNick :@#chan @#secret");
    let fx = h.send(2, "WHOIS nobody");
    assert_eq!(
        lines(&fx, 2),
        [":irc.test 401 otherNick nobody :No such nick/channel", ":irc.test 318 otherNick nobody :End of WHOIS list",]
    );
    let fx = h.send(2, "WHOIS");
    assert_eq!(lines(&fx, 2), [":irc.test 431 otherNick :No nickname given"]);
    let fx = h.send(2, "WHOWAS gone");
    assert_eq!(cmds(&fx, 2), ["406", "369"]);
    let fx = h.send(2, "ISON coolnick nobody :otherNick x");
    assert_eq!(lines(&fx, 2), [":irc.test 303 otherNick :coolNick otherNick"]);
}

#[test]
fn time_and_version() {
    let mut h = H::new();
    h.register(1, "alice");
    let fx = h.send(1, "TIME");
    assert_eq!(lines(&fx, 1), [":irc.test 391 alice irc.test :Sunday September 9 2001 -- 01:46:40 +00:00"]);
    let fx = h.send(1, "TIME irc.test");
    assert_eq!(cmds(&fx, 1), ["391"]);
    let fx = h.send(1, "TIME other.server");
    assert_eq!(lines(&fx, 1), [":irc.test 402 alice other.server :No such server"]);
    let fx = h.send(1, "VERSION");
    assert_eq!(lines(&fx, 1), [format!(":irc.test 351 alice {VERSION} irc.test :")]);
    assert_eq!(format_time(0), "Thursday January 1 1970 -- 00:00:00 +00:00");
    assert_eq!(format_time(951_782_400), "Tuesday February 29 2000 -- 00:00:00 +00:00");
    assert_eq!(format_time(4_107_542_399), "Sunday February 28 2100 -- 23:59:59 +00:00");
    assert_eq!(format_time(1_735_689_600), "Wednesday January 1 2025 -- 00:00:00 +00:00");
}
