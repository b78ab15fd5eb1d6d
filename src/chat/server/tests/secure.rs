//! TLS clients as the state machine sees them: WHOIS 671 and the STS policy in CAP LS.

use super::*;

fn sts_server() -> H {
    H::with(ChatConfig { server_name: "irc.test".to_owned(), sts: Some((6697, 86400)), ..ChatConfig::default() })
}

#[test]
fn whois_shows_671_for_a_tls_client_only() {
    let mut h = H::new();
    h.register(1, "plain");
    h.register(2, "secure");
    h.s.set_secure(2);
    let fx = h.send(1, "WHOIS secure");
    assert!(
        lines(&fx, 1).contains(&":irc.test 671 plain secure :is using a secure connection".to_owned()),
        "{:?}",
        lines(&fx, 1)
    );
    let fx = h.send(2, "WHOIS plain");
    assert!(!cmds(&fx, 2).contains(&"671".to_owned()), "{:?}", lines(&fx, 2));
}

#[test]
fn sts_sends_plain_clients_to_the_tls_port_and_gives_tls_clients_the_duration() {
    let mut h = sts_server();
    h.connect(1);
    h.connect(2);
    h.s.set_secure(2);
    let ls = |fx: &Effects, id| lines(fx, id).join("\n");
    let plain = ls(&h.send(1, "CAP LS 302"), 1);
    assert!(plain.contains(" sts=port=6697"), "{plain}");
    assert!(!plain.contains("duration"), "{plain}");
    let secure = ls(&h.send(2, "CAP LS 302"), 2);
    assert!(secure.contains(" sts=duration=86400"), "{secure}");
    assert!(!secure.contains("sts=port"), "{secure}");
    // Without 302 there are no values, and STS is nothing without its value.
    h.connect(3);
    assert!(!ls(&h.send(3, "CAP LS"), 3).contains("sts"));
}

#[test]
fn no_sts_unless_configured() {
    let mut h = H::new();
    h.connect(1);
    assert!(!lines(&h.send(1, "CAP LS 302"), 1).join(" ").contains("sts"));
}
