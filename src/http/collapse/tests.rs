//! Collapsed forwarding through its API: leaders, followers and late
//! joiners, the read-ahead window, cut-off readers, and every outcome of
//! `Collapser::forward` (the election of a new leader among them).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

fn head() -> Head {
    Head {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        hierarchy: Hierarchy::none(),
        vary: None,
        vary_star: false,
        storable: true,
    }
}

fn window(gap: u64, join_limit: u64) -> Window {
    Window {
        gap,
        join_limit,
        stall: Duration::from_secs(5),
    }
}

async fn drain(mut reader: Reader) -> (bool, Vec<u8>, bool) {
    let mut saw_head = false;
    let mut body = Vec::new();
    while let Some(e) = reader.next().await {
        match e {
            Event::Head(_) => saw_head = true,
            Event::Chunk(c) => body.extend_from_slice(&c),
            Event::End => return (saw_head, body, true),
            Event::Failed(_) => return (saw_head, body, false),
        }
    }
    (saw_head, body, false)
}

fn buffered(leader: &Leader) -> u64 {
    let st = leader.fetch.lock();
    st.buffered.iter().map(|(_, c)| c.len() as u64).sum()
}

/// Feeds `chunks` through the window as pump_body does.
async fn feed(leader: Leader, chunks: Vec<Bytes>) {
    for c in chunks {
        leader.room().await;
        leader.chunk(c);
    }
    leader.finish(Event::End);
}

#[tokio::test]
async fn one_leader_and_late_followers_see_everything() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let Role::Leader(fetch, leader_rx) = c.join_or_start([1; 16]) else {
        panic!("first is the leader");
    };
    let early = match c.join_or_start([1; 16]) {
        Role::Follower(rx) => rx,
        Role::Leader(..) => panic!("second joins"),
    };
    fetch.head(head());
    fetch.chunk(Bytes::from_static(b"hello "));
    let late = match c.join_or_start([1; 16]) {
        Role::Follower(rx) => rx,
        Role::Leader(..) => panic!("third joins"),
    };
    fetch.chunk(Bytes::from_static(b"world"));
    assert_eq!(c.in_flight(), 1);
    fetch.finish(Event::End);
    assert_eq!(c.in_flight(), 0, "a finished fetch leaves the table");
    for rx in [leader_rx, early, late] {
        assert_eq!(drain(rx).await, (true, b"hello world".to_vec(), true));
    }
    assert!(
        matches!(c.join_or_start([1; 16]), Role::Leader(..)),
        "next miss starts afresh"
    );
}

#[tokio::test]
async fn past_the_join_limit_the_door_closes() {
    let c = Collapser::new(window(1 << 20, 4));
    let Role::Leader(fetch, rx) = c.join_or_start([2; 16]) else {
        panic!("leader");
    };
    fetch.head(head());
    fetch.chunk(Bytes::from_static(b"12345"));
    assert!(
        matches!(c.join_or_start([2; 16]), Role::Leader(..)),
        "not admitted: fetches alone"
    );
    fetch.finish(Event::End);
    assert_eq!(drain(rx).await.1, b"12345");
}

#[tokio::test]
async fn an_abandoned_fetch_fails_its_readers() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let Role::Leader(fetch, rx) = c.join_or_start([3; 16]) else {
        panic!("leader");
    };
    let follower = match c.join_or_start([3; 16]) {
        Role::Follower(rx) => rx,
        Role::Leader(..) => panic!("joins"),
    };
    drop(fetch);
    assert_eq!(c.in_flight(), 0);
    assert_eq!(drain(rx).await, (false, vec![], false));
    assert_eq!(drain(follower).await, (false, vec![], false));
}

#[tokio::test]
async fn the_fetch_runs_at_most_the_gap_ahead_of_its_slowest_reader() {
    let c = Collapser::new(window(10, 0));
    let Role::Leader(fetch, mut slow) = c.join_or_start([4; 16]) else {
        panic!("leader");
    };
    fetch.head(head());
    assert!(matches!(slow.next().await, Some(Event::Head(_))));
    // Under the gap: room at once.
    fetch.chunk(Bytes::from(vec![1; 6]));
    assert!(fetch.room().await);
    fetch.chunk(Bytes::from(vec![2; 6]));
    // 12 bytes ahead of the reader: no room until it takes some.
    let waited = tokio::time::timeout(Duration::from_millis(100), fetch.room()).await;
    assert!(
        waited.is_err(),
        "read on while the reader is 12 bytes behind"
    );
    assert_eq!(buffered(&fetch), 12);
    assert!(matches!(slow.next().await, Some(Event::Chunk(c)) if c.len() == 6));
    assert!(fetch.room().await);
    assert_eq!(buffered(&fetch), 6, "what every reader took is dropped");
    assert!(matches!(slow.next().await, Some(Event::Chunk(c)) if c.len() == 6));
    assert_eq!(buffered(&fetch), 0);
    // Nobody left: nothing to wait for, nothing kept.
    drop(slow);
    assert!(!fetch.room().await);
    fetch.chunk(Bytes::from(vec![3; 100]));
    assert_eq!(buffered(&fetch), 0);
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_body_through_a_small_window() {
    let c = Collapser::new(window(16, 0));
    let (fetch, reader) = c.alone();
    fetch.head(head());
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let chunks = body.chunks(7).map(Bytes::copy_from_slice).collect();
    let feeding = tokio::spawn(feed(fetch, chunks));
    assert_eq!(drain(reader).await, (true, body, true));
    feeding.await.expect("feeder");
}

#[tokio::test]
async fn joiners_within_the_join_limit_get_everything_at_their_own_pace() {
    let c = Collapser::new(window(16, 1 << 20));
    let Role::Leader(fetch, leader_rx) = c.join_or_start([5; 16]) else {
        panic!("leader");
    };
    fetch.head(head());
    let body: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
    fetch.chunk(Bytes::copy_from_slice(&body[..100]));
    let Role::Follower(follower) = c.join_or_start([5; 16]) else {
        panic!("joins");
    };
    let chunks = body[100..].chunks(50).map(Bytes::copy_from_slice).collect();
    let feeding = tokio::spawn(feed(fetch, chunks));
    let (a, b) = tokio::join!(drain(leader_rx), drain(follower));
    assert_eq!(a, (true, body.clone(), true));
    assert_eq!(b, (true, body, true));
    feeding.await.expect("feeder");
}

#[tokio::test]
async fn a_stalled_reader_is_cut_off_and_the_others_go_on() {
    let c = Collapser::new(Window {
        stall: Duration::from_millis(100),
        ..window(8, 0)
    });
    let Role::Leader(fetch, stalled) = c.join_or_start([6; 16]) else {
        panic!("leader");
    };
    let Role::Follower(reading) = c.join_or_start([6; 16]) else {
        panic!("joins");
    };
    fetch.head(head());
    let body: Vec<u8> = (0..=255u8).cycle().take(1_000).collect();
    let chunks = body.chunks(8).map(Bytes::copy_from_slice).collect();
    let feeding = tokio::spawn(feed(fetch, chunks));
    // The reading one gets everything once the stalled one (which
    // never polls) is cut off, after the stall time.
    assert_eq!(drain(reading).await, (true, body, true));
    feeding.await.expect("feeder");
    assert_eq!(drain(stalled).await, (false, vec![], false), "cut off");
}

// ------------------------------------------------------ Collapser::forward

type Leaders = Arc<Mutex<Vec<Leader>>>;

/// `Collapser::forward` for a plain GET of `key` (`None`: a private one)
/// with `headers`; the fetch it starts, if any, goes to `leaders`.
async fn forward(
    c: Collapser,
    key: Option<Key>,
    headers: HeaderMap,
    wait: Duration,
    leaders: Leaders,
) -> Outcome {
    forward_watching(c, key, headers, wait, leaders, Arc::default()).await
}

/// [`forward`], where `stored` says whether the store took a new entry for
/// the key meanwhile.
async fn forward_watching(
    c: Collapser,
    key: Option<Key>,
    headers: HeaderMap,
    wait: Duration,
    leaders: Leaders,
    stored: Arc<AtomicBool>,
) -> Outcome {
    let stored_since = move || stored.load(Ordering::SeqCst);
    let miss = Miss {
        key,
        url: "http://example.test/x",
        headers: &headers,
        wait,
        stored_since: &stored_since,
    };
    let fetch = |leader| leaders.lock().expect("leaders").push(leader);
    c.forward(miss, fetch).await
}

/// Readers attached to the fetch of `key` in flight.
fn readers(c: &Collapser, key: Key) -> usize {
    let table = c.table.lock().expect("table");
    table.get(&key).map_or(0, |f| f.lock().readers.len())
}

/// Lets the spawned requests run until `done` holds (a bounded number of
/// turns of the current-thread runtime).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

fn take_leader(leaders: &Leaders) -> Leader {
    leaders
        .lock()
        .expect("leaders")
        .pop()
        .expect("a fetch started")
}

async fn body_of(outcome: Outcome) -> (&'static str, Vec<u8>) {
    let (role, answer) = match outcome {
        Outcome::Lead(a) => ("lead", a),
        Outcome::Follow(a) => ("follow", a),
        Outcome::Uncollapsed(a) => ("uncollapsed", a),
        Outcome::GaveUp(a) => ("gave up", a),
        Outcome::Failed(f) => return ("failed", f.detail.into_bytes()),
        Outcome::TimedOut { .. } => return ("timed out", vec![]),
        Outcome::StoredMeanwhile => return ("stored meanwhile", vec![]),
    };
    let (_, body, complete) = drain(answer.reader).await;
    assert!(complete, "{role}: the body ended short");
    (role, body)
}

/// Three requests for one key; the first one's fetch ends by `vanish`
/// before any head: one of the other two must fetch again, the last one
/// following it.
async fn a_vanished_leader_is_succeeded(vanish: impl FnOnce(Leader)) {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let key = [7; 16];
    let leaders = Leaders::default();
    let wait = Duration::from_secs(60);
    let spawn = || {
        let (c, leaders) = (c.clone(), Arc::clone(&leaders));
        tokio::spawn(forward(c, Some(key), HeaderMap::new(), wait, leaders))
    };
    let first = spawn();
    settle(|| readers(&c, key) == 1).await;
    let others = [spawn(), spawn()];
    settle(|| readers(&c, key) == 3).await;
    assert_eq!(readers(&c, key), 3, "the two others follow the first");
    vanish(take_leader(&leaders));
    settle(|| !leaders.lock().expect("leaders").is_empty()).await;
    assert_eq!(
        leaders.lock().expect("leaders").len(),
        1,
        "a follower of the vanished fetch leads a new one"
    );
    let successor = take_leader(&leaders);
    successor.head(head());
    successor.chunk(Bytes::from_static(b"again"));
    successor.finish(Event::End);

    let (role, _) = body_of(first.await.expect("first")).await;
    assert_eq!(role, "failed", "the first request's own fetch failed");
    let mut got = Vec::new();
    for o in others {
        got.push(body_of(o.await.expect("follower")).await);
    }
    got.sort();
    assert_eq!(
        got,
        [("follow", b"again".to_vec()), ("lead", b"again".to_vec())]
    );
    assert!(leaders.lock().expect("leaders").is_empty(), "one new fetch");
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn followers_of_a_dropped_leader_elect_a_new_one() {
    a_vanished_leader_is_succeeded(drop).await;
}

#[tokio::test]
async fn followers_of_a_fetch_failed_before_its_head_elect_a_new_one() {
    a_vanished_leader_is_succeeded(|leader| {
        leader.finish(Event::Failed(Failure::new(
            ErrorKind::ReadError,
            "connection reset".into(),
        )))
    })
    .await;
}

/// A follower that wakes to its fetch's failure only after the fetch
/// elected in its place has stored the object looks it up again: nobody
/// fetches it a third time.
#[tokio::test]
async fn a_follower_waking_after_the_new_fetch_stored_the_object_looks_it_up() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let key = [9; 16];
    let leaders = Leaders::default();
    let stored = Arc::new(AtomicBool::new(false));
    let request = || {
        let (c, leaders, stored) = (c.clone(), Arc::clone(&leaders), Arc::clone(&stored));
        let wait = Duration::from_secs(60);
        forward_watching(c, Some(key), HeaderMap::new(), wait, leaders, stored)
    };
    let first = tokio::spawn(request());
    settle(|| readers(&c, key) == 1).await;
    // The late one joins (polled once here), then is not run again until
    // the new fetch has ended.
    let mut late = Box::pin(request());
    std::future::poll_fn(|cx| {
        assert!(Future::poll(late.as_mut(), cx).is_pending(), "it follows");
        Poll::Ready(())
    })
    .await;
    let prompt = tokio::spawn(request());
    settle(|| readers(&c, key) == 3).await;
    assert_eq!(readers(&c, key), 3, "both follow the first");
    take_leader(&leaders).finish(Event::Failed(Failure::new(
        ErrorKind::ReadError,
        "connection reset".into(),
    )));
    settle(|| !leaders.lock().expect("leaders").is_empty()).await;
    let successor = take_leader(&leaders);
    successor.head(head());
    successor.chunk(Bytes::from_static(b"again"));
    // Leader::pump commits the entry before it ends the fetch.
    stored.store(true, Ordering::SeqCst);
    successor.finish(Event::End);
    let prompt = body_of(prompt.await.expect("prompt")).await;
    assert_eq!(prompt, ("lead", b"again".to_vec()));
    let late = tokio::time::timeout(Duration::from_secs(5), late)
        .await
        .expect("the late follower waits for no fetch of its own");
    assert_eq!(body_of(late).await.0, "stored meanwhile");
    assert!(
        leaders.lock().expect("leaders").is_empty(),
        "no third fetch"
    );
    assert_eq!(body_of(first.await.expect("first")).await.0, "failed");
}

#[tokio::test]
async fn a_fetch_failing_after_its_head_ends_its_followers_short() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let key = [8; 16];
    let leaders = Leaders::default();
    let wait = Duration::from_secs(60);
    let first = tokio::spawn(forward(
        c.clone(),
        Some(key),
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 1).await;
    let follower = tokio::spawn(forward(
        c.clone(),
        Some(key),
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 2).await;
    let leader = take_leader(&leaders);
    leader.head(head());
    leader.chunk(Bytes::from_static(b"half"));
    leader.finish(Event::Failed(Failure::new(
        ErrorKind::ReadError,
        "cut".into(),
    )));
    for (task, want) in [(first, "lead"), (follower, "follow")] {
        let outcome = task.await.expect("request");
        let answer = match outcome {
            Outcome::Lead(a) if want == "lead" => a,
            Outcome::Follow(a) if want == "follow" => a,
            _ => panic!("{want}: another outcome"),
        };
        assert_eq!(drain(answer.reader).await, (false, b"half".to_vec(), false));
    }
    assert!(leaders.lock().expect("leaders").is_empty(), "no new fetch");
}

#[tokio::test]
async fn a_follower_the_response_is_not_for_gives_up_and_fetches_alone() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let key = [9; 16];
    let leaders = Leaders::default();
    let wait = Duration::from_secs(60);
    let first = tokio::spawn(forward(
        c.clone(),
        Some(key),
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 1).await;
    let mut french = HeaderMap::new();
    french.insert(http::header::ACCEPT_LANGUAGE, "fr".parse().expect("value"));
    let follower = tokio::spawn(forward(
        c.clone(),
        Some(key),
        french,
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 2).await;
    let leader = take_leader(&leaders);
    let fields = vec![http::header::ACCEPT_LANGUAGE];
    leader.head(Head {
        vary: Some((
            fields.clone(),
            caching::variant_key(&fields, &HeaderMap::new()),
        )),
        ..head()
    });
    settle(|| !leaders.lock().expect("leaders").is_empty()).await;
    let alone = take_leader(&leaders);
    alone.head(head());
    alone.chunk(Bytes::from_static(b"fr"));
    alone.finish(Event::End);
    leader.chunk(Bytes::from_static(b"en"));
    leader.finish(Event::End);
    assert_eq!(
        body_of(first.await.expect("first")).await,
        ("lead", b"en".to_vec())
    );
    assert_eq!(
        body_of(follower.await.expect("follower")).await,
        ("gave up", b"fr".to_vec())
    );
}

#[tokio::test]
async fn a_private_miss_fetches_alone() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let leaders = Leaders::default();
    let wait = Duration::from_secs(60);
    let request = tokio::spawn(forward(
        c.clone(),
        None,
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| !leaders.lock().expect("leaders").is_empty()).await;
    assert_eq!(c.in_flight(), 0, "nobody can join it");
    let leader = take_leader(&leaders);
    leader.head(head());
    leader.finish(Event::End);
    assert_eq!(
        body_of(request.await.expect("request")).await,
        ("uncollapsed", vec![])
    );
}

#[tokio::test(start_paused = true)]
async fn no_head_within_the_wait_times_out_leader_and_follower() {
    let c = Collapser::new(window(1 << 20, 1 << 20));
    let key = [10; 16];
    let leaders = Leaders::default();
    let wait = Duration::from_secs(30);
    let first = tokio::spawn(forward(
        c.clone(),
        Some(key),
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 1).await;
    let follower = tokio::spawn(forward(
        c.clone(),
        Some(key),
        HeaderMap::new(),
        wait,
        Arc::clone(&leaders),
    ));
    settle(|| readers(&c, key) == 2).await;
    // The fetch runs on, silent, past both waits (virtual time).
    let _leader = take_leader(&leaders);
    assert!(matches!(
        first.await.expect("first"),
        Outcome::TimedOut { following: false }
    ));
    assert!(matches!(
        follower.await.expect("follower"),
        Outcome::TimedOut { following: true }
    ));
}
