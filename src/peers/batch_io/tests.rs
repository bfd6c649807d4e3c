//! Unit tests of batched datagram IO on loopback sockets: bursts received
//! in few calls with every sender kept, oversized datagrams cut without
//! touching their neighbours, sends in order to their own destinations,
//! and a datagram the kernel refuses in the middle of a batch costing only
//! itself.

use super::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn bound() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().expect("addr")
}

/// Receives on `socket` until `count` datagrams came (or 5 s passed):
/// each with its sender, and the size of each receive's batch.
fn receive(
    socket: &UdpSocket,
    batch: &mut RecvBatch,
    count: usize,
) -> (Vec<(Vec<u8>, SocketAddr)>, Vec<usize>) {
    let (mut got, mut calls) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < count && Instant::now() < deadline {
        match batch.recv(socket) {
            Ok(n) => {
                calls.push(n);
                for (datagram, from) in batch.datagrams() {
                    got.push((datagram.to_vec(), from.expect("an IPv4 sender")));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("receive failed: {e}"),
        }
    }
    (got, calls)
}

#[test]
fn a_queued_burst_is_received_in_batches_each_datagram_with_its_sender() {
    let server = bound();
    let senders: Vec<UdpSocket> = (0..4).map(|_| bound()).collect();
    let mut sent = Vec::new();
    for k in 0..10u8 {
        for (i, s) in (0u8..).zip(&senders) {
            let datagram = vec![i, k, i ^ k];
            s.send_to(&datagram, addr(&server)).expect("send");
            sent.push((datagram, addr(s)));
        }
    }
    let mut batch = RecvBatch::new(100);
    let (got, calls) = receive(&server, &mut batch, sent.len());
    // Loopback keeps one sender's order, and here the senders alternate
    // on one thread, so the arrival order is the sending order.
    assert_eq!(got, sent);
    // All were queued before the first receive (loopback delivers within
    // the send, unless the kernel defers it), so receives take several.
    assert!(
        calls.iter().all(|&n| n <= BATCH) && calls.iter().any(|&n| n > 1),
        "receives of {calls:?} datagrams"
    );
}

#[test]
fn nothing_queued_is_would_block_at_once() {
    let server = bound();
    let mut batch = RecvBatch::new(10);
    let e = batch.recv(&server).expect_err("nothing is queued");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(batch.datagrams().count(), 0);
}

#[test]
fn an_oversized_datagram_is_cut_to_the_slot_and_its_neighbours_kept() {
    let server = bound();
    let client = bound();
    let to = addr(&server);
    client.send_to(b"first", to).expect("send");
    client.send_to(&[7u8; 500], to).expect("send");
    client.send_to(b"third", to).expect("send");
    let mut batch = RecvBatch::new(101);
    let (got, _) = receive(&server, &mut batch, 3);
    let lens: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
    assert_eq!(lens, vec![5, 101, 5]);
    assert_eq!(got[0].0, b"first");
    assert_eq!(got[1].0, vec![7u8; 101]);
    assert_eq!(got[2].0, b"third");
}

#[test]
fn a_send_batch_larger_than_one_call_reaches_each_destination_in_order() {
    let client = bound();
    let peers: Vec<UdpSocket> = (0..3).map(|_| bound()).collect();
    let mut batch = SendBatch::new();
    let total = BATCH + 9;
    for n in 0..total {
        let datagram = format!("datagram {n}");
        batch.push(datagram.as_bytes(), addr(&peers[n % 3]), n);
    }
    assert_eq!(batch.len(), total);
    let mut outcomes = Vec::new();
    batch.send(&client, |tag, to, result| {
        outcomes.push((tag, to, result.expect("sent")));
    });
    assert!(batch.is_empty());
    let expected: Vec<(usize, SocketAddr, usize)> = (0..total)
        .map(|n| (n, addr(&peers[n % 3]), format!("datagram {n}").len()))
        .collect();
    assert_eq!(outcomes, expected);
    let mut buf = [0u8; 64];
    for (i, peer) in peers.iter().enumerate() {
        for n in (i..total).step_by(3) {
            let (len, from) = peer.recv_from(&mut buf).expect("a datagram");
            assert_eq!(from, addr(&client));
            assert_eq!(&buf[..len], format!("datagram {n}").as_bytes());
        }
    }
}

#[test]
fn a_datagram_refused_inside_a_batch_fails_alone_and_the_rest_go_out() {
    let client = bound();
    let peer = bound();
    let mut batch = SendBatch::new();
    batch.push(b"one", addr(&peer), 1);
    batch.push(b"two", addr(&peer), 2);
    // An IPv4 socket cannot send to an IPv6 address: the kernel stops
    // the batch there (the first two went out), then refuses this one.
    let v6: SocketAddr = "[::1]:9".parse().expect("addr");
    batch.push(b"refused", v6, 3);
    batch.push(b"four", addr(&peer), 4);
    // Larger than any UDP datagram: refused too (EMSGSIZE).
    batch.push(&vec![0u8; 70_000], addr(&peer), 5);
    batch.push(b"six", addr(&peer), 6);
    let mut outcomes = Vec::new();
    batch.send(&client, |tag, to, result| {
        outcomes.push((tag, to, result.map_err(|e| e.kind())));
    });
    let ok: Vec<u32> = outcomes
        .iter()
        .filter(|(_, _, r)| r.is_ok())
        .map(|(tag, _, _)| *tag)
        .collect();
    assert_eq!(ok, vec![1, 2, 4, 6], "{outcomes:?}");
    assert_eq!(outcomes.len(), 6);
    assert_eq!(outcomes[2].1, v6);
    let mut buf = [0u8; 100];
    for expected in [&b"one"[..], b"two", b"four", b"six"] {
        let (len, _) = peer.recv_from(&mut buf).expect("a datagram");
        assert_eq!(&buf[..len], expected);
    }
}

#[test]
fn ipv6_and_v4_mapped_senders_are_received_and_answered_where_they_are() {
    // A dual-stack socket, as a responder on `udp_incoming_address ::`.
    let server = UdpSocket::bind("[::]:0").expect("bind [::]");
    let port = addr(&server).port();
    let v6 = UdpSocket::bind("[::1]:0").expect("bind [::1]");
    let v4 = bound();
    v6.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    v6.send_to(b"from v6", ("::1", port)).expect("send");
    v4.send_to(b"from v4", ("127.0.0.1", port)).expect("send");
    let mut batch = RecvBatch::new(64);
    let (got, _) = receive(&server, &mut batch, 2);
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", addr(&v4).port())
        .parse()
        .expect("addr");
    assert_eq!(
        got,
        vec![
            (b"from v6".to_vec(), addr(&v6)),
            (b"from v4".to_vec(), mapped),
        ]
    );
    let mut replies = SendBatch::new();
    for (datagram, from) in &got {
        replies.push(datagram, *from, ());
    }
    let mut sent = 0;
    replies.send(&server, |(), _, result| {
        result.expect("sent");
        sent += 1;
    });
    assert_eq!(sent, 2);
    let mut buf = [0u8; 64];
    for (socket, expected) in [(&v6, &b"from v6"[..]), (&v4, b"from v4")] {
        let (len, from) = socket.recv_from(&mut buf).expect("the answer");
        assert_eq!(&buf[..len], expected);
        assert_eq!(from.port(), port);
    }
}
