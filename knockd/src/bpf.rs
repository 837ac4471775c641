//! The capture filter, built as a classic-BPF program by hand.
//!
//! The filter lets through only packets that can matter to a door: TCP or
//! UDP to one of the listening addresses (or door targets) and to one of the
//! doors' ports of that protocol. IPv6 packets to those addresses whose
//! first next-header is an extension header (0, 43, 44, 60) pass too: the
//! decoder follows the chain, a filter cannot. With `watch_attempts`, every
//! TCP segment with SYN set and ACK clear and every UDP datagram to those
//! addresses passes as well, whatever its port (the scan guard counts them).
//! Everything else is dropped in the kernel, before it is copied to user
//! space. TCP flags are otherwise checked in Rust, not here.
//!
//! Why by hand: libpcap's compiler is superlinear in the length of a
//! `port A or port B or ...` expression (its optimiser even more so), and its
//! unoptimised output needs about 34 instructions per port, far past the
//! kernel's limit of [`KERNEL_MAX_INSNS`]. This builder needs O(n) time and
//! about one instruction per port, and a packet runs through O(log n) of
//! them: ports (and IPv4 hosts) are sorted into ranges, searched by a
//! balanced tree of `jgt` nodes down to leaves of at most [`LEAF`] ranges,
//! each tested by a short chain (`jeq` for a single port, `jge`+`jgt` for a
//! range).
//!
//! Rules of the program (see `docs/DECISIONS.md`, "Capture"):
//! * Link types: Ethernet, Linux cooked capture (SLL, SLL2) and raw IP. Up
//!   to [`crate::packet::MAX_VLAN_TAGS`] 802.1Q / 802.1ad / 0x9100 tags are
//!   skipped on Ethernet and cooked frames, like the decoder does.
//! * Every load past the link header is relative to the X register (X =
//!   offset of the IP header past the link header), so the program works on
//!   libpcap's Linux cooked sockets too, where libpcap rewrites offsets
//!   before handing the program to the kernel.
//! * IPv4 non-first fragments are dropped (they carry no ports).
//! * If the exact program would be longer than [`KERNEL_MAX_INSNS`], the
//!   port sets are coarsened: neighbouring ports closer than a gap are
//!   merged into ranges, with the smallest gap that fits. The filter then
//!   passes a superset (the decoder and matcher still look at exact ports),
//!   and it stays in the kernel.
//!
//! Cost: building is O(n) per attempt (the coarsening search tries at most
//! 17 gaps); the program is at most about 1.3 instructions per port plus a
//! constant and 5 per IPv6 host.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::packet::{LinkType, MAX_VLAN_TAGS};

/// The kernel's limit on a classic-BPF socket filter (`BPF_MAXINSNS`).
/// A longer program is refused by the kernel and libpcap then filters every
/// packet in user space.
pub const KERNEL_MAX_INSNS: usize = 4096;

/// At most this many port ranges are tested in a row at a tree leaf.
pub const LEAF: usize = 8;

/// What the program returns for a packet that passes: "keep it whole"
/// (libpcap's own programs return the snapshot length, 262144).
pub const ACCEPT: u32 = 0x4_0000;

/// One classic-BPF instruction, laid out like `struct bpf_insn` (libpcap)
/// and `struct sock_filter` (the kernel).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction classes, sizes, modes and operations (from <linux/filter.h>).
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_W_IND: u16 = 0x40;
const LD_H_IND: u16 = 0x48;
const LD_B_IND: u16 = 0x50;
const LDX_IMM: u16 = 0x01;
const ALU_ADD_K: u16 = 0x04;
const ALU_ADD_X: u16 = 0x0c;
const ALU_AND_K: u16 = 0x54;
const ALU_LSH_K: u16 = 0x64;
const JA: u16 = 0x05;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const RET_K: u16 = 0x06;
const TAX: u16 = 0x07;
const TXA: u16 = 0x87;

const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
const VLAN_ETHERTYPES: [u32; 3] = [0x8100, 0x88a8, 0x9100];
const IPV6_EXT_HEADERS: [u32; 4] = [0, 43, 44, 60];
const TCP_SYN: u32 = 0x02;
const TCP_ACK: u32 = 0x10;

/// What the filter must let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Destination addresses: the listening addresses and door targets.
    pub hosts: BTreeSet<IpAddr>,
    /// Destination ports of TCP knocks.
    pub tcp_ports: BTreeSet<u16>,
    /// Destination ports of UDP knocks.
    pub udp_ports: BTreeSet<u16>,
    /// Also pass every TCP SYN without ACK and every UDP datagram to
    /// `hosts`, on any port (the scan guard watches connection attempts).
    pub watch_attempts: bool,
}

/// A built filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    /// `Some(gap)` when ports closer than `gap` were merged into ranges to
    /// fit the kernel's limit (the filter then passes a superset).
    coarsened: Option<u32>,
}

impl Program {
    /// The program that passes no packet (nothing to listen for).
    pub fn match_nothing() -> Program {
        Program {
            insns: vec![stmt(RET_K, 0)],
            coarsened: None,
        }
    }

    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Whether this is the program that passes nothing.
    pub fn matches_nothing(&self) -> bool {
        self.insns == [stmt(RET_K, 0)]
    }

    pub fn coarsened(&self) -> Option<u32> {
        self.coarsened
    }

    /// Whether the program passes `frame`, run by libpcap's interpreter as
    /// on a saved capture of this link type.
    pub fn passes(&self, frame: &[u8]) -> bool {
        crate::pcap_ffi::offline_filter(&self.insns, frame)
    }
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Build the filter for `spec` on link type `link`.
pub fn build(link: LinkType, spec: &FilterSpec) -> Program {
    let nothing_on_ports =
        spec.tcp_ports.is_empty() && spec.udp_ports.is_empty() && !spec.watch_attempts;
    if spec.hosts.is_empty() || nothing_on_ports {
        return Program::match_nothing();
    }
    let exact = |ports: &BTreeSet<u16>| ranges(ports, 1);
    let insns = emit(link, spec, &exact(&spec.tcp_ports), &exact(&spec.udp_ports));
    if insns.len() <= KERNEL_MAX_INSNS {
        return Program {
            insns,
            coarsened: None,
        };
    }
    // Smallest merge gap whose program fits. The size does not grow with
    // the gap, and a gap of 65536 leaves one range per protocol.
    let build_with = |gap: u32| {
        emit(
            link,
            spec,
            &ranges(&spec.tcp_ports, gap),
            &ranges(&spec.udp_ports, gap),
        )
    };
    let (mut lo, mut hi) = (1u32, 65_536u32);
    let mut best = build_with(hi);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        let p = build_with(mid);
        if p.len() <= KERNEL_MAX_INSNS {
            hi = mid;
            best = p;
        } else {
            lo = mid;
        }
    }
    Program {
        insns: best,
        coarsened: Some(hi),
    }
}

/// Sorted, disjoint inclusive ranges covering `ports`, where neighbours
/// less than `gap` apart share a range (`gap` 1: exact, one range per run of
/// consecutive ports).
fn ranges(ports: &BTreeSet<u16>, gap: u32) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &p in ports {
        let p = u32::from(p);
        match out.last_mut() {
            Some((_, hi)) if p - *hi <= gap => *hi = p,
            _ => out.push((p, p)),
        }
    }
    out
}

/// A jump target while the program is emitted.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// An instruction already emitted, by its index in [`Emitter::rev`].
    At(usize),
    Accept,
    Reject,
}

/// Emits a program backwards (last instruction first), so that every jump
/// (classic BPF only jumps forward) points at code already emitted and its
/// offset is known at once. A conditional jump reaches 255 instructions at
/// most: a farther target gets an unconditional `ja` trampoline, and
/// `ret` instructions are repeated so that one is always near.
struct Emitter {
    rev: Vec<Insn>,
    accept: Option<usize>,
    reject: Option<usize>,
}

/// Reuse a `ret` at most this far back; farther, emit a new one.
const RET_REACH: usize = 200;

impl Emitter {
    fn new() -> Emitter {
        Emitter {
            rev: Vec::new(),
            accept: None,
            reject: None,
        }
    }

    fn push(&mut self, i: Insn) -> usize {
        self.rev.push(i);
        self.rev.len() - 1
    }

    /// Offset from the next instruction to be pushed to `at`.
    fn dist(&self, at: usize) -> usize {
        self.rev.len() - at - 1
    }

    fn resolve(&mut self, t: Target) -> usize {
        let (slot, k) = match t {
            Target::At(at) => return at,
            Target::Accept => (self.accept, ACCEPT),
            Target::Reject => (self.reject, 0),
        };
        match slot {
            Some(at) if self.dist(at) <= RET_REACH => at,
            _ => {
                let at = self.push(stmt(RET_K, k));
                match t {
                    Target::Accept => self.accept = Some(at),
                    _ => self.reject = Some(at),
                }
                at
            }
        }
    }

    /// A statement that continues at `next`.
    fn stmt(&mut self, code: u16, k: u32, next: Target) -> usize {
        let next = self.resolve(next);
        if next + 1 != self.rev.len() {
            self.ja(next);
        }
        self.push(stmt(code, k))
    }

    fn ja(&mut self, to: usize) -> usize {
        let k = self.dist(to) as u32;
        self.push(stmt(JA, k))
    }

    /// A conditional jump: `jt` if the condition holds, else `jf`.
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> usize {
        let mut f = self.resolve(jf);
        let mut t = self.resolve(jt);
        // Leave room for one more trampoline after the check of `f`.
        if self.dist(f) > 254 {
            f = self.ja(f);
        }
        if self.dist(t) > 255 {
            t = self.ja(t);
        }
        let (dt, df) = (self.dist(t) as u8, self.dist(f) as u8);
        self.push(Insn {
            code,
            jt: dt,
            jf: df,
            k,
        })
    }

    /// Code that goes to `hit` if A lies in one of `items` (sorted,
    /// disjoint, inclusive) and to `miss` otherwise.
    fn search(&mut self, items: &[(u32, u32)], hit: Target, miss: Target) -> Target {
        if items.is_empty() {
            return miss;
        }
        if items.len() <= LEAF {
            // A chain in ascending order: below an item's start, no later
            // item can hold A either.
            let mut next = miss;
            for &(lo, hi) in items.iter().rev() {
                let at = if lo == hi {
                    self.jump(JEQ, lo, hit, next)
                } else {
                    let upper = self.jump(JGT, hi, next, hit);
                    self.jump(JGE, lo, Target::At(upper), miss)
                };
                next = Target::At(at);
            }
            return next;
        }
        let mid = items.len() / 2;
        let right = self.search(&items[mid..], hit, miss);
        let left = self.search(&items[..mid], hit, miss);
        Target::At(self.jump(JGT, items[mid - 1].1, right, left))
    }

    /// The program in execution order, with every offset checked.
    fn finish(mut self) -> Vec<Insn> {
        self.rev.reverse();
        self.rev
    }
}

/// Where the link layer puts the protocol field and how long its header is.
fn link_layout(link: LinkType) -> Option<(u32, u32)> {
    match link {
        LinkType::Ethernet => Some((12, 14)),
        LinkType::LinuxSll => Some((14, 16)),
        LinkType::LinuxSll2 => Some((0, 20)),
        LinkType::RawIp => None,
    }
}

fn emit(link: LinkType, spec: &FilterSpec, tcp: &[(u32, u32)], udp: &[(u32, u32)]) -> Vec<Insn> {
    use Target::{Accept, At, Reject};
    let mut e = Emitter::new();
    // `base`: length of the link header. From here on X holds the offset
    // of the current header past it, and every load is `[x + base + n]`.
    let base = link_layout(link).map_or(0, |(_, len)| len);

    // Transport layer, X at the TCP or UDP header: the destination port.
    let udp_entry = if spec.watch_attempts {
        Accept
    } else {
        match e.search(udp, Accept, Reject) {
            Reject => Reject,
            tree => At(e.stmt(LD_H_IND, base + 2, tree)),
        }
    };
    let tcp_entry = {
        let mut entry = match e.search(tcp, Accept, Reject) {
            Reject => Reject,
            tree => At(e.stmt(LD_H_IND, base + 2, tree)),
        };
        if spec.watch_attempts {
            let syn = e.jump(JEQ, TCP_SYN, Accept, entry);
            let flags = e.stmt(ALU_AND_K, TCP_SYN | TCP_ACK, At(syn));
            entry = At(e.stmt(LD_B_IND, base + 13, At(flags)));
        }
        entry
    };
    // X += n, then go to `next`.
    let advance = |e: &mut Emitter, n: u32, next: Target| -> Target {
        if !matches!(next, At(_)) {
            return next;
        }
        let tax = e.stmt(TAX, 0, next);
        let add = e.stmt(ALU_ADD_K, n, At(tax));
        At(e.stmt(TXA, 0, At(add)))
    };

    // IPv6, X at its header.
    let hosts6: Vec<[u32; 4]> = spec
        .hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V6(a) => {
                let o = a.octets();
                Some(std::array::from_fn(|i| {
                    u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                }))
            }
            IpAddr::V4(_) => None,
        })
        .collect();
    let v6_entry = if hosts6.is_empty() {
        Reject
    } else {
        let tcp6 = advance(&mut e, 40, tcp_entry);
        let udp6 = advance(&mut e, 40, udp_entry);
        let mut next = Reject;
        for &ext in IPV6_EXT_HEADERS.iter().rev() {
            next = At(e.jump(JEQ, ext, Accept, next));
        }
        let is_udp = e.jump(JEQ, 17, udp6, next);
        let is_tcp = e.jump(JEQ, 6, tcp6, At(is_udp));
        let proto = At(e.stmt(LD_B_IND, base + 6, At(is_tcp)));
        // Destination address, word by word, one host after another.
        let mut next_host = Reject;
        for words in hosts6.iter().rev() {
            let mut ok = proto;
            for (i, &w) in words.iter().enumerate().rev() {
                let cmp = e.jump(JEQ, w, ok, next_host);
                ok = At(e.stmt(LD_W_IND, base + 24 + 4 * i as u32, At(cmp)));
            }
            next_host = ok;
        }
        next_host
    };

    // IPv4, X at its header.
    let hosts4: Vec<(u32, u32)> = spec
        .hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V4(a) => Some((u32::from(*a), u32::from(*a))),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v4_entry = if hosts4.is_empty() {
        Reject
    } else {
        // X += 4 * IHL (`ldb [x]`, `and #0xf`, `lsh #2`, `add x`, `tax`).
        let to_l4 = |e: &mut Emitter, next: Target| -> Target {
            if !matches!(next, At(_)) {
                return next;
            }
            let tax = e.stmt(TAX, 0, next);
            let add = e.stmt(ALU_ADD_X, 0, At(tax));
            let lsh = e.stmt(ALU_LSH_K, 2, At(add));
            let and = e.stmt(ALU_AND_K, 0x0f, At(lsh));
            At(e.stmt(LD_B_IND, base, At(and)))
        };
        let tcp4 = to_l4(&mut e, tcp_entry);
        let udp4 = to_l4(&mut e, udp_entry);
        let is_udp = e.jump(JEQ, 17, udp4, Reject);
        let is_tcp = e.jump(JEQ, 6, tcp4, At(is_udp));
        let proto = e.stmt(LD_B_IND, base + 9, At(is_tcp));
        // Fragment offset: a non-first fragment carries no ports.
        let frag = e.jump(JSET, 0x1fff, Reject, At(proto));
        let frag = e.stmt(LD_H_IND, base + 6, At(frag));
        let dst = e.search(&hosts4, At(frag), Reject);
        At(e.stmt(LD_W_IND, base + 16, dst))
    };

    // Link layer: set X to the IP header's offset past the link header.
    let with_x = |e: &mut Emitter, x: u32, next: Target| -> Target {
        if matches!(next, Reject) {
            return Reject;
        }
        At(e.stmt(LDX_IMM, x, next))
    };
    match link_layout(link) {
        None => {
            let v4 = with_x(&mut e, 0, v4_entry);
            let v6 = with_x(&mut e, 0, v6_entry);
            let is6 = e.jump(JEQ, 0x60, v6, Reject);
            let is4 = e.jump(JEQ, 0x40, v4, At(is6));
            let version = e.stmt(ALU_AND_K, 0xf0, At(is4));
            e.stmt(LD_B_ABS, 0, At(version));
        }
        Some((proto_at, _)) => {
            // One dispatch per tag depth, deepest first: depth d reads the
            // ethertype after d tags, with the IP header 4 * d further on.
            let mut deeper = Reject;
            for d in (0..=MAX_VLAN_TAGS as u32).rev() {
                let v4 = with_x(&mut e, 4 * d, v4_entry);
                let v6 = with_x(&mut e, 4 * d, v6_entry);
                let mut next = Reject;
                if !matches!(deeper, Reject) {
                    for &t in VLAN_ETHERTYPES.iter().rev() {
                        next = At(e.jump(JEQ, t, deeper, next));
                    }
                }
                let is6 = e.jump(JEQ, ETHERTYPE_IPV6, v6, next);
                let is4 = e.jump(JEQ, ETHERTYPE_IPV4, v4, At(is6));
                let at = if d == 0 {
                    proto_at
                } else {
                    base + 4 * (d - 1) + 2
                };
                deeper = At(e.stmt(LD_H_ABS, at, At(is4)));
            }
        }
    }
    e.finish()
}

#[cfg(test)]
mod tests;
