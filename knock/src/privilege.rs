//! Dropping raw-socket privilege once the sockets are open.
//!
//! `knock` needs root or CAP_NET_RAW only to open its raw sockets. It opens
//! them first, then drops the privilege before it reads any file (profiles,
//! one-time files, key files), resolves a name or sends a packet:
//!
//! * setuid or setgid binary (real ids differ from effective ones): the
//!   group and user ids become the real ones (all three of each);
//! * `sudo` (real and effective user root, `SUDO_UID` set to another
//!   user): the supplementary groups become that user's, then the group
//!   id becomes `SUDO_GID` (or the user's primary group) and the user id
//!   `SUDO_UID`. The invoking user's own files (a one-time file is marked
//!   used after sending) are then read and written as that user. A
//!   `SUDO_UID` that is not a number is an error, never ignored;
//! * file capabilities (`setcap cap_net_raw+ep`, a non-root user with a
//!   non-empty permitted set): the ambient, effective and permitted sets
//!   are cleared;
//! * plain root (no `SUDO_UID`) and unprivileged users: nothing changes.
//!
//! Leaving root's user ids clears every capability (the kernel does that
//! unless `SECBIT_KEEP_CAPS`, which knock never sets); the capability sets
//! are cleared explicitly as well. After a drop the ids and the permitted
//! set are read back; a drop that did not take is an error, and knock stops
//! before touching a file.

use caps::CapSet;
use nix::unistd::{self, Gid, Uid, User};

/// The ids and environment the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub egid: u32,
    /// `SUDO_UID` and `SUDO_GID` as found in the environment.
    pub sudo_uid: Option<String>,
    pub sudo_gid: Option<String>,
    /// The permitted capability set is not empty.
    pub has_caps: bool,
}

/// What to give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Become `uid`/`gid`; `reset_groups` resets the supplementary groups to the
    /// user's (sudo), otherwise they stay as they are (setuid).
    ToUser {
        uid: u32,
        gid: u32,
        reset_groups: bool,
    },
    /// Clear the capability sets.
    Caps,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("SUDO_UID=\"{0}\" is not a user id; not dropping root privileges would be unsafe")]
    BadSudoUid(String),
    #[error("SUDO_GID=\"{0}\" is not a group id; not dropping root privileges would be unsafe")]
    BadSudoGid(String),
    #[error("cannot drop privileges to uid {uid} gid {gid}: {source}")]
    Ids {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("cannot clear the capabilities: {0}")]
    Caps(#[source] caps::errors::CapsError),
    /// The ids read back after the drop are not the ones asked for.
    #[error(
        "privileges are still held after dropping them (uids {}/{}/{}, gids {}/{}/{})",
        uids[0], uids[1], uids[2], gids[0], gids[1], gids[2]
    )]
    StillHeldIds {
        /// Real, effective and saved user ids.
        uids: [u32; 3],
        /// Real, effective and saved group ids.
        gids: [u32; 3],
    },
    #[error(
        "privileges are still held after dropping them (the permitted capability set is not empty)"
    )]
    StillHeldCaps,
}

/// Decide what to drop. Pure.
pub fn decide(ids: &Ids) -> Result<Action, PrivilegeError> {
    if ids.ruid != ids.euid || ids.rgid != ids.egid {
        return Ok(Action::ToUser {
            uid: ids.ruid,
            gid: ids.rgid,
            reset_groups: false,
        });
    }
    if ids.ruid == 0 {
        let Some(u) = &ids.sudo_uid else {
            return Ok(Action::Keep);
        };
        let uid: u32 = u
            .trim()
            .parse()
            .map_err(|_| PrivilegeError::BadSudoUid(u.clone()))?;
        if uid == 0 {
            return Ok(Action::Keep);
        }
        let gid = match &ids.sudo_gid {
            Some(g) => g
                .trim()
                .parse()
                .map_err(|_| PrivilegeError::BadSudoGid(g.clone()))?,
            None => User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or(uid, |u| u.gid.as_raw()),
        };
        return Ok(Action::ToUser {
            uid,
            gid,
            reset_groups: true,
        });
    }
    if ids.has_caps {
        return Ok(Action::Caps);
    }
    Ok(Action::Keep)
}

/// The ids of this process and its environment.
pub fn current() -> Ids {
    Ids {
        ruid: unistd::getuid().as_raw(),
        euid: unistd::geteuid().as_raw(),
        rgid: unistd::getgid().as_raw(),
        egid: unistd::getegid().as_raw(),
        sudo_uid: std::env::var("SUDO_UID").ok(),
        sudo_gid: std::env::var("SUDO_GID").ok(),
        has_caps: caps::read(None, CapSet::Permitted).is_ok_and(|s| !s.is_empty()),
    }
}

fn clear_caps() -> Result<(), PrivilegeError> {
    let e = PrivilegeError::Caps;
    // Ambient capabilities may be unsupported (old kernels); the other two
    // sets must clear.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Effective).map_err(e)?;
    caps::clear(None, CapSet::Permitted).map_err(e)?;
    Ok(())
}

/// Carry out `drop`, then check that it took.
pub fn apply(action: &Action) -> Result<(), PrivilegeError> {
    match *action {
        Action::Keep => return Ok(()),
        Action::ToUser {
            uid,
            gid,
            reset_groups,
        } => {
            let err = |source| PrivilegeError::Ids { uid, gid, source };
            let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
            if reset_groups {
                match User::from_uid(u).ok().flatten() {
                    Some(user) => {
                        let name = std::ffi::CString::new(user.name.as_bytes())
                            .map_err(|_| err(nix::Error::EINVAL))?;
                        unistd::initgroups(&name, g).map_err(err)?;
                    }
                    None => unistd::setgroups(&[g]).map_err(err)?,
                }
            }
            unistd::setresgid(g, g, g).map_err(err)?;
            unistd::setresuid(u, u, u).map_err(err)?;
            if uid != 0 {
                clear_caps()?;
            }
            let r = unistd::getresuid().map_err(err)?;
            let rg = unistd::getresgid().map_err(err)?;
            if [r.real, r.effective, r.saved] != [u, u, u]
                || [rg.real, rg.effective, rg.saved] != [g, g, g]
            {
                return Err(PrivilegeError::StillHeldIds {
                    uids: [r.real, r.effective, r.saved].map(Uid::as_raw),
                    gids: [rg.real, rg.effective, rg.saved].map(Gid::as_raw),
                });
            }
        }
        Action::Caps => clear_caps()?,
    }
    if !matches!(action, Action::ToUser { uid: 0, .. })
        && caps::read(None, CapSet::Permitted).is_ok_and(|s| !s.is_empty())
    {
        return Err(PrivilegeError::StillHeldCaps);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ruid: u32, euid: u32, sudo: Option<&str>, caps: bool) -> Ids {
        Ids {
            ruid,
            euid,
            rgid: ruid,
            egid: euid,
            sudo_uid: sudo.map(str::to_string),
            sudo_gid: sudo.map(|_| "1000".to_string()),
            has_caps: caps,
        }
    }

    #[test]
    fn setuid_drops_to_the_real_user() {
        assert_eq!(
            decide(&ids(1000, 0, None, true)).unwrap(),
            Action::ToUser {
                uid: 1000,
                gid: 1000,
                reset_groups: false
            }
        );
        // SUDO_UID cannot steer a setuid drop: the real user decides.
        assert_eq!(
            decide(&ids(1000, 0, Some("0"), true)).unwrap(),
            Action::ToUser {
                uid: 1000,
                gid: 1000,
                reset_groups: false
            }
        );
    }

    #[test]
    fn sudo_drops_to_the_invoking_user_only_as_real_root() {
        assert_eq!(
            decide(&ids(0, 0, Some("1000"), true)).unwrap(),
            Action::ToUser {
                uid: 1000,
                gid: 1000,
                reset_groups: true
            }
        );
        assert_eq!(decide(&ids(0, 0, None, true)).unwrap(), Action::Keep);
        assert_eq!(decide(&ids(0, 0, Some("0"), true)).unwrap(), Action::Keep);
        // A non-root user's SUDO_UID means nothing.
        assert_eq!(
            decide(&ids(1000, 1000, Some("5"), false)).unwrap(),
            Action::Keep
        );
        let e = decide(&ids(0, 0, Some("bob"), true)).unwrap_err();
        assert!(e.to_string().contains("SUDO_UID=\"bob\""), "{e}");
    }

    #[test]
    fn file_capabilities_are_cleared() {
        assert_eq!(decide(&ids(1000, 1000, None, true)).unwrap(), Action::Caps);
        assert_eq!(decide(&ids(1000, 1000, None, false)).unwrap(), Action::Keep);
    }

    #[test]
    fn failed_drops_name_what_is_still_held() {
        use std::error::Error as _;
        let ids = PrivilegeError::StillHeldIds {
            uids: [1000, 0, 0],
            gids: [1000, 1000, 1000],
        };
        assert_eq!(
            ids.to_string(),
            "privileges are still held after dropping them (uids 1000/0/0, gids 1000/1000/1000)"
        );
        assert_eq!(
            PrivilegeError::StillHeldCaps.to_string(),
            "privileges are still held after dropping them (the permitted capability set is not empty)"
        );
        let caps = PrivilegeError::Caps("EPERM".into());
        assert_eq!(
            caps.to_string(),
            "cannot clear the capabilities: caps error: EPERM"
        );
        let source = caps.source().expect("the caps error is the source");
        assert_eq!(source.to_string(), "caps error: EPERM");
    }
}
