//! Packets per second through `packet::decode` + `Matcher::on_hit` for a
//! mixed workload: a flood of spoofed first knocks from many sources (which
//! keeps the attempt table at its cap and forces eviction), ordinary traffic
//! on ports no door uses, legitimate knock sequences, IPv6 with extension
//! headers, VLAN tagged frames and non-TCP/UDP packets.
//!
//! Run with `cargo bench -p knockd --bench matcher`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use knockd::matcher::{Candidate, DoorRule, Event, Matcher};
use knockd::packet::{decode, LinkType};

const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn is_local(ip: IpAddr) -> bool {
    ip == IpAddr::V4(LOCAL4) || ip == IpAddr::V6(LOCAL6)
}

fn tcp(dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn udp(dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&40000u16.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

fn ipv4(src: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&LOCAL4.octets());
    p.extend_from_slice(l4);
    p
}

fn ipv6_hbh(src: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((8 + l4.len()) as u16).to_be_bytes());
    p[6] = 0; // hop-by-hop
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&LOCAL6.octets());
    p.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
    p.extend_from_slice(l4);
    p
}

fn ether(ethertype: u16, vlan: bool, ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0xaa; 12];
    if vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&7u16.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// Deterministic xorshift so the workload is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The mixed workload; with `probes`, the background traffic is TCP SYNs
/// to random ports no door uses (what the capture passes when the scan
/// guard is on: every connection attempt), from random sources.
fn workload(n: usize, probes: bool) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::with_capacity(n);
    let mut legit = 0u32;
    while frames.len() < n {
        let r = rng.next();
        let src4 = Ipv4Addr::from((r >> 16) as u32);
        let f = match r % 10 {
            // Spoofed first knocks from random sources.
            0..=3 => ether(0x0800, false, &ipv4(src4, 6, &tcp(7000, 0x02))),
            // Background traffic on unrelated ports.
            4 | 5 if probes => {
                let port = 10_000 + (r >> 48) as u16 % 50_000;
                ether(0x0800, false, &ipv4(src4, 6, &tcp(port, 0x02)))
            }
            4 | 5 => ether(0x0800, false, &ipv4(src4, 6, &tcp(443, 0x10))),
            // A complete legitimate sequence from one source.
            6 => {
                legit += 1;
                let src = Ipv4Addr::from(0x0a00_0000 | legit);
                for k in [tcp(7000, 0x02), udp(8000), tcp(9000, 0x02)] {
                    let proto = if k.len() == 8 { 17 } else { 6 };
                    frames.push(ether(0x0800, false, &ipv4(src, proto, &k)));
                }
                continue;
            }
            // IPv6 with a hop-by-hop header, VLAN tagged, random source.
            7 => {
                let src6 = Ipv6Addr::from(u128::from(r) << 64 | 0x2001);
                ether(0x86dd, true, &ipv6_hbh(src6, 6, &tcp(7000, 0x02)))
            }
            // Wrong knock on a sequence port (fails attempts).
            8 => ether(0x0800, true, &ipv4(src4, 6, &tcp(9000, 0x02))),
            // ICMP echo.
            _ => ether(0x0800, false, &ipv4(src4, 1, &[8, 0, 0, 0, 0, 1, 0, 1])),
        };
        frames.push(f);
    }
    frames.truncate(n);
    frames
}

fn guarded(threshold: usize) -> Vec<DoorRule> {
    doors()
        .into_iter()
        .map(|d| DoorRule {
            scan_threshold: threshold,
            ..d
        })
        .collect()
}

fn doors() -> Vec<DoorRule> {
    vec![
        DoorRule {
            candidates: vec![Candidate {
                tag: 0,
                sequence: "7000,8000:udp,9000".parse().unwrap(),
            }],
            scan_threshold: 0,
            timeout: Duration::from_secs(25),
            flags: Some("syn,!ack".parse().unwrap()),
            target: None,
        },
        DoorRule {
            candidates: vec![Candidate {
                tag: 0,
                sequence: "7000,8000:udp,9001".parse().unwrap(),
            }],
            scan_threshold: 0,
            timeout: Duration::from_secs(10),
            flags: None,
            target: None,
        },
        DoorRule {
            candidates: vec![Candidate {
                tag: 0,
                sequence: "1234:udp,5678:udp".parse().unwrap(),
            }],
            scan_threshold: 0,
            timeout: Duration::from_secs(5),
            flags: None,
            target: None,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let frames = workload(100_000, false);
    let mut group = c.benchmark_group("decode+match");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.sample_size(20);
    for cap in [1_000usize, 100_000] {
        group.bench_with_input(BenchmarkId::new("cap", cap), &cap, |b, &cap| {
            b.iter(|| {
                let mut m = Matcher::new(doors(), cap);
                let base = Instant::now();
                let mut out: Vec<Event> = Vec::with_capacity(16);
                let mut opens = 0usize;
                for (i, f) in frames.iter().enumerate() {
                    // 10 µs between packets: 100k packets per second.
                    let now = base + Duration::from_micros(10 * i as u64);
                    if let Ok(hit) = decode(LinkType::Ethernet, f) {
                        m.on_hit(&hit, now, &is_local, &mut out);
                    }
                    opens += out
                        .iter()
                        .filter(|e| matches!(e, Event::Open { .. }))
                        .count();
                    out.clear();
                }
                black_box((opens, m.attempts()))
            })
        });
    }
    group.finish();

    // The scan guard's cost: the same workload with SYN probes to random
    // ports as background traffic, guard off and on (every probe then
    // updates the per-source scan table).
    let probes = workload(100_000, true);
    let mut group = c.benchmark_group("decode+match, probes");
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.sample_size(20);
    for threshold in [0usize, 8] {
        group.bench_with_input(
            BenchmarkId::new("scan_threshold", threshold),
            &threshold,
            |b, &threshold| {
                b.iter(|| {
                    let mut m = Matcher::new(guarded(threshold), 100_000);
                    let base = Instant::now();
                    let mut out: Vec<Event> = Vec::with_capacity(16);
                    for (i, f) in probes.iter().enumerate() {
                        let now = base + Duration::from_micros(10 * i as u64);
                        if let Ok(hit) = decode(LinkType::Ethernet, f) {
                            m.on_hit(&hit, now, &is_local, &mut out);
                        }
                        out.clear();
                    }
                    black_box(m.attempts())
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.sample_size(20);
    group.bench_function("ethernet mix", |b| {
        b.iter(|| {
            frames
                .iter()
                .filter(|f| decode(LinkType::Ethernet, black_box(f)).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
