//! Cache Digest speed: one lookup in a peer's digest of 1,000,000 entries
//! (criterion reports lookups per second), and building that digest from
//! the store keys of 1,000,000 objects. Prints the digest's size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use cuttle_protocol::digest::{self, Digest, HEADER_LEN};
use cuttle_protocol::key::{store_key, Method, StoreKey};

const ENTRIES: u32 = 1_000_000;
const BITS_PER_ENTRY: u8 = 5;

fn keys(prefix: &str, n: u32) -> Vec<StoreKey> {
    (0..n)
        .map(|i| store_key(Method::Get, format!("http://{prefix}/{i}").as_bytes()))
        .collect()
}

fn build(keys: &[StoreKey]) -> Digest {
    let mut d = Digest::new(ENTRIES, BITS_PER_ENTRY);
    for k in keys {
        d.add(k);
    }
    d
}

fn digests(c: &mut Criterion) {
    let held = keys("held.example", ENTRIES);
    let built = build(&held);
    let mut wire = Vec::new();
    built.encode(&mut wire);
    eprintln!(
        "digest of {ENTRIES} entries at {BITS_PER_ENTRY} bits: mask {} bytes, {} on the wire, {:.1}% of bits set",
        built.mask().len(),
        wire.len(),
        built.fill_ratio() * 100.0
    );
    assert_eq!(wire.len(), HEADER_LEN + 625_000);
    // The peer side reads the digest in place: the received bytes are all
    // it keeps.
    let peer = digest::parse(&wire).expect("own digest parses");

    let mut group = c.benchmark_group("digest_lookup_1M");
    group.throughput(Throughput::Elements(1));
    let held_key = held[ENTRIES as usize / 2];
    group.bench_function("held_key", |b| {
        b.iter(|| peer.contains(black_box(&held_key)))
    });
    let stranger = store_key(Method::Get, b"http://not-held.example/");
    group.bench_function("absent_key", |b| {
        b.iter(|| peer.contains(black_box(&stranger)))
    });
    // Keys spread over the whole mask, as a stream of requests would hit
    // it: half held, half not.
    let mut mixed: Vec<StoreKey> = held.iter().step_by(1000).copied().collect();
    mixed.extend(keys("other.example", 1000));
    group.throughput(Throughput::Elements(mixed.len() as u64));
    group.bench_function("2000_mixed_keys", |b| {
        b.iter(|| mixed.iter().filter(|k| peer.contains(k)).count())
    });
    group.finish();

    let mut group = c.benchmark_group("digest_build_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(ENTRIES)));
    group.bench_function("from_store_keys", |b| {
        b.iter(|| build(black_box(&held)).header().count)
    });
    group.bench_function("from_store_keys_and_encode", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(HEADER_LEN + 625_000),
            |out| {
                build(black_box(&held)).encode(out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, digests);
criterion_main!(benches);
