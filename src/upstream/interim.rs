//! Which client connection a fetch relays its 1xx interim responses to.
//!
//! Every client connection registers an [`InterimSink`] under an id. While
//! a request's service is polled ([`Serving`]), a thread-local names that
//! id, so a fetch started there finds the connection and the request in
//! flight ([`interim_target`]); a fetch handed to a task of its own carries
//! the target along ([`relaying_interim`]). A hit never looks: all it pays
//! is setting and restoring the thread-local around each poll.
//!
//! hyper handles a 100 Continue itself on each side, so it is never
//! relayed; a 101 is not interim here.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll};

use http::{HeaderMap, Request, StatusCode};

/// Where a fetch's 1xx interim responses go: a client connection that
/// writes them before the final response of one of its requests.
pub trait InterimSink: Send + Sync {
    /// The request in flight, when it may still get interim responses.
    fn relayable_request(&self) -> Option<u64>;
    /// Whether `request` may still get interim responses (its final
    /// response has not begun); readies the connection to write them as
    /// they come. Called first in the client connection's own task.
    fn arm(&self, request: u64) -> bool;
    /// An interim response for `request`, as the server sent it.
    fn relay(&self, request: u64, status: StatusCode, fields: &HeaderMap);
}

/// The request (numbered within its connection) whose fetches relay their
/// interim responses to `sink`.
#[derive(Clone)]
pub struct InterimTarget {
    pub sink: Arc<dyn InterimSink>,
    pub request: u64,
}

/// The client connections, by id.
static SINKS: LazyLock<Mutex<HashMap<u64, Weak<dyn InterimSink>>>> = LazyLock::new(Mutex::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn sinks() -> std::sync::MutexGuard<'static, HashMap<u64, Weak<dyn InterimSink>>> {
    SINKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client connection's place among the sinks; leaves it when dropped.
#[derive(Debug)]
pub struct SinkId(u64);

impl SinkId {
    /// Registers `sink` (it need not be alive yet: `Arc::new_cyclic`).
    pub fn register(sink: Weak<dyn InterimSink>) -> SinkId {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        sinks().insert(id, sink);
        SinkId(id)
    }
}

impl Drop for SinkId {
    fn drop(&mut self) {
        sinks().remove(&self.0);
    }
}

thread_local! {
    /// The sink whose request's service is being polled on this thread
    /// (0: none).
    static SERVING: Cell<u64> = const { Cell::new(0) };
}

/// A request's service, polled with its fetches relaying to the sink `id`.
pub struct Serving<'a, F> {
    id: u64,
    service: Pin<&'a mut F>,
}

impl<'a, F> Serving<'a, F> {
    pub fn new(id: &SinkId, service: Pin<&'a mut F>) -> Self {
        Serving { id: id.0, service }
    }
}

/// Puts back the thread-local's value, even when the poll panics (the
/// thread goes on polling other tasks).
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        SERVING.with(|s| s.set(self.0));
    }
}

impl<F: Future> Future for Serving<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _restore = Restore(SERVING.with(|s| s.replace(this.id)));
        this.service.as_mut().poll(cx)
    }
}

tokio::task_local! {
    static INTERIM: Option<InterimTarget>;
}

/// Runs `fetching` (in a task of its own) with its fetches relaying interim
/// responses to `target` (`None`: to nobody).
pub fn relaying_interim<F: Future>(
    target: Option<InterimTarget>,
    fetching: F,
) -> tokio::task::futures::TaskLocalFuture<Option<InterimTarget>, F> {
    INTERIM.scope(target, fetching)
}

/// Where the fetches made here relay interim responses, armed
/// ([`InterimSink::arm`]): the request being served, or the target a task
/// was given ([`relaying_interim`]). `None` when its client may not get
/// them (HTTP/1.0) or its final response has begun. Take it in the
/// client's task before handing a fetch to another task.
pub fn interim_target() -> Option<InterimTarget> {
    let found = match INTERIM.try_with(Option::clone) {
        Ok(given) => given,
        Err(_) => serving_target(),
    };
    found.filter(|t| t.sink.arm(t.request))
}

fn serving_target() -> Option<InterimTarget> {
    let id = SERVING.with(Cell::get);
    if id == 0 {
        return None;
    }
    let sink = sinks().get(&id)?.upgrade()?;
    let request = sink.relayable_request()?;
    Some(InterimTarget { sink, request })
}

/// Has hyper hand `req`'s interim responses to [`interim_target`]. Not a
/// 100 Continue: each side's hyper answers `Expect` itself.
pub(super) fn relay_interim_of<B>(req: &mut Request<B>) {
    let Some(target) = interim_target() else {
        return;
    };
    hyper::ext::on_informational(req, move |res| {
        if res.status() != StatusCode::CONTINUE {
            target
                .sink
                .relay(target.request, res.status(), res.headers());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A connection whose request 7 may get interim responses while `open`.
    struct Fake {
        open: AtomicBool,
    }

    impl InterimSink for Fake {
        fn relayable_request(&self) -> Option<u64> {
            self.open.load(Ordering::Relaxed).then_some(7)
        }
        fn arm(&self, request: u64) -> bool {
            request == 7
        }
        fn relay(&self, _: u64, _: StatusCode, _: &HeaderMap) {}
    }

    fn found() -> Option<u64> {
        interim_target().map(|t| t.request)
    }

    #[tokio::test]
    async fn fetches_find_the_request_being_served_and_only_it() {
        let fake = Arc::new(Fake {
            open: AtomicBool::new(true),
        });
        let weak: Weak<dyn InterimSink> = Arc::downgrade(&fake) as Weak<dyn InterimSink>;
        let id = SinkId::register(weak);
        assert_eq!(found(), None, "outside a request's service");
        let service = std::pin::pin!(async { found() });
        assert_eq!(Serving::new(&id, service).await, Some(7));
        assert_eq!(found(), None, "the thread-local is put back");
        fake.open.store(false, Ordering::Relaxed);
        let service = std::pin::pin!(async { found() });
        assert_eq!(
            Serving::new(&id, service).await,
            None,
            "an HTTP/1.0 request, or a final response begun"
        );
        // A fetch in a task of its own relays where it was told to.
        fake.open.store(true, Ordering::Relaxed);
        let service = std::pin::pin!(async {
            let target = interim_target();
            tokio::spawn(relaying_interim(target, async { found() }))
                .await
                .expect("join")
        });
        assert_eq!(Serving::new(&id, service).await, Some(7));
        let spawned_alone = tokio::spawn(async { found() }).await.expect("join");
        assert_eq!(spawned_alone, None);
        let gone = SinkId(id.0);
        drop(id);
        let service = std::pin::pin!(async { found() });
        assert_eq!(
            Serving::new(&gone, service).await,
            None,
            "a connection no longer registered"
        );
    }
}
