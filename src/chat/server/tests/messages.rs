//! PRIVMSG and NOTICE to channels and nicks, and what +n and +m let through.

use super::*;

#[test]
fn privmsg_to_channel_is_not_echoed_and_shares_one_buffer() {
    let mut h = H::new();
    for (id, nick) in [(1, "alice"), (2, "bob"), (3, "carol"), (4, "dave")] {
        h.register(id, nick);
    }
    for id in 1..=3 {
        h.send(id, "JOIN #chan");
    }
    let fx = h.send(1, "PRIVMSG #chan :hello there");
    let want = ":alice!alice@10.0.0.1 PRIVMSG #chan :hello there";
    assert!(lines(&fx, 1).is_empty(), "not echoed to the sender");
    assert_eq!(lines(&fx, 2), [want]);
    assert_eq!(lines(&fx, 3), [want]);
    assert!(lines(&fx, 4).is_empty());
    assert_eq!(fx.sends.len(), 2);
    assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
    let fx = h.send(2, "NOTICE #CHAN :note");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 NOTICE #chan :note"]);
    assert_eq!(recipients(&fx), [1, 3]);
    // A message without a colon takes its first word.
    let fx = h.send(1, "PRIVMSG #chan word other");
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG #chan :word"]);
    // Invalid UTF-8 is relayed as bytes.
    let fx = h.sendb(1, b"PRIVMSG #chan :caf\xe9 \xff");
    assert_eq!(&*fx.sends[0].1, b":alice!alice@10.0.0.1 PRIVMSG #chan :caf\xe9 \xff\r\n");
}

#[test]
fn privmsg_to_nick_and_errors() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    let fx = h.send(1, "PRIVMSG BOB :hey there!");
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 PRIVMSG bob :hey there!"]);
    assert!(lines(&fx, 1).is_empty());
    let fx = h.send(1, "PRIVMSG nobody :hi");
    assert_eq!(lines(&fx, 1), [":irc.test 401 alice nobody :No such nick/channel"]);
    let fx = h.send(1, "PRIVMSG #nochan :hi");
    assert_eq!(lines(&fx, 1), [":irc.test 401 alice #nochan :No such nick/channel"]);
    let fx = h.send(1, "PRIVMSG");
    assert_eq!(lines(&fx, 1), [":irc.test 411 alice :No recipient given (PRIVMSG)"]);
    let fx = h.send(1, "PRIVMSG bob");
    assert_eq!(lines(&fx, 1), [":irc.test 412 alice :No text to send"]);
    let fx = h.send(1, "PRIVMSG bob :");
    assert_eq!(lines(&fx, 1), [":irc.test 412 alice :No text to send"]);
    for line in ["NOTICE", "NOTICE bob", "NOTICE nobody :x", "NOTICE #nochan :x"] {
        assert!(h.send(1, line).sends.is_empty(), "{line}");
    }
    // Several targets, at most four.
    let fx = h.send(1, "PRIVMSG bob,alice :both");
    assert_eq!(recipients(&fx), [2, 1]);
    let fx = h.send(1, "PRIVMSG bob,bob,bob,bob,bob :x");
    assert_eq!(recipients(&fx), [2, 2, 2, 2, 1]);
    assert_eq!(lines(&fx, 1), [":irc.test 407 alice bob :Too many recipients"]);
    let fx = h.send(1, "NOTICE bob,bob,bob,bob,bob :x");
    assert_eq!(recipients(&fx), [2, 2, 2, 2]);
    // An unregistered client's nick is not a target.
    h.connect(3);
    h.send(3, "NICK carol");
    let fx = h.send(1, "PRIVMSG carol :x");
    assert_eq!(cmds(&fx, 1), ["401"]);
}

#[test]
fn no_external_and_moderated() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.register(3, "carol");
    h.send(1, "JOIN #chan");
    h.send(2, "JOIN #chan");
    let fx = h.send(3, "PRIVMSG #chan :from outside");
    assert_eq!(lines(&fx, 3), [":irc.test 404 carol #chan :Cannot send to channel"]);
    assert_eq!(fx.sends.len(), 1);
    assert!(h.send(3, "NOTICE #chan :from outside").sends.is_empty());
    h.send(1, "MODE #chan -n");
    let fx = h.send(3, "PRIVMSG #chan :from outside");
    assert_eq!(recipients(&fx), [1, 2]);
    h.send(1, "MODE #chan +m");
    let fx = h.send(2, "PRIVMSG #chan :unvoiced");
    assert_eq!(lines(&fx, 2), [":irc.test 404 bob #chan :Cannot send to channel"]);
    let fx = h.send(3, "PRIVMSG #chan :outside");
    assert_eq!(cmds(&fx, 3), ["404"]);
    let fx = h.send(1, "PRIVMSG #chan :op speaks");
    assert_eq!(recipients(&fx), [2]);
    h.send(1, "MODE #chan +v bob");
    let fx = h.send(2, "PRIVMSG #chan :voiced");
    assert_eq!(recipients(&fx), [1]);
}
