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
