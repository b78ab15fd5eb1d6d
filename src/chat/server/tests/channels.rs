//! JOIN, PART, TOPIC, NAMES, LIST, KICK and INVITE.

use super::*;

#[test]
fn join_creates_channel_with_op_and_fans_out() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    let fx = h.send(1, "JOIN #chan");
    assert_eq!(
        lines(&fx, 1),
        [
            ":alice!alice@10.0.0.1 JOIN #chan",
            ":irc.test 353 alice = #chan :@alice",
            ":irc.test 366 alice #chan :End of NAMES list",
        ]
    );
    assert_eq!(h.s.channels(), 1);
    let fx = h.send(2, "join #CHAN");
    assert_eq!(
        lines(&fx, 2),
        [
            ":bob!bob@10.0.0.2 JOIN #chan",
            ":irc.test 353 bob = #chan :@alice bob",
            ":irc.test 366 bob #chan :End of NAMES list",
        ]
    );
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 JOIN #chan"]);
    let a = &fx.sends.iter().find(|(id, _)| *id == 1).unwrap().1;
    let b = &fx.sends.iter().find(|(id, _)| *id == 2).unwrap().1;
    assert!(Arc::ptr_eq(a, b), "one JOIN line shared by all members");
    // Joining again is ignored.
    assert!(h.send(2, "JOIN #Chan").sends.is_empty());
    assert_eq!(h.s.channels(), 1);
}

#[test]
fn join_lists_keys_and_errors() {
    let mut h = H::new();
    h.register(1, "alice");
    let fx = h.send(1, "JOIN #a,#b,bad,#c");
    assert_eq!(cmds(&fx, 1), ["JOIN", "353", "366", "JOIN", "353", "366", "403", "JOIN", "353", "366"]);
    assert!(lines(&fx, 1).contains(&":irc.test 403 alice bad :No such channel".to_owned()));
    for bad in ["#a\x07b", &format!("#{}", "x".repeat(50)), "#a:b", "&x"] {
        let fx = h.send(1, &format!("JOIN {bad}"));
        assert_eq!(cmds(&fx, 1), ["403"], "{bad:?}");
    }
    assert!(valid_channel(format!("#{}", "x".repeat(49)).as_bytes()));
    // Keys, limit, invite-only.
    h.send(1, "MODE #a +k sekrit");
    h.send(1, "MODE #b +l 1");
    h.send(1, "MODE #c +i");
    h.register(2, "bob");
    let fx = h.send(2, "JOIN #a,#b,#c");
    assert_eq!(
        lines(&fx, 2),
        [
            ":irc.test 475 bob #a :Cannot join channel (+k)",
            ":irc.test 471 bob #b :Cannot join channel (+l)",
            ":irc.test 473 bob #c :Cannot join channel (+i)",
        ]
    );
    assert!(lines(&fx, 1).is_empty());
    let fx = h.send(2, "JOIN #a wrong");
    assert_eq!(cmds(&fx, 2), ["475"]);
    let fx = h.send(2, "JOIN #x,#a other,sekrit");
    assert_eq!(cmds(&fx, 2), ["JOIN", "353", "366", "JOIN", "353", "366"]);
    // JOIN 0 parts everything.
    let fx = h.send(2, "JOIN 0");
    assert_eq!(lines(&fx, 2), [":bob!bob@10.0.0.2 PART #x", ":bob!bob@10.0.0.2 PART #a"]);
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PART #a"]);
    assert!(h.s.clients[&2].channels.is_empty());
}

#[test]
fn too_many_channels() {
    let mut h = H::new();
    h.register(1, "alice");
    for i in 0..MAX_CHANNELS {
        h.send(1, &format!("JOIN #c{i}"));
    }
    let fx = h.send(1, "JOIN #one-more");
    assert_eq!(lines(&fx, 1), [":irc.test 405 alice #one-more :You have joined too many channels"]);
}

#[test]
fn part_with_and_without_message() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.send(1, "JOIN #chan");
    h.send(2, "JOIN #chan");
    let fx = h.send(2, "PART #chan :bye everyone");
    let want = ":bob!bob@10.0.0.2 PART #chan :bye everyone";
    assert_eq!(lines(&fx, 1), [want]);
    assert_eq!(lines(&fx, 2), [want]);
    let fx = h.send(2, "PART #chan");
    assert_eq!(lines(&fx, 2), [":irc.test 442 bob #chan :You're not on that channel"]);
    let fx = h.send(2, "PART #nope,bad");
    assert_eq!(lines(&fx, 2), [":irc.test 403 bob #nope :No such channel", ":irc.test 403 bob bad :No such channel",]);
    let fx = h.send(1, "PART #CHAN");
    assert_eq!(lines(&fx, 1), [":alice!alice@10.0.0.1 PART #chan"]);
    assert_eq!(h.s.channels(), 0, "an empty channel is gone");
}

#[test]
fn topic_get_set_and_errors() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.register(3, "carol");
    h.send(1, "JOIN #chan");
    h.send(2, "JOIN #chan");
    let fx = h.send(2, "TOPIC #chan");
    assert_eq!(lines(&fx, 2), [":irc.test 331 bob #chan :No topic is set"]);
    let fx = h.send(2, "TOPIC #chan :by bob");
    assert_eq!(lines(&fx, 2), [":irc.test 482 bob #chan :You're not channel operator"]);
    assert!(lines(&fx, 1).is_empty());
    h.now += Duration::from_secs(5);
    let fx = h.send(1, "TOPIC #chan :T0P1C is here");
    let want = ":alice!alice@10.0.0.1 TOPIC #chan :T0P1C is here";
    assert_eq!(lines(&fx, 1), [want]);
    assert_eq!(lines(&fx, 2), [want]);
    let fx = h.send(3, "JOIN #chan");
    assert_eq!(
        &lines(&fx, 3)[1..3],
        [":irc.test 332 carol #chan :T0P1C is here", ":irc.test 333 carol #chan alice 1000000005",]
    );
    let fx = h.send(2, "TOPIC #CHAN");
    assert_eq!(cmds(&fx, 2), ["332", "333"]);
    h.send(1, "MODE #chan -t");
    let fx = h.send(2, "TOPIC #chan :by bob");
    assert_eq!(recipients(&fx), [1, 2, 3]);
    // Clearing.
    let fx = h.send(2, "TOPIC #chan :");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 TOPIC #chan :"]);
    let fx = h.send(2, "TOPIC #chan");
    assert_eq!(cmds(&fx, 2), ["331"]);
    // Non-member: may read a public channel's topic, not set it.
    h.register(4, "dave");
    let fx = h.send(4, "TOPIC #chan");
    assert_eq!(cmds(&fx, 4), ["331"]);
    let fx = h.send(4, "TOPIC #chan :x");
    assert_eq!(lines(&fx, 4), [":irc.test 442 dave #chan :You're not on that channel"]);
    h.send(1, "MODE #chan +s");
    let fx = h.send(4, "TOPIC #chan");
    assert_eq!(cmds(&fx, 4), ["442"]);
    let fx = h.send(4, "TOPIC #nochan");
    assert_eq!(lines(&fx, 4), [":irc.test 403 dave #nochan :No such channel"]);
    // Long topics are cut at TOPICLEN.
    let fx = h.send(1, &format!("TOPIC #chan :{}", "t".repeat(450)));
    assert!(lines(&fx, 1)[0].ends_with(&format!(":{}", "t".repeat(TOPICLEN))));
}

#[test]
fn names_forms() {
    let mut h = H::new();
    h.register(1, "nick1");
    h.register(2, "nick2");
    h.register(3, "nick3");
    h.send(1, "JOIN #chan1");
    h.send(2, "JOIN #chan2");
    h.send(2, "JOIN #chan1");
    h.send(3, "JOIN #secret");
    h.send(3, "MODE #secret +s");
    let fx = h.send(1, "NAMES #chan1");
    assert_eq!(
        lines(&fx, 1),
        [":irc.test 353 nick1 = #chan1 :@nick1 nick2", ":irc.test 366 nick1 #chan1 :End of NAMES list",]
    );
    let fx = h.send(1, "NAMES #chan1,#chan2");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 353 nick1 = #chan1 :@nick1 nick2",
            ":irc.test 353 nick1 = #chan2 :@nick2",
            ":irc.test 366 nick1 #chan1,#chan2 :End of NAMES list",
        ]
    );
    let fx = h.send(1, "NAMES");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 353 nick1 = #chan1 :@nick1 nick2",
            ":irc.test 353 nick1 = #chan2 :@nick2",
            ":irc.test 366 nick1 * :End of NAMES list",
        ]
    );
    let fx = h.send(3, "NAMES");
    assert_eq!(lines(&fx, 3)[2], ":irc.test 353 nick3 @ #secret :@nick3");
    for arg in ["#secret", "#nonexisting", "invalid"] {
        let fx = h.send(1, &format!("NAMES {arg}"));
        assert_eq!(lines(&fx, 1), [format!(":irc.test 366 nick1 {arg} :End of NAMES list")]);
    }
    // Invisible users are hidden from non-members.
    h.send(2, "MODE nick2 +i");
    let fx = h.send(3, "NAMES #chan1");
    assert_eq!(lines(&fx, 3)[0], ":irc.test 353 nick3 = #chan1 :@nick1");
    let fx = h.send(1, "NAMES #chan1");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 353 nick1 = #chan1 :@nick1 nick2");
}

#[test]
fn names_split_over_lines() {
    let mut h = H::new();
    for id in 1..=40 {
        h.register(id, &format!("user{id:02}{}", "x".repeat(20)));
        h.send(id, "JOIN #big");
    }
    let fx = h.send(1, "NAMES #big");
    let got = lines(&fx, 1);
    assert!(got.len() >= 3, "{}", got.len());
    let mut names = Vec::new();
    for l in &got[..got.len() - 1] {
        assert!(l.len() + 2 <= MAX_LINE);
        let list = l.split(" :").nth(1).unwrap();
        names.extend(list.split(' ').map(str::to_owned));
    }
    assert_eq!(names.len(), 40);
    assert_eq!(names[0], format!("@user01{}", "x".repeat(20)));
    assert_eq!(cmds(&fx, 1).last().unwrap(), "366");
}

#[test]
fn list_hides_secret_channels_from_outsiders() {
    let mut h = H::new();
    h.register(1, "first");
    h.register(2, "second");
    let fx = h.send(2, "LIST");
    assert_eq!(lines(&fx, 2), [":irc.test 321 second Channel :Users  Name", ":irc.test 323 second :End of LIST",]);
    h.send(1, "JOIN #gen");
    h.send(1, "JOIN #pub");
    h.send(1, "TOPIC #pub :a topic");
    h.send(1, "MODE #gen +s");
    let fx = h.send(1, "LIST");
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 321 first Channel :Users  Name",
            ":irc.test 322 first #gen 1 :",
            ":irc.test 322 first #pub 1 :a topic",
            ":irc.test 323 first :End of LIST",
        ]
    );
    let fx = h.send(2, "LIST");
    assert_eq!(cmds(&fx, 2), ["321", "322", "323"]);
    assert_eq!(lines(&fx, 2)[1], ":irc.test 322 second #pub 1 :a topic");
    let fx = h.send(2, "LIST #gen,#nonexistent");
    assert_eq!(cmds(&fx, 2), ["321", "323"]);
    h.send(2, "JOIN #gen");
    let fx = h.send(2, "LIST #GEN");
    assert_eq!(lines(&fx, 2)[1], ":irc.test 322 second #gen 2 :");
}

#[test]
fn kick() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.register(3, "baz");
    h.send(1, "JOIN #chan");
    h.send(2, "JOIN #chan");
    let fx = h.send(3, "KICK #chan bar");
    assert_eq!(lines(&fx, 3), [":irc.test 442 baz #chan :You're not on that channel"]);
    h.send(3, "JOIN #chan");
    let fx = h.send(3, "KICK #chan bar");
    assert_eq!(lines(&fx, 3), [":irc.test 482 baz #chan :You're not channel operator"]);
    let fx = h.send(1, "KICK #chan bar :bye");
    let want = ":foo!foo@10.0.0.1 KICK #chan bar :bye";
    assert_eq!(lines(&fx, 1), [want]);
    assert_eq!(lines(&fx, 2), [want]);
    assert_eq!(lines(&fx, 3), [want]);
    assert!(!h.s.clients[&2].channels.iter().any(|k| &**k == b"#chan"));
    assert!(!h.s.channels[&*fold(b"#chan")].has(2));
    let fx = h.send(1, "KICK #chan BAZ");
    assert_eq!(lines(&fx, 3), [":foo!foo@10.0.0.1 KICK #chan baz :foo"]);
    let fx = h.send(1, "KICK #chan bar");
    assert_eq!(lines(&fx, 1), [":irc.test 441 foo bar #chan :They aren't on that channel"]);
    let fx = h.send(1, "KICK #chan nobody");
    assert_eq!(cmds(&fx, 1), ["401"]);
    let fx = h.send(1, "KICK #nochan bar");
    assert_eq!(lines(&fx, 1), [":irc.test 403 foo #nochan :No such channel"]);
    // Several targets.
    h.send(2, "JOIN #chan");
    h.send(3, "JOIN #chan");
    let fx = h.send(1, "KICK #chan bar,baz :both");
    assert_eq!(lines(&fx, 1), [":foo!foo@10.0.0.1 KICK #chan bar :both", ":foo!foo@10.0.0.1 KICK #chan baz :both",]);
    // Kicking oneself empties the channel.
    h.send(1, "KICK #chan foo");
    assert_eq!(h.s.channels(), 0);
}

#[test]
fn invite() {
    let mut h = H::new();
    h.register(1, "foo");
    h.send(1, "JOIN #chan");
    h.send(1, "MODE #chan +i");
    let fx = h.send(1, "INVITE bar #chan");
    assert_eq!(lines(&fx, 1), [":irc.test 401 foo bar :No such nick/channel"]);
    h.register(2, "bar");
    h.register(3, "baz");
    let fx = h.send(2, "JOIN #chan");
    assert_eq!(lines(&fx, 2), [":irc.test 473 bar #chan :Cannot join channel (+i)"]);
    let fx = h.send(1, "INVITE BAR #CHAN");
    assert_eq!(lines(&fx, 1), [":irc.test 341 foo bar #chan"]);
    assert_eq!(lines(&fx, 2), [":foo!foo@10.0.0.1 INVITE bar #chan"]);
    let fx = h.send(2, "JOIN #chan");
    assert_eq!(cmds(&fx, 2), ["JOIN", "353", "366"]);
    let fx = h.send(1, "INVITE bar #chan");
    assert_eq!(lines(&fx, 1), [":irc.test 443 foo bar #chan :is already on channel"]);
    let fx = h.send(2, "INVITE baz #chan");
    assert_eq!(lines(&fx, 2), [":irc.test 482 bar #chan :You're not channel operator"]);
    let fx = h.send(3, "INVITE bar #chan");
    assert_eq!(lines(&fx, 3), [":irc.test 442 baz #chan :You're not on that channel"]);
    let fx = h.send(1, "INVITE baz #nochan");
    assert_eq!(lines(&fx, 1), [":irc.test 403 foo #nochan :No such channel"]);
    // The invitation is used up by the JOIN.
    h.send(2, "PART #chan");
    let fx = h.send(2, "JOIN #chan");
    assert_eq!(cmds(&fx, 2), ["473"]);
    // On a channel without +i anyone in it may invite; away targets are reported.
    h.send(1, "MODE #chan -i");
    h.send(3, "JOIN #chan");
    h.send(2, "AWAY :out");
    let fx = h.send(3, "INVITE bar #chan");
    assert_eq!(lines(&fx, 3), [":irc.test 341 baz bar #chan", ":irc.test 301 baz bar :out",]);
    // A departing invitee leaves no invitation behind.
    let mut fx = Effects::default();
    h.s.disconnect(2, "gone", &mut fx);
    assert!(h.s.channels[&*fold(b"#chan")].invited.is_empty());
    assert!(h.s.invites.is_empty());
}
