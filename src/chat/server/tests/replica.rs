//! What a network of instances needs (replica.rs): a snapshot restores an equal server, a
//! rejoining instance's clients merge by the documented rules, a gone instance's clients quit,
//! and a replica's timers act on its own clients only.

use super::*;

const TAG: ClientId = 1 << 40;

/// Registers `id` as `nick` with message-tags, so msgids show.
fn register_tagged(h: &mut H, id: ClientId, nick: &str) {
    h.connect(id);
    h.send(id, "CAP REQ :message-tags");
    h.send(id, &format!("NICK {nick}"));
    h.send(id, &format!("USER {nick} 0 * :Real {nick}"));
    let fx = h.send(id, "CAP END");
    assert!(cmds(&fx, id).contains(&"001".to_owned()), "{:?}", lines(&fx, id));
}

/// What `id` is told for each of `queries`, one list per query.
fn answers(h: &mut H, id: ClientId, queries: &[&str]) -> Vec<Vec<String>> {
    queries.iter().map(|q| lines(&h.send(id, q), id)).collect()
}

#[test]
fn a_snapshot_restores_an_equal_server() {
    let mut a = H::new();
    register_tagged(&mut a, 1, "alice");
    a.register(2, "bob");
    a.connect(3);
    a.send(3, "NICK halfway");
    for line in ["JOIN #c", "TOPIC #c :the topic", "MODE #c +k sekrit", "MODE #c +b evil!*@*"] {
        a.send(1, line);
    }
    a.send(2, "JOIN #c sekrit");
    a.send(1, "MODE #c +v bob");
    a.send(1, "MONITOR + carol");
    a.send(1, "AWAY :lunch");
    let snap = a.s.snapshot();

    let mut b = H::new();
    b.s.restore(&snap).unwrap();
    let queries = ["NAMES #c", "TOPIC #c", "MODE #c", "MODE #c +b", "WHOIS bob", "LUSERS", "MONITOR L", "WHOIS alice"];
    assert_eq!(answers(&mut a, 2, &queries), answers(&mut b, 2, &queries));
    assert_eq!(answers(&mut a, 1, &queries), answers(&mut b, 1, &queries));
    // The same message gets the same msgid on both: the numbering is part of the state.
    let (x, y) = (a.send(2, "PRIVMSG #c :hi"), b.send(2, "PRIVMSG #c :hi"));
    assert_eq!(lines(&x, 1), lines(&y, 1));
    assert!(lines(&x, 1)[0].contains("msgid="), "{:?}", lines(&x, 1));
    // Nicks taken are taken on the copy too, the unregistered one's included.
    assert_eq!(cmds(&b.send(2, "NICK halfway"), 2), ["433"]);
    assert!(b.s.restore(b"\x01\x02garbage").is_err());
}

/// A network holding alice (id 1) in #c, and an instance that kept its own alice and dave in
/// #c while split; `older_there` says whose alice took the nick first.
fn split_pair(older_there: bool) -> (H, H) {
    let (mut net, mut part) = (H::new(), H::new());
    let (first, second) = if older_there { (&mut part, &mut net) } else { (&mut net, &mut part) };
    let first_id = if older_there { TAG | 1 } else { 1 };
    first.register(first_id, "alice");
    second.now += Duration::from_secs(5);
    let second_id = if older_there { 1 } else { TAG | 1 };
    second.register(second_id, "alice");
    net.send(1, "JOIN #c");
    part.register(TAG | 2, "dave");
    part.send(TAG | 1, "JOIN #c");
    part.send(TAG | 2, "JOIN #c");
    net.s.latest = net.now;
    (net, part)
}

#[test]
fn a_merge_keeps_the_older_nick_and_shows_each_side_the_other() {
    // The network's alice took the nick later: she is renamed, and everyone in #c is told.
    let (mut net, part) = split_pair(true);
    let mut fx = Effects::default();
    net.s.merge(&part.s.snapshot(), &mut fx).unwrap();
    check_lines(&fx);
    assert_eq!(lines(&fx, 1)[0], ":alice!alice@10.0.0.1 NICK Guest1");
    let told_arrivals = lines(&fx, 1);
    assert!(told_arrivals.iter().any(|l| l.starts_with(":alice!alice@10.0.0.1 JOIN #c")), "{told_arrivals:?}");
    assert!(told_arrivals.iter().any(|l| l.starts_with(":dave!dave@10.0.0.2 JOIN #c")), "{told_arrivals:?}");
    // The arriving side sees the network's member join, with her status.
    let to_dave = lines(&fx, TAG | 2);
    assert!(to_dave.iter().any(|l| l.starts_with(":Guest1!alice@10.0.0.1 JOIN #c")), "{to_dave:?}");
    assert!(to_dave.iter().any(|l| l == ":irc.test MODE #c +o Guest1"), "{to_dave:?}");
    let names = lines(&net.send(TAG | 2, "NAMES #c"), TAG | 2);
    assert!(names[0].ends_with(":@Guest1 @alice dave"), "{names:?}");

    // The arriving alice took it later: she is the one renamed, and only her side is told.
    let (mut net, part) = split_pair(false);
    let mut fx = Effects::default();
    net.s.merge(&part.s.snapshot(), &mut fx).unwrap();
    let guest = format!("Guest{}", TAG | 1);
    assert_eq!(lines(&fx, TAG | 1)[0], format!(":alice!alice@10.0.0.1 NICK {guest}"));
    assert!(lines(&fx, TAG | 2).contains(&format!(":alice!alice@10.0.0.1 NICK {guest}")));
    assert!(!lines(&fx, 1).iter().any(|l| l.contains(" NICK ")), "{:?}", lines(&fx, 1));
    assert_eq!(cmds(&net.send(TAG | 2, &format!("WHOIS {guest}")), TAG | 2)[0], "311");
    // Merging the same instance again changes nothing.
    let mut again = Effects::default();
    net.s.merge(&part.s.snapshot(), &mut again).unwrap();
    assert!(again.sends.is_empty(), "{:?}", again.sends);
}

#[test]
fn a_gone_instance_s_clients_quit_and_free_their_nicks() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(TAG | 1, "bob");
    h.send(1, "JOIN #c");
    h.send(TAG | 1, "JOIN #c");
    h.s.set_home_server(TAG | 1, "other.test");
    let whois = lines(&h.send(1, "WHOIS bob"), 1);
    assert!(whois.iter().any(|l| l.starts_with(":irc.test 312 alice bob other.test ")), "{whois:?}");
    let mut fx = Effects::default();
    h.s.drop_clients(|id| id & TAG != 0, "*.net *.split", &mut fx);
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.1 QUIT :*.net *.split"]);
    h.connect(2);
    assert!(cmds(&h.send(2, "NICK bob"), 2).is_empty());
}

#[test]
fn a_replica_s_timers_act_on_its_own_clients_and_leave_removal_to_the_network() {
    let mut h = H::new();
    h.register(1, "mine");
    h.register(TAG | 1, "theirs");
    h.s.replicate(Some((!(TAG - 1), 0)));
    let fx = h.tick(61);
    assert_eq!(recipients(&fx), [1], "only our own client is pinged");
    let fx = h.tick(31);
    assert_eq!(cmds(&fx, 1), ["ERROR"]);
    assert_eq!(fx.depart, [(1, "Ping timeout")]);
    assert_eq!(fx.close, [1]);
    // Still there until the network's order says it left.
    assert_eq!(h.s.clients(), 2);
    h.s.replicate(None);
    let fx = h.tick(1);
    assert!(fx.depart.is_empty());
    assert_eq!(h.s.clients(), 1, "on its own, a server removes them itself");
}

#[test]
fn a_replica_that_builds_only_its_own_lines_tags_them_alike() {
    let mut a = H::new();
    register_tagged(&mut a, 1, "alice");
    register_tagged(&mut a, TAG | 1, "bob");
    a.register(TAG | 2, "carol");
    for id in [1, TAG | 1, TAG | 2] {
        a.send(id, "JOIN #c");
    }
    let mut b = H::new();
    b.s.restore(&a.s.snapshot()).unwrap();
    // alice's message as network event 42 of instance 9: `a` builds every line, `b` (the
    // instance of bob and carol) only its own.
    let apply = |h: &mut H, fx: &mut Effects, line: &[u8]| {
        h.s.begin_event(Some((9, 42)));
        h.s.handle_line(1, line, false, h.now, fx);
        h.s.begin_event(None);
        check_lines(fx);
    };
    let (mut all, mut own) = (Effects::default(), Effects::only(Some((!(TAG - 1), TAG))));
    apply(&mut a, &mut all, b"PRIVMSG #c :hi");
    apply(&mut b, &mut own, b"PRIVMSG #c :hi");
    assert!(recipients(&own).iter().all(|id| id & TAG != 0), "{:?}", recipients(&own));
    assert_eq!(lines(&all, TAG | 1), lines(&own, TAG | 1));
    assert_eq!(lines(&all, TAG | 2), lines(&own, TAG | 2));
    let tagged = &lines(&own, TAG | 1)[0];
    assert!(tagged.starts_with("@msgid=9-16-"), "{tagged}");
    // Another line of the same event gets another msgid.
    let mut other = Effects::default();
    apply(&mut a, &mut other, b"PRIVMSG #c :ho");
    assert_ne!(lines(&other, TAG | 1)[0].split(' ').next(), tagged.split(' ').next());
}
