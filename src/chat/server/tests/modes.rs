//! Channel and user MODE.

use super::*;

#[test]
fn channel_mode_query_and_changes() {
    let mut h = H::new();
    h.register(1, "chanop");
    h.register(2, "bob");
    h.send(1, "JOIN #chan");
    h.send(2, "JOIN #chan");
    let fx = h.send(1, "MODE #chan");
    assert_eq!(lines(&fx, 1), [":irc.test 324 chanop #chan +nt", ":irc.test 329 chanop #chan 1000000000",]);
    let fx = h.send(1, "MODE #chan +ims-t");
    let want = ":chanop!chanop@10.0.0.1 MODE #chan +ims-t";
    assert_eq!(lines(&fx, 1), [want]);
    assert_eq!(lines(&fx, 2), [want]);
    assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
    // Setting what is already set changes nothing and says nothing.
    assert!(h.send(1, "MODE #chan +i").sends.is_empty());
    let fx = h.send(1, "MODE #chan +kl key 10");
    assert_eq!(lines(&fx, 2), [":chanop!chanop@10.0.0.1 MODE #chan +kl key 10"]);
    let fx = h.send(2, "MODE #chan");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 324 bob #chan +imnskl key 10");
    h.register(3, "out");
    let fx = h.send(3, "MODE #chan");
    assert_eq!(lines(&fx, 3)[0], ":irc.test 324 out #chan +imnskl * 10");
    let fx = h.send(1, "MODE #chan -imnskl *");
    assert_eq!(lines(&fx, 1), [":chanop!chanop@10.0.0.1 MODE #chan -imnskl *"]);
    let fx = h.send(1, "MODE #chan");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 324 chanop #chan +");
    // o and v.
    let fx = h.send(1, "MODE #chan +ov BOB bob");
    assert_eq!(lines(&fx, 2), [":chanop!chanop@10.0.0.1 MODE #chan +ov bob bob"]);
    let fx = h.send(2, "NAMES #chan");
    assert_eq!(lines(&fx, 2)[0], ":irc.test 353 bob = #chan :@chanop @bob");
    let fx = h.send(2, "MODE #chan -o chanop");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 MODE #chan -o chanop"]);
    let fx = h.send(1, "MODE #chan +t");
    assert_eq!(lines(&fx, 1), [":irc.test 482 chanop #chan :You're not channel operator"]);
    assert!(lines(&fx, 2).is_empty());
    let fx = h.send(2, "MODE #chan -o+o bob nobody");
    assert_eq!(
        lines(&fx, 2),
        [":irc.test 401 bob nobody :No such nick/channel", ":bob!bob@10.0.0.2 MODE #chan -o bob",]
    );
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 MODE #chan -o bob"]);
    let fx = h.send(2, "MODE #chan +o out");
    assert_eq!(cmds(&fx, 2), ["482"]);
}

#[test]
fn channel_mode_errors() {
    let mut h = H::new();
    h.register(1, "op");
    h.register(2, "out");
    h.send(1, "JOIN #chan");
    let fx = h.send(1, "MODE #chan +o out");
    assert_eq!(lines(&fx, 1), [":irc.test 441 op out #chan :They aren't on that channel"]);
    let fx = h.send(1, "MODE #chan +zx");
    assert_eq!(
        lines(&fx, 1),
        [":irc.test 472 op z :is unknown mode char to me", ":irc.test 472 op x :is unknown mode char to me",]
    );
    let fx = h.send(1, "MODE #nochan +t");
    assert_eq!(lines(&fx, 1), [":irc.test 403 op #nochan :No such channel"]);
    let fx = h.send(1, "MODE #chan b");
    assert_eq!(lines(&fx, 1), [":irc.test 368 op #chan :End of channel ban list"]);
    // A list change by an operator is announced (list behaviour: tests/lists.rs).
    let fx = h.send(1, "MODE #chan +b nick!*@*");
    assert_eq!(cmds(&fx, 1), ["MODE"]);
    for key in [":passphrase with spaces", &"long".repeat(100), ":", "a,b"] {
        let fx = h.send(1, &format!("MODE #chan +k {key}"));
        assert_eq!(lines(&fx, 1), [":irc.test 696 op #chan k * :Invalid channel key"], "{key}");
    }
    let fx = h.send(1, "MODE #chan +l many");
    assert_eq!(lines(&fx, 1), [":irc.test 696 op #chan l many :Invalid limit"]);
    // Missing parameters are ignored.
    assert!(h.send(1, "MODE #chan +k").sends.is_empty());
    assert!(h.send(1, "MODE #chan +o").sends.is_empty());
    // A non-member is not an operator.
    let fx = h.send(2, "MODE #chan +i");
    assert_eq!(cmds(&fx, 2), ["482"]);
    let fx = h.send(2, "MODE #chan b");
    assert_eq!(cmds(&fx, 2), ["367", "368"]);
}

#[test]
fn user_modes() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    let fx = h.send(1, "MODE alice");
    assert_eq!(lines(&fx, 1), [":irc.test 221 alice +"]);
    let fx = h.send(1, "MODE ALICE +i");
    assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 MODE alice +i"]);
    assert!(h.send(1, "MODE alice +i").sends.is_empty());
    let fx = h.send(1, "MODE alice");
    assert_eq!(lines(&fx, 1), [":irc.test 221 alice +i"]);
    let fx = h.send(1, "MODE alice +o");
    assert!(fx.sends.is_empty(), "+o only comes from OPER");
    let fx = h.send(1, "MODE alice -i+x");
    assert_eq!(lines(&fx, 1), [":irc.test 501 alice :Unknown MODE flag", ":alice!alice@10.0.0.1 MODE alice -i",]);
    let fx = h.send(1, "MODE bob +i");
    assert_eq!(lines(&fx, 1), [":irc.test 502 alice :Cant change mode for other users"]);
    let fx = h.send(1, "MODE bob");
    assert_eq!(cmds(&fx, 1), ["502"]);
    let fx = h.send(1, "MODE nobody");
    assert_eq!(lines(&fx, 1), [":irc.test 401 alice nobody :No such nick/channel"]);
}
