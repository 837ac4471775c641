//! Time to build the capture filter (`bpf::build`) for N doors of 3 TCP
//! ports each: what a start-up, a SIGHUP, an address change or a rotation
//! period pays for the filter. Also installs nothing: the kernel's part is
//! measured end to end by `bench/doors.sh`.
//!
//! Run with `cargo bench -p knockd --bench filter`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use knockd::bpf::{build, FilterSpec};
use knockd::packet::LinkType;

/// N doors as `bench/doors.sh` writes them: door i has ports
/// 2000 + 20 i + {0, 6, 13}; up to 3000 doors the ports stay below 65536.
fn spec(doors: usize, watch: bool) -> FilterSpec {
    let tcp_ports: BTreeSet<u16> = (0..doors)
        .flat_map(|i| {
            let p = 2000 + 20 * i as u16;
            [p, p + 6, p + 13]
        })
        .collect();
    FilterSpec {
        hosts: ["198.51.100.1", "2001:db8::1"]
            .iter()
            .map(|h| h.parse::<IpAddr>().unwrap())
            .collect(),
        tcp_ports,
        udp_ports: BTreeSet::new(),
        watch_attempts: watch,
    }
}

fn filter_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter_build");
    for doors in [1usize, 100, 1000, 3000] {
        let s = spec(doors, false);
        g.throughput(Throughput::Elements(doors as u64));
        g.bench_with_input(BenchmarkId::new("doors", doors), &s, |b, s| {
            b.iter(|| black_box(build(LinkType::Ethernet, black_box(s))))
        });
    }
    g.finish();
}

criterion_group!(benches, filter_build);
criterion_main!(benches);
