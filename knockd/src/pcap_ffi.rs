//! The few libpcap and socket calls the `pcap` crate does not offer for a
//! hand-built filter: installing a `struct bpf_program` of our own with
//! `pcap_setfilter` (so libpcap still rewrites offsets for Linux cooked
//! sockets, drains the socket and falls back to filtering in user space if
//! the kernel refuses the program), running one with `pcap_offline_filter`,
//! and asking the kernel how long the filter attached to a socket is.
//!
//! The only `unsafe` code of the crate lives here.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::raw::{c_char, c_int, c_uint, c_void};

use crate::bpf::Insn;

/// `SO_GET_FILTER` of `<asm-generic/socket.h>` (= `SO_ATTACH_FILTER`);
/// the `libc` crate defines it for Android only.
const SO_GET_FILTER: c_int = 26;

/// `struct bpf_program` of `<pcap/bpf.h>`.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *const Insn,
}

/// `struct pcap_pkthdr` of `<pcap/pcap.h>`.
#[repr(C)]
struct PktHdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

// libpcap is linked by the `pcap` crate.
extern "C" {
    fn pcap_setfilter(p: *mut c_void, fp: *const BpfProgram) -> c_int;
    fn pcap_geterr(p: *mut c_void) -> *const c_char;
    fn pcap_offline_filter(fp: *const BpfProgram, h: *const PktHdr, pkt: *const u8) -> c_int;
}

/// libpcap refused a filter program (`pcap_setfilter` failed): its own
/// message, kept as data the way `io::Error` keeps the OS's. A program the
/// kernel refuses (longer than it accepts, say) is not this: libpcap then
/// filters in user space and reports success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterRefused {
    /// `pcap_geterr` after the failed call.
    pub message: String,
}

fn program(insns: &[Insn]) -> BpfProgram {
    BpfProgram {
        bf_len: insns.len() as c_uint,
        bf_insns: insns.as_ptr(),
    }
}

/// Install `insns` as the filter of `cap`. libpcap copies the program.
pub fn set_filter(
    cap: &mut pcap::Capture<pcap::Active>,
    insns: &[Insn],
) -> Result<(), FilterRefused> {
    let prog = program(insns);
    let handle = cap.as_ptr() as *mut c_void;
    // SAFETY: `handle` is the live pcap_t owned by `cap`, borrowed mutably
    // for the call; `prog` points at `insns.len()` instructions laid out as
    // `struct bpf_insn` (#[repr(C)] `Insn`), alive for the call; libpcap
    // validates the program and copies it before returning, and does not
    // write through `bf_insns`.
    let rc = unsafe { pcap_setfilter(handle, &prog) };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: `handle` is live; pcap_geterr returns a NUL-terminated string
    // owned by the handle, copied here before the handle is used again.
    let msg = unsafe { CStr::from_ptr(pcap_geterr(handle)) };
    Err(FilterRefused {
        message: msg.to_string_lossy().into_owned(),
    })
}

/// Whether `insns` passes `frame`, run by libpcap's own BPF interpreter
/// exactly as on a saved capture (no offset rewriting).
pub fn offline_filter(insns: &[Insn], frame: &[u8]) -> bool {
    let prog = program(insns);
    let hdr = PktHdr {
        ts: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: frame.len() as u32,
        len: frame.len() as u32,
    };
    // SAFETY: `prog` points at `insns.len()` valid instructions and `frame`
    // at `caplen` readable bytes; both outlive the call. The interpreter
    // checks every load against `caplen` and every jump against the length.
    unsafe { pcap_offline_filter(&prog, &hdr, frame.as_ptr()) != 0 }
}

/// How many instructions the kernel holds as the socket filter of `fd`
/// (0: none). `None` if the kernel does not say.
pub fn kernel_filter_len(fd: BorrowedFd<'_>) -> Option<usize> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a zero option length, SO_GET_FILTER only reports the
    // number of instructions through `len` and writes nothing to `optval`
    // (null); `fd` is a valid descriptor for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    (rc == 0).then_some(len as usize)
}
