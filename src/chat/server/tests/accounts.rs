//! SASL PLAIN and hashed OPER: the checks the state machine hands out in `Effects::verify`,
//! answered here as the engine would (or not, or late, or with a stale token).

use super::*;
use crate::chat::passwords::cheap_argon2;
use crate::chat::server::accounts::{MAX_AUTH_FAILURES, MAX_HELD_LINES};

/// `jilles`/`sesame` and `foo`/`bar` as accounts (argon2 and bcrypt), `root`/`rootpw` (hashed)
/// and `operuser`/`operpassword` (plain) as operators.
fn with_accounts() -> H {
    H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        accounts: vec![
            ("jilles".to_owned(), cheap_argon2("sesame")),
            ("foo".to_owned(), bcrypt::hash("bar", 4).unwrap()),
        ],
        opers: vec![("root".to_owned(), cheap_argon2("rootpw")), ("operuser".to_owned(), "operpassword".to_owned())],
        ..ChatConfig::default()
    })
}

fn b64(s: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let mut buf = vec![0; s.len() * 4 / 3 + 4];
    Base64::encode(s, &mut buf).expect("buffer large enough").to_owned()
}

impl H {
    /// Runs the checks `fx` asks for, as the engine does with the lock released, and returns
    /// what the answers produce.
    fn answer(&mut self, fx: &Effects) -> Effects {
        let mut out = Effects::default();
        for v in &fx.verify {
            self.s.verified(v.id, v.token, v.check(), self.now, &mut out);
        }
        check_lines(&out);
        out
    }

    /// Connects `id`, holds registration with CAP LS, and starts PLAIN.
    fn start_plain(&mut self, id: ClientId) {
        self.connect(id);
        self.send(id, "CAP LS 302");
        let fx = self.send(id, "AUTHENTICATE PLAIN");
        assert_eq!(lines(&fx, id), ["AUTHENTICATE +"]);
    }

    fn account(&self, id: ClientId) -> Option<String> {
        self.s.clients[&id].account.as_ref().map(|a| String::from_utf8_lossy(a).into_owned())
    }
}

#[test]
fn plain_success_logs_in_then_registers() {
    let mut h = with_accounts();
    assert_eq!(h.s.sasl_mechanisms(), Some("PLAIN"));
    h.start_plain(1);
    let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"jilles\0jilles\0sesame")));
    assert!(fx.sends.is_empty(), "nothing until the check is answered: {:?}", lines(&fx, 1));
    assert_eq!(fx.verify.len(), 1);
    assert_eq!((fx.verify[0].id, &fx.verify[0].password[..]), (1, &b"sesame"[..]));
    let fx = h.answer(&fx);
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 900 * *!*@10.0.0.1 jilles :You are now logged in as jilles",
            ":irc.test 903 * :SASL authentication successful",
        ]
    );
    assert_eq!(h.account(1).as_deref(), Some("jilles"));
    h.send(1, "NICK jill");
    h.send(1, "USER jill 0 * :Jill");
    let fx = h.send(1, "AUTHENTICATE PLAIN");
    assert_eq!(lines(&fx, 1), [":irc.test 907 jill :You have already authenticated using SASL"]);
    let fx = h.send(1, "CAP END");
    assert_eq!(cmds(&fx, 1)[0], "001");
    let fx = h.send(1, "AUTHENTICATE PLAIN");
    assert_eq!(cmds(&fx, 1), ["907"]);
}

#[test]
fn no_authzid_bcrypt_and_any_case_account_name() {
    let mut h = with_accounts();
    h.start_plain(1);
    let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0FOO\0bar")));
    let fx = h.answer(&fx);
    assert_eq!(lines(&fx, 1)[0], ":irc.test 900 * *!*@10.0.0.1 foo :You are now logged in as foo");
    assert_eq!(h.account(1).as_deref(), Some("foo"), "the account as configured");
}

#[test]
fn wrong_password_904_and_the_third_failure_closes() {
    let mut h = with_accounts();
    h.start_plain(1);
    h.send(1, "NICK nick");
    for attempt in 1..=MAX_AUTH_FAILURES {
        if attempt > 1 {
            let fx = h.send(1, "AUTHENTICATE PLAIN");
            assert_eq!(lines(&fx, 1), ["AUTHENTICATE +"], "a retry after 904 is allowed");
        }
        let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0millet")));
        let fx = h.answer(&fx);
        let mut want = vec![":irc.test 904 nick :SASL authentication failed".to_owned()];
        if attempt == MAX_AUTH_FAILURES {
            want.push("ERROR :Closing Link: 10.0.0.1 (Too many failed authentication attempts)".to_owned());
            assert_eq!(fx.close, [1]);
        } else {
            assert!(fx.close.is_empty());
        }
        assert_eq!(lines(&fx, 1), want, "attempt {attempt}");
    }
    assert_eq!(h.s.clients(), 0);
}

#[test]
fn unknown_account_is_checked_anyway_and_fails() {
    let mut h = with_accounts();
    h.start_plain(1);
    // "sesame" is jilles's password: checked against a real hash, the answer still cannot pass.
    let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0nobody\0sesame")));
    assert_eq!(fx.verify.len(), 1, "an unknown name costs the same check");
    let mut out = Effects::default();
    h.s.verified(1, fx.verify[0].token, true, h.now, &mut out);
    assert_eq!(lines(&out, 1), [":irc.test 904 * :SASL authentication failed"]);
    assert_eq!(h.account(1), None);
}

#[test]
fn malformed_responses_fail_without_a_check() {
    let mut h = with_accounts();
    h.start_plain(1);
    for bad in [
        "!!!".to_owned(),
        b64(b"other\0jilles\0sesame"),
        b64(b"\0\0sesame"),
        b64(b"\0jilles\0"),
        b64(b"\0jilles\0sesa\0me"),
        b64(b"jilles"),
        "+".to_owned(),
    ] {
        let fx = h.send(1, &format!("AUTHENTICATE {bad}"));
        assert_eq!(lines(&fx, 1), [":irc.test 904 * :SASL authentication failed"], "{bad}");
        assert!(fx.verify.is_empty(), "{bad}");
        let fx = h.send(1, "AUTHENTICATE PLAIN");
        assert_eq!(lines(&fx, 1), ["AUTHENTICATE +"]);
    }
}

#[test]
fn abort_906() {
    let mut h = with_accounts();
    h.start_plain(1);
    let fx = h.send(1, "AUTHENTICATE *");
    assert_eq!(lines(&fx, 1), [":irc.test 906 * :SASL authentication aborted"]);
    let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    assert_eq!(cmds(&fx, 1), ["908", "904"], "after the abort the response reads as a mechanism");
}

#[test]
fn lines_during_a_check_wait_for_its_answer_in_order() {
    let mut h = with_accounts();
    h.start_plain(1);
    let check = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    for line in ["AUTHENTICATE *", "PING :after", "NICK late"] {
        let fx = h.send(1, line);
        assert!(fx.sends.is_empty() && fx.verify.is_empty(), "{line} is held");
    }
    let fx = h.answer(&check);
    assert_eq!(
        lines(&fx, 1),
        [
            ":irc.test 900 * *!*@10.0.0.1 jilles :You are now logged in as jilles",
            ":irc.test 903 * :SASL authentication successful",
            ":irc.test 907 * :You have already authenticated using SASL",
            ":irc.test PONG irc.test :after",
        ]
    );
    assert_eq!(h.s.clients[&1].nick.as_deref(), Some(&b"late"[..]));
}

#[test]
fn too_many_lines_during_a_check_close_the_connection() {
    let mut h = with_accounts();
    h.start_plain(1);
    h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    for _ in 0..MAX_HELD_LINES {
        assert!(h.send(1, "PING x").sends.is_empty());
    }
    let fx = h.send(1, "PING x");
    assert_eq!(lines(&fx, 1), ["ERROR :Closing Link: 10.0.0.1 (Too many lines during a password check)"]);
    assert_eq!(fx.close, [1]);
}

#[test]
fn stale_tokens_and_reused_ids_are_ignored() {
    let mut h = with_accounts();
    h.start_plain(1);
    let old = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    let mut out = Effects::default();
    h.s.verified(1, old.verify[0].token + 1, true, h.now, &mut out);
    h.s.verified(2, old.verify[0].token, true, h.now, &mut out);
    assert!(out.sends.is_empty() && h.account(1).is_none());
    // Client 1 leaves; a new connection gets id 1 and starts its own check.
    h.s.disconnect(1, "gone", &mut Effects::default());
    h.start_plain(1);
    let new = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0foo\0wrong")));
    let fx = h.answer(&old);
    assert!(fx.sends.is_empty(), "the old client's answer: {:?}", lines(&fx, 1));
    let fx = h.answer(&new);
    assert_eq!(cmds(&fx, 1), ["904"]);
}

#[test]
fn unknown_mechanism_908_then_904() {
    let mut h = with_accounts();
    h.connect(1);
    let fx = h.send(1, "AUTHENTICATE SCRAM-SHA-256");
    assert_eq!(
        lines(&fx, 1),
        [":irc.test 908 * PLAIN :are available SASL mechanisms", ":irc.test 904 * :SASL authentication failed"]
    );
    let fx = h.send(1, "AUTHENTICATE plain");
    assert_eq!(lines(&fx, 1), ["AUTHENTICATE +"], "mechanism names are case-insensitive");
    let fx = h.send(1, "AUTHENTICATE");
    assert_eq!(cmds(&fx, 1), ["461"]);
}

#[test]
fn chunks_of_400_bytes_continue_and_longer_ones_905() {
    // "foo\0foo\0" and 592 bytes of password: 800 bytes of base64, two full chunks and then "+".
    let password = "x".repeat(592);
    let response = b64(format!("foo\0foo\0{password}").as_bytes());
    assert_eq!(response.len(), 800);
    let mut h = H::with(ChatConfig {
        server_name: "irc.test".to_owned(),
        accounts: vec![("foo".to_owned(), cheap_argon2(&password))],
        ..ChatConfig::default()
    });
    h.start_plain(1);
    assert!(h.send(1, &format!("AUTHENTICATE {}", &response[..400])).sends.is_empty());
    let fx = h.send(1, &format!("AUTHENTICATE {}", &response[400..]));
    assert!(fx.sends.is_empty() && fx.verify.is_empty(), "a 400-byte chunk waits for more");
    let fx = h.send(1, "AUTHENTICATE +");
    assert_eq!(fx.verify.len(), 1);
    assert_eq!(cmds(&h.answer(&fx), 1), ["900", "903"]);

    h.start_plain(2);
    let fx = h.send(2, &format!("AUTHENTICATE {}", "A".repeat(401)));
    assert_eq!(lines(&fx, 2), [":irc.test 905 * :SASL message too long"]);
    h.send(2, "AUTHENTICATE PLAIN");
    let chunk = "A".repeat(400);
    let mut last = Effects::default();
    for _ in 0..6 {
        last = h.send(2, &format!("AUTHENTICATE {chunk}"));
    }
    assert_eq!(lines(&last, 2), [":irc.test 904 * :SASL authentication failed"], "an endless response stops");
}

#[test]
fn registration_aborts_an_exchange_but_waits_for_a_check() {
    let mut h = with_accounts();
    h.start_plain(1);
    h.send(1, "NICK early");
    h.send(1, "USER early 0 * :Early");
    let fx = h.send(1, "CAP END");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 906 early :SASL authentication aborted");
    assert_eq!(cmds(&fx, 1)[1], "001");

    h.start_plain(2);
    h.send(2, "NICK late");
    h.send(2, "USER late 0 * :Late");
    let check = h.send(2, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    let fx = h.send(2, "CAP END");
    assert!(fx.sends.is_empty(), "registration waits for the answer: {:?}", lines(&fx, 2));
    let fx = h.answer(&check);
    assert_eq!(cmds(&fx, 2)[..3], ["900", "903", "001"]);
    assert_eq!(lines(&fx, 2)[0], ":irc.test 900 late late!late@10.0.0.2 jilles :You are now logged in as jilles");
    let fx = h.send(2, "AUTHENTICATE PLAIN");
    assert_eq!(cmds(&fx, 2), ["907"]);
}

#[test]
fn after_registration_authenticate_is_462() {
    let mut h = with_accounts();
    h.register(1, "reg");
    let fx = h.send(1, "AUTHENTICATE PLAIN");
    assert_eq!(lines(&fx, 1), [":irc.test 462 reg :You may not reregister"]);
}

#[test]
fn without_accounts_there_is_no_sasl() {
    let mut h = H::new();
    assert_eq!(h.s.sasl_mechanisms(), None);
    h.connect(1);
    let fx = h.send(1, "AUTHENTICATE PLAIN");
    assert_eq!(lines(&fx, 1), [":irc.test 904 * :SASL authentication failed"]);
}

#[test]
fn oper_against_a_hash_is_checked_off_the_lock() {
    let mut h = with_accounts();
    h.register(1, "boss");
    let fx = h.send(1, "OPER root wrong");
    assert!(fx.sends.is_empty() && fx.verify.len() == 1);
    assert_eq!(lines(&h.answer(&fx), 1), [":irc.test 464 boss :Password incorrect"]);
    let fx = h.send(1, "OPER root rootpw");
    let again = h.send(1, "OPER root rootpw");
    assert!(again.sends.is_empty() && again.verify.is_empty(), "held: one check at a time");
    let fx = h.answer(&fx);
    assert_eq!(lines(&fx, 1), [":irc.test 381 boss :You are now an IRC operator", ":boss!boss@10.0.0.1 MODE boss +o"]);
    assert_eq!(fx.verify.len(), 1, "the held OPER is checked next");
    assert_eq!(lines(&h.answer(&fx), 1), [":irc.test 381 boss :You are now an IRC operator"]);
    assert_eq!(h.s.opers, 1);
    // Plain-text operators still answer at once, and every wrong password counts.
    h.register(2, "other");
    assert_eq!(cmds(&h.send(2, "OPER operuser operpassword"), 2), ["381", "MODE"]);
    assert_eq!(cmds(&h.send(2, "OPER nobody x"), 2), ["464"]);
    assert_eq!(cmds(&h.send(2, "OPER operuser x"), 2), ["464"]);
    let fx = h.send(2, "OPER root x");
    let fx = h.answer(&fx);
    assert_eq!(cmds(&fx, 2), ["464", "ERROR"]);
    assert_eq!(fx.close, [2]);
}

#[test]
fn a_check_does_not_show_its_password_in_debug_output() {
    let mut h = with_accounts();
    h.register(1, "boss");
    let fx = h.send(1, "OPER root hunter2");
    let debug = format!("{fx:?}");
    assert!(debug.contains("Verify") && !debug.contains("hunter2"), "{debug}");
}

#[test]
fn sasl_is_offered_with_accounts_and_the_account_shows_in_tags_and_joins() {
    let mut h = with_accounts();
    h.connect(1);
    let fx = h.send(1, "CAP LS 302");
    assert!(lines(&fx, 1)[0].contains(" sasl=PLAIN "), "{:?}", lines(&fx, 1));
    h.connect(9);
    let fx = h.send(9, "CAP LS");
    assert!(lines(&fx, 9)[0].contains(" sasl "), "no values without 302: {:?}", lines(&fx, 9));
    h.send(1, "CAP REQ :sasl");
    h.send(1, "AUTHENTICATE PLAIN");
    let fx = h.send(1, &format!("AUTHENTICATE {}", b64(b"\0jilles\0sesame")));
    h.answer(&fx);
    h.send(1, "NICK jil");
    h.send(1, "USER jil 0 * :Jilles");
    let fx = h.send(1, "CAP END");
    assert_eq!(cmds(&fx, 1)[0], "001");
    h.connect(2);
    h.send(2, "CAP REQ :account-tag extended-join");
    h.send(2, "NICK watcher");
    h.send(2, "USER w 0 * :W");
    h.send(2, "CAP END");
    h.send(2, "JOIN #c");
    let fx = h.send(1, "JOIN #c");
    assert_eq!(lines(&fx, 2), ["@account=jilles :jil!jil@10.0.0.1 JOIN #c jilles :Jilles"]);
    let fx = h.send(1, "PRIVMSG #c :hi");
    assert_eq!(lines(&fx, 2), ["@account=jilles :jil!jil@10.0.0.1 PRIVMSG #c :hi"]);
    let fx = h.send(2, "WHOIS jil");
    assert!(
        lines(&fx, 2).contains(&":irc.test 330 watcher jil jilles :is logged in as".to_owned()),
        "{:?}",
        lines(&fx, 2)
    );
    let fx = h.send(2, "PRIVMSG #c :no account here");
    assert!(lines(&fx, 1)[0].starts_with(":watcher!"), "{:?}", lines(&fx, 1));
}
