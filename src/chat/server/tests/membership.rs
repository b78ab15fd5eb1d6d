//! Channel membership at scale and its order; invitations that outlive nothing.

use super::*;
use crate::chat::server::state::Member;

/// NAMES, `WHO #chan` and fan-out follow the members map: joining order until someone leaves,
/// then the member listed last takes the leaver's place.
#[test]
fn member_order_after_a_departure() {
    let mut h = H::new();
    for (id, nick) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        h.register(id, nick);
        h.send(id, "JOIN #chan");
    }
    let fx = h.send(1, "NAMES #chan");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 353 a = #chan :@a b c d");
    h.send(2, "PART #chan");
    let fx = h.send(1, "NAMES #chan");
    assert_eq!(lines(&fx, 1)[0], ":irc.test 353 a = #chan :@a d c");
    let fx = h.send(1, "WHO #chan");
    let got = lines(&fx, 1);
    let who: Vec<&str> =
        got.iter().filter(|l| l.contains(" 352 ")).map(|l| l.split(' ').nth(7).unwrap_or("")).collect();
    assert_eq!(who, ["a", "d", "c"]);
    assert_eq!(cmds(&fx, 1), ["352", "352", "352", "315"]);
    let fx = h.send(1, "PRIVMSG #chan :hi");
    assert_eq!(recipients(&fx), [4, 3]);
}

/// An invitation lives as long as both its channel and its invitee, whichever goes first.
#[test]
fn invitations_go_with_their_channel() {
    let mut h = H::new();
    h.register(1, "op");
    h.register(2, "guest");
    // Invite, then the channel empties: many times over, nothing accumulates.
    for _ in 0..1000 {
        h.send(1, "JOIN #x");
        h.send(1, "MODE #x +i");
        let fx = h.send(1, "INVITE guest #x");
        assert_eq!(cmds(&fx, 1), ["341"]);
        h.send(1, "PART #x");
        assert_eq!(h.s.channels(), 0);
        assert!(h.s.invites.is_empty());
    }
    // A channel re-created under the same name does not inherit the invitation.
    h.send(1, "JOIN #x");
    h.send(1, "MODE #x +i");
    let fx = h.send(2, "JOIN #x");
    assert_eq!(cmds(&fx, 2), ["473"]);
    // Inviting twice records one invitation; joining uses it up on both sides.
    h.send(1, "INVITE guest #x");
    h.send(1, "INVITE guest #x");
    assert_eq!(h.s.invites[&2].len(), 1);
    let fx = h.send(2, "JOIN #x");
    assert_eq!(cmds(&fx, 2), ["JOIN", "353", "366"]);
    assert!(h.s.invites.is_empty());
    assert!(h.s.channels[&*fold(b"#x")].invited.is_empty());
}

/// A 20,000-member channel empties from the front (a list's worst case: every departure would
/// shift everyone after it). Counting, not timing: each departure moves at most one other
/// member in the fan-out order, so its cost does not grow with the channel; the last thousand
/// leave by PART and QUIT and each departure reaches exactly the members left.
#[test]
fn a_20000_member_channel_empties_moving_at_most_one_member_per_departure() {
    const N: usize = 20_000;
    const LAST: usize = 1_000;
    let mut h = H::new();
    for id in 1..=N {
        h.connect(id);
        let mut fx = Effects::default();
        h.s.handle_line(id, format!("NICK u{id}").as_bytes(), false, h.now, &mut fx);
        h.s.handle_line(id, format!("USER u{id} 0 * :R").as_bytes(), false, h.now, &mut fx);
        assert!(fx.sends.iter().any(|(_, l)| l.windows(5).any(|w| w == b" 001 ")));
    }
    h.s.handle_line(1, b"JOIN #big", false, h.now, &mut Effects::default());
    let big = fold(b"#big");
    let side = fold(b"#side");
    // What JOIN does once its checks pass, without the JOIN and NAMES lines to every member
    // that would make 20,000 joins quadratic in output.
    for id in 2..=N {
        h.s.add_member(id, big.clone(), Member::default());
    }
    // The last thousand also share a second channel: QUIT must reach each peer once.
    h.s.handle_line(N - LAST + 1, b"JOIN #side", false, h.now, &mut Effects::default());
    for id in N - LAST + 2..=N {
        h.s.add_member(id, side.clone(), Member::default());
    }
    assert_eq!(h.s.channels[&big].members.len(), N);
    let order = |h: &H| -> Vec<ClientId> { h.s.channels[&big].members.keys().copied().collect() };
    let mut moved_most = 0;
    for id in 1..=N - LAST {
        let before = (id % 1000 == 1).then(|| order(&h));
        let slot = h.s.channels[&big].members.get_index_of(&id).expect("a member");
        let last = *h.s.channels[&big].members.last().expect("not empty").0;
        // The step PART, KICK and JOIN 0 take after telling the channel.
        h.s.leave_channel(id, &big);
        let ch = &h.s.channels[&big];
        assert_eq!(ch.members.len(), N - id);
        assert!(!ch.has(id));
        assert!(h.s.clients[&id].channels.is_empty());
        if last == id {
            assert_eq!(slot, ch.members.len());
        } else {
            assert_eq!(ch.members.get_index(slot).map(|(&m, _)| m), Some(last), "the last member fills the slot");
        }
        if let Some(before) = before {
            let after = order(&h);
            let moved = after.iter().zip(&before).filter(|(a, b)| a != b).count();
            moved_most = moved_most.max(moved);
        }
    }
    assert_eq!(moved_most, 1, "a departure relocates at most the member that fills its slot");
    for (k, id) in (N - LAST + 1..=N).enumerate() {
        let left = LAST - k;
        let mut fx = Effects::default();
        if id % 2 == 0 {
            h.s.handle_line(id, b"PART #big", false, h.now, &mut fx);
            assert_eq!(fx.sends.len(), left, "the PART reaches every member, the leaver too");
        } else {
            h.s.disconnect(id, "gone", &mut fx);
            let mut to = recipients(&fx);
            assert!(!to.contains(&id));
            to.sort_unstable();
            to.dedup();
            assert_eq!(to.len(), fx.sends.len(), "each peer once, though two channels are shared");
            // Everyone still in #big, or in #side after PARTing #big.
            let peers = (id + 1..=N).count() + (N - LAST + 1..id).filter(|p| p % 2 == 0).count();
            assert_eq!(to.len(), peers);
        }
    }
    assert!(!h.s.channels.contains_key(&big));
    assert_eq!(h.s.channels(), 1, "#side keeps those who only PARTed #big");
    assert_eq!(h.s.clients(), N - LAST / 2);
}
