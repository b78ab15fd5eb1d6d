//! rfc1459 case mapping of nicks and channel names.

use super::*;

#[test]
fn case_insensitive_nicks_and_channels() {
    let mut h = H::new();
    h.register(1, "[Alice]");
    h.register(2, "bob");
    h.connect(3);
    let fx = h.send(3, "NICK {alice}");
    assert_eq!(cmds(&fx, 3), ["433"]);
    let fx = h.send(3, "NICK {ALICE}");
    assert_eq!(cmds(&fx, 3), ["433"]);
    h.send(1, "JOIN #Chan[1]");
    let fx = h.send(2, "JOIN #CHAN{1}");
    assert_eq!(lines(&fx, 2)[0], ":bob!bob@10.0.0.2 JOIN #Chan[1]");
    let fx = h.send(2, "PRIVMSG {alice} :hi");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG [Alice] :hi"]);
    let fx = h.send(2, "PRIVMSG #chan{1} :all");
    assert_eq!(lines(&fx, 1), [":bob!bob@10.0.0.2 PRIVMSG #Chan[1] :all"]);
    let fx = h.send(1, "MODE #CHAN[1] +v BOB");
    assert_eq!(recipients(&fx), [1, 2]);
    let fx = h.send(2, "WHOIS {ALICE}");
    assert_eq!(cmds(&fx, 2)[0], "311");
    assert_eq!(h.s.channels(), 1);
}
