//! What batched datagram IO (recvmmsg/sendmmsg in the ICP and HTCP
//! responders) could break, seen from the wire: bursts sent all at once
//! from several sockets, so the responder takes many datagrams in one
//! receive and answers them in one send. Every answer must reach its own
//! sender once, with its own reqnum (trans_id); an oversized datagram or a
//! reply to cuttle's own queries inside a burst must not cost its
//! neighbours. The responders run in-process on loopback, each on an
//! ephemeral port, with an empty store (every query is a miss).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cuttle::access_log::Logger;
use cuttle::config::{load_str, Config, LoadOptions};
use cuttle::peers::htcp_server::{Htcp, HtcpServer, HtcpServerStats};
use cuttle::peers::icp_server::{HitOnly, Icp, IcpServer, IcpServerStats};
use cuttle::peers::netdb::NetDb;
use cuttle::peers::querier::Forwarded;
use cuttle::peers::resolve::PeerAddrs;
use cuttle::store::{Store, StoreOptions};
use cuttle_protocol::htcp::{self, Specifier};
use cuttle_protocol::icp::{self, Message, Opcode};

const URL: &str = "http://origin.test/batched";
/// Longest wait for an answer that must come.
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(300);

fn config(text: &str) -> Arc<Config> {
    let loaded = load_str(text, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Arc::new(loaded.config)
}

fn empty_store() -> Arc<Store> {
    Arc::new(
        Store::open(&[], StoreOptions::default())
            .expect("an empty store")
            .0,
    )
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn start_icp() -> (IcpServer, Arc<IcpServerStats>) {
    let stats = Arc::new(IcpServerStats::default());
    let icp = Icp::new(
        empty_store(),
        Arc::clone(&stats),
        Arc::new(HitOnly::default()),
        Arc::new(NetDb::default()),
    );
    let server = IcpServer::start_at(
        any_port(),
        false,
        config("icp_port 3130\nicp_access allow all\n"),
        &PeerAddrs::literal_only(),
        Logger::disabled(),
        icp,
    )
    .expect("ICP responder");
    (server, stats)
}

fn asker() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind asker");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

fn icp_query(reqnum: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Message::query(reqnum, URL.as_bytes())
        .encode(&mut out)
        .expect("query");
    out
}

/// Reads `count` datagrams on `socket` (each within [`WAIT`]), then checks
/// that nothing more comes within [`QUIET`]; each with its sender.
fn read_exactly(socket: &UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 70_000];
    let mut got = Vec::new();
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    while got.len() < count {
        let (n, from) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("only {} of {count} answers arrived: {e}", got.len()));
        got.push((buf[..n].to_vec(), from));
    }
    socket.set_read_timeout(Some(QUIET)).expect("timeout");
    if let Ok((n, from)) = socket.recv_from(&mut buf) {
        panic!("an answer too many: {n} bytes from {from}");
    }
    got
}

/// The reqnums of ICP MISS replies to [`URL`] in `replies`, all from `server`.
fn icp_reqnums(replies: &[(Vec<u8>, SocketAddr)], server: SocketAddr) -> Vec<u32> {
    let mut reqnums: Vec<u32> = replies
        .iter()
        .map(|(reply, from)| {
            assert_eq!(*from, server, "the answer must leave from the ICP port");
            let m = icp::parse(reply).expect("an ICP reply");
            assert_eq!(m.opcode(), Opcode::Miss, "{m:?}");
            m.reqnum
        })
        .collect();
    reqnums.sort_unstable();
    reqnums
}

#[test]
fn a_burst_from_four_askers_gets_each_answer_once_at_its_sender() {
    let (server, stats) = start_icp();
    let to = server.local_addr();
    let askers: Vec<UdpSocket> = (0..4).map(|_| asker()).collect();
    // 64 queries in one burst, interleaved across the askers, none read
    // until all are sent: the responder receives them in batches that mix
    // senders.
    for k in 0..16u32 {
        for (i, a) in (0u32..).zip(&askers) {
            a.send_to(&icp_query(i * 1000 + k), to).expect("send");
        }
    }
    for (i, a) in (0u32..).zip(&askers) {
        let replies = read_exactly(a, 16);
        let expected: Vec<u32> = (0..16).map(|k| i * 1000 + k).collect();
        assert_eq!(icp_reqnums(&replies, to), expected, "asker {i}");
    }
    assert_eq!(stats.replies_sent.load(Ordering::Relaxed), 64);
    assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn an_oversized_datagram_in_a_burst_is_dropped_and_counted_its_neighbours_answered() {
    let (server, stats) = start_icp();
    let to = server.local_addr();
    let a = asker();
    // Its first MAX_DATAGRAM bytes are a query of that length (the URL's
    // NUL is the last of them): read cut to the limit, it would be
    // answered.
    let mut oversized = icp_query(99);
    oversized.pop();
    oversized.resize(icp::MAX_DATAGRAM - 1, b'a');
    oversized.push(0);
    oversized[2..4].copy_from_slice(&(icp::MAX_DATAGRAM as u16).to_be_bytes());
    oversized.resize(icp::MAX_DATAGRAM + 100, b'x');
    for reqnum in 1..=3 {
        a.send_to(&icp_query(reqnum), to).expect("send");
    }
    a.send_to(&oversized, to).expect("send oversized");
    for reqnum in 4..=6 {
        a.send_to(&icp_query(reqnum), to).expect("send");
    }
    let replies = read_exactly(&a, 6);
    assert_eq!(icp_reqnums(&replies, to), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.pkts_recv.load(Ordering::Relaxed), 7);
    assert_eq!(stats.replies_sent.load(Ordering::Relaxed), 6);
}

/// Waits for the inbox's next reply (the receiver is tokio's; polled here
/// without a runtime).
fn next_forwarded(rx: &mut tokio::sync::mpsc::Receiver<Forwarded>) -> Option<Forwarded> {
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.try_recv() {
            Ok(f) => return Some(f),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

#[test]
fn replies_inside_a_burst_reach_the_querier_and_queries_are_answered() {
    let (server, stats) = start_icp();
    let to = server.local_addr();
    let mut inbox = server.query_socket().inbox.listen();
    let a = asker();
    let b = asker();
    // A peer's reply to one of cuttle's queries, as b would send it.
    let mut reply = Vec::new();
    Message::query(4242, URL.as_bytes())
        .reply(Opcode::Miss)
        .expect("a MISS")
        .encode(&mut reply)
        .expect("reply");
    assert!(icp::opcode_of(&reply) == Some(Opcode::Miss));
    a.send_to(&icp_query(1), to).expect("send");
    a.send_to(&icp_query(2), to).expect("send");
    b.send_to(&reply, to).expect("send reply");
    a.send_to(&icp_query(3), to).expect("send");
    b.send_to(&reply, to).expect("send reply");
    a.send_to(&icp_query(4), to).expect("send");

    assert_eq!(icp_reqnums(&read_exactly(&a, 4), to), vec![1, 2, 3, 4]);
    let b_addr = b.local_addr().expect("addr");
    for n in 0..2 {
        let f = next_forwarded(&mut inbox)
            .unwrap_or_else(|| panic!("reply {n} never reached the querier's inbox"));
        assert_eq!((f.data.as_slice(), f.from), (reply.as_slice(), b_addr));
    }
    assert!(inbox.try_recv().is_err(), "a reply too many in the inbox");
    // Replies are not answered (nothing came back to b) nor counted as queries.
    b.set_read_timeout(Some(QUIET)).expect("timeout");
    assert!(
        b.recv_from(&mut [0u8; 100]).is_err(),
        "a reply was answered"
    );
    assert_eq!(stats.pkts_recv.load(Ordering::Relaxed), 4);
}

fn htcp_tst(trans_id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    htcp::Message::tst_request(trans_id, Specifier::new("GET", URL))
        .encode(&mut out)
        .expect("TST");
    out
}

#[test]
fn an_htcp_burst_from_four_askers_gets_each_answer_once_at_its_sender() {
    let stats = Arc::new(HtcpServerStats::default());
    let server = HtcpServer::start_at(
        any_port(),
        false,
        config("htcp_port 4827\nhtcp_access allow all\n"),
        &PeerAddrs::literal_only(),
        Logger::disabled(),
        Htcp::new(
            empty_store(),
            Arc::default(),
            Arc::clone(&stats),
            Arc::default(),
        ),
    )
    .expect("HTCP responder");
    let to = server.local_addr();
    let askers: Vec<UdpSocket> = (0..4).map(|_| asker()).collect();
    for k in 0..12u32 {
        for (i, a) in (0u32..).zip(&askers) {
            a.send_to(&htcp_tst(i * 1000 + k), to).expect("send");
        }
    }
    for (i, a) in (0u32..).zip(&askers) {
        let mut answered = BTreeMap::new();
        for (reply, from) in read_exactly(a, 12) {
            assert_eq!(from, to, "the answer must leave from the HTCP port");
            let m = htcp::parse(&reply).expect("an HTCP response");
            assert_eq!(m.response, 1, "TST not found: {m:?}");
            *answered.entry(m.trans_id).or_insert(0) += 1;
        }
        let expected: BTreeMap<u32, i32> = (0..12).map(|k| (i * 1000 + k, 1)).collect();
        assert_eq!(answered, expected, "asker {i}");
    }
    assert_eq!(stats.pkts_sent.load(Ordering::Relaxed), 48);
}
