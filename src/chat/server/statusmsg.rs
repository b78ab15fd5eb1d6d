//! STATUSMSG (ISUPPORT STATUSMSG=@+): `PRIVMSG @#chan` reaches the channel's operators only,
//! `PRIVMSG +#chan` its operators and voiced members. The sender passes the same checks as for
//! the whole channel (lists.rs `may_speak`); the recipients see the target as `@#chan`/`+#chan`.

use std::borrow::Cow;
use std::sync::Arc;

use super::caps::Caps;
use super::{ChatServer, ClientId, Effects};

/// Splits a STATUSMSG prefix off a PRIVMSG/NOTICE target: `@#chan` -> (Some(b'@'), `#chan`);
/// anything else comes back whole with None.
pub(super) fn split_status(target: &[u8]) -> (Option<u8>, &[u8]) {
    match target {
        [s @ (b'@' | b'+'), rest @ ..] if rest.starts_with(b"#") => (Some(*s), rest),
        _ => (None, target),
    }
}

/// The target as recipients see it: the channel's name behind the status prefix, if any.
pub(super) fn status_target(status: Option<u8>, name: &[u8]) -> Cow<'_, [u8]> {
    match status {
        Some(s) => Cow::Owned([&[s][..], name].concat()),
        None => Cow::Borrowed(name),
    }
}

impl ChatServer {
    /// [`broadcast_to`](ChatServer::broadcast_to) the members of `key` with at least `status`
    /// (`@`: operators; `+`: operators and voiced; None: everyone) that enabled `need`, but
    /// `except`.
    pub(super) fn broadcast_status(
        &self,
        fx: &mut Effects,
        key: &[u8],
        line: &Arc<[u8]>,
        except: Option<ClientId>,
        status: Option<u8>,
        need: Caps,
    ) {
        let Some(status) = status else {
            self.broadcast_to(fx, key, line, except, need);
            return;
        };
        if let Some(ch) = self.channels.get(key) {
            for (&m, member) in &ch.members {
                let reaches = member.op || (status == b'+' && member.voice);
                if reaches && Some(m) != except && (need == Caps::default() || self.caps_of(m).has(need)) {
                    fx.send(m, line.clone());
                }
            }
        }
    }
}
