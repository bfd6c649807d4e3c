//! The lean hit path, connection side: a connection's requests are read
//! and parsed here (httparse, the parser hyper itself uses) for as long as
//! each is a plain GET or HEAD that the memory cache answers
//! ([`proxy::lean_hit`]); each answer goes out in one vectored write of
//! its pre-encoded head and its body. The first request the lean path
//! will not answer, with every byte read after it, is handed to hyper,
//! which serves the connection from then on ([`Rewind`]). At shutdown
//! hyper takes the connection too, to close it as it closes its own.
//!
//! An idle connection holds no read buffer: each read goes to a buffer on
//! the stack, and only what it brought is kept (10,000 keep-alive clients
//! would otherwise hold 80 MB of empty read buffers); nor the state of a
//! hit's lookup, which is boxed for the hit's time.
//!
//! Only what hyper would treat exactly as the lean path does is taken:
//! HTTP/1.1 without a body, a Connection option other than keep-alive,
//! Upgrade or Expect, and with a head hyper would accept; and only while
//! the request span is off (with it on, the general path records it).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use super::client_io::Activity;
use super::proxy::{self, LeanAnswer, LeanRequest, Proxy};
use super::server::ConnInfo;

/// Fields a lean request may carry; more, and hyper takes it.
const MAX_FIELDS: usize = 64;
/// Bytes read at a time (into a buffer on the stack).
const READ_SIZE: usize = 8192;

/// What the start of the buffer holds.
// Returned once per request and taken apart at once: a box would cost
// every lean hit an allocation.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// Not a whole request head yet.
    Incomplete,
    /// A request the lean path may answer, and its head's length.
    Lean(LeanRequest, usize),
    /// Anything else: hyper's.
    Other,
}

/// Parses the request head at the start of `buf` (at most `limit` bytes).
fn parse(buf: &[u8], limit: usize) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= limit => return Head::Incomplete,
        _ => return Head::Other,
    };
    if len > limit || req.version != Some(1) {
        return Head::Other;
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Head::Other,
    };
    // One copy of the head that the target and the values are views of.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let view = |part: &[u8]| {
        let at = part.as_ptr() as usize - buf.as_ptr() as usize;
        head.slice(at..at + part.len())
    };
    let Some(Ok(uri)) = req.path.map(|p| Uri::from_maybe_shared(view(p.as_bytes()))) else {
        return Head::Other;
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        let name = field.name;
        let framing = ["content-length", "transfer-encoding", "upgrade", "expect"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
        if framing
            || (name.eq_ignore_ascii_case("connection")
                && !field.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
        {
            return Head::Other;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(view(field.value)),
        ) else {
            return Head::Other;
        };
        headers.append(name, value);
    }
    Head::Lean(
        LeanRequest {
            method,
            uri,
            headers,
        },
        len,
    )
}

/// How the lean phase of a connection ended.
pub(super) enum Ended {
    /// The connection is over (closed, failed, or timed out quietly).
    Closed,
    /// hyper serves the rest: these bytes were read and not answered.
    HandOver(BytesMut),
}

/// What the lean phase needs of its connection.
pub(super) struct LeanConn<'a> {
    pub proxy: &'a watch::Receiver<Arc<Proxy>>,
    pub info: &'a ConnInfo,
    pub activity: &'a Activity,
    /// request_header_max_size.
    pub header_max: usize,
}

/// Serves the lean requests at the start of a connection (see the module
/// documentation).
pub(super) async fn serve<S>(io: &mut S, conn: &LeanConn<'_>, stop: &watch::Receiver<bool>) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    // Made once: a new one per read costs a hit hundreds of instructions.
    let mut stopping = std::pin::pin!(super::server::until_stopping(stop.clone()));
    loop {
        if !buf.is_empty() {
            match parse(&buf, conn.header_max) {
                Head::Incomplete => {}
                Head::Other => return Ended::HandOver(buf),
                Head::Lean(req, len) => {
                    // hyper looks for the client's end before it answers a
                    // request with nothing read after it (no half-close):
                    // a client gone by then gets no answer and no log line.
                    if buf.len() == len && ended_already(io, &mut buf).await {
                        return Ended::Closed;
                    }
                    let proxy = Arc::clone(&conn.proxy.borrow());
                    if !proxy::method_span(&req.method).is_disabled() {
                        return Ended::HandOver(buf);
                    }
                    // Boxed: its state (access checks, the lookup) lives
                    // only while a hit is answered, not in every idle
                    // connection's task.
                    let Some(answer) = Box::pin(proxy::lean_hit(&proxy, conn.info, &req)).await
                    else {
                        return Ended::HandOver(buf);
                    };
                    drop(proxy);
                    buf.advance(len);
                    // As the general path's service: RFC 9110 15.2 lets an
                    // HTTP/1.1 client have interim responses (none come).
                    let request = conn.activity.request_started(false, true);
                    conn.activity.interim_written(request).await;
                    let written = write_answer(io, &answer).await;
                    conn.activity.response_ended();
                    if let Err(e) = written {
                        tracing::debug!(client = %conn.info.client, error = %e, "connection ended");
                        return Ended::Closed;
                    }
                    continue;
                }
            }
        }
        let read = tokio::select! {
            biased;
            () = &mut stopping => return Ended::HandOver(buf),
            read = std::future::poll_fn(|cx| poll_read_into(&mut *io, cx, &mut buf)) => read,
        };
        match read {
            Ok(0) if buf.is_empty() => return Ended::Closed,
            // What came before the end is hyper's to judge.
            Ok(0) => return Ended::HandOver(buf),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(client = %conn.info.client, error = %e, "connection ended");
                return Ended::Closed;
            }
        }
    }
}

/// Polls one read of `io` into a buffer on the stack and appends what it
/// brought to `buf` (nothing is held while the read waits); `Ok(0)` is the
/// end of the stream.
fn poll_read_into<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut chunk = [MaybeUninit::<u8>::uninit(); READ_SIZE];
    let mut read = ReadBuf::uninit(&mut chunk);
    ready!(Pin::new(io).poll_read(cx, &mut read))?;
    buf.extend_from_slice(read.filled());
    Poll::Ready(Ok(read.filled().len()))
}

/// Whether the client has closed its side (or failed), by a read that
/// does not wait; what it reads instead is kept in `buf`.
async fn ended_already<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> bool {
    std::future::poll_fn(|cx| {
        Poll::Ready(match poll_read_into(&mut *io, cx, buf) {
            Poll::Pending => false,
            Poll::Ready(Ok(n)) => n == 0,
            Poll::Ready(Err(_)) => true,
        })
    })
    .await
}

/// Head and body in one vectored write (more only when the socket takes
/// part of it), then a flush (TLS).
async fn write_answer<S: AsyncWrite + Unpin>(io: &mut S, answer: &LeanAnswer) -> io::Result<()> {
    let mut parts = [IoSlice::new(&answer.head), IoSlice::new(&answer.body)];
    let mut left: &mut [IoSlice<'_>] = if answer.body.is_empty() {
        &mut parts[..1]
    } else {
        &mut parts[..]
    };
    while !left.is_empty() {
        let n = io.write_vectored(left).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n);
    }
    io.flush().await
}

/// A connection with bytes already read from it put back in front, for
/// hyper to read first.
pub(super) struct Rewind<S> {
    read: Option<Bytes>,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(read: BytesMut, inner: S) -> Rewind<S> {
        let read = (!read.is_empty()).then(|| read.freeze());
        Rewind { read, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(read) = &mut this.read {
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read[..n]);
            read.advance(n);
            if read.is_empty() {
                this.read = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lean(text: &str) -> Option<LeanRequest> {
        match parse(text.as_bytes(), 65536) {
            Head::Lean(req, len) => {
                assert_eq!(len, text.len());
                Some(req)
            }
            _ => None,
        }
    }

    #[test]
    fn only_plain_http11_gets_and_heads_are_lean() {
        let req = lean("GET http://o/x HTTP/1.1\r\nHost: o\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.uri, "http://o/x");
        assert_eq!(req.headers.len(), 2);
        assert!(lean("HEAD /x HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n").is_some());
        for other in [
            "GET /x HTTP/1.0\r\n\r\n",
            "POST /x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /x HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /x HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(lean(other).is_none(), "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_waiting_read_holds_no_buffer() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_read_into(&mut server, &mut cx, &mut buf).is_pending());
        assert_eq!(buf.capacity(), 0, "nothing reserved while waiting");
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let read = poll_read_into(&mut server, &mut cx, &mut buf);
        assert!(matches!(read, Poll::Ready(Ok(16))), "{read:?}");
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        assert!(buf.capacity() < READ_SIZE, "only what came is kept");
        drop(client);
        let read = poll_read_into(&mut server, &mut cx, &mut buf);
        assert!(matches!(read, Poll::Ready(Ok(0))), "the end: {read:?}");
        assert!(ended_already(&mut server, &mut buf).await);
    }

    #[test]
    fn a_head_is_waited_for_up_to_the_limit() {
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nHost", 100),
            Head::Incomplete
        ));
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nHost: a-long-name", 20),
            Head::Other
        ));
        let text = "GET /x HTTP/1.1\r\nHost: a-long-name\r\n\r\n";
        assert!(matches!(parse(text.as_bytes(), 20), Head::Other));
    }
}
