//! Unit tests of the client connection: the cache manager URL, the HTTP/2
//! preface, the timeouts and the order of interim responses.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(3600);

fn timeouts() -> ClientTimeouts {
    ClientTimeouts {
        request_start: LONG,
        request: LONG,
        idle: LONG,
        read: LONG,
    }
}

#[test]
fn decides_on_the_request_line() {
    assert_eq!(
        decide(b"GET cache_object://h/info HTTP/1.0\r\n"),
        Decision::SquidScheme(9)
    );
    assert_eq!(decide(b"GET CACHE_OBJECT://h/"), Decision::SquidScheme(9));
    assert_eq!(decide(b"GET http://h/ HTTP/1.1\r\n"), Decision::Pass);
    assert_eq!(decide(b"GET cache_ob"), Decision::Wait, "not enough yet");
    assert_eq!(decide(b"GE"), Decision::Wait);
    assert_eq!(decide(b"GET /x\r\n"), Decision::Pass);
    assert_eq!(decide(b"PRI * HTTP/2"), Decision::Wait);
    assert_eq!(
        decide(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Decision::H2Preface
    );
    assert_eq!(decide(b"PRI * HTTP/1.1\r\n"), Decision::Pass);
}

#[tokio::test]
async fn rewrites_the_scheme_even_when_it_arrives_in_pieces() {
    let (mut client, server) = tokio::io::duplex(64);
    let stats = Arc::new(Stats::default());
    let mut io = ClientIo::new(server, Arc::clone(&stats), Activity::new(), timeouts());
    let request = b"GET cache_object://127.0.0.1/info HTTP/1.0\r\n\r\n";
    let writer = tokio::spawn(async move {
        for piece in request.chunks(5) {
            client.write_all(piece).await.expect("write");
            tokio::task::yield_now().await;
        }
        client
    });
    let mut got = vec![0u8; request.len()];
    io.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"GET cache-object://127.0.0.1/info HTTP/1.0\r\n\r\n");
    assert_eq!(stats.bytes_in(), request.len() as u64);
    drop(writer.await);
}

#[tokio::test]
async fn the_http2_preface_becomes_a_closing_http1_request() {
    let (mut client, server) = tokio::io::duplex(256);
    let mut io = ClientIo::new(
        server,
        Arc::new(Stats::default()),
        Activity::new(),
        timeouts(),
    );
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04\0\0\0\0\0")
        .await
        .expect("write");
    let mut got = vec![0u8; H2_PREFACE_AS_HTTP1.len()];
    io.read_exact(&mut got).await.expect("read");
    assert_eq!(got, H2_PREFACE_AS_HTTP1);
    let mut more = [0u8; 1];
    let next = tokio::time::timeout(Duration::from_millis(50), io.read(&mut more)).await;
    assert!(next.is_err(), "nothing after the stand-in: {next:?}");
}

#[tokio::test(start_paused = true)]
async fn each_state_has_its_timeout() {
    let t = ClientTimeouts {
        request_start: Duration::from_secs(10),
        request: Duration::from_secs(20),
        idle: Duration::from_secs(30),
        read: Duration::from_secs(40),
    };
    let a = Activity::new();
    let start = Instant::now();
    let deadline = |since| a.deadline(&t, since);
    assert_eq!(
        deadline(start),
        Some((start + t.request_start, Expiry::Quiet))
    );
    a.note_bytes();
    assert_eq!(deadline(start), Some((start + t.request, Expiry::Quiet)));
    a.request_started(true, true);
    let read_began = Instant::now();
    assert_eq!(deadline(read_began), None, "the proxy wants no body yet");
    a.body_wanted();
    assert_eq!(
        deadline(read_began),
        Some((read_began + t.read, Expiry::BodyStalled))
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    a.body_delivered();
    a.body_wanted();
    let wanted = Instant::now();
    assert_eq!(
        deadline(read_began),
        Some((wanted + t.read, Expiry::BodyStalled)),
        "from when the proxy asked, when it asked after the read began"
    );
    a.body_ended();
    assert_eq!(deadline(read_began), None, "waiting for the response");
    tokio::time::advance(Duration::from_secs(5)).await;
    a.response_ended();
    let idle = Instant::now();
    assert_eq!(a.eviction_rank(), Some((0, idle)));
    assert_eq!(deadline(idle), Some((idle + t.idle, Expiry::Quiet)));
    tokio::time::advance(Duration::from_secs(1)).await;
    a.note_bytes();
    let second = Instant::now();
    assert_eq!(
        a.eviction_rank(),
        Some((1, second)),
        "a request is arriving"
    );
    assert_eq!(deadline(second), Some((second + t.request, Expiry::Quiet)));
    a.request_started(false, true);
    assert_eq!(deadline(second), None);
    assert_eq!(a.eviction_rank(), None, "a request in flight");
    a.tunnel_opened();
    a.response_ended();
    assert_eq!(deadline(second), None, "tunnels are not timed");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_reads_as_closed_after_request_start_timeout() {
    let (_client, server) = tokio::io::duplex(64);
    let t = ClientTimeouts {
        request_start: Duration::from_secs(10),
        ..timeouts()
    };
    let mut io = ClientIo::new(server, Arc::new(Stats::default()), Activity::new(), t);
    let mut buf = [0u8; 16];
    let n = io.read(&mut buf).await.expect("a quiet end, not an error");
    assert_eq!(n, 0);
}

#[tokio::test(start_paused = true)]
async fn a_later_idle_deadline_is_kept_though_the_timer_was_set_earlier() {
    let (mut client, server) = tokio::io::duplex(64);
    let t = ClientTimeouts {
        idle: Duration::from_secs(10),
        ..timeouts()
    };
    let a = Activity::new();
    let mut io = ClientIo::new(server, Arc::new(Stats::default()), Arc::clone(&a), t);
    let mut buf = [0u8; 64];
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    assert!(io.read(&mut buf).await.expect("read") > 0);
    a.request_started(false, true);
    a.response_ended();
    // Waiting for the next request: the timer is set for 10 s from now.
    let mut read = std::pin::pin!(io.read(&mut buf));
    assert!(futures_poll(read.as_mut()).is_pending());
    tokio::time::advance(Duration::from_secs(5)).await;
    // Another request and its answer move the idle deadline to 15 s.
    a.request_started(false, true);
    a.response_ended();
    tokio::time::advance(Duration::from_secs(7)).await;
    assert!(
        futures_poll(read.as_mut()).is_pending(),
        "still open 7 s after the second request"
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    match futures_poll(read.as_mut()) {
        Poll::Ready(Ok(0)) => {}
        other => panic!("expected a quiet end after 10 s idle, got {other:?}"),
    }
}

#[tokio::test]
async fn an_evicted_idle_connection_reads_as_closed() {
    let (_client, server) = tokio::io::duplex(64);
    let a = Activity::new();
    a.request_started(false, true);
    a.response_ended();
    let mut io = ClientIo::new(
        server,
        Arc::new(Stats::default()),
        Arc::clone(&a),
        timeouts(),
    );
    let mut buf = [0u8; 16];
    let reading = tokio::spawn(async move { io.read(&mut buf).await.expect("read") });
    tokio::task::yield_now().await;
    a.evict();
    assert_eq!(reading.await.expect("join"), 0);
}

fn early_hints() -> HeaderMap {
    let mut fields = HeaderMap::new();
    fields.insert("link", "</s.css>; rel=preload".parse().expect("value"));
    fields.insert("connection", "x-hop".parse().expect("value"));
    fields.insert("x-hop", "1".parse().expect("value"));
    fields
}

const EARLY_HINTS_OUT: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n";

#[test]
fn an_interim_response_goes_out_without_its_hop_by_hop_fields() {
    assert_eq!(
        interim_head(StatusCode::EARLY_HINTS, &early_hints()),
        EARLY_HINTS_OUT
    );
    assert_eq!(
        interim_head(
            StatusCode::from_u16(150).expect("status"),
            &HeaderMap::new()
        ),
        b"HTTP/1.1 150 \r\n\r\n"
    );
}

#[tokio::test]
async fn the_final_response_waits_for_interim_ones_and_none_comes_after_it() {
    let (mut client, server) = tokio::io::duplex(4096);
    let a = Activity::new();
    let mut io = ClientIo::new(
        server,
        Arc::new(Stats::default()),
        Arc::clone(&a),
        timeouts(),
    );
    let first = a.request_started(false, true);
    assert!(a.arm(first));
    a.relay(first, StatusCode::EARLY_HINTS, &early_hints());
    let written = a.interim_written(first);
    let mut written = std::pin::pin!(written);
    assert!(
        futures_poll(written.as_mut()).is_pending(),
        "held until the 103 is written"
    );
    io.flush().await.expect("flush");
    assert!(futures_poll(written.as_mut()).is_ready());
    assert!(!a.arm(first), "the final response is on its way");
    a.relay(first, StatusCode::EARLY_HINTS, &early_hints());
    io.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
        .await
        .expect("write");
    io.flush().await.expect("flush");
    // A later request: an earlier one's fetch relays no more.
    let second = a.request_started(false, true);
    assert!(!a.arm(first));
    assert_eq!(a.relayable_request(), Some(second));
    assert!(a.arm(second));
    a.relay(first, StatusCode::EARLY_HINTS, &early_hints());
    io.flush().await.expect("flush");
    // An HTTP/1.0 request gets none.
    let third = a.request_started(false, false);
    assert_eq!(a.relayable_request(), None);
    assert!(!a.arm(third));
    a.relay(third, StatusCode::EARLY_HINTS, &early_hints());
    io.flush().await.expect("flush");
    drop(io);
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("read");
    let mut want = EARLY_HINTS_OUT.to_vec();
    want.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test]
async fn an_interim_response_begun_is_finished_before_other_bytes() {
    let (mut client, server) = tokio::io::duplex(8);
    let a = Activity::new();
    let mut io = ClientIo::new(
        server,
        Arc::new(Stats::default()),
        Arc::clone(&a),
        timeouts(),
    );
    let n = a.request_started(true, true);
    assert!(a.arm(n));
    a.relay(n, StatusCode::EARLY_HINTS, &early_hints());
    let flushed = std::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx));
    assert!(
        futures_poll(std::pin::pin!(flushed)).is_pending(),
        "8 bytes fit"
    );
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        got
    });
    // hyper's own interim answer (100 Continue) after the 103 begun.
    io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .await
        .expect("write");
    io.flush().await.expect("flush");
    drop(io);
    let got = reader.await.expect("join");
    let mut want = EARLY_HINTS_OUT.to_vec();
    want.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

/// Polls `f` once with a waker that does nothing.
fn futures_poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    f.poll(&mut cx)
}
