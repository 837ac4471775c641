//! Named profiles: the TOML file `$XDG_CONFIG_HOME/knock/hosts.toml`
//! (default `~/.config/knock/hosts.toml`).
//!
//! Rules:
//! * Every top-level table is a profile; its name is the table name.
//! * The keys are exactly those of [`Profile`]; any other key is an error
//!   that lists the valid ones (serde `deny_unknown_fields`).
//! * Every error names the file and the line (from the span the `toml`
//!   parser reports). No error quotes a value of `sequence`: a fixed
//!   sequence is a secret, so a bad one is described by its item number.
//!   Syntax errors use the parser's message without its source excerpt
//!   for the same reason.
//! * `~/` at the start of a path means the home directory; other relative
//!   paths are relative to the directory of the profiles file.
//! * A value is checked here (one key at a time); rules that combine keys
//!   with command-line options live in [`crate::plan`].

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use knock_common::rotate::PortRange;

use crate::cli::{self, Family, PortArg, SourceAddress};

/// One profile as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub host: Option<Spanned<String>>,
    pub sequence: Option<Spanned<SequenceText>>,
    pub udp: Option<bool>,
    pub flags: Option<Spanned<String>>,
    pub delay: Option<u64>,
    pub family: Option<Spanned<u8>>,
    pub otp: Option<Spanned<String>>,
    pub secret: Option<Spanned<String>>,
    pub door: Option<Spanned<String>>,
    pub length: Option<Spanned<u8>>,
    pub period: Option<Spanned<u64>>,
    pub ports: Option<Spanned<String>>,
    pub source_address: Option<Spanned<String>>,
    pub verify: Option<Spanned<u16>>,
    pub retries: Option<Spanned<u32>>,
}

/// The text of `sequence`. A value of any other type is refused without
/// quoting it (serde's own message would show the number).
#[derive(Clone, PartialEq, Eq)]
pub struct SequenceText(pub String);

impl fmt::Debug for SequenceText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SequenceText(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SequenceText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(SequenceText(s)),
            other => Err(D::Error::custom(format!(
                "sequence must be a string such as \"7000,8000:udp,9000\", not {}",
                other.type_str()
            ))),
        }
    }
}

/// The kind of knock a profile or command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSpec {
    /// A fixed sequence.
    Sequence(Vec<PortArg>),
    /// A one-time sequence file.
    Otp(PathBuf),
    /// A rotating door's key file.
    Secret(PathBuf),
}

impl KindSpec {
    /// For `--list`: what kind, never the secret itself.
    pub fn describe(&self) -> String {
        match self {
            KindSpec::Sequence(_) => "fixed sequence".into(),
            KindSpec::Otp(p) => format!("one-time {}", p.display()),
            KindSpec::Secret(p) => format!("rotating {}", p.display()),
        }
    }
}

/// Everything a profile (or the command line) can say, each value checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub host: Option<String>,
    pub kind: Option<KindSpec>,
    pub udp: bool,
    pub flags: Option<u8>,
    pub delay: Option<u64>,
    pub family: Option<Family>,
    pub door: Option<String>,
    pub length: Option<u8>,
    pub period: Option<u64>,
    pub ports: Option<PortRange>,
    pub source_address: Option<SourceAddress>,
    pub verify: Option<u16>,
    pub retries: Option<u32>,
}

/// A value of one key that is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("no host; add host = \"NAME-OR-ADDRESS\"")]
    NoHost,
    #[error("sequence: item {item} is not PORT[:tcp|udp[:FLAGS]] ({what})")]
    BadSequence { item: usize, what: &'static str },
    #[error("sequence is empty")]
    EmptySequence,
    #[error("flags: {0}")]
    BadFlags(cli::ArgError),
    #[error("family = {0}: must be 4 or 6")]
    BadFamily(u8),
    #[error("ports: {0}")]
    BadRange(knock_common::rotate::RangeError),
    #[error("source_address: {0}")]
    BadSource(cli::ArgError),
    #[error("length = {0}: must be 1 to 16")]
    BadLength(u8),
    #[error("period = 0: must be at least 1 second")]
    ZeroPeriod,
    #[error("verify = 0: must be a TCP port 1-65535")]
    ZeroVerify,
    #[error("retries = {0}: must be 0 to 10")]
    TooManyRetries(u32),
    #[error("{0} is empty")]
    EmptyPath(&'static str),
    #[error("door is empty")]
    EmptyDoor,
    /// The keys of the kinds that are set, in the file's order.
    #[error("{} are all set; a profile has one kind of knock (sequence, otp or secret)", .0.join(" and "))]
    TwoKinds(Vec<&'static str>),
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}: cannot read the profiles: {source}{hint}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
        /// Extra advice (for a single argument that was meant as a host).
        hint: String,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: no profile \"{name}\"; {}{hint}", path.display(), known_list(known))]
    Unknown {
        path: PathBuf,
        name: String,
        known: Vec<String>,
        hint: String,
    },
    #[error("{}:{line}: profile \"{profile}\": {problem}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        profile: String,
        problem: Problem,
    },
    #[error(
        "no profiles file: neither XDG_CONFIG_HOME nor HOME is set and the user has no \
         home directory; name one with --profiles FILE"
    )]
    NoHome,
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "the file has no profiles".to_string()
    } else {
        format!("the profiles are: {}", known.join(", "))
    }
}

/// Advice added when a single argument was not found as a profile.
pub const HOST_HINT: &str =
    " (a single argument names a profile; to knock a host directly, give PORT arguments: \
     knock HOST PORT...)";

/// The default profiles file: `$XDG_CONFIG_HOME/knock/hosts.toml` when
/// that is an absolute path, else `HOME/.config/knock/hosts.toml`.
pub fn default_path(xdg_config_home: Option<&str>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(x) = xdg_config_home.filter(|x| x.starts_with('/')) {
        return Some(Path::new(x).join("knock/hosts.toml"));
    }
    home.map(|h| h.join(".config/knock/hosts.toml"))
}

/// A parsed profiles file.
#[derive(Debug)]
pub struct Profiles {
    pub path: PathBuf,
    text: String,
    profiles: BTreeMap<String, Spanned<Profile>>,
    home: Option<PathBuf>,
    /// The file's permission bits, when known.
    mode: Option<u32>,
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Profiles {
    /// Read and parse `path`. `home` expands `~/` in paths.
    pub fn load(path: &Path, home: Option<&Path>) -> Result<Profiles, ProfileError> {
        let bytes = knock_common::otp::read_regular(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
            hint: String::new(),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            ProfileError::Syntax {
                path: path.to_path_buf(),
                line: line_of(&text, offset),
                message: "not UTF-8 text".into(),
            }
        })?;
        let mut p = Profiles::parse(path, text, home)?;
        p.mode = std::fs::metadata(path)
            .ok()
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
        Ok(p)
    }

    /// A warning when the file holds a fixed sequence (a secret) and group
    /// or others may read it. Not an error: the file is the user's own.
    pub fn exposure_warning(&self) -> Option<String> {
        let mode = self.mode?;
        let has_sequence = self
            .profiles
            .values()
            .any(|p| p.get_ref().sequence.is_some());
        (has_sequence && mode & 0o077 != 0).then(|| {
            format!(
                "{}: mode {mode:04o} lets group or others read the fixed sequences in it; \
                 run chmod 600 {}",
                self.path.display(),
                self.path.display()
            )
        })
    }

    /// Parse the text of a profiles file read from `path`.
    pub fn parse(path: &Path, text: String, home: Option<&Path>) -> Result<Profiles, ProfileError> {
        let profiles: BTreeMap<String, Spanned<Profile>> =
            toml::from_str(&text).map_err(|e| ProfileError::Syntax {
                path: path.to_path_buf(),
                line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(1),
                // `message()` is the parser's text without the excerpt of
                // the file that `Display` adds (it could show a sequence).
                message: e.message().trim_end().replace('\n', "; "),
            })?;
        Ok(Profiles {
            path: path.to_path_buf(),
            text,
            profiles,
            home: home.map(Path::to_path_buf),
            mode: None,
        })
    }

    /// The profile names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// The checked settings of profile `name`; `hint` is added to the
    /// error when there is no such profile.
    pub fn settings(&self, name: &str, hint: &str) -> Result<Settings, ProfileError> {
        let p = self
            .profiles
            .get(name)
            .ok_or_else(|| ProfileError::Unknown {
                path: self.path.clone(),
                name: name.to_string(),
                known: self.names(),
                hint: hint.to_string(),
            })?;
        self.check(name, p)
    }

    /// Every profile with its settings (or the first error of each).
    pub fn all(&self) -> Vec<(String, Result<Settings, ProfileError>)> {
        self.profiles
            .iter()
            .map(|(name, p)| (name.clone(), self.check(name, p)))
            .collect()
    }

    fn line(&self, span: Range<usize>) -> usize {
        line_of(&self.text, span.start)
    }

    fn expand(&self, p: &str) -> PathBuf {
        if let (Some(rest), Some(home)) = (p.strip_prefix("~/"), self.home.as_ref()) {
            return home.join(rest);
        }
        let path = Path::new(p);
        if path.is_relative() {
            if let Some(dir) = self.path.parent() {
                return dir.join(path);
            }
        }
        path.to_path_buf()
    }

    fn check(&self, name: &str, p: &Spanned<Profile>) -> Result<Settings, ProfileError> {
        let invalid = |span: Range<usize>, problem: Problem| ProfileError::Invalid {
            path: self.path.clone(),
            line: self.line(span),
            profile: name.to_string(),
            problem,
        };
        let pr = p.get_ref();
        let mut s = Settings::default();
        match &pr.host {
            Some(h) if !h.get_ref().trim().is_empty() => s.host = Some(h.get_ref().trim().into()),
            Some(h) => return Err(invalid(h.span(), Problem::NoHost)),
            None => return Err(invalid(p.span(), Problem::NoHost)),
        }
        // The kinds: at most one (checked with the command line in plan).
        let mut kinds = Vec::new();
        if let Some(seq) = &pr.sequence {
            let ports = parse_sequence(&seq.get_ref().0).map_err(|e| invalid(seq.span(), e))?;
            kinds.push((seq.span(), KindSpec::Sequence(ports)));
        }
        for (key, v, otp) in [("otp", &pr.otp, true), ("secret", &pr.secret, false)] {
            if let Some(v) = v {
                let t = v.get_ref().trim();
                if t.is_empty() {
                    return Err(invalid(v.span(), Problem::EmptyPath(key)));
                }
                let path = self.expand(t);
                kinds.push((
                    v.span(),
                    if otp {
                        KindSpec::Otp(path)
                    } else {
                        KindSpec::Secret(path)
                    },
                ));
            }
        }
        if kinds.len() > 1 {
            let names = kinds
                .iter()
                .map(|(_, k)| match k {
                    KindSpec::Sequence(_) => "sequence",
                    KindSpec::Otp(_) => "otp",
                    KindSpec::Secret(_) => "secret",
                })
                .collect();
            return Err(invalid(kinds[1].0.clone(), Problem::TwoKinds(names)));
        }
        s.kind = kinds.pop().map(|(_, k)| k);
        s.udp = pr.udp.unwrap_or(false);
        if let Some(f) = &pr.flags {
            s.flags = Some(
                cli::parse_send_flags(f.get_ref())
                    .map_err(|e| invalid(f.span(), Problem::BadFlags(e)))?,
            );
        }
        s.delay = pr.delay;
        if let Some(f) = &pr.family {
            s.family = Some(match *f.get_ref() {
                4 => Family::V4,
                6 => Family::V6,
                n => return Err(invalid(f.span(), Problem::BadFamily(n))),
            });
        }
        if let Some(d) = &pr.door {
            if d.get_ref().is_empty() {
                return Err(invalid(d.span(), Problem::EmptyDoor));
            }
            s.door = Some(d.get_ref().clone());
        }
        if let Some(l) = &pr.length {
            let n = *l.get_ref();
            if !(1..=16).contains(&n) {
                return Err(invalid(l.span(), Problem::BadLength(n)));
            }
            s.length = Some(n);
        }
        if let Some(v) = &pr.period {
            if *v.get_ref() == 0 {
                return Err(invalid(v.span(), Problem::ZeroPeriod));
            }
            s.period = Some(*v.get_ref());
        }
        if let Some(r) = &pr.ports {
            s.ports = Some(
                r.get_ref()
                    .parse::<PortRange>()
                    .map_err(|e| invalid(r.span(), Problem::BadRange(e)))?,
            );
        }
        if let Some(a) = &pr.source_address {
            s.source_address = Some(
                a.get_ref()
                    .parse::<SourceAddress>()
                    .map_err(|e| invalid(a.span(), Problem::BadSource(e)))?,
            );
        }
        if let Some(v) = &pr.verify {
            if *v.get_ref() == 0 {
                return Err(invalid(v.span(), Problem::ZeroVerify));
            }
            s.verify = Some(*v.get_ref());
        }
        if let Some(r) = &pr.retries {
            if *r.get_ref() > crate::verify::MAX_RETRIES {
                return Err(invalid(r.span(), Problem::TooManyRetries(*r.get_ref())));
            }
            s.retries = Some(*r.get_ref());
        }
        Ok(s)
    }

    /// The `--list` table: name, host, kind of knock, verify port. Never a
    /// sequence, a one-time line or a key.
    pub fn render_list(&self) -> String {
        let mut rows = vec![[
            "PROFILE".to_string(),
            "HOST".to_string(),
            "KNOCK".to_string(),
            "VERIFY".to_string(),
        ]];
        for (name, s) in self.all() {
            rows.push(match s {
                Ok(s) => [
                    name,
                    s.host.unwrap_or_default(),
                    match (&s.kind, &s.door) {
                        (None, _) => "(none)".to_string(),
                        (Some(k @ KindSpec::Secret(_)), Some(d)) => {
                            format!("{}, door {d}", k.describe())
                        }
                        (Some(k), _) => k.describe(),
                    },
                    s.verify.map_or("-".to_string(), |p| p.to_string()),
                ],
                Err(e) => [name, "-".into(), format!("(invalid: {e})"), "-".into()],
            });
        }
        let mut width = [0usize; 3];
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in rows {
            out.push_str(&format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2]
            ));
        }
        out
    }
}

/// Parse `sequence = "7000,8000:udp,9000:tcp:fin"` into PORT arguments.
/// A bad item is named by its position only (the value is a secret).
pub fn parse_sequence(text: &str) -> Result<Vec<PortArg>, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::EmptySequence);
    }
    text.split(',')
        .enumerate()
        .map(|(i, item)| {
            cli::parse_port_arg(item).map_err(|_| Problem::BadSequence {
                item: i + 1,
                what: item_fault(item),
            })
        })
        .collect()
}

/// What is wrong with one sequence item, without quoting it.
fn item_fault(item: &str) -> &'static str {
    let t = item.trim();
    if t.is_empty() {
        return "empty";
    }
    let mut parts = t.split(':');
    let port_ok = parts
        .next()
        .is_some_and(|p| knock_common::sequence::parse_port(p).is_ok());
    if !port_ok {
        return "the port is not a number 1-65535";
    }
    match parts.next() {
        Some(p) if !p.eq_ignore_ascii_case("tcp") && !p.eq_ignore_ascii_case("udp") => {
            "the protocol is neither tcp nor udp"
        }
        _ => "bad TCP flags",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profiles, ProfileError> {
        Profiles::parse(
            Path::new("/p/hosts.toml"),
            text.to_string(),
            Some(Path::new("/home/u")),
        )
    }

    #[test]
    fn every_kind_of_profile() {
        let p = parse(
            "[ssh]\nhost = \"s.example\"\nsequence = \"7000,8000:udp,9000:tcp:fin\"\nverify = 22\n\
             [web]\nhost = \"192.0.2.1\"\notp = \"~/w.otp\"\nfamily = 4\ndelay = 10\n\
             [vpn]\nhost = \"v\"\nsecret = \"keys/vpn.key\"\ndoor = \"vpn\"\nlength = 4\n\
             period = 60\nports = \"20000-29999\"\nsource_address = \"auto\"\nudp = true\nretries = 5\n",
        )
        .unwrap();
        assert_eq!(p.names(), ["ssh", "vpn", "web"]);
        let ssh = p.settings("ssh", "").unwrap();
        assert_eq!(ssh.verify, Some(22));
        let Some(KindSpec::Sequence(ports)) = ssh.kind else {
            panic!("{ssh:?}")
        };
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[2].flags, Some(knock_common::flags::FIN));
        let web = p.settings("web", "").unwrap();
        assert_eq!(web.kind, Some(KindSpec::Otp("/home/u/w.otp".into())));
        assert_eq!(web.family, Some(Family::V4));
        assert_eq!(web.delay, Some(10));
        let vpn = p.settings("vpn", "").unwrap();
        assert_eq!(
            vpn.kind,
            Some(KindSpec::Secret("/p/keys/vpn.key".into())),
            "relative to the file's directory"
        );
        assert_eq!(vpn.length, Some(4));
        assert_eq!(
            vpn.ports,
            Some(PortRange {
                lo: 20000,
                hi: 29999
            })
        );
        assert_eq!(vpn.source_address, Some(SourceAddress::Auto));
        assert!(vpn.udp);
        assert_eq!(vpn.retries, Some(5));
    }

    #[test]
    fn errors_name_file_line_and_never_the_sequence() {
        let e = parse("[a]\nhost = \"h\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/p/hosts.toml:3: "), "{e}");
        assert!(e.contains("bogus") && e.contains("`sequence`"), "{e}");
        let e = parse("[a]\nhost = \"h\"\nsequence = \"7000,99999\"\n")
            .unwrap()
            .settings("a", "")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/p/hosts.toml:3: profile \"a\": sequence: item 2 is not PORT[:tcp|udp[:FLAGS]] \
             (the port is not a number 1-65535)"
        );
        let e = parse("[a]\nhost = \"h\"\nsequence = 7123\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/p/hosts.toml:3: "), "{e}");
        assert!(!e.contains("7123"), "{e}");
        let e = parse("[a]\nhost = \"h\"\nsequence = \"7123,\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/p/hosts.toml:3: "), "{e}");
        assert!(!e.contains("7123"), "{e}");
        let e = parse("[a]\nhost = \"h\"\n")
            .unwrap()
            .settings("b", HOST_HINT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no profile \"b\"; the profiles are: a"), "{e}");
        let e = parse("[a]\nfamily = 5\n").unwrap().settings("a", "");
        assert!(e.unwrap_err().to_string().contains("no host"));
        let e = parse("[a]\nhost = \"h\"\nfamily = 5\n")
            .unwrap()
            .settings("a", "")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/p/hosts.toml:3: profile \"a\": family = 5: must be 4 or 6"
        );
        let e = parse("[a]\nhost = \"h\"\nsequence = \"1\"\notp = \"x\"\n")
            .unwrap()
            .settings("a", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":4: profile \"a\": sequence and otp"), "{e}");
    }

    #[test]
    fn list_shows_no_secret() {
        let p = parse(
            "[ssh]\nhost = \"s\"\nsequence = \"7123,8234:udp\"\nverify = 22\n\
             [vpn]\nhost = \"v\"\nsecret = \"/k\"\ndoor = \"vpn\"\n",
        )
        .unwrap();
        let l = p.render_list();
        assert!(!l.contains("7123") && !l.contains("8234"), "{l}");
        assert!(l.contains("fixed sequence"), "{l}");
        assert!(l.contains("rotating /k, door vpn"), "{l}");
    }

    #[test]
    fn default_path_prefers_xdg() {
        assert_eq!(
            default_path(Some("/x"), Some(Path::new("/h"))),
            Some(PathBuf::from("/x/knock/hosts.toml"))
        );
        assert_eq!(
            default_path(Some("rel"), Some(Path::new("/h"))),
            Some(PathBuf::from("/h/.config/knock/hosts.toml"))
        );
        assert_eq!(default_path(None, None), None);
    }
}
