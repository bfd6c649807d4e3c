//! The subscriber's side of a subscription, datagram by datagram.

use super::*;
use crate::peers::monitor::wire::{self, Incoming, Notice};
use cuttle_protocol::htcp;

const FRESH: Times = Times {
    date: 1_000,
    expires: 4_000_000_000,
    last_modified: 0,
};
const UNIX: u64 = 2_000_000_000;

fn notice(id: u32, n: u32, notice: Notice) -> Incoming {
    Incoming::Notice {
        trans_id: id.wrapping_add(n),
        lease: 10,
        notice,
    }
}

fn object(key: u8) -> Notice {
    Notice::Object {
        key: [key; 16],
        times: Some(FRESH),
    }
}

/// A slot subscribed with id 100 and synced with objects 1 and 2.
fn synced(now: Instant) -> MonitorSlot {
    let slot = MonitorSlot::default();
    let req = slot.tick(now, || 100).expect("subscribes at once");
    let m = htcp::parse(&req).unwrap();
    assert_eq!(
        (m.trans_id, m.op),
        (100, htcp::Op::MonRequest { time: LEASE_WANTED })
    );
    for (n, x) in [
        (0, Notice::Start),
        (1, object(1)),
        (2, object(2)),
        (3, Notice::Synced),
    ] {
        assert!(!slot.receive(notice(100, n, x), now, "p"));
    }
    slot
}

#[test]
fn a_synced_set_answers_and_follows_notifications() {
    let now = Instant::now();
    let slot = MonitorSlot::default();
    assert_eq!(slot.holds(&[1; 16], now, UNIX), None, "nothing known yet");
    let slot2 = synced(now);
    assert_eq!(slot2.holds(&[1; 16], now, UNIX), Some(true));
    assert_eq!(
        slot2.holds(&[9; 16], now, UNIX),
        Some(false),
        "a miss skips the peer"
    );
    let gone = Notice::Object {
        key: [1; 16],
        times: None,
    };
    slot2.receive(notice(100, 4, gone), now, "p");
    assert_eq!(slot2.holds(&[1; 16], now, UNIX), Some(false));
    // Stale by the TST rule: known, but not a hit.
    let stale = Notice::Object {
        key: [3; 16],
        times: Some(Times {
            date: 1,
            expires: 2,
            last_modified: 0,
        }),
    };
    slot2.receive(notice(100, 5, stale), now, "p");
    assert_eq!(slot2.holds(&[3; 16], now, UNIX), Some(false));
    assert_eq!(slot2.view(now).objects, 2);
    drop(slot);
}

#[test]
fn not_usable_until_the_resync_ends() {
    let now = Instant::now();
    let slot = MonitorSlot::default();
    slot.tick(now, || 7);
    slot.receive(notice(7, 0, Notice::Start), now, "p");
    slot.receive(notice(7, 1, object(1)), now, "p");
    assert_eq!(slot.holds(&[1; 16], now, UNIX), None);
    slot.receive(notice(7, 2, Notice::Synced), now, "p");
    assert_eq!(slot.holds(&[1; 16], now, UNIX), Some(true));
}

#[test]
fn a_gap_drops_the_set_and_subscribes_again() {
    let now = Instant::now();
    let slot = synced(now);
    // n = 5 where 4 was due: one datagram lost.
    assert!(slot.receive(notice(100, 5, object(5)), now, "p"));
    assert_eq!(slot.holds(&[1; 16], now, UNIX), None);
    let v = slot.view(now);
    assert_eq!((v.gaps, v.phase, v.objects), (1, Phase::Idle, 0));
    let again = slot.tick(now, || 200).expect("a new subscription");
    assert_eq!(htcp::parse(&again).unwrap().trans_id, 200);
    // The old subscription's late datagrams are ignored.
    assert!(!slot.receive(notice(100, 6, object(6)), now, "p"));
    assert_eq!(slot.view(now).phase, Phase::Subscribing);
}

#[test]
fn a_restarted_publisher_is_resynced_and_old_objects_forgotten() {
    let now = Instant::now();
    let slot = synced(now);
    // The renewal (same id) answered by a Start: the peer lost us.
    slot.receive(notice(100, 0, Notice::Start), now, "p");
    assert_eq!(slot.holds(&[1; 16], now, UNIX), None);
    slot.receive(notice(100, 1, Notice::Synced), now, "p");
    assert_eq!(slot.holds(&[1; 16], now, UNIX), Some(false));
    assert_eq!(slot.view(now).resyncs, 2);
}

#[test]
fn silence_and_lease_end_bound_what_the_set_says() {
    let now = Instant::now();
    let slot = synced(now);
    let quiet = now + SILENCE_LIMIT;
    assert_eq!(
        slot.holds(&[1; 16], quiet, UNIX),
        None,
        "a silent peer is not trusted"
    );
    assert!(
        slot.tick(quiet, || 300).is_some(),
        "and is subscribed again"
    );
    assert_eq!(slot.view(quiet).objects, 0);
    // A lease of 10 s that ran out, heartbeats or not.
    let slot = synced(now);
    let late = now + Duration::from_secs(10);
    assert_eq!(slot.holds(&[1; 16], late, UNIX), None);
}

#[test]
fn renewed_halfway_with_the_same_id() {
    let now = Instant::now();
    let slot = synced(now);
    let at = |ms| now + Duration::from_millis(ms);
    slot.receive(notice(100, 4, Notice::Synced), at(2_500), "p");
    assert!(slot.tick(at(4_000), || 999).is_none());
    slot.receive(notice(100, 5, Notice::Synced), at(4_500), "p");
    let renew = slot.tick(at(5_000), || 999).expect("renewal");
    assert_eq!(htcp::parse(&renew).unwrap().trans_id, 100);
}

#[test]
fn refused_and_not_implemented_wait_before_asking_again() {
    let now = Instant::now();
    let slot = MonitorSlot::default();
    slot.tick(now, || 5);
    slot.receive(
        Incoming::NotImplemented {
            trans_id: 5,
            code: 2,
        },
        now,
        "p",
    );
    assert_eq!(slot.view(now).phase, Phase::Refused);
    assert!(slot.tick(now + Duration::from_secs(1), || 6).is_none());
    assert!(slot.tick(now + REFUSED_RETRY, || 6).is_some());
    let mut out = Vec::new();
    wire::encode_refusal(1, 6, wire::REFUSED_TOO_MANY, &mut out);
    slot.receive(wire::parse(&out).unwrap(), now, "p");
    assert_eq!(slot.view(now).refusals, 2);
}

#[test]
fn a_silent_peer_is_asked_less_often() {
    let now = Instant::now();
    let slot = MonitorSlot::default();
    let at = |s| now + Duration::from_secs(s);
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    // The first request and two more, a second apart; then a pause.
    assert!(slot.tick(at(0), &mut next).is_some());
    assert!(slot.tick(at(1), &mut next).is_some());
    assert!(slot.tick(at(2), &mut next).is_some());
    assert!(slot.tick(at(3), &mut next).is_none());
    assert!(slot.tick(at(2) + REFUSED_RETRY, &mut next).is_some());
}

#[test]
fn change_notices_update_the_set_and_wait_for_the_proxy() {
    let now = Instant::now();
    let slot = synced(now);
    let change = |n: u32, key: u8, kind: PushKind, times: Option<Times>| Incoming::Change {
        trans_id: 100 + n,
        lease: 10,
        change: wire::Change {
            key: [key; 16],
            url: format!("http://o/{key}"),
            kind,
            times,
        },
    };
    // Object 1 invalidated: out of the set, its URL waits to be dropped.
    assert!(!slot.receive(change(4, 1, PushKind::Invalidate, None), now, "p"));
    assert_eq!(slot.holds(&[1; 16], now, UNIX), Some(false));
    // Object 2 updated: in the set with the new times, its URL waits for
    // its refetch, queued once however often it is updated.
    let newer = Times {
        date: 1_500,
        ..FRESH
    };
    assert!(!slot.receive(change(5, 2, PushKind::Update, Some(newer)), now, "p"));
    assert!(!slot.receive(change(6, 2, PushKind::Update, Some(newer)), now, "p"));
    assert_eq!(slot.holds(&[2; 16], now, UNIX), Some(true));
    assert_eq!(slot.take_invalidations(), vec!["http://o/1".to_string()]);
    assert!(slot.take_invalidations().is_empty());
    assert_eq!(slot.next_update(), Some("http://o/2".to_string()));
    assert_eq!(slot.next_update(), None);
    slot.note_refetch(true);
    slot.note_refetch(false);
    let v = slot.view(now);
    assert_eq!(
        (
            v.invalidations,
            v.updates,
            v.refetches_done,
            v.refetches_failed
        ),
        (1, 2, 1, 1)
    );
    // A change after a gap is still acted on (the set resyncs).
    assert!(slot.receive(change(9, 3, PushKind::Invalidate, None), now, "p"));
    assert_eq!(slot.take_invalidations(), vec!["http://o/3".to_string()]);
}

#[test]
fn updates_past_the_bound_become_invalidations() {
    let now = Instant::now();
    let slot = synced(now);
    for i in 0..=UPDATES_MAX as u32 {
        let incoming = Incoming::Change {
            trans_id: 104 + i,
            lease: 10,
            change: wire::Change {
                key: [7; 16],
                url: format!("http://o/u{i}"),
                kind: PushKind::Update,
                times: Some(FRESH),
            },
        };
        slot.receive(incoming, now, "p");
    }
    assert_eq!(
        slot.take_invalidations(),
        vec![format!("http://o/u{UPDATES_MAX}")]
    );
}
