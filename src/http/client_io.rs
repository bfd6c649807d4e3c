//! A client connection as hyper reads it: counts the bytes clients send (`client_http.kbytes_in`) and makes Squid's cache manager URL parsable.
//!
//! `squidclient mgr:info` and the Prometheus squid exporter send
//! `GET cache_object://HOST/info HTTP/1.0`. RFC 3986 allows no `_` in a
//! scheme, so hyper would answer 400 before cuttle saw the request. The
//! first request line of a connection is therefore read ahead, and a
//! target starting `cache_object:` (any case) is handed to hyper as
//! `cache-object:` (same length, so nothing else moves); the manager
//! recognises that spelling. Only the first request of a connection is
//! looked at: those tools send one request per connection, and the
//! manager's answer closes it, as Squid's does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stats::Stats;

/// The scheme as Squid's tools send it, and as hyper is given it.
const SQUID_SCHEME: &[u8] = b"cache_object:";
/// Enough of a request line to decide: a method, a space, the scheme.
const LOOKAHEAD: usize = 64;

enum State {
    /// Reading the start of the first request line.
    Looking(Vec<u8>),
    /// Handing hyper what was read ahead, from this offset.
    Replaying(Vec<u8>, usize),
    Passing,
}

pub struct ClientIo<S> {
    inner: S,
    state: State,
    stats: Arc<Stats>,
}

impl<S> ClientIo<S> {
    pub fn new(inner: S, stats: Arc<Stats>) -> ClientIo<S> {
        ClientIo {
            inner,
            state: State::Looking(Vec::new()),
            stats,
        }
    }
}

/// Whether `head` (the start of a request) shows enough to decide, and
/// where the `_` of a `cache_object:` target is, if it is one.
fn decide(head: &[u8]) -> Option<Option<usize>> {
    let line_end = head.iter().position(|&b| b == b'\n');
    let line = &head[..line_end.unwrap_or(head.len())];
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        // No space yet: wait for more, unless the line is already over.
        return (line_end.is_some() || head.len() >= LOOKAHEAD).then_some(None);
    };
    let target = &line[space + 1..];
    let n = target.len().min(SQUID_SCHEME.len());
    if !target[..n].eq_ignore_ascii_case(&SQUID_SCHEME[..n]) {
        return Some(None);
    }
    if n == SQUID_SCHEME.len() {
        return Some(Some(space + 1 + 5));
    }
    (line_end.is_some() || head.len() >= LOOKAHEAD).then_some(None)
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Passing => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    let n = buf.filled().len() - before;
                    this.stats.note_bytes_in(n as u64);
                    return Poll::Ready(Ok(()));
                }
                State::Replaying(held, at) => {
                    let rest = held.get(*at..).unwrap_or(&[]);
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(&rest[..n]);
                    *at += n;
                    if *at >= held.len() {
                        this.state = State::Passing;
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Looking(held) => {
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    let got = read.filled();
                    this.stats.note_bytes_in(got.len() as u64);
                    held.extend_from_slice(got);
                    let decision = if got.is_empty() {
                        // The client closed: hand over what came.
                        Some(None)
                    } else {
                        decide(held)
                    };
                    if let Some(underscore) = decision {
                        let mut held = std::mem::take(held);
                        if let Some(i) = underscore {
                            if let Some(b) = held.get_mut(i) {
                                *b = b'-';
                            }
                        }
                        this.state = if held.is_empty() {
                            State::Passing
                        } else {
                            State::Replaying(held, 0)
                        };
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
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
        bufs: &[io::IoSlice<'_>],
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn decides_on_the_request_line() {
        assert_eq!(
            decide(b"GET cache_object://h/info HTTP/1.0\r\n"),
            Some(Some(9))
        );
        assert_eq!(decide(b"GET CACHE_OBJECT://h/"), Some(Some(9)));
        assert_eq!(decide(b"GET http://h/ HTTP/1.1\r\n"), Some(None));
        assert_eq!(decide(b"GET cache_ob"), None, "not enough yet");
        assert_eq!(decide(b"GE"), None);
        assert_eq!(decide(b"GET /x\r\n"), Some(None));
    }

    #[tokio::test]
    async fn rewrites_the_scheme_even_when_it_arrives_in_pieces() {
        let (mut client, server) = tokio::io::duplex(64);
        let stats = Arc::new(Stats::default());
        let mut io = ClientIo::new(server, Arc::clone(&stats));
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
}
