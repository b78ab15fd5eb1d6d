//! MONITOR.

use super::*;

// irctest: monitor.py testMonitorOneDisconnected, testMonitorOneConnectionWithQuit
#[test]
fn monitored_nick_signs_on_and_off() {
    let mut h = H::new();
    h.register(1, "foo");
    let fx = h.send(1, "MONITOR + bar");
    assert_eq!(lines(&fx, 1), [":irc.test 731 foo :bar"]);
    h.connect(2);
    h.send(2, "NICK bar");
    let fx = h.send(2, "USER u 0 * :Bar");
    assert_eq!(lines(&fx, 1), [":irc.test 730 foo :bar!u@10.0.0.2"]);
    let fx = h.send(2, "QUIT :bye");
    assert_eq!(lines(&fx, 1), [":irc.test 731 foo :bar"]);
    h.register(3, "Bar");
    let mut fx = Effects::default();
    h.s.disconnect(3, "gone", &mut fx);
    assert_eq!(lines(&fx, 1), [":irc.test 731 foo :Bar"]);
}

// irctest: monitor.py testMonitorConnectedAndDisconnected, testMonitorOneConnected
#[test]
fn adding_reports_who_is_online_and_who_is_not() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    let fx = h.send(1, "MONITOR + BAR,baz");
    assert_eq!(lines(&fx, 1), [":irc.test 730 foo :bar!bar@10.0.0.2", ":irc.test 731 foo :baz"]);
    let fx = h.send(1, "monitor s");
    assert_eq!(lines(&fx, 1), [":irc.test 730 foo :bar!bar@10.0.0.2", ":irc.test 731 foo :baz"]);
}

// irctest: monitor.py testUnmonitor, testTwoMonitoringOneRemove
#[test]
fn unmonitor_is_quiet_and_stops_notifications() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.send(1, "MONITOR + qux");
    h.send(2, "MONITOR + qux");
    assert!(h.send(2, "MONITOR - qux").sends.is_empty());
    h.register(3, "qux");
    // `register` drained qux's burst; the notification went out in the same call.
    h.send(3, "NICK quux");
    let fx = h.send(3, "NICK qux");
    assert_eq!(recipients(&fx), [3, 1]);
    assert!(h.send(1, "MONITOR - qux").sends.is_empty());
    let fx = h.send(3, "QUIT");
    assert_eq!(recipients(&fx), [3]);
}

// irctest: monitor.py testMonitorClear, testMonitorList
#[test]
fn list_and_clear() {
    let mut h = H::new();
    h.register(1, "bar");
    assert_eq!(lines(&h.send(1, "MONITOR L"), 1), [":irc.test 733 bar :End of MONITOR list"]);
    h.send(1, "MONITOR + qux");
    h.send(1, "MONITOR + bazbat,Qux");
    assert_eq!(
        lines(&h.send(1, "MONITOR L"), 1),
        [":irc.test 732 bar :qux,bazbat", ":irc.test 733 bar :End of MONITOR list"]
    );
    h.send(1, "MONITOR - QUX");
    assert_eq!(lines(&h.send(1, "MONITOR L"), 1)[0], ":irc.test 732 bar :bazbat");
    assert!(h.send(1, "MONITOR C").sends.is_empty());
    assert_eq!(cmds(&h.send(1, "MONITOR L"), 1), ["733"]);
    assert!(h.s.monitors.by_nick.is_empty() && h.s.monitors.by_client.is_empty());
}

// irctest: monitor.py testNickChange
#[test]
fn nick_changes_go_offline_and_online() {
    let mut h = H::new();
    h.register(1, "bar");
    h.send(1, "MONITOR + qux");
    h.register(2, "baz");
    let fx = h.send(2, "NICK qux");
    assert_eq!(lines(&fx, 1), [":irc.test 730 bar :qux!baz@10.0.0.2"]);
    assert!(lines(&h.send(2, "NICK QUX"), 1).is_empty(), "a change of case is no news");
    let fx = h.send(2, "NICK bazbat");
    assert_eq!(lines(&fx, 1), [":irc.test 731 bar :QUX"]);
    // An unregistered client taking the nick is not online.
    h.connect(3);
    assert!(h.send(3, "NICK qux").sends.is_empty());
}

// irctest: monitor.py testMonitorForbidsMasks
#[test]
fn masks_are_ignored_and_the_list_is_bounded() {
    let mut h = H::new();
    h.register(1, "foo");
    assert!(h.send(1, "MONITOR + *!username@localhost").sends.is_empty());
    assert!(h.send(1, "MONITOR + :a b,#c,").sends.is_empty(), "not nicks");
    assert_eq!(cmds(&h.send(1, "MONITOR +"), 1), ["461"]);
    assert_eq!(cmds(&h.send(1, "MONITOR"), 1), ["461"]);
    h.register(2, "bar");
    let names: Vec<String> = (0..MONITOR_LIMIT - 1).map(|i| format!("n{i}")).collect();
    h.send(1, &format!("MONITOR + {}", names[..50].join(",")));
    h.send(1, &format!("MONITOR + {}", names[50..].join(",")));
    let fx = h.send(1, "MONITOR + bar,x1,x2");
    assert_eq!(
        lines(&fx, 1),
        [":irc.test 734 foo 100 x1,x2 :Monitor list is full", ":irc.test 730 foo :bar!bar@10.0.0.2"]
    );
    assert_eq!(h.s.monitors.by_client[&1].len(), MONITOR_LIMIT);
    // The watcher leaving frees its entries from the reverse index.
    let mut fx = Effects::default();
    h.s.disconnect(1, "gone", &mut fx);
    assert!(h.s.monitors.by_nick.is_empty() && h.s.monitors.by_client.is_empty());
}

#[test]
fn watchers_of_a_client() {
    let mut h = H::new();
    h.register(1, "foo");
    h.register(2, "bar");
    h.register(3, "baz");
    h.send(3, "MONITOR + BAR");
    h.send(1, "MONITOR + bar,baz");
    assert_eq!(h.s.watchers_of(2), [1, 3]);
    assert_eq!(h.s.watchers_of(3), [1]);
    assert!(h.s.watchers_of(1).is_empty());
    h.send(2, "NICK other");
    assert!(h.s.watchers_of(2).is_empty());
}
