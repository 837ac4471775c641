//! TCP flag lists: `fin syn rst psh ack urg`, comma separated,
//! case-insensitive, each optionally prefixed `!` (must be clear).
//! Used by the `TCPFlags` directive of `knockd.conf` and by `knock --flags`.

use std::fmt;
use std::str::FromStr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// The flag names in header bit order.
pub const NAMES: [(&str, u8); 6] = [
    ("fin", FIN),
    ("syn", SYN),
    ("rst", RST),
    ("psh", PSH),
    ("ack", ACK),
    ("urg", URG),
];

fn flag_bit(name: &str) -> Option<u8> {
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, b)| b)
}

/// Names of the bits of `bits`, comma separated, in header order.
pub fn names_of(bits: u8) -> String {
    NAMES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// Flags that must be set and flags that must be clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlagSpec {
    pub set: u8,
    pub clear: u8,
}

impl FlagSpec {
    /// Does a TCP segment with header flags `flags` satisfy this list?
    pub fn matches(&self, flags: u8) -> bool {
        flags & self.set == self.set && flags & self.clear == 0
    }

    /// True when the list has no `!` items: it names just the flags to set,
    /// which is the form `knock --flags` takes.
    pub fn is_plain(&self) -> bool {
        self.clear == 0
    }
}

impl fmt::Display for FlagSpec {
    /// `syn,!ack`: parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = NAMES.iter().filter_map(|&(name, bit)| {
            if self.set & bit != 0 {
                Some(name.to_string())
            } else if self.clear & bit != 0 {
                Some(format!("!{name}"))
            } else {
                None
            }
        });
        crate::list::write(f, items)
    }
}

impl FromStr for FlagSpec {
    type Err = FlagError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = FlagSpec::default();
        for item in crate::list::items(s).ok_or(FlagError::Empty)? {
            let item = item.trim();
            let (negated, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, item),
            };
            let bit = flag_bit(name).ok_or_else(|| FlagError::Unknown(item.to_string()))?;
            let name = name.to_ascii_lowercase();
            let (this, other) = if negated {
                (&mut spec.clear, spec.set)
            } else {
                (&mut spec.set, spec.clear)
            };
            if other & bit != 0 {
                return Err(FlagError::Contradiction(name));
            }
            if *this & bit != 0 {
                return Err(FlagError::Repeated(name));
            }
            *this |= bit;
        }
        Ok(spec)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("the TCP flag list is empty")]
    Empty,
    #[error("unknown TCP flag \"{0}\" (known: fin, syn, rst, psh, ack, urg, each optionally prefixed by !)")]
    Unknown(String),
    #[error("TCP flag \"{0}\" is both required and excluded")]
    Contradiction(String),
    #[error("TCP flag \"{0}\" is listed twice")]
    Repeated(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_lists() {
        let s: FlagSpec = "syn".parse().unwrap();
        assert_eq!(s, FlagSpec { set: SYN, clear: 0 });
        let s: FlagSpec = " FIN , !Ack ".parse().unwrap();
        assert_eq!(
            s,
            FlagSpec {
                set: FIN,
                clear: ACK
            }
        );
        let s: FlagSpec = "syn,ack,urg".parse().unwrap();
        assert_eq!(s.set, SYN | ACK | URG);
        assert!(s.is_plain());
        assert!(!"fin,!ack".parse::<FlagSpec>().unwrap().is_plain());
        // Printed in header bit order, lower case, no spaces.
        assert_eq!(s.to_string(), "syn,ack,urg");
        assert_eq!(
            " !Ack , FIN ".parse::<FlagSpec>().unwrap().to_string(),
            "fin,!ack"
        );
    }

    #[test]
    fn rejects_bad_lists() {
        let cases: &[(&str, FlagError)] = &[
            ("", FlagError::Empty),
            ("syn,!syn", FlagError::Contradiction("syn".into())),
            ("!ACK,ack", FlagError::Contradiction("ack".into())),
            ("syn,syn", FlagError::Repeated("syn".into())),
            ("sin", FlagError::Unknown("sin".into())),
            ("syn,", FlagError::Unknown("".into())),
            ("!", FlagError::Unknown("!".into())),
            ("ece", FlagError::Unknown("ece".into())),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<FlagSpec>().unwrap_err(),
                *want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn matching() {
        let s: FlagSpec = "fin,!ack".parse().unwrap();
        assert!(s.matches(FIN));
        assert!(s.matches(FIN | PSH));
        assert!(!s.matches(FIN | ACK));
        assert!(!s.matches(SYN));
        let syn: FlagSpec = "syn".parse().unwrap();
        assert!(syn.matches(SYN));
        assert!(syn.matches(SYN | ACK));
        assert!(!syn.matches(ACK));
        assert_eq!(names_of(SYN | ACK), "syn,ack");
    }

    proptest! {
        #[test]
        fn display_parses_back(set in 0u8..64, clear in 0u8..64) {
            let clear = clear & !set;
            prop_assume!(set | clear != 0);
            let spec = FlagSpec { set, clear };
            prop_assert_eq!(spec.to_string().parse::<FlagSpec>().unwrap(), spec);
        }
    }
}
