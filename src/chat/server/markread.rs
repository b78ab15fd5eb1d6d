//! Read markers (IRCv3 draft/read-marker, <https://ircv3.net/specs/extensions/read-marker>):
//! the time up to which a client has read each of its targets, as its other software set it,
//! sent back on MARKREAD and on joining a channel.
//!
//! Markers live with the connection (a server without persistent sessions has nowhere else to
//! keep them), at most [`MAX_MARKERS`] per client: setting one more forgets the oldest set.

use echoport_irc::{LineBuilder, Message, fold};

use super::caps::Caps;
use super::clock::{parse_server_time, server_time};
use super::state::Key;
use super::{ChatServer, ClientId, Effects};

/// Targets one client keeps a marker for.
pub const MAX_MARKERS: usize = 64;

impl ChatServer {
    pub(super) fn cmd_markread(&mut self, id: ClientId, msg: &Message, fx: &mut Effects) {
        let Some(target) = msg.nonempty(0) else {
            self.fail(fx, id, b"MARKREAD", b"NEED_MORE_PARAMS", &[], "Missing parameters");
            return;
        };
        let key = fold(target);
        if let Some(arg) = msg.param(1) {
            // Only a time may be set: `*` is what the server says when it has none.
            let Some(ms) = arg.strip_prefix(b"timestamp=").and_then(parse_server_time) else {
                self.fail(fx, id, b"MARKREAD", b"INVALID_PARAMS", &[target], "Invalid timestamp");
                return;
            };
            let c = self.clients.get_mut(&id).unwrap();
            match c.read_markers.iter_mut().find(|(k, _)| *k == key) {
                // "The last read timestamp of a target MUST only ever increase."
                Some((_, stored)) => *stored = (*stored).max(ms),
                None => {
                    if c.read_markers.len() == MAX_MARKERS {
                        c.read_markers.remove(0);
                    }
                    c.read_markers.push((key.clone(), ms));
                }
            }
        }
        self.send_markread(id, target, &key, fx);
    }

    /// `MARKREAD <target> timestamp=<time>` (or `*`) to `id`.
    pub(super) fn send_markread(&self, id: ClientId, target: &[u8], key: &Key, fx: &mut Effects) {
        let Some(c) = self.clients.get(&id) else { return };
        let stamp = match c.read_markers.iter().find(|(k, _)| k == key) {
            Some((_, ms)) => format!("timestamp={}", server_time(*ms)),
            None => "*".to_owned(),
        };
        let line = LineBuilder::new(self.server(), b"MARKREAD").middle(target).middle(stamp.as_bytes()).finish();
        fx.send(id, line);
    }

    /// On joining a channel, a client with draft/read-marker learns its marker there.
    pub(super) fn markread_on_join(&self, id: ClientId, name: &[u8], key: &Key, fx: &mut Effects) {
        if self.caps_of(id).has(Caps::READ_MARKER) {
            self.send_markread(id, name, key, fx);
        }
    }
}
