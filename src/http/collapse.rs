//! Collapsed forwarding and the read-ahead window: a fetch feeds one or
//! more readers (the clients that get its response) from one buffer.
//! Concurrent misses on one store key share a single upstream fetch: the
//! first request starts it and is its first reader; later ones join and
//! get the response head and every body chunk so far, then follow live. A
//! fetch that ends (or fails) leaves the table, so the next miss starts
//! afresh.
//!
//! [`Collapser::forward`] takes a miss from there to its response head
//! and says how it got it ([`Outcome`]): it led the fetch, followed
//! another's, fetched alone (a private request, or a response not
//! shareable with it), or got none (the fetch failed, or no head came in
//! time). [`Leader::pump`] is the fan-out sink that feeds a fetch's
//! readers and the store from the upstream body.
//!
//! Memory per fetch is bounded, whatever the object's size: the fetch
//! reads from upstream only while it holds less than `read_ahead_gap`
//! bytes beyond what its slowest reader has taken (Squid's rule), and drops
//! what every reader has taken. While latecomers may still join, it keeps
//! the body from its start instead, up to `join_limit` bytes; past that,
//! joining closes (a later miss fetches on its own). A reader that takes
//! nothing for `stall` while it holds the fetch up is cut off (its
//! response ends short), so one stuck client cannot stop the store write
//! or the other readers for ever.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, StatusCode};
use hyper::body::Body;
use tokio::sync::Notify;

use super::errors::ErrorKind;
use crate::access_log::Hierarchy;
use crate::caching;
use crate::store::{Key, Writer};

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
    /// (`private`, `no-store`, ...) is never given to another.
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

/// What a reader of a fetch receives, in order: a `Head` (or a
/// `Failed` before any head), `Chunk`s, then `End` (or `Failed`).
#[derive(Debug, Clone)]
pub enum Event {
    Head(Arc<Head>),
    Chunk(Bytes),
    End,
    Failed(Failure),
}

/// The limits every fetch keeps to.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// `read_ahead_gap`: how far upstream reads may run ahead of the
    /// slowest reader.
    pub gap: u64,
    /// Body bytes kept from the start for readers that join late.
    pub join_limit: u64,
    /// How long a reader may hold the fetch up before it is cut off.
    pub stall: Duration,
}

/// One reader's place in a fetch.
struct Cursor {
    /// Body offset of the next chunk it gets.
    pos: u64,
    head_sent: bool,
    /// Cut off for holding the fetch up too long.
    cut: bool,
    /// Got its last event.
    done: bool,
    waker: Option<Waker>,
}

struct State {
    head: Option<Arc<Head>>,
    /// Body chunks some reader has yet to take (while admitting, every
    /// chunk so far), each with its offset in the body.
    buffered: VecDeque<(u64, Bytes)>,
    /// Body bytes received so far.
    received: u64,
    admitting: bool,
    readers: HashMap<u64, Cursor>,
    next_reader: u64,
    finished: Option<Event>,
}

impl State {
    /// How far the slowest reader still attached has got (everything
    /// received when there is none).
    fn slowest(&self) -> u64 {
        self.readers
            .values()
            .filter(|c| !c.cut)
            .map(|c| c.pos)
            .min()
            .unwrap_or(self.received)
    }

    fn attached(&self) -> usize {
        self.readers.values().filter(|c| !c.cut).count()
    }

    /// Drops what every reader has taken, unless latecomers may still
    /// join and need it.
    fn trim(&mut self) {
        if self.admitting {
            return;
        }
        let slowest = self.slowest();
        while let Some((at, chunk)) = self.buffered.front() {
            if at + chunk.len() as u64 > slowest {
                break;
            }
            self.buffered.pop_front();
        }
    }

    fn wake_readers(&mut self) {
        for c in self.readers.values_mut() {
            if let Some(w) = c.waker.take() {
                w.wake();
            }
        }
    }
}

type Table = Arc<Mutex<HashMap<Key, Arc<Fetch>>>>;

/// One fetch in flight.
pub struct Fetch {
    /// Its key in the table, when others may join it.
    key: Option<Key>,
    table: Table,
    state: Mutex<State>,
    window: Window,
    /// Wakes the fetch when a reader takes a chunk or leaves.
    progress: Notify,
}

/// The table of fetches in flight, by store key.
#[derive(Clone)]
pub struct Collapser {
    table: Table,
    window: Window,
}

/// A miss to answer through collapsed forwarding.
pub struct Miss<'a> {
    /// The store key it may share a fetch under; `None` when it must fetch
    /// alone (it may get a response meant for it only).
    pub key: Option<Key>,
    /// For tracing events.
    pub url: &'a str,
    /// Its fields: it takes another's response only when it would select
    /// the same variant.
    pub headers: &'a HeaderMap,
    /// How long it waits for a response head (`read_timeout`).
    pub wait: Duration,
    /// Whether the store took a new entry for [`Miss::key`] since this
    /// request looked it up.
    pub stored_since: &'a (dyn Fn() -> bool + Sync),
}

/// A response head and the reader of its body.
pub struct Answer {
    pub head: Arc<Head>,
    pub reader: Reader,
}

/// How a miss got its response, or why it got none.
pub enum Outcome {
    /// It ran the fetch, and others may have followed it: it was the first
    /// to miss, or a follower elected when the fetch it followed ended
    /// without a response head.
    Lead(Answer),
    /// It took the response of a fetch another request runs (Squid's
    /// collapsed hit).
    Follow(Answer),
    /// It fetched alone from the start ([`Miss::key`] was `None`).
    Uncollapsed(Answer),
    /// It gave up following: the response was not shareable with it
    /// (one client's, or a variant it does not select), so it fetched
    /// alone.
    GaveUp(Answer),
    /// Its own fetch failed before a response head (a follower never
    /// gets another's failure: it leads or follows a new fetch instead).
    Failed(Failure),
    /// No response head within the wait; `following`: while waiting on
    /// another's fetch.
    TimedOut { following: bool },
    /// The fetch it followed ended before its head, and by the time it
    /// woke another fetch had stored the object ([`Miss::stored_since`]):
    /// look it up again instead of fetching it once more.
    StoredMeanwhile,
}

/// What [`Collapser::join_or_start`] gives a request.
enum Role {
    /// Nobody fetches this key: the caller must run the fetch, feeding the
    /// `Leader`, and read the response from the `Reader` like any joiner.
    Leader(Leader, Reader),
    /// A fetch is running: read it.
    Follower(Reader),
}

impl Collapser {
    pub fn new(window: Window) -> Collapser {
        Collapser {
            table: Arc::default(),
            window,
        }
    }

    /// The same fetches in flight, new fetches under new limits (a reload).
    pub fn with_window(&self, window: Window) -> Collapser {
        Collapser {
            table: Arc::clone(&self.table),
            window,
        }
    }

    /// Gets `miss` a response head: it joins the fetch of its key, or
    /// starts one with `fetch` (which runs the fetch in a task of its own,
    /// so it goes on for the others if this request goes away, feeding the
    /// [`Leader`] it is given, e.g. with [`Leader::pump`]), and waits for
    /// the head within [`Miss::wait`]. A follower that finds the response
    /// not shareable with it lets go of the shared fetch and fetches alone;
    /// one whose fetch ends before its head (the leader failed, or its task
    /// went away) joins again: the first to do so leads a new fetch, the
    /// others follow it, as pingora-cache's lock elects a new writer. One
    /// that wakes so late that the new fetch has stored the object already
    /// gets [`Outcome::StoredMeanwhile`].
    pub async fn forward(&self, miss: Miss<'_>, fetch: impl FnOnce(Leader)) -> Outcome {
        let Some(key) = miss.key else {
            let (leader, reader) = self.alone();
            fetch(leader);
            return own_head(reader, miss.wait, Outcome::Uncollapsed).await;
        };
        // Following, however many leaders it takes, has one deadline; a
        // fetch of its own then gets the whole wait, as any leader's.
        let deadline = tokio::time::Instant::now() + miss.wait;
        let mut followed_ended = false;
        loop {
            if followed_ended && (miss.stored_since)() {
                return Outcome::StoredMeanwhile;
            }
            let mut reader = match self.join_or_start(key) {
                Role::Leader(leader, reader) => {
                    fetch(leader);
                    return own_head(reader, miss.wait, Outcome::Lead).await;
                }
                Role::Follower(reader) => reader,
            };
            match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(Some(Event::Head(head))) if head.shareable_with(miss.headers) => {
                    return Outcome::Follow(Answer { head, reader });
                }
                Ok(Some(Event::Head(_))) => {
                    // A reader that takes nothing would hold the shared
                    // fetch (and its other clients) up: let go of it first.
                    drop(reader);
                    tracing::debug!(
                        url = miss.url,
                        "collapsed: the response is not shareable with this request; fetching alone"
                    );
                    let (leader, reader) = self.alone();
                    fetch(leader);
                    return own_head(reader, miss.wait, Outcome::GaveUp).await;
                }
                Ok(ended) => {
                    let failure = match ended {
                        Some(Event::Failed(f)) => f,
                        _ => ended_without_head(),
                    };
                    tracing::debug!(
                        url = miss.url,
                        failure = failure.detail,
                        "collapsed: the fetch followed ended without a response; joining anew"
                    );
                    followed_ended = true;
                }
                Err(_) => return Outcome::TimedOut { following: true },
            }
        }
    }

    /// Joins the fetch of `key`, or starts one.
    fn join_or_start(&self, key: Key) -> Role {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fetch) = table.get(&key) {
            if let Some(reader) = Fetch::join(fetch) {
                return Role::Follower(reader);
            }
        }
        let fetch = self.fetch(Some(key));
        table.insert(key, Arc::clone(&fetch));
        let reader = Fetch::attach(&fetch, &mut fetch.lock());
        Role::Leader(
            Leader {
                fetch,
                finished: false,
            },
            reader,
        )
    }

    /// A fetch nobody joins (a response meant for one client), under the
    /// same limits.
    fn alone(&self) -> (Leader, Reader) {
        self.alone_with(false)
    }

    /// Like [`Collapser::alone`] for a body whose head the caller sends
    /// itself (a revalidation): its reader gets no `Head`.
    pub fn alone_body(&self) -> (Leader, Reader) {
        self.alone_with(true)
    }

    fn alone_with(&self, head_known: bool) -> (Leader, Reader) {
        let fetch = self.fetch(None);
        let reader = {
            let mut st = fetch.lock();
            st.admitting = false;
            let reader = Fetch::attach(&fetch, &mut st);
            if let Some(c) = st.readers.get_mut(&reader.id) {
                c.head_sent = head_known;
            }
            reader
        };
        (
            Leader {
                fetch,
                finished: false,
            },
            reader,
        )
    }

    fn fetch(&self, key: Option<Key>) -> Arc<Fetch> {
        Arc::new(Fetch {
            key,
            table: Arc::clone(&self.table),
            state: Mutex::new(State {
                head: None,
                buffered: VecDeque::new(),
                received: 0,
                admitting: true,
                readers: HashMap::new(),
                next_reader: 0,
                finished: None,
            }),
            window: self.window,
            progress: Notify::new(),
        })
    }

    /// Fetches in flight (for tests and the status page).
    pub fn in_flight(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Waits (at most `wait`) for the head of a fetch this request runs.
async fn own_head(mut reader: Reader, wait: Duration, answered: fn(Answer) -> Outcome) -> Outcome {
    match tokio::time::timeout(wait, reader.next()).await {
        Ok(Some(Event::Head(head))) => answered(Answer { head, reader }),
        Ok(Some(Event::Failed(f))) => Outcome::Failed(f),
        Ok(_) => Outcome::Failed(ended_without_head()),
        Err(_) => Outcome::TimedOut { following: false },
    }
}

fn ended_without_head() -> Failure {
    Failure::new(
        ErrorKind::ReadError,
        "the fetch ended without a response".into(),
    )
}

/// The one who runs a fetch. Dropped before [`Leader::finish`] (the task
/// failed or was cancelled), it fails every reader so nobody waits forever
/// (those still waiting for the head in [`Collapser::forward`] then elect
/// a new leader).
pub struct Leader {
    fetch: Arc<Fetch>,
    finished: bool,
}

impl Leader {
    /// Publishes the response head.
    pub fn head(&self, head: Head) {
        let mut st = self.fetch.lock();
        st.head = Some(Arc::new(head));
        st.wake_readers();
    }

    /// Waits until the fetch may read more from upstream: until it holds
    /// less than `read_ahead_gap` beyond what the slowest reader took. A
    /// reader that takes nothing for the stall time while the fetch waits
    /// on it is cut off. Returns whether any reader is still attached
    /// (without one there is no need to wait; reading on is only worth it
    /// for the store).
    pub async fn room(&self) -> bool {
        let window = self.fetch.window;
        loop {
            {
                let st = self.fetch.lock();
                if st.attached() == 0 {
                    return false;
                }
                if st.received - st.slowest() < window.gap {
                    return true;
                }
            }
            // A reader's progress stores a permit if nobody waits yet, so
            // none is missed between the check and the wait.
            let moved = tokio::time::timeout(window.stall, self.fetch.progress.notified()).await;
            if moved.is_err() {
                self.fetch.cut_slowest();
            }
        }
    }

    /// Publishes a body chunk.
    pub fn chunk(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        let mut st = self.fetch.lock();
        let at = st.received;
        st.received += chunk.len() as u64;
        st.buffered.push_back((at, chunk));
        if st.admitting && st.received > self.fetch.window.join_limit {
            // Too much to keep for latecomers: close the door.
            st.admitting = false;
        }
        st.trim();
        st.wake_readers();
    }

    /// Ends the fetch (`Event::End` or `Event::Failed`).
    pub fn finish(mut self, end: Event) {
        self.finished = true;
        self.fetch.end(end);
    }

    /// The fan-out sink: reads an upstream body to its end, storing it
    /// with `writer` (when given) and handing every chunk to the readers.
    /// It reads only as far ahead of the slowest reader as
    /// `read_ahead_gap` allows, so the memory a fetch holds does not grow
    /// with the object (see [`Leader::room`]); with no reader left it reads
    /// on for the store alone. A body too big for the store goes on
    /// unstored; with nobody listening and nothing stored it stops.
    /// `commit` finishes a complete entry.
    pub async fn pump<B>(
        self,
        mut body: B,
        mut writer: Option<Writer>,
        read_timeout: Duration,
        commit: &(dyn Fn(Writer) + Sync),
    ) where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Display,
    {
        let expected = body.size_hint().exact();
        let mut received = 0u64;
        loop {
            let listened = self.room().await;
            if !listened && writer.is_none() && expected != Some(received) {
                // Nobody listens and nothing is stored: stop.
                self.finish(Event::Failed(Failure::new(
                    ErrorKind::ReadError,
                    "abandoned".into(),
                )));
                return;
            }
            let frame = tokio::time::timeout(
                read_timeout,
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)),
            )
            .await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    received += data.len() as u64;
                    if let Some(w) = writer.as_mut() {
                        if w.write(&data).is_err() {
                            // Too big (or no room): passed through, not stored.
                            writer = None;
                        }
                    }
                    // The last bytes of a sized body: commit before the
                    // client can see the end, so a request sent right after
                    // it hits.
                    if expected == Some(received) {
                        if let Some(w) = writer.take() {
                            commit(w);
                        }
                    }
                    self.chunk(data);
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    self.finish(Event::Failed(Failure::new(
                        ErrorKind::ReadError,
                        e.to_string(),
                    )));
                    return;
                }
                Err(_) => {
                    self.finish(Event::Failed(Failure::new(
                        ErrorKind::ReadTimeout,
                        "read timeout".into(),
                    )));
                    return;
                }
            }
        }
        if let Some(w) = writer {
            commit(w);
        }
        self.finish(Event::End);
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
            self.fetch.end(abandoned());
        }
    }
}

impl Fetch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new reader, if latecomers are still let in: it gets what came so
    /// far, then follows.
    fn join(fetch: &Arc<Fetch>) -> Option<Reader> {
        let mut st = fetch.lock();
        if !st.admitting {
            return None;
        }
        Some(Fetch::attach(fetch, &mut st))
    }

    fn attach(fetch: &Arc<Fetch>, st: &mut State) -> Reader {
        let id = st.next_reader;
        st.next_reader += 1;
        st.readers.insert(
            id,
            Cursor {
                pos: 0,
                head_sent: false,
                cut: false,
                done: false,
                waker: None,
            },
        );
        Reader {
            fetch: Arc::clone(fetch),
            id,
        }
    }

    /// Cuts off the readers that hold the fetch up.
    fn cut_slowest(&self) {
        let mut st = self.lock();
        let slowest = st.slowest();
        for c in st.readers.values_mut() {
            if !c.cut && c.pos == slowest {
                c.cut = true;
                if let Some(w) = c.waker.take() {
                    w.wake();
                }
            }
        }
        st.trim();
    }

    /// Ends the fetch and leaves the table; readers get what is buffered,
    /// then `end`.
    fn end(&self, end: Event) {
        // Out of the table first: a follower that wakes to a failure
        // before any head joins again, and must find a new fetch, not this.
        self.leave_table();
        let mut st = self.lock();
        st.finished = Some(end);
        st.wake_readers();
    }

    fn leave_table(&self) {
        let Some(key) = self.key else {
            return;
        };
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table
            .get(&key)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), self))
        {
            table.remove(&key);
        }
    }
}

fn too_slow(stall: Duration) -> Event {
    Event::Failed(Failure::new(
        ErrorKind::ReadTimeout,
        format!("the client took nothing for {stall:?}: cut off so the fetch goes on"),
    ))
}

/// One reader of a fetch: the events in order (see [`Event`]).
pub struct Reader {
    fetch: Arc<Fetch>,
    id: u64,
}

impl Reader {
    /// The next event; `None` after the last one.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut guard = self.fetch.lock();
        let st = &mut *guard;
        let Some(cursor) = st.readers.get_mut(&self.id) else {
            return Poll::Ready(None);
        };
        if cursor.done {
            return Poll::Ready(None);
        }
        if cursor.cut {
            cursor.done = true;
            return Poll::Ready(Some(too_slow(self.fetch.window.stall)));
        }
        if !cursor.head_sent {
            if let Some(head) = &st.head {
                cursor.head_sent = true;
                return Poll::Ready(Some(Event::Head(Arc::clone(head))));
            }
        } else if cursor.pos < st.received {
            let i = st.buffered.partition_point(|(at, _)| *at < cursor.pos);
            let chunk = match st.buffered.get(i) {
                Some((at, chunk)) if *at == cursor.pos => chunk.clone(),
                // Dropped while this reader still needed it: never, as
                // only what every attached reader took is dropped.
                _ => {
                    cursor.done = true;
                    return Poll::Ready(Some(abandoned()));
                }
            };
            cursor.pos += chunk.len() as u64;
            st.trim();
            drop(guard);
            self.fetch.progress.notify_one();
            return Poll::Ready(Some(Event::Chunk(chunk)));
        }
        // Caught up (or no head yet): the end, if it came, else wait.
        if let Some(end) = &st.finished {
            cursor.done = true;
            return Poll::Ready(Some(end.clone()));
        }
        cursor.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub async fn next(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        {
            let mut st = self.fetch.lock();
            st.readers.remove(&self.id);
            st.trim();
        }
        self.fetch.progress.notify_one();
    }
}

#[cfg(test)]
mod tests;
