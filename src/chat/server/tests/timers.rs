//! PING and registration timeouts (tick).

use super::*;

#[test]
fn ping_timeout() {
    let mut h = H::new();
    h.register(1, "alice");
    h.register(2, "bob");
    h.send(1, "JOIN #a");
    h.send(2, "JOIN #a");
    assert!(h.tick(59).sends.is_empty());
    let fx = h.tick(1);
    assert_eq!(lines(&fx, 1), ["PING :irc.test"]);
    assert_eq!(lines(&fx, 2), ["PING :irc.test"]);
    assert!(Arc::ptr_eq(&fx.sends[0].1, &fx.sends[1].1));
    // Pinged once only.
    assert!(h.tick(10).sends.is_empty());
    // bob answers; alice does not.
    h.send(2, "PONG :irc.test");
    let fx = h.tick(20);
    assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Ping timeout)"]);
    assert_eq!(lines(&fx, 2), [":alice!alice@10.0.0.1 QUIT :Ping timeout"]);
    assert_eq!(fx.close, [1]);
    assert_eq!(h.s.clients(), 1);
    // bob's answer reset its clock: pinged again 60 s after the PONG.
    assert!(h.tick(39).sends.is_empty());
    let fx = h.tick(1);
    assert_eq!(lines(&fx, 2), ["PING :irc.test"]);
    // Any line counts as activity.
    h.send(2, "PRIVMSG #a :still here");
    assert!(h.tick(45).sends.is_empty());
    // Zero interval: no pings at all.
    let mut fx = Effects::default();
    h.now += Duration::from_secs(1000);
    h.s.tick(h.now, Duration::ZERO, Duration::from_secs(30), &mut fx);
    assert!(fx.sends.is_empty());
}

#[test]
fn registration_timeout() {
    let mut h = H::new();
    h.connect(1);
    h.send(1, "NICK slow");
    assert!(h.tick(29).sends.is_empty());
    let fx = h.tick(1);
    assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Registration timeout)"]);
    assert_eq!(fx.close, [1]);
    assert_eq!(h.s.clients(), 0);
    assert!(h.s.nicks.is_empty());
}
