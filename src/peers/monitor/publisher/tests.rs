//! The publisher's rounds against a memory store, read back off a socket.

use super::*;
use crate::peers::monitor::wire::{self, Incoming, Notice};
use crate::store::{StoreOptions, Times};
use cuttle_protocol::key::{store_key, Method};

fn req(from: SocketAddr, id: u32) -> MonRequest {
    MonRequest {
        from,
        id,
        minor: 1,
        time: 60,
    }
}

fn limits(max_subscribers: usize, secs: u64) -> Limits {
    Limits {
        max_subscribers,
        max_lease: Duration::from_secs(secs),
    }
}

fn store() -> Store {
    Store::open_memory(16 << 20, 1 << 16, StoreOptions::default()).unwrap()
}

fn put(store: &Store, url: &str) -> Key {
    let key = store_key(Method::Get, url.as_bytes());
    let times = Times {
        date: 1,
        expires: 4_000_000_000,
        last_modified: 0,
    };
    let mut w = store
        .writer(
            key,
            times,
            url.as_bytes(),
            b"HTTP/1.1 200 OK\r\n\r\n",
            Some(1),
        )
        .unwrap();
    w.write(b"x").unwrap();
    w.commit().unwrap();
    key
}

/// Sends `out` from a socket of its own to `rx`, and reads back the notices.
fn delivered(out: &mut SendBatch<()>, rx: &std::net::UdpSocket) -> Vec<Incoming> {
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    out.send(&tx, |(), _, r| {
        r.unwrap();
    });
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 9000];
    while let Ok(n) = rx.recv(&mut buf) {
        got.push(wire::parse(&buf[..n]).expect("a MON response"));
    }
    got
}

fn notices(got: &[Incoming], id: u32) -> Vec<(u32, Notice)> {
    got.iter()
        .map(|i| match i {
            Incoming::Notice {
                trans_id, notice, ..
            } => (trans_id.wrapping_sub(id), *notice),
            other => panic!("not a notice: {other:?}"),
        })
        .collect()
}

#[test]
fn subscribe_resync_then_live_changes_in_sequence() {
    let store = store();
    let held = put(&store, "http://o/held");
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let p = Publisher::default();
    let now = Instant::now();
    assert_eq!(
        p.request(req(to, 500), limits(2, 30), now),
        Immediate::Queued
    );
    let mut out = SendBatch::new();
    p.round(&store, &[], false, now, &mut out);
    let got = delivered(&mut out, &rx);
    let times = store.peek(&held).map(|s| s.times);
    assert_eq!(
        notices(&got, 500),
        vec![
            (0, Notice::Start),
            (1, Notice::Object { key: held, times }),
            (2, Notice::Synced),
        ]
    );
    let Incoming::Notice { lease: granted, .. } = got[0] else {
        unreachable!()
    };
    assert_eq!(granted, 30, "the lease is capped by htcp_monitor_max_lease");
    // Live: a new object and a purge, each told once, from the feed.
    let new = put(&store, "http://o/new");
    assert!(store.purge(&held));
    let mut changed = Vec::new();
    assert!(!store.changes().drain(&mut changed));
    changed.extend(changed.clone());
    p.round(&store, &changed, false, now, &mut out);
    let got = notices(&delivered(&mut out, &rx), 500);
    let new_times = store.peek(&new).map(|s| s.times);
    assert_eq!(
        got,
        vec![
            (
                3,
                Notice::Object {
                    key: new,
                    times: new_times
                }
            ),
            (
                4,
                Notice::Object {
                    key: held,
                    times: None
                }
            ),
        ]
    );
    // Quiet: a heartbeat after HEARTBEAT.
    p.round(&store, &[], false, now + HEARTBEAT, &mut out);
    assert_eq!(
        notices(&delivered(&mut out, &rx), 500),
        vec![(5, Notice::Synced)]
    );
}

#[test]
fn bounded_renewed_and_ended() {
    let store = store();
    let p = Publisher::default();
    let now = Instant::now();
    let lease = Duration::from_secs(10);
    let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    assert_eq!(p.request(req(a, 1), limits(1, 10), now), Immediate::Queued);
    assert_eq!(
        p.request(req(b, 2), limits(1, 10), now),
        Immediate::Refused(wire::REFUSED_TOO_MANY),
        "one subscriber at most"
    );
    // A renewal (same address and id) extends the lease.
    let later = now + Duration::from_secs(8);
    assert_eq!(
        p.request(req(a, 1), limits(1, 10), later),
        Immediate::Queued
    );
    assert_eq!(p.subscribers(later)[0].lease_left, lease);
    // The lease runs out: ended, and the feed is off again.
    let mut out = SendBatch::new();
    p.round(&store, &[], false, later + lease, &mut out);
    assert!(p.subscribers(later + lease).is_empty());
    assert!(!store.changes().is_enabled());
    assert_eq!(p.stats.ended.load(Ordering::Relaxed), 1);
}

#[test]
fn rate_limited_per_tick() {
    let store = store();
    for i in 0..(PER_TICK + 10) {
        put(&store, &format!("http://o/{i}"));
    }
    let p = Publisher::default();
    let now = Instant::now();
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    p.request(req(to, 1), limits(4, 60), now);
    let mut out = SendBatch::new();
    p.round(&store, &[], false, now, &mut out);
    assert_eq!(out.len(), PER_TICK, "Start and the first objects, no more");
    assert_eq!(p.subscribers(now)[0].backlog, 11);
}

#[test]
fn a_renewal_mid_resync_does_not_say_synced() {
    let store = store();
    for i in 0..(PER_TICK * 2) {
        put(&store, &format!("http://o/{i}"));
    }
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let p = Publisher::default();
    let now = Instant::now();
    p.request(req(to, 9), limits(2, 60), now);
    let mut out = SendBatch::new();
    p.round(&store, &[], false, now, &mut out);
    p.request(req(to, 9), limits(2, 60), now);
    p.round(&store, &[], false, now, &mut out);
    p.round(&store, &[], false, now, &mut out);
    let got = notices(&delivered(&mut out, &rx), 9);
    let synced: Vec<u32> = got
        .iter()
        .filter(|(_, n)| *n == Notice::Synced)
        .map(|(n, _)| *n)
        .collect();
    // Start, 128 objects, then the one Synced: after the last object.
    assert_eq!(synced, vec![1 + (PER_TICK * 2) as u32], "{got:?}");
}

/// The change notices of `got` (trans-id offset from `id`, change).
fn changes(got: &[Incoming], id: u32) -> Vec<(u32, wire::Change)> {
    got.iter()
        .filter_map(|i| match i {
            Incoming::Change {
                trans_id, change, ..
            } => Some((trans_id.wrapping_sub(id), change.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn changes_go_out_as_updates_for_used_objects_and_invalidations_for_the_rest() {
    let store = store();
    let (hot, rare, gone) = ("http://o/hot", "http://o/rare", "http://o/gone");
    let (hot_key, rare_key) = (put(&store, hot), put(&store, rare));
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let p = Publisher::default();
    p.set_update_hits(Some(MonitorUpdateHits {
        hits: 2,
        window: None,
    }));
    let now = Instant::now();
    // Nobody subscribes yet: neither uses nor changes are kept.
    p.note_use(&hot_key, now);
    p.changed(hot, now);
    p.request(req(to, 900), limits(2, 30), now);
    let mut out = SendBatch::new();
    p.round(&store, &[], false, now, &mut out);
    let got = delivered(&mut out, &rx);
    assert!(changes(&got, 900).is_empty(), "{got:?}");
    for _ in 0..2 {
        p.note_use(&hot_key, now);
    }
    p.note_use(&store_key(Method::Get, gone.as_bytes()), now);
    p.note_use(&store_key(Method::Get, gone.as_bytes()), now);
    p.changed(hot, now);
    p.changed(hot, now);
    p.changed(rare, now);
    p.changed(gone, now);
    p.round(&store, &[], false, now, &mut out);
    let got = delivered(&mut out, &rx);
    let hot_times = store.peek(&hot_key).map(|s| s.times);
    let rare_times = store.peek(&rare_key).map(|s| s.times);
    let kinds: Vec<(u32, String, PushKind, Option<Times>)> = changes(&got, 900)
        .into_iter()
        .map(|(n, c)| (n, c.url, c.kind, c.times))
        .collect();
    // After the resync (Start, 2 objects, Synced: n 0-3): the hot one as
    // an update (told once however often it changed), the rare one as an
    // invalidation, the one used often but no longer held as an
    // invalidation too.
    assert_eq!(
        kinds,
        vec![
            (4, hot.to_string(), PushKind::Update, hot_times),
            (5, rare.to_string(), PushKind::Invalidate, None),
            (6, gone.to_string(), PushKind::Invalidate, None),
        ]
    );
    // The invalidated object still held here follows as an object notice,
    // so the subscriber's set knows it again.
    assert!(
        notices_of(&got, 900).contains(&(
            7,
            Notice::Object {
                key: rare_key,
                times: rare_times
            }
        )),
        "{got:?}"
    );
    assert_eq!(p.stats.updates_sent.load(Ordering::Relaxed), 1);
    assert_eq!(p.stats.invalidations_sent.load(Ordering::Relaxed), 2);
}

fn notices_of(got: &[Incoming], id: u32) -> Vec<(u32, Notice)> {
    got.iter()
        .filter_map(|i| match i {
            Incoming::Notice {
                trans_id, notice, ..
            } => Some((trans_id.wrapping_sub(id), *notice)),
            _ => None,
        })
        .collect()
}
