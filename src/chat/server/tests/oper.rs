//! OPER and KILL.

use super::*;

#[test]
fn oper_and_kill() {
    let mut h = with_oper();
    h.register(1, "boss");
    h.register(2, "victim");
    h.register(3, "peer");
    h.send(2, "JOIN #c");
    h.send(3, "JOIN #c");
    let fx = h.send(1, "KILL victim :bye");
    assert_eq!(lines(&fx, 1), [":irc.test 481 boss :Permission Denied- You're not an IRC operator"]);
    let fx = h.send(1, "OPER operuser wrong");
    assert_eq!(lines(&fx, 1), [":irc.test 464 boss :Password incorrect"]);
    let fx = h.send(1, "OPER nobody operpassword");
    assert_eq!(cmds(&fx, 1), ["464"]);
    let fx = h.send(1, "OPER operuser operpassword");
    assert_eq!(lines(&fx, 1), [":irc.test 381 boss :You are now an IRC operator", ":boss!boss@10.0.0.1 MODE boss +o",]);
    assert_eq!(h.s.opers, 1);
    let fx = h.send(1, "MODE boss");
    assert_eq!(lines(&fx, 1), [":irc.test 221 boss +o"]);
    let fx = h.send(1, "LUSERS");
    assert!(lines(&fx, 1).contains(&":irc.test 252 boss 1 :operator(s) online".to_owned()));
    let fx = h.send(2, "WHOIS boss");
    assert!(lines(&fx, 2).contains(&":irc.test 313 victim boss :is an IRC operator".to_owned()));
    let fx = h.send(1, "KILL nobody :x");
    assert_eq!(cmds(&fx, 1), ["401"]);
    let fx = h.send(1, "KILL victim");
    assert_eq!(cmds(&fx, 1), ["461"]);
    let fx = h.send(1, "KILL Victim :spamming");
    assert_eq!(
        lines(&fx, 2),
        [":boss!boss@10.0.0.1 KILL victim :spamming", "ERROR :Closing Link: 10.0.0.2 (Killed (boss (spamming)))",]
    );
    assert_eq!(lines(&fx, 3), [":victim!victim@10.0.0.2 QUIT :Killed (boss (spamming))"]);
    assert_eq!(fx.close, [2]);
    let fx = h.send(1, "MODE boss -o");
    assert_eq!(lines(&fx, 1), [":boss!boss@10.0.0.1 MODE boss -o"]);
    assert_eq!(h.s.opers, 0);
}
