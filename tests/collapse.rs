//! Collapsed forwarding when the fetch the waiting requests follow goes
//! away before it has a response: one of them fetches again (it leads now)
//! and the others follow it, as pingora-cache's lock re-elects a writer;
//! none of them gets the vanished fetch's error.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{raw, read_log, Conf, Cuttle, Req, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const BODY: &str = "from the second fetch\n";
const REFETCH_TIME: Duration = Duration::from_millis(300);

/// An origin whose first request is read and then left unanswered until
/// `release`, when its connection closes; every later request gets a
/// cacheable 200.
struct FlakyOrigin {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// Notified when the first request has arrived.
    first_seen: Arc<Notify>,
    release: Arc<Notify>,
}

impl FlakyOrigin {
    async fn start() -> FlakyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = FlakyOrigin {
            addr: listener.local_addr().expect("addr"),
            requests: Arc::default(),
            first_seen: Arc::default(),
            release: Arc::default(),
        };
        let (requests, first_seen, release) = (
            Arc::clone(&origin.requests),
            Arc::clone(&origin.first_seen),
            Arc::clone(&origin.release),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (requests, first_seen, release) = (
                    Arc::clone(&requests),
                    Arc::clone(&first_seen),
                    Arc::clone(&release),
                );
                tokio::spawn(serve(stream, requests, first_seen, release));
            }
        });
        origin
    }

    fn url(&self) -> String {
        format!("http://{}/flaky", self.addr)
    }
}

async fn serve(
    mut stream: TcpStream,
    requests: Arc<AtomicUsize>,
    first_seen: Arc<Notify>,
    release: Arc<Notify>,
) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        // One GET (no body) per head.
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                first_seen.notify_one();
                release.notified().await;
                return; // closes the connection: no response at all
            }
            // The new fetch stays in flight a while: a follower the
            // failure woke late (a busy machine) still finds it to join
            // (logged TCP_CF_HIT), not the object stored already (a
            // plain hit: see collapse.rs's Outcome::StoredMeanwhile).
            tokio::time::sleep(REFETCH_TIME).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\n\r\n{BODY}",
                BODY.len()
            );
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// How many requests for `url` cuttle's `mgr:active_requests` lists.
async fn active(proxy: &Cuttle, url: &str) -> usize {
    let page = raw(
        proxy.addr(),
        b"GET cache_object://127.0.0.1/active_requests HTTP/1.0\r\n\r\n",
    )
    .await;
    page.matches(&format!("\nuri {url}\n")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_fetch_that_fails_before_its_head_fetch_once_more() {
    let origin = FlakyOrigin::start().await;
    let proxy = Cuttle::start(&Conf::new());
    let url = origin.url();
    let addr = proxy.addr();
    let get = |url: String| tokio::spawn(async move { Req::get(&url).send_to(addr).await });

    let leader = get(url.clone());
    tokio::time::timeout(WAIT, origin.first_seen.notified())
        .await
        .expect("the first request reached the origin");
    let followers = [get(url.clone()), get(url.clone())];
    // Both join the fetch in flight: listed as active, they are past the
    // access checks; a moment more covers the lookup before joining.
    let deadline = Instant::now() + WAIT;
    let mut polls = 1;
    while active(&proxy, &url).await < 3 {
        polls += 1;
        assert!(Instant::now() < deadline, "the followers never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1, "they joined");
    origin.release.notify_one();

    let first = leader.await.expect("leader");
    assert!(
        first.status >= 500,
        "the first fetch failed: {first:?} {}",
        first.text()
    );
    for f in followers {
        let r = f.await.expect("follower");
        assert_eq!(r.status, 200, "a follower got {} {}", r.status, r.text());
        assert_eq!(r.text(), BODY);
    }
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        2,
        "one new fetch for both followers"
    );
    // The manager's answers are logged too.
    let log = read_log(&proxy.log_path(), polls + 3).await;
    let mut results: Vec<_> = log
        .iter()
        .filter(|l| l.url == url)
        .map(|l| l.result())
        .collect();
    results.sort();
    assert_eq!(results.len(), 3, "{log:#?}");
    assert_eq!(results[..2], ["TCP_CF_HIT/200", "TCP_MISS/200"], "{log:#?}");
}
