//! Parse and encode throughput of the ICP and HTCP codecs on datagrams
//! captured from Squid 5.7 (criterion reports messages per second).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cuttle_protocol::{htcp, icp};

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

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("icp");
    group.throughput(Throughput::Elements(1));
    for (name, wire) in ICP {
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| icp::parse(black_box(wire)).map(|m| m.reqnum))
        });
        let message = icp::parse(wire).expect("fixture parses");
        let mut out = Vec::with_capacity(wire.len());
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&message).encode(&mut out).map(|()| out.len())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("htcp");
    group.throughput(Throughput::Elements(1));
    for (name, wire) in HTCP {
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| htcp::parse(black_box(wire)).map(|m| m.trans_id))
        });
        let message = htcp::parse(wire).expect("fixture parses");
        let mut out = Vec::with_capacity(wire.len());
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&message).encode(&mut out).map(|()| out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
