//! IRCv3 message tags (<https://ircv3.net/specs/extensions/message-tags>): the tag section of a
//! line, `@key=value;key2;+client/key=value `, read key by key with values unescaped, and
//! written back with values escaped.
//!
//! **Limits.** A client's tag section, `@` and the space after it included, is at most
//! [`MAX_CLIENT_TAGS`] bytes; what a server adds may bring it to [`MAX_TAGS`]. Both are the
//! spec's. The body after the tags keeps RFC 1459's 512 bytes.
//!
//! **Escaping.** In a value `;` is `\:`, space `\s`, `\` is `\\`, CR `\r`, LF `\n`; a backslash
//! before any other byte is dropped, and a lone backslash at the end of a value is dropped too.
//! Unescaping can only shorten a value, and escaping what unescaping made gives a value that
//! unescapes to the same bytes, so a relay never changes what its recipients read.

/// The most bytes of a client's tag section, its `@` and the space after it included.
pub const MAX_CLIENT_TAGS: usize = 4096;
/// The most bytes of a tag section a server sends, its `@` and the space after it included.
pub const MAX_TAGS: usize = 8191;

/// One tag: its key (with a leading `+` for client-only tags, and any vendor prefix) and its
/// value still escaped (empty for a tag without `=` and for `key=`, which mean the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub key: &'a [u8],
    pub raw_value: &'a [u8],
}

impl<'a> Tag<'a> {
    /// A client-only tag (`+key`): relayed between clients, never interpreted by the server.
    pub fn is_client_only(&self) -> bool {
        self.key.first() == Some(&b'+')
    }

    /// The value, unescaped.
    pub fn value(&self) -> Vec<u8> {
        unescape(self.raw_value)
    }
}

/// The tags of a tag section (the part after `@`, as [`Message::tags`](crate::Message) gives
/// it), in order. Empty pieces (`a;;b`) and pieces with an empty key (`=x`) are skipped; a key
/// is not otherwise checked, so callers only look up keys they know.
pub fn tags(section: &[u8]) -> impl Iterator<Item = Tag<'_>> {
    section.split(|&b| b == b';').filter_map(|piece| {
        let (key, raw_value) = match memchr::memchr(b'=', piece) {
            Some(eq) => (&piece[..eq], &piece[eq + 1..]),
            None => (piece, &piece[piece.len()..]),
        };
        (!key.is_empty()).then_some(Tag { key, raw_value })
    })
}

/// The value of tag `key` in `section`, unescaped; `None` if absent. The last one wins when a
/// key repeats, as the spec says.
pub fn tag_value(section: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    tags(section).filter(|t| t.key == key).last().map(|t| t.value())
}

/// A valid tag key: an optional `+`, an optional vendor (a host name) and `/`, then letters,
/// digits and `-`. Keys outside this grammar are not relayed.
pub fn valid_key(key: &[u8]) -> bool {
    let key = key.strip_prefix(b"+").unwrap_or(key);
    let name = match memchr::memrchr(b'/', key) {
        Some(slash) => {
            let vendor = &key[..slash];
            if vendor.is_empty() || !vendor.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                return false;
            }
            &key[slash + 1..]
        }
        None => key,
    };
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `raw` with its escapes undone (see the module docs).
pub fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b':') => out.push(b';'),
            Some(b's') => out.push(b' '),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Appends `value` escaped to `out`. NUL cannot be escaped and is dropped.
pub fn escape_into(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b';' => out.extend_from_slice(b"\\:"),
            b' ' => out.extend_from_slice(b"\\s"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0 => {}
            _ => out.push(b),
        }
    }
}

/// Appends `key=value` (value escaped; `key` alone for an empty value) to a tag section being
/// built in `out`, with a `;` before it unless `out` is empty.
pub fn push_tag(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    if !out.is_empty() {
        out.push(b';');
    }
    out.extend_from_slice(key);
    if !value.is_empty() {
        out.push(b'=');
        escape_into(value, out);
    }
}

/// Splits a line (without CR LF) into its tag section, `@` and the following spaces included,
/// and the rest; the first part is empty when the line has no tags.
pub fn split_tags(line: &[u8]) -> (&[u8], &[u8]) {
    if line.first() != Some(&b'@') {
        return (&line[..0], line);
    }
    let end = memchr::memchr(b' ', line).unwrap_or(line.len());
    let body = end + line[end..].iter().take_while(|&&b| b == b' ').count();
    line.split_at(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(section: &str) -> Vec<(String, String)> {
        tags(section.as_bytes())
            .map(|t| (String::from_utf8_lossy(t.key).into_owned(), String::from_utf8_lossy(&t.value()).into_owned()))
            .collect()
    }

    #[test]
    fn reads_keys_and_unescaped_values() {
        assert_eq!(
            pairs(r"a=b;+c;d=;;=x;+example.com/e=f\:g\sh\\i\rj\nk\zl\"),
            [
                ("a".into(), "b".into()),
                ("+c".into(), "".into()),
                ("d".into(), "".into()),
                ("+example.com/e".into(), "f;g h\\i\rj\nkzl".into()),
            ]
        );
        assert_eq!(tag_value(b"label=1;label=2", b"label"), Some(b"2".to_vec()));
        assert_eq!(tag_value(b"x=1", b"label"), None);
        assert!(tags(b"").next().is_none());
    }

    #[test]
    fn escaping_round_trips() {
        for value in [&b"plain"[..], b"a;b c\\d\r\ne", b"\\", b"", b"\\:\\s"] {
            let mut out = Vec::new();
            escape_into(value, &mut out);
            assert!(!out.iter().any(|&b| matches!(b, b';' | b' ' | b'\r' | b'\n' | 0)));
            assert_eq!(unescape(&out), value);
        }
        let mut out = Vec::new();
        escape_into(b"a\0b", &mut out);
        assert_eq!(out, b"ab");
    }

    #[test]
    fn builds_a_section() {
        let mut s = Vec::new();
        push_tag(&mut s, b"time", b"2026-01-01T00:00:00.000Z");
        push_tag(&mut s, b"+draft/react", b"a b");
        push_tag(&mut s, b"bot", b"");
        assert_eq!(s, b"time=2026-01-01T00:00:00.000Z;+draft/react=a\\sb;bot");
    }

    #[test]
    fn key_grammar() {
        for ok in [&b"label"[..], b"+draft/reply", b"+example.com/x-y", b"msgid", b"a1"] {
            assert!(valid_key(ok), "{ok:?}");
        }
        for bad in [&b""[..], b"+", b"/x", b"a b", b"+a/", b"a=b", b"a\\b", b"\xff"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn splits_the_tag_section() {
        assert_eq!(split_tags(b"@a=b  PRIVMSG x"), (&b"@a=b  "[..], &b"PRIVMSG x"[..]));
        assert_eq!(split_tags(b"PRIVMSG x"), (&b""[..], &b"PRIVMSG x"[..]));
        assert_eq!(split_tags(b"@a=b"), (&b"@a=b"[..], &b""[..]));
    }
}
