//! The `port[:proto],port[:proto],...` knock sequence format, shared by the
//! `Sequence` directive of `knockd.conf`, one-time sequence files and the
//! command line of `knock`.

use std::fmt;
use std::str::FromStr;

/// Transport protocol of one knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = SequenceError;

    /// `tcp` or `udp`, case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("tcp") {
            Ok(Proto::Tcp)
        } else if t.eq_ignore_ascii_case("udp") {
            Ok(Proto::Udp)
        } else {
            Err(SequenceError::BadProto(t.to_string()))
        }
    }
}

/// One hit of a sequence: a destination port and a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Knock {
    pub port: u16,
    pub proto: Proto,
}

impl Knock {
    pub fn new(port: u16, proto: Proto) -> Self {
        Knock { port, proto }
    }

    pub fn tcp(port: u16) -> Self {
        Knock::new(port, Proto::Tcp)
    }

    pub fn udp(port: u16) -> Self {
        Knock::new(port, Proto::Udp)
    }
}

impl fmt::Display for Knock {
    /// Always explicit: `7000:tcp`, `8000:udp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.port, self.proto)
    }
}

/// Parse a port number: a plain decimal integer in 1..=65535 and nothing else
/// (no sign, no suffix, no hex).
pub fn parse_port(s: &str) -> Result<u16, SequenceError> {
    let t = s.trim();
    let bad = || SequenceError::BadPort(t.to_string());
    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match t.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(bad()),
    }
}

impl FromStr for Knock {
    type Err = SequenceError;

    /// `PORT` (TCP) or `PORT:PROTO`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(SequenceError::EmptyItem);
        }
        match t.split_once(':') {
            None => Ok(Knock::tcp(parse_port(t)?)),
            Some((port, proto)) => {
                let port = parse_port(port)?;
                let proto = proto.parse::<Proto>()?;
                Ok(Knock::new(port, proto))
            }
        }
    }
}

/// A non-empty, ordered list of knocks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sequence(Vec<Knock>);

impl Sequence {
    /// Build a sequence; `None` when `knocks` is empty.
    pub fn new(knocks: Vec<Knock>) -> Option<Self> {
        if knocks.is_empty() {
            None
        } else {
            Some(Sequence(knocks))
        }
    }

    pub fn knocks(&self) -> &[Knock] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a sequence has at least one knock.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Knock {
        self.0[0]
    }

    pub fn contains(&self, knock: Knock) -> bool {
        self.0.contains(&knock)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Knock> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Sequence {
    type Item = &'a Knock;
    type IntoIter = std::slice::Iter<'a, Knock>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Sequence {
    /// `7000:tcp,8000:udp`: the canonical form, which parses back to itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::list::write(f, &self.0)
    }
}

impl FromStr for Sequence {
    type Err = SequenceError;

    /// Comma-separated knocks, whitespace around items allowed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let knocks = crate::list::items(s)
            .ok_or(SequenceError::Empty)?
            .map(str::parse::<Knock>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sequence(knocks))
    }
}

/// Why a sequence did not parse. The messages quote the offending text so
/// that callers can prefix them with a location (`knockd.conf:7: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("the sequence is empty")]
    Empty,
    #[error("empty item in the sequence (two commas in a row, or a trailing comma)")]
    EmptyItem,
    #[error("port \"{0}\" is not a number between 1 and 65535")]
    BadPort(String),
    #[error("protocol \"{0}\" is neither tcp nor udp")]
    BadProto(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_classic_forms() {
        use Knock as K;
        // Input, its knocks, and the canonical form it prints as.
        let cases: &[(&str, &[Knock], &str)] = &[
            (
                "7000,8000,9000",
                &[K::tcp(7000), K::tcp(8000), K::tcp(9000)],
                "7000:tcp,8000:tcp,9000:tcp",
            ),
            (
                " 2222:udp , 3333:TCP,4444:Udp ",
                &[K::udp(2222), K::tcp(3333), K::udp(4444)],
                "2222:udp,3333:tcp,4444:udp",
            ),
            ("1,65535", &[K::tcp(1), K::tcp(65535)], "1:tcp,65535:tcp"),
        ];
        for (input, knocks, canonical) in cases {
            let s: Sequence = input.parse().unwrap();
            assert_eq!(s.knocks(), *knocks, "input {input:?}");
            assert_eq!(s.to_string(), *canonical, "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_input_quoting_it() {
        // A one-knock sequence whose port is bad is quoted whole.
        let bad_ports = ["80x", "-1", "abc", "70000", "0", "+80", "0x50", "000000080"]
            .map(|p| (p, SequenceError::BadPort(p.into())));
        let cases: &[(&str, SequenceError)] = &[
            ("", SequenceError::Empty),
            ("   ", SequenceError::Empty),
            ("7000,,8000", SequenceError::EmptyItem),
            ("7000,", SequenceError::EmptyItem),
            ("7000:icmp", SequenceError::BadProto("icmp".into())),
            ("7000:", SequenceError::BadProto("".into())),
            (":tcp", SequenceError::BadPort("".into())),
            ("7000:tcp:fin", SequenceError::BadProto("tcp:fin".into())),
        ];
        for (input, want) in bad_ports.iter().chain(cases) {
            assert_eq!(
                input.parse::<Sequence>().unwrap_err(),
                *want,
                "input {input:?}"
            );
        }
        assert_eq!(
            "80x".parse::<Sequence>().unwrap_err().to_string(),
            "port \"80x\" is not a number between 1 and 65535"
        );
    }

    fn arb_knock() -> impl Strategy<Value = Knock> {
        (1u16..=65535, any::<bool>())
            .prop_map(|(p, udp)| Knock::new(p, if udp { Proto::Udp } else { Proto::Tcp }))
    }

    proptest! {
        #[test]
        fn display_parses_back(knocks in proptest::collection::vec(arb_knock(), 1..20)) {
            let seq = Sequence::new(knocks).unwrap();
            let text = seq.to_string();
            prop_assert_eq!(text.parse::<Sequence>().unwrap(), seq);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = s.parse::<Sequence>();
        }
    }
}
