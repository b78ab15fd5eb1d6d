//! LIST's search terms (ISUPPORT `ELIST=CMNTU`), as Modern describes them: `LIST` takes a
//! comma-separated list of channel names, masks (`M`), `!`masks (`N`), user counts `>n`/`<n`
//! (`U`), and creation and topic ages in minutes `C>n`/`C<n`, `T>n`/`T<n` (`C`, `T`; `>` is
//! "more than n minutes ago", `<` "less than", the reading of InspIRCd, Solanum and Modern).
//! Names and masks select channels (any of them); every other term must hold as well.

use echoport_irc::{eq_fold, wildcard_match};

use super::state::Channel;

#[derive(Default)]
pub(super) struct ListFilter<'a> {
    /// Channel names without wildcards: looked up, not scanned for.
    pub(super) names: Vec<&'a [u8]>,
    masks: Vec<&'a [u8]>,
    not_masks: Vec<&'a [u8]>,
    /// (more than, fewer than) users.
    users: (Option<u64>, Option<u64>),
    /// Creation age in seconds: (more than, less than).
    created: (Option<u64>, Option<u64>),
    /// Topic age in seconds: (more than, less than); channels without a topic never match.
    topic: (Option<u64>, Option<u64>),
}

impl<'a> ListFilter<'a> {
    /// Parses LIST's first parameter. Terms that are none of the forms above (`>x`) are ignored.
    pub(super) fn parse(arg: &'a [u8]) -> ListFilter<'a> {
        let mut f = ListFilter::default();
        let number = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<u64>().ok();
        let minutes = |s: &[u8]| number(s).map(|n| n.saturating_mul(60));
        for term in arg.split(|&b| b == b',').filter(|t| !t.is_empty()) {
            let upper = term[0].to_ascii_uppercase();
            match (upper, term.get(1).copied()) {
                (b'>', _) => f.users.0 = number(&term[1..]).or(f.users.0),
                (b'<', _) => f.users.1 = number(&term[1..]).or(f.users.1),
                (b'C', Some(b'>')) => f.created.0 = minutes(&term[2..]).or(f.created.0),
                (b'C', Some(b'<')) => f.created.1 = minutes(&term[2..]).or(f.created.1),
                (b'T', Some(b'>')) => f.topic.0 = minutes(&term[2..]).or(f.topic.0),
                (b'T', Some(b'<')) => f.topic.1 = minutes(&term[2..]).or(f.topic.1),
                (b'!', _) => f.not_masks.push(&term[1..]),
                _ if term.contains(&b'*') || term.contains(&b'?') => f.masks.push(term),
                _ => f.names.push(term),
            }
        }
        f
    }

    /// True if only names were given: the channels can be looked up instead of scanned for.
    pub(super) fn by_name_only(&self) -> bool {
        !self.names.is_empty() && self.masks.is_empty()
    }

    /// Whether `ch` passes, `now` being the current Unix time.
    pub(super) fn matches(&self, ch: &Channel, now: u64) -> bool {
        let selected = (self.names.is_empty() && self.masks.is_empty())
            || self.names.iter().any(|n| eq_fold(n, &ch.name))
            || self.masks.iter().any(|m| wildcard_match(m, &ch.name));
        let within =
            |(more, less): (Option<u64>, Option<u64>), v: u64| more.is_none_or(|m| v > m) && less.is_none_or(|l| v < l);
        let any_topic_term = self.topic.0.is_some() || self.topic.1.is_some();
        let topic_ok = match &ch.topic {
            Some(t) => within(self.topic, now.saturating_sub(t.time)),
            None => !any_topic_term,
        };
        selected
            && !self.not_masks.iter().any(|m| wildcard_match(m, &ch.name))
            && within(self.users, ch.members.len() as u64)
            && within(self.created, now.saturating_sub(ch.created))
            && topic_ok
    }
}
