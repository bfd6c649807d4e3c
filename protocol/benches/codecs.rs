//! Parse and encode throughput of the ICP and HTCP codecs on datagrams
//! captured from Squid 5.7 (criterion reports messages per second).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use cuttle_protocol::{htcp, icp, Error};

const ICP: &[(&str, &[u8])] = &[
    (
        "query",
        include_bytes!("../../fixtures/icp/v2-query-squid57.bin"),
    ),
    (
        "hit",
        include_bytes!("../../fixtures/icp/v2-hit-squid57.bin"),
    ),
];

const HTCP: &[(&str, &[u8])] = &[
    (
        "tst_request",
        include_bytes!("../../fixtures/htcp/tst-request-squid57.bin"),
    ),
    (
        "tst_hit",
        include_bytes!("../../fixtures/htcp/tst-response-hit-squid57.bin"),
    ),
    (
        "clr_request",
        include_bytes!("../../fixtures/htcp/clr-request-purge-squid57.bin"),
    ),
];

/// Benchmarks `parse/NAME` and `encode/NAME` for one datagram.
fn parse_and_encode<'a, M>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    wire: &'a [u8],
    parse: fn(&'a [u8]) -> Result<M, Error>,
    encode: fn(&M, &mut Vec<u8>) -> Result<(), Error>,
) {
    group.bench_function(format!("parse/{name}"), |b| {
        b.iter(|| parse(black_box(wire)).is_ok())
    });
    let message = parse(wire).expect("fixture parses");
    let mut out = Vec::with_capacity(wire.len());
    group.bench_function(format!("encode/{name}"), |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&message), &mut out).map(|()| out.len())
        })
    });
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("icp");
    group.throughput(Throughput::Elements(1));
    for (name, wire) in ICP {
        parse_and_encode(&mut group, name, wire, icp::parse, icp::Message::encode);
    }
    group.finish();

    let mut group = c.benchmark_group("htcp");
    group.throughput(Throughput::Elements(1));
    for (name, wire) in HTCP {
        parse_and_encode(&mut group, name, wire, htcp::parse, htcp::Message::encode);
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
