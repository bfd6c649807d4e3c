//! Collapsed forwarding as one small type: concurrent misses on one store
//! key share a single upstream fetch. The first request starts the fetch
//! and is its first reader; later ones join and get the response head and
//! every body chunk so far, then follow live. A fetch that ends (or fails)
//! leaves the table, so the next miss starts afresh. Readers are paced by
//! bounded channels: the fetch runs at the speed of its slowest reader
//! (one stuck for longer than the read timeout is dropped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

use super::errors::ErrorKind;
use crate::access_log::Hierarchy;
use crate::caching;
use crate::store::Key;

/// The response head every reader of a fetch receives.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// How it was fetched (the access.log's hierarchy field).
    pub hierarchy: Hierarchy,
    /// When the response varies: the fields it varies on and the leader's
    /// values for them (see [`Head::shareable_with`]).
    pub vary: Option<(Vec<HeaderName>, String)>,
    /// `Vary: *`: nobody else may use it.
    pub vary_star: bool,
    /// May be stored, so may be shared: a response meant for one client
    /// (`private`, a Set-Cookie, ...) is never given to another.
    pub storable: bool,
}

impl Head {
    /// Whether a request with `headers` may take this response (it would
    /// select the same variant).
    pub fn shareable_with(&self, headers: &HeaderMap) -> bool {
        if self.vary_star || !self.storable {
            return false;
        }
        match &self.vary {
            Some((fields, leader)) => caching::variant_key(fields, headers) == *leader,
            None => true,
        }
    }
}

/// Why a fetch failed, for the error page its readers send.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: String) -> Failure {
        Failure { kind, detail }
    }
}

/// What a reader of a shared fetch receives, in order: a `Head` (or a
/// `Failed` before any head), `Chunk`s, then `End` (or `Failed`).
#[derive(Debug, Clone)]
pub enum Event {
    Head(Arc<Head>),
    Chunk(Bytes),
    End,
    Failed(Failure),
}

/// Chunks buffered per reader before the fetch waits for it.
const READER_CHANNEL: usize = 32;

struct State {
    head: Option<Arc<Head>>,
    /// Everything so far, for readers that join late; dropped (and joining
    /// closed) once the body is bigger than a store could keep.
    retained: Vec<Bytes>,
    retained_len: u64,
    admitting: bool,
    readers: Vec<mpsc::Sender<Event>>,
    finished: Option<Event>,
}

/// One fetch in flight.
pub struct Fetch {
    key: Key,
    table: Arc<Mutex<HashMap<Key, Arc<Fetch>>>>,
    state: Mutex<State>,
    retain_limit: u64,
    send_timeout: Duration,
}

/// The table of fetches in flight, by store key.
#[derive(Clone)]
pub struct Collapser {
    table: Arc<Mutex<HashMap<Key, Arc<Fetch>>>>,
    retain_limit: u64,
    send_timeout: Duration,
}

/// What [`Collapser::join_or_start`] gives a request.
pub enum Role {
    /// Nobody fetches this key: the caller must run the fetch, feeding the
    /// `Leader`, and read the response from the receiver like any joiner.
    Leader(Leader, mpsc::Receiver<Event>),
    /// A fetch is running: read it from the receiver.
    Follower(mpsc::Receiver<Event>),
}

impl Collapser {
    /// `retain_limit`: the most body bytes kept for late joiners (the
    /// largest object the store would keep); `send_timeout`: how long a
    /// reader may hold the fetch up.
    pub fn new(retain_limit: u64, send_timeout: Duration) -> Collapser {
        Collapser {
            table: Arc::new(Mutex::new(HashMap::new())),
            retain_limit,
            send_timeout,
        }
    }

    /// Joins the fetch of `key`, or starts one.
    pub fn join_or_start(&self, key: Key) -> Role {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fetch) = table.get(&key) {
            if let Some(rx) = fetch.join() {
                return Role::Follower(rx);
            }
        }
        let fetch = Arc::new(Fetch {
            key,
            table: Arc::clone(&self.table),
            state: Mutex::new(State {
                head: None,
                retained: Vec::new(),
                retained_len: 0,
                admitting: true,
                readers: Vec::new(),
                finished: None,
            }),
            retain_limit: self.retain_limit,
            send_timeout: self.send_timeout,
        });
        table.insert(key, Arc::clone(&fetch));
        // A fresh fetch always admits its leader.
        let rx = fetch.join().unwrap_or_else(|| mpsc::channel(1).1);
        Role::Leader(
            Leader {
                fetch,
                finished: false,
            },
            rx,
        )
    }

    /// Fetches in flight (for tests and the status page).
    pub fn in_flight(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The one who runs a fetch. Dropped before [`Leader::finish`] (the task
/// failed or was cancelled), it fails every reader so nobody waits forever.
pub struct Leader {
    fetch: Arc<Fetch>,
    finished: bool,
}

impl Leader {
    pub async fn head(&self, head: Head) {
        self.fetch.head(head).await
    }

    pub async fn chunk(&self, chunk: Bytes) {
        self.fetch.chunk(chunk).await
    }

    pub fn readers(&self) -> usize {
        self.fetch.readers()
    }

    /// Ends the fetch (`Event::End` or `Event::Failed`).
    pub async fn finish(mut self, end: Event) {
        self.finished = true;
        self.fetch.finish(end).await
    }
}

fn abandoned() -> Event {
    Event::Failed(Failure::new(
        ErrorKind::ReadError,
        "the shared fetch was abandoned".into(),
    ))
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.fetch.leave_table();
            let readers = {
                let mut st = self.fetch.lock();
                st.finished = Some(abandoned());
                std::mem::take(&mut st.readers)
            };
            for r in readers {
                let _ = r.try_send(abandoned());
            }
        }
    }
}

impl Fetch {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reader: replays what came so far, then follows.
    fn join(&self) -> Option<mpsc::Receiver<Event>> {
        let mut st = self.lock();
        if !st.admitting {
            return None;
        }
        // Room for the replay plus the usual lead.
        let (tx, rx) = mpsc::channel(st.retained.len() + READER_CHANNEL + 2);
        if let Some(head) = &st.head {
            let _ = tx.try_send(Event::Head(Arc::clone(head)));
        }
        for chunk in &st.retained {
            let _ = tx.try_send(Event::Chunk(chunk.clone()));
        }
        if let Some(end) = &st.finished {
            let _ = tx.try_send(end.clone());
        } else {
            st.readers.push(tx);
        }
        Some(rx)
    }

    /// Readers still attached.
    fn readers(&self) -> usize {
        let mut st = self.lock();
        st.readers.retain(|r| !r.is_closed());
        st.readers.len()
    }

    /// Publishes the response head.
    async fn head(&self, head: Head) {
        let head = Arc::new(head);
        let readers = {
            let mut st = self.lock();
            st.head = Some(Arc::clone(&head));
            st.readers.clone()
        };
        self.broadcast(readers, Event::Head(head)).await;
    }

    /// Publishes a body chunk, waiting for slow readers (up to the timeout).
    async fn chunk(&self, chunk: Bytes) {
        let readers = {
            let mut st = self.lock();
            if st.admitting {
                st.retained_len += chunk.len() as u64;
                if st.retained_len > self.retain_limit {
                    // Too big to keep for latecomers: close the door.
                    st.admitting = false;
                    st.retained = Vec::new();
                } else {
                    st.retained.push(chunk.clone());
                }
            }
            st.readers.clone()
        };
        self.broadcast(readers, Event::Chunk(chunk)).await;
    }

    /// Ends the fetch and leaves the table.
    async fn finish(&self, end: Event) {
        let readers = {
            let mut st = self.lock();
            st.finished = Some(end.clone());
            std::mem::take(&mut st.readers)
        };
        self.leave_table();
        self.broadcast(readers, end).await;
    }

    fn leave_table(&self) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table
            .get(&self.key)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), self))
        {
            table.remove(&self.key);
        }
    }

    async fn broadcast(&self, readers: Vec<mpsc::Sender<Event>>, event: Event) {
        let mut gone = Vec::new();
        for (i, r) in readers.iter().enumerate() {
            match tokio::time::timeout(self.send_timeout, r.send(event.clone())).await {
                Ok(Ok(())) => {}
                _ => gone.push(i),
            }
        }
        if !gone.is_empty() {
            let mut st = self.lock();
            st.readers
                .retain(|r| !r.is_closed() && !gone.iter().any(|&i| readers[i].same_channel(r)));
        }
    }
}

#[cfg(test)]
mod tests {
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

    async fn drain(mut rx: mpsc::Receiver<Event>) -> (bool, Vec<u8>, bool) {
        let mut saw_head = false;
        let mut body = Vec::new();
        while let Some(e) = rx.recv().await {
            match e {
                Event::Head(_) => saw_head = true,
                Event::Chunk(c) => body.extend_from_slice(&c),
                Event::End => return (saw_head, body, true),
                Event::Failed(_) => return (saw_head, body, false),
            }
        }
        (saw_head, body, false)
    }

    #[tokio::test]
    async fn one_leader_and_late_followers_see_everything() {
        let c = Collapser::new(1 << 20, Duration::from_secs(5));
        let Role::Leader(fetch, leader_rx) = c.join_or_start([1; 16]) else {
            panic!("first is the leader");
        };
        let early = match c.join_or_start([1; 16]) {
            Role::Follower(rx) => rx,
            Role::Leader(..) => panic!("second joins"),
        };
        fetch.head(head()).await;
        fetch.chunk(Bytes::from_static(b"hello ")).await;
        let late = match c.join_or_start([1; 16]) {
            Role::Follower(rx) => rx,
            Role::Leader(..) => panic!("third joins"),
        };
        fetch.chunk(Bytes::from_static(b"world")).await;
        assert_eq!(c.in_flight(), 1);
        fetch.finish(Event::End).await;
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
    async fn too_big_to_retain_closes_the_door() {
        let c = Collapser::new(4, Duration::from_secs(5));
        let Role::Leader(fetch, rx) = c.join_or_start([2; 16]) else {
            panic!("leader");
        };
        fetch.head(head()).await;
        fetch.chunk(Bytes::from_static(b"12345")).await;
        assert!(
            matches!(c.join_or_start([2; 16]), Role::Leader(..)),
            "not admitted: fetches alone"
        );
        fetch.finish(Event::End).await;
        assert_eq!(drain(rx).await.1, b"12345");
    }

    #[tokio::test]
    async fn an_abandoned_fetch_fails_its_readers() {
        let c = Collapser::new(1 << 20, Duration::from_secs(5));
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
}
