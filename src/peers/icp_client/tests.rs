//! Unit tests of the ICP client: closest and first parent misses, multicast
//! group counts, request numbers.

use super::*;
use crate::config::CachePeer;
use crate::peers::resolve::PeerAddrs;

#[test]
fn multicast_interface_is_set_by_a_local_address_only() {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    // A byte-order mistake would name 1.0.0.127, which is no local
    // address, and fail like the documentation address below.
    set_multicast_if_v4(&s, Ipv4Addr::LOCALHOST).expect("lo's address");
    assert!(set_multicast_if_v4(&s, Ipv4Addr::new(192, 0, 2, 1)).is_err());
}

fn parent(options: &str) -> CachePeer {
    let text = format!("cache_peer 127.0.8.50 parent 3128 3130 {options}\n");
    let loaded = crate::config::load_str_sandboxed(&text, "test");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config.cache_peers[0].value.clone()
}

/// A MISS from `peer` after `ms`, with SRC_RTT option data when given.
fn miss(peer: PeerId, ms: u64, option_data: Option<u32>) -> Reply {
    Reply {
        peer,
        opcode: Opcode::Miss,
        rtt: Duration::from_millis(ms),
        src_rtt: option_data.map(|d| {
            let (rtt_ms, hops) = icp::split_src_rtt(d);
            SrcRtt { rtt_ms, hops }
        }),
    }
}

/// The round's (closest, first) after these replies, in this order.
fn round(replies: &[(Reply, &CachePeer)], query_icmp: bool) -> (Option<PeerId>, Option<PeerId>) {
    let mut m = ParentMisses::default();
    for (r, p) in replies {
        m.note(r, p, query_icmp);
    }
    (m.closest.map(|c| c.0), m.first.map(|f| f.0))
}

// Each case below is one Squid 5.7 was seen to decide (two fake
// parents answering a child with query_icmp on).

#[test]
fn the_smallest_reported_rtt_is_the_closest_whatever_the_order_or_hops() {
    let p = parent("");
    // rtt 5 first, rtt 3 later: the later one.
    let r = [(miss(1, 1, Some(5)), &p), (miss(2, 2, Some(3)), &p)];
    assert_eq!(round(&r, true).0, Some(2));
    // hops (high half) do not count: rtt 2 with hops 0xFFFF beats 3.
    let r = [
        (miss(2, 1, Some(3)), &p),
        (miss(1, 2, Some(0xFFFF_0002)), &p),
    ];
    assert_eq!(round(&r, true).0, Some(1));
    // 0xFFFF is an RTT like any other (Squid chose that parent).
    let r = [(miss(2, 1, None), &p), (miss(1, 2, Some(0xFFFF)), &p)];
    assert_eq!(round(&r, true), (Some(1), Some(2)));
    // A tie keeps the first to answer.
    for (a, b) in [(1, 2), (2, 1)] {
        let r = [(miss(a, 1, Some(1)), &p), (miss(b, 2, Some(1)), &p)];
        assert_eq!(round(&r, true).0, Some(a));
    }
}

#[test]
fn no_closest_without_a_flagged_nonzero_rtt_or_with_query_icmp_off() {
    let p = parent("");
    // The flag with rtt 0 (hops 1): no closest; the first to answer is
    // the first parent miss.
    let r = [(miss(1, 1, Some(0x0001_0000)), &p), (miss(2, 2, None), &p)];
    assert_eq!(round(&r, true), (None, Some(1)));
    // Option data without the flag never gets here (no src_rtt).
    let r = [(miss(1, 1, None), &p), (miss(2, 2, None), &p)];
    assert_eq!(round(&r, true), (None, Some(1)));
    // query_icmp off: a reported RTT is ignored.
    let r = [(miss(2, 1, None), &p), (miss(1, 2, Some(1)), &p)];
    assert_eq!(round(&r, false), (None, Some(2)));
}

#[test]
fn once_a_closest_parent_is_known_later_misses_are_not_first() {
    let p = parent("");
    // Flagged first: it is the closest; the later plain MISS is not
    // made the first parent miss.
    let r = [(miss(1, 1, Some(4)), &p), (miss(2, 2, None), &p)];
    assert_eq!(round(&r, true), (Some(1), None));
    // A first parent miss from before stays (selection prefers the
    // closest anyway).
    let r = [(miss(1, 1, None), &p), (miss(2, 2, Some(9)), &p)];
    assert_eq!(round(&r, true), (Some(2), Some(1)));
}

#[test]
fn closest_only_parents_are_never_the_first_parent_miss() {
    let only = parent("closest-only");
    let plain = parent("");
    let r = [(miss(1, 1, None), &only), (miss(2, 2, None), &plain)];
    assert_eq!(round(&r, true), (None, Some(2)));
    let r = [(miss(1, 1, None), &only), (miss(2, 2, None), &only)];
    assert_eq!(round(&r, true), (None, None));
    // ... but one may be the closest.
    let r = [(miss(2, 1, None), &only), (miss(1, 2, Some(4)), &only)];
    assert_eq!(round(&r, true), (Some(1), None));
}

#[test]
fn first_parent_miss_time_is_weighted() {
    // 30 ms / weight 3 = 10 beats 20 ms / 1; basetime comes off first.
    let heavy = parent("weight=3");
    let plain = parent("");
    let r = [(miss(1, 20, None), &plain), (miss(2, 30, None), &heavy)];
    assert_eq!(round(&r, false).1, Some(2));
    let based = parent("basetime=15");
    let r = [(miss(1, 10, None), &plain), (miss(2, 20, None), &based)];
    assert_eq!(round(&r, false).1, Some(2), "max(1, 20 - 15) < 10");
}

#[tokio::test]
async fn a_group_is_counted_by_a_probe_and_queries_wait_for_that_many() {
    use tokio::net::UdpSocket;
    let bind = |last: u8| UdpSocket::bind((Ipv4Addr::new(127, 0, 9, last), 0));
    let (group, responder, stranger) = (
        bind(81).await.expect("bind"),
        bind(82).await.expect("bind"),
        bind(83).await.expect("bind"),
    );
    let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
    // A unicast stand-in for the group; a long icp_query_timeout, so
    // only the expected count can end a query early.
    let text = format!(
        "cache_peer 127.0.9.81 multicast 3128 {} ttl=1\n\
         cache_peer 127.0.9.82 sibling 3128 {} multicast-responder\n\
         cache_peer 127.0.9.83 sibling 3128 {}\n\
         mcast_icp_query_timeout 300\nicp_query_timeout 5000\n",
        port(&group),
        port(&responder),
        port(&stranger)
    );
    let loaded = crate::config::load_str_sandboxed(&text, "test");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let table = Arc::new(PeerTable::new(
        &loaded.config,
        None,
        Instant::now(),
        &PeerAddrs::literal_only(),
    ));
    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 80));
    let client = IcpClient::bind(Some(local), Arc::clone(&table), Arc::default()).expect("bind");
    // The "group" hands each query to its members; both answer, but
    // only the multicast-responder counts.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    tokio::spawn(async move {
        let mut buf = vec![0u8; icp::MAX_DATAGRAM];
        while let Ok((n, from)) = group.recv_from(&mut buf).await {
            let q = icp::parse(&buf[..n]).expect("a query");
            lock(&seen).push(String::from_utf8_lossy(q.body.url().0).to_string());
            let mut reply = Vec::new();
            q.reply(Opcode::Miss)
                .expect("reply")
                .encode(&mut reply)
                .expect("encode");
            for member in [&responder, &stranger] {
                member.send_to(&reply, from).await.expect("send");
            }
        }
    });
    assert_eq!(mcast_replies_expected(&table.peers[0].state()), 0);
    assert_eq!(client.count_group(&table, 0).await, Some(1));
    assert_eq!(
        lock(&asked).clone(),
        [format!("http://127.0.9.81:{}/", port_of(&table, 0))]
    );
    assert_eq!(mcast_replies_expected(&table.peers[0].state()), 1);
    // A client query expects one reply and ends with it.
    let r = client
        .query(&table, "http://example.test/x", &[(0, PeerType::Multicast)])
        .await;
    assert_eq!((r.expected, r.timed_out), (1, false), "{r:?}");
    assert_eq!(r.replies.first().map(|r| r.peer), Some(1), "{r:?}");
}

fn port_of(table: &PeerTable, id: PeerId) -> u16 {
    table
        .get(id)
        .and_then(|p| p.icp_addr)
        .map_or(0, |a| a.port())
}

#[tokio::test]
async fn reqnums_count_up_and_skip_zero_when_wrapping() {
    let c = IcpClient::bind_plain(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))).expect("bind");
    assert_eq!(c.next_reqnum(), 1);
    assert_eq!(c.next_reqnum(), 2);
    c.next_reqnum.store(REQNUM_MAX - 1, Ordering::Relaxed);
    assert_eq!(c.next_reqnum(), REQNUM_MAX);
    assert_eq!(c.next_reqnum(), 1, "wraps from INT_MAX to 1, never 0");
    c.next_reqnum.store(u32::MAX, Ordering::Relaxed);
    assert_eq!(c.next_reqnum(), 1);
}

#[tokio::test]
async fn load_aware_peers_are_asked_for_their_load_and_their_report_is_kept() {
    use crate::peers::load::report;
    use tokio::net::UdpSocket;
    let bind = |last: u8| UdpSocket::bind((Ipv4Addr::new(127, 0, 9, last), 0));
    let (aware, plain) = (bind(91).await.expect("bind"), bind(92).await.expect("bind"));
    let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
    let text = format!(
        "cache_peer 127.0.9.91 parent 3128 {} carp load-aware\n\
         cache_peer 127.0.9.92 parent 3128 {} carp\nicp_query_timeout 5000\n",
        port(&aware),
        port(&plain)
    );
    let loaded = crate::config::load_str_sandboxed(&text, "test");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let table = Arc::new(PeerTable::new(
        &loaded.config,
        None,
        Instant::now(),
        &PeerAddrs::literal_only(),
    ));
    // Both up (their TCP probes succeeded): replies are waited for.
    table.note_tcp_success(0);
    table.note_tcp_success(1);
    let local = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 90));
    let client = IcpClient::bind(Some(local), Arc::clone(&table), Arc::default()).expect("bind");
    // Each peer records the flags of what it is asked and answers MISS
    // reporting a load of 250 ms when asked for it.
    let flags = Arc::new(Mutex::new(Vec::new()));
    for (id, socket) in [(0, aware), (1, plain)] {
        let flags = Arc::clone(&flags);
        tokio::spawn(async move {
            let mut buf = vec![0u8; icp::MAX_DATAGRAM];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let q = icp::parse(&buf[..n]).expect("a query");
                lock(&flags).push((id, q.options.0));
                let mut m = q.reply(Opcode::Miss).expect("reply");
                if q.options.0 & report::FLAG != 0 {
                    let (f, data) = report::encode(250);
                    (m.options, m.option_data) = (icp::Options(f), data);
                }
                let mut out = Vec::new();
                m.encode(&mut out).expect("encode");
                socket.send_to(&out, from).await.expect("send");
            }
        });
    }
    let r = client
        .query(
            &table,
            "http://example.test/x",
            &[(0, PeerType::Parent), (1, PeerType::Parent)],
        )
        .await;
    assert_eq!((r.expected, r.replies.len()), (2, 2), "{r:?}");
    let mut asked = lock(&flags).clone();
    asked.sort();
    assert_eq!(
        asked,
        [(0, report::FLAG), (1, 0)],
        "only load-aware is asked"
    );
    let reported = |id: PeerId| table.peers[id].state().load.reported.map(|(ms, _)| ms);
    assert_eq!((reported(0), reported(1)), (Some(250), None));
}
