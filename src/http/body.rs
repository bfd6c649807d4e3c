//! Response bodies cuttle sends (and request bodies it forwards): stored
//! hits as zero-copy chunks, upstream bodies passed through, a collapsed
//! fetch's stream, a client's request body shared by the attempts to
//! forward it (sent at most once), and a wrapper that counts the bytes a
//! client received and reports them once, when the body ends or the
//! client goes away (the moment the access.log line is written).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::client_io::IncomingBody;
use super::collapse::{Event, Reader};
use crate::upstream::{PooledBody, RequestBodyError};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body cuttle sends or forwards.
pub enum ProxyBody {
    Empty,
    /// Whole chunks in memory: a stored hit (views of the map) or a page.
    Chunks(VecDeque<Bytes>),
    /// A client's request body, forwarded as it arrives by one attempt.
    Incoming(BodyAttempt),
    /// An origin's response body, passed through without storing.
    Upstream(Box<PooledBody<ProxyBody>>),
    /// A fetch's body as one of its readers gets it (paced by the fetch's
    /// read-ahead window; shared with other clients when collapsed).
    Shared(Reader),
    /// Two pieces with a pause between them (see [`Paced`]).
    Paced(Box<Paced>),
    /// One range of another body as it streams (see [`Window`]).
    Window(Box<Window>),
}

/// The bytes `skip .. skip + take` of a streamed body: the range a client
/// asked for, cut from a whole 200 as it arrives. The rest of the body is
/// dropped unread once the range is sent (a fetch it came from goes on
/// storing without this reader).
pub struct Window {
    inner: ProxyBody,
    skip: u64,
    left: u64,
}

impl Window {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.left == 0 {
                self.inner = ProxyBody::Empty;
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    // Shorter than its Content-Length said: the client
                    // must see a truncated response, not a short one.
                    return Poll::Ready(Some(Err("body ended before the range".into())));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if self.skip >= len {
                self.skip -= len;
                continue;
            }
            let from = self.skip as usize;
            let to = (self.skip + self.left).min(len) as usize;
            self.skip = 0;
            self.left -= (to - from) as u64;
            return Poll::Ready(Some(Ok(Frame::data(data.slice(from..to)))));
        }
    }
}

/// A body sent as `first`, then, after `pause`, `rest`: hyper flushes what
/// it holds (the head and `first`) while the body is pending, so the peer
/// gets them in a read of their own. The Cache Digest needs this: Squid
/// garbles a digest whose header and mask come in one read (squid-spec 5.5).
pub struct Paced {
    first: Option<Bytes>,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    rest: Option<Bytes>,
}

impl Paced {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            // The pause starts once the first piece is on its way.
            self.sleep = Some(Box::pin(tokio::time::sleep(self.pause)));
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        Poll::Ready(self.rest.take().map(|r| Ok(Frame::data(r))))
    }

    fn len(&self) -> u64 {
        [&self.first, &self.rest]
            .iter()
            .filter_map(|b| b.as_ref())
            .map(|b| b.len() as u64)
            .sum()
    }
}

impl ProxyBody {
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> ProxyBody {
        ProxyBody::Chunks(chunks.into_iter().filter(|c| !c.is_empty()).collect())
    }

    /// `take` bytes of `self` after the first `skip`.
    pub fn window(self, skip: u64, take: u64) -> ProxyBody {
        ProxyBody::Window(Box::new(Window {
            inner: self,
            skip,
            left: take,
        }))
    }

    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::from_chunks([bytes.into()])
    }

    /// `first`, a pause, then `rest` (see [`Paced`]).
    pub fn paced(first: Bytes, pause: Duration, rest: Bytes) -> ProxyBody {
        ProxyBody::Paced(Box::new(Paced {
            first: Some(first).filter(|b| !b.is_empty()),
            pause,
            sleep: None,
            rest: Some(rest).filter(|b| !b.is_empty()),
        }))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Chunks(chunks) => {
                Poll::Ready(chunks.pop_front().map(|c| Ok(Frame::data(c))))
            }
            ProxyBody::Incoming(attempt) => attempt.poll_frame(cx),
            ProxyBody::Paced(paced) => paced.poll_frame(cx),
            ProxyBody::Window(window) => window.poll_frame(cx),
            ProxyBody::Upstream(inner) => {
                Pin::new(inner.as_mut()).poll_frame(cx).map_err(Into::into)
            }
            ProxyBody::Shared(reader) => match reader.poll_event(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Event::Chunk(c))) => Poll::Ready(Some(Ok(Frame::data(c)))),
                Poll::Ready(Some(Event::End) | None) => Poll::Ready(None),
                // The upstream broke mid-body: the client must see a
                // truncated response (the connection is closed), not a
                // short one that looks complete.
                Poll::Ready(Some(Event::Failed(f))) => Poll::Ready(Some(Err(f.detail.into()))),
                Poll::Ready(Some(Event::Head(_))) => {
                    Poll::Ready(Some(Err("response head repeated in a body".into())))
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Chunks(c) => c.is_empty(),
            ProxyBody::Incoming(a) => a.is_end_stream(),
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Shared(_) => false,
            ProxyBody::Paced(p) => p.first.is_none() && p.rest.is_none(),
            ProxyBody::Window(w) => w.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Chunks(c) => SizeHint::with_exact(c.iter().map(|b| b.len() as u64).sum()),
            ProxyBody::Incoming(a) => a.size_hint(),
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Shared(_) => SizeHint::default(),
            ProxyBody::Paced(p) => SizeHint::with_exact(p.len()),
            ProxyBody::Window(_) => SizeHint::default(),
        }
    }
}

/// Whether cuttle implements a request's transfer codings: none, or
/// `chunked` alone (hyper has decoded it). Any other coding (`gzip,
/// chunked`, `chunked, chunked`, a parameter) would be forwarded with the
/// coding dropped and the bytes still coded; Squid 5.7 answers such a
/// request 501 ERR_UNSUP_REQ, and so does cuttle.
pub fn transfer_coding_supported(headers: &http::HeaderMap) -> bool {
    let mut codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => !headers.contains_key(http::header::TRANSFER_ENCODING),
        (Some(only), None) => only.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// A client's request body shared by the attempts to forward it (one per
/// source tried): the first attempt that reads it takes it, so it is sent
/// at most once; an attempt that never read it (its connection failed)
/// leaves it whole for the next. Squid re-forwards a request only while
/// its body is untouched ("nibbled"); [`RequestBody::replayable`] is that
/// test.
#[derive(Clone)]
pub struct RequestBody {
    slot: Arc<Mutex<Option<IncomingBody>>>,
    /// There was nothing to send: any attempt may send "it" again.
    empty: bool,
}

impl RequestBody {
    pub fn new(body: IncomingBody) -> RequestBody {
        RequestBody {
            empty: body.is_end_stream(),
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<IncomingBody>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another attempt can still send the whole body.
    pub fn replayable(&self) -> bool {
        self.empty || self.lock().is_some()
    }

    /// The body of one attempt.
    pub fn attempt(&self) -> ProxyBody {
        ProxyBody::Incoming(BodyAttempt {
            shared: self.clone(),
            taken: None,
        })
    }
}

/// One attempt's view of a [`RequestBody`]: takes it on the first read.
pub struct BodyAttempt {
    shared: RequestBody,
    taken: Option<IncomingBody>,
}

impl BodyAttempt {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            self.taken = self.shared.lock().take();
        }
        match &mut self.taken {
            // Marked as the client's failure, not the server's (upstream
            // classifies it FetchError::RequestBody).
            Some(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| Box::new(RequestBodyError(error_chain(&e))) as BoxError),
            None if self.shared.empty => Poll::Ready(None),
            // Another attempt read it: sending part of it again would
            // corrupt the request; the walk never lets this happen.
            None => Poll::Ready(Some(Err("the request body was already sent".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => {
                self.shared.empty || self.shared.lock().as_ref().is_none_or(Body::is_end_stream)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self
                .shared
                .lock()
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

/// An error and its causes, "outer: inner: ...".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Called once with (body bytes sent, whether the body ended normally).
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send>;

/// The body as a client receives it: counts bytes and reports the end.
pub struct ClientBody {
    inner: ProxyBody,
    sent: u64,
    /// The Content-Length promised, if any: hyper stops polling once it has
    /// sent that many bytes, so reaching it is the end.
    expected: Option<u64>,
    done: Option<OnDone>,
    /// The active request whose bytes out this body counts.
    progress: Option<Arc<crate::stats::ActiveRequest>>,
}

impl ClientBody {
    /// Counts the bytes sent into `request` as they go.
    pub fn counting_into(mut self, request: Arc<crate::stats::ActiveRequest>) -> ClientBody {
        self.progress = Some(request);
        self
    }

    pub fn new(inner: ProxyBody, expected: Option<u64>, done: OnDone) -> ClientBody {
        ClientBody {
            inner,
            sent: 0,
            expected,
            done: Some(done),
            progress: None,
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.done.take() {
            done(self.sent, complete);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if let Some(p) = &this.progress {
                        p.bytes_out
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        // Not polled to its end: hyper dropped it, either because all the
        // promised bytes were sent or there is no body to send (HEAD, 304),
        // or because the client went away.
        let complete = self.inner.is_end_stream() || self.expected.is_some_and(|n| self.sent >= n);
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn te(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_chunked_alone_is_a_supported_transfer_coding() {
        assert!(transfer_coding_supported(&HeaderMap::new()));
        assert!(transfer_coding_supported(&te(&["chunked"])));
        assert!(transfer_coding_supported(&te(&["Chunked"])));
        assert!(transfer_coding_supported(&te(&[" chunked ,"])));
        for bad in [
            &["gzip, chunked"][..],
            &["chunked, chunked"],
            &["identity, chunked"],
            &["gzip", "chunked"],
            &["chunked;a=1"],
            &[""],
        ] {
            assert!(!transfer_coding_supported(&te(bad)), "{bad:?}");
        }
    }

    /// A window takes its bytes across chunk edges, ends once they are
    /// out without reading the rest, and fails when the body is short.
    #[tokio::test]
    async fn a_window_sends_its_bytes_only() {
        use http_body_util::BodyExt;
        let chunks = || {
            ProxyBody::from_chunks(
                ["0123", "4567", "89"].map(|s: &'static str| Bytes::from_static(s.as_bytes())),
            )
        };
        let mut body = chunks().window(3, 4);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"3456");
        assert!(body.is_end_stream());
        let ProxyBody::Window(w) = &body else {
            panic!("not a window")
        };
        // The rest ("89") was never read: the inner body is gone.
        assert!(matches!(w.inner, ProxyBody::Empty));
        let all = chunks().window(0, 10).collect().await.unwrap().to_bytes();
        assert_eq!(all, "0123456789");
        assert!(chunks().window(8, 5).collect().await.is_err());
    }

    /// The second piece waits out the pause after the first went out, and
    /// the body is pending meanwhile (when hyper flushes the first).
    #[tokio::test(start_paused = true)]
    async fn a_paced_body_pauses_between_its_pieces() {
        let mut body = ProxyBody::paced(
            Bytes::from_static(b"head"),
            Duration::from_millis(100),
            Bytes::from_static(b"mask"),
        );
        assert_eq!(body.size_hint().exact(), Some(8));
        let poll = |body: &mut ProxyBody| {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            match Pin::new(body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().ok()),
                Poll::Ready(None) => Some(None),
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Pending => None,
            }
        };
        assert_eq!(poll(&mut body), Some(Some(Bytes::from_static(b"head"))));
        assert_eq!(poll(&mut body), None);
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(poll(&mut body), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(poll(&mut body), Some(Some(Bytes::from_static(b"mask"))));
        assert_eq!(poll(&mut body), Some(None));
        assert!(body.is_end_stream());
    }
}
