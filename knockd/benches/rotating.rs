//! Cost of rotating sequences, per operation:
//! * `derive/default`: one window's sequence with the defaults (3 hits from
//!   1024-65535), what a rotating door does 2·skew+1 times per window;
//! * `bound/new-source`: the candidates of a bind-source door for a knocker
//!   not seen in this window (3 derivations and a cache insert): the extra
//!   work per packet of a spoofed flood aimed at such a door's range;
//! * `bound/cached-source`: the same knocker again (a cache hit);
//! * `matcher/bound-flood`: `Matcher::on_hit_with` for a TCP SYN from a new
//!   source into a bind-source door's range, against `matcher/plain-flood`,
//!   the same SYN on a port no door uses with an ordinary rotating door.
//!
//! Run with `cargo bench -p knockd --bench rotating`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use knock_common::flags::SYN;
use knock_common::rotate::{self, Key};
use knock_common::Proto;
use knockd::config::RotatingSpec;
use knockd::matcher::{BoundRange, DoorRule, Matcher};
use knockd::packet::Hit;
use knockd::rotating::RotatingSource;
use knockd::sources::SequenceSource;

const KEY: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

fn spec(dir: &std::path::Path, bind: bool) -> RotatingSpec {
    RotatingSpec {
        secret: PathBuf::from("unused"),
        secret_line: 1,
        key: Some(Key::parse(KEY).unwrap()),
        length: rotate::DEFAULT_LENGTH,
        period: rotate::DEFAULT_PERIOD,
        skew: rotate::DEFAULT_SKEW,
        range: rotate::DEFAULT_RANGE,
        proto: Proto::Tcp,
        bind_source: bind,
        state: dir.join("bench.window"),
    }
}

fn src(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)))
}

fn syn(src: IpAddr, port: u16) -> Hit {
    Hit::tcp(src, LOCAL, 40000, port, SYN)
}

struct Doors(Vec<RotatingSource>);

impl knockd::matcher::PerSource for Doors {
    fn candidates_for(&mut self, door: usize, src: IpAddr) -> &[knockd::matcher::Candidate] {
        self.0[door].candidates_for(src)
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::parse(KEY).unwrap();
    let deriver = rotate::Deriver::new(&key);
    let mut t = 59_000_000u64;
    c.bench_function("derive/default", |b| {
        b.iter(|| {
            t += 1;
            black_box(deriver.derive("ssh", t, 3, rotate::DEFAULT_RANGE, None))
        })
    });

    let (mut bound, _) = RotatingSource::new("ssh", &spec(dir.path(), true));
    let mut i = 0u32;
    c.bench_function("bound/new-source", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(bound.candidates_for(src(i)).len())
        })
    });
    let a = src(7);
    c.bench_function("bound/cached-source", |b| {
        b.iter(|| black_box(bound.candidates_for(a).len()))
    });

    let now = Instant::now();
    let local = |ip: IpAddr| ip == LOCAL;
    let rule = DoorRule::fixed("7000".parse().unwrap(), Duration::from_secs(5));
    for (name, bind) in [
        ("matcher/plain-flood", false),
        ("matcher/bound-flood", true),
    ] {
        let (source, _) = RotatingSource::new("ssh", &spec(dir.path(), bind));
        let mut m = Matcher::new(
            vec![DoorRule {
                candidates: source.candidates().to_vec(),
                ..rule.clone()
            }],
            65_536,
        );
        if bind {
            m.set_bound(
                0,
                Some(BoundRange {
                    proto: Proto::Tcp,
                    lo: 1024,
                    hi: 65535,
                }),
            );
        }
        let mut doors = Doors(vec![source]);
        let mut out = Vec::new();
        let mut i = 0u32;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                out.clear();
                m.on_hit_with(&syn(src(i), 7100), now, &local, &mut doors, &mut out);
                black_box(out.len())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
