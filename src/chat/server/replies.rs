//! Building replies: numerics from the server, ERROR lines, and one line fanned out to a
//! channel.

use std::sync::Arc;

use echoport_irc::LineBuilder;

use super::caps::Caps;
use super::state::Client;
use super::{ChatServer, ClientId, Effects};

impl ChatServer {
    pub(super) fn server(&self) -> &[u8] {
        self.config.server_name.as_bytes()
    }

    /// Starts a numeric reply to `id`: `:server NNN <nick or *>`.
    pub(super) fn numeric(&self, id: ClientId, code: &str) -> LineBuilder {
        let nick = self.clients.get(&id).map(Client::nick_or_star).unwrap_or(b"*");
        LineBuilder::new(self.server(), code.as_bytes()).middle(nick)
    }

    /// Sends `:server NNN <nick> <middles...> :<trailing>` to `id`.
    pub(super) fn reply(&self, fx: &mut Effects, id: ClientId, code: &str, middles: &[&[u8]], text: &str) {
        self.reply_bytes(fx, id, code, middles, text.as_bytes());
    }

    pub(super) fn reply_bytes(&self, fx: &mut Effects, id: ClientId, code: &str, middles: &[&[u8]], text: &[u8]) {
        let mut b = self.numeric(id, code);
        for m in middles {
            b = b.middle(m);
        }
        fx.send(id, b.trailing(text));
    }

    pub(super) fn send_error(&self, fx: &mut Effects, id: ClientId, reason: &[u8]) {
        if let Some(c) = self.clients.get(&id) {
            let text = [b"Closing Link: ", c.host.as_bytes(), b" (", reason, b")"].concat();
            fx.send(id, LineBuilder::new(b"", b"ERROR").trailing(&text));
        }
    }

    /// Sends `line` to every member of channel `key` but `except`, in fan-out order.
    pub(super) fn broadcast(&self, fx: &mut Effects, key: &[u8], line: &Arc<[u8]>, except: Option<ClientId>) {
        self.broadcast_to(fx, key, line, except, Caps::default());
    }

    /// [`broadcast`](Self::broadcast) to the members that enabled one of `need` (all of them
    /// when `need` is empty).
    pub(super) fn broadcast_to(
        &self,
        fx: &mut Effects,
        key: &[u8],
        line: &Arc<[u8]>,
        except: Option<ClientId>,
        need: Caps,
    ) {
        let Some(ch) = self.channels.get(key) else { return };
        fx.sends.reserve(ch.members.len());
        for &m in ch.members.keys() {
            if Some(m) != except && (need == Caps::default() || self.caps_of(m).has(need)) {
                fx.send(m, line.clone());
            }
        }
    }
}
