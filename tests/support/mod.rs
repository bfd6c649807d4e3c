//! Shared by the proxy integration tests: a scripted origin server running
//! inside the test, the real cuttle binary under a Drop guard (own port,
//! config, cache_dir and access.log in a temp dir), a small HTTP/1.1 client
//! and an access.log reader.
#![allow(dead_code)]

pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

/// How long any single wait in these tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- temp dirs

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "cuttle-itest-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // CUTTLE_ITEST_KEEP=1 keeps configs and access.logs for a look.
        if std::env::var_os("CUTTLE_ITEST_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// An HTTP date `secs` from now (negative: in the past).
pub fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

/// `len` bytes of a pattern that depends on `seed` (so a wrong offset or a
/// mix-up of two objects shows).
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let i = i as u64;
            (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed ^ (i >> 13) as u8
        })
        .collect()
}

// ------------------------------------------------------------------- origin

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query as received.
    pub target: String,
    /// The request-target as received (absolute-form when a proxy sent it).
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// 1 for the first request to this path, 2 for the second, ...
    pub n: usize,
}

impl Seen {
    /// A field's values joined with ", " ("" when absent).
    pub fn header(&self, name: &str) -> String {
        join(&self.headers, name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }
}

fn join(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait before sending the head.
    pub delay: Duration,
    /// Send the body in this many pieces...
    pub pieces: usize,
    /// ...with this pause before each piece but the first.
    pub piece_delay: Duration,
    /// No Content-Length: chunked.
    pub chunked: bool,
    /// Break the connection after this many body bytes.
    pub cut_after: Option<usize>,
    /// Send the head only once this turns true (or `WAIT` passed): the
    /// test decides when the origin answers, no pause has to outlast
    /// anything.
    pub hold: Option<watch::Receiver<bool>>,
    /// After this many body pieces, wait until the receiver turns true
    /// (or `WAIT` passed) before sending the rest.
    pub stall: Option<(usize, watch::Receiver<bool>)>,
}

impl Reply {
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::status(200).body(body)
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            pieces: 1,
            piece_delay: Duration::ZERO,
            chunked: false,
            cut_after: None,
            hold: None,
            stall: None,
        }
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// `Cache-Control: VALUE`.
    pub fn cc(self, value: &str) -> Reply {
        self.header("cache-control", value)
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    pub fn pieces(mut self, n: usize, pause: Duration) -> Reply {
        self.pieces = n.max(1);
        self.piece_delay = pause;
        self
    }

    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }

    /// Holds the answer until `release` (a `watch` channel's receiver)
    /// turns true.
    pub fn hold(mut self, release: watch::Receiver<bool>) -> Reply {
        self.hold = Some(release);
        self
    }

    /// Sends `pieces` body pieces, then the rest only once `release`
    /// turns true: the client has the start and cannot have the end.
    pub fn stall(mut self, pieces: usize, release: watch::Receiver<bool>) -> Reply {
        self.stall = Some((pieces, release));
        self
    }

    /// Sends the head (with the full Content-Length) and `n` body bytes,
    /// then breaks the connection.
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut_after = Some(n);
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Default)]
struct OriginState {
    routes: HashMap<String, Handler>,
    seen: Vec<Seen>,
    counts: HashMap<String, usize>,
    /// Bodies sent to the end, per path.
    finished: HashMap<String, usize>,
    /// Connections accepted (for TLS: handshakes completed).
    connections: usize,
}

/// A test server's loop, run as a task, that the test can stop and know
/// stopped: [`Stoppable::stop`] returns once the task has ended (another
/// thread may run it), so whatever it owned (a listener) is gone.
pub struct Stoppable {
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Stoppable {
    /// Spawns `run`, which must return soon after its receiver changes.
    pub fn spawn<F>(run: impl FnOnce(watch::Receiver<bool>) -> F) -> Stoppable
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Stoppable {
            stop,
            task: Mutex::new(Some(tokio::spawn(run(stopped)))),
        }
    }

    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        // No waiting in drop: the loop ends on its own.
        let _ = self.stop.send(true);
    }
}

/// An HTTP/1.1 origin on 127.0.0.1 (or an address of the test's own,
/// [`Origin::start_on`]) with scripted routes (by path, query ignored)
/// that records every request. Unknown paths get a 404.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
    /// The accept loop; it owns the listener and the connections.
    serving: Stoppable,
}

fn path_of(target: &str) -> String {
    target.split('?').next().unwrap_or("/").to_string()
}

impl Origin {
    pub async fn start() -> Origin {
        Origin::start_on(Ipv4Addr::LOCALHOST).await
    }

    /// An origin listening on `ip` (a free port).
    pub async fn start_on(ip: impl Into<IpAddr>) -> Origin {
        Origin::start_with(ip.into(), None).await
    }

    /// An HTTPS origin on 127.0.0.1 presenting `cert` (see [`tls::Pki`]).
    pub async fn start_tls(cert: &tls::Leaf) -> Origin {
        Origin::start_with(Ipv4Addr::LOCALHOST.into(), Some(cert.acceptor())).await
    }

    /// An HTTPS origin on 127.0.0.1 with a TLS setup of the test's own
    /// (for example one that asks for a client certificate).
    pub async fn start_tls_acceptor(acceptor: tokio_rustls::TlsAcceptor) -> Origin {
        Origin::start_with(Ipv4Addr::LOCALHOST.into(), Some(acceptor)).await
    }

    /// Connections accepted so far (HTTPS: handshakes completed).
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    async fn start_with(ip: IpAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind((ip, 0)).await.expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let state = Arc::new(Mutex::new(OriginState::default()));
        let st = Arc::clone(&state);
        let serving = Stoppable::spawn(|mut stopped| async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.changed() => {
                        // Every connection aborted and gone (closed) before
                        // the listener is dropped as the task returns.
                        conns.shutdown().await;
                        return;
                    }
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        // Head and body go out as separate writes: without
                        // this, Nagle and delayed ACKs add 40 ms to replies.
                        let _ = stream.set_nodelay(true);
                        let st = Arc::clone(&st);
                        let tls = tls.clone();
                        conns.spawn(async move {
                            let connected = Arc::clone(&st);
                            let service = service_fn(move |req| answer(Arc::clone(&st), req));
                            let http = hyper::server::conn::http1::Builder::new();
                            let count = move || connected.lock().unwrap_or_else(|p| p.into_inner()).connections += 1;
                            match tls {
                                None => {
                                    count();
                                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                }
                                Some(acceptor) => {
                                    // A client that refuses our certificate ends here.
                                    let Ok(stream) = acceptor.accept(stream).await else { return };
                                    count();
                                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Origin {
            addr,
            state,
            serving,
        }
    }

    /// Answers requests for `path` with `handler`.
    pub fn route(&self, path: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        self.lock()
            .routes
            .insert(path.to_string(), Arc::new(handler));
    }

    /// `http://ADDR:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests that reached `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.lock().counts.get(path).copied().unwrap_or(0)
    }

    /// Bodies for `path` sent to their end so far.
    pub fn finished(&self, path: &str) -> usize {
        self.lock().finished.get(path).copied().unwrap_or(0)
    }

    /// Every request for `path`, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| path_of(&s.target) == path)
            .cloned()
            .collect()
    }

    /// The last request for `path`.
    pub fn last(&self, path: &str) -> Seen {
        self.requests(path)
            .pop()
            .unwrap_or_else(|| panic!("the origin saw no request for {path}"))
    }

    /// Waits until `path` has seen `n` requests.
    pub async fn wait_count(&self, path: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count(path) < n {
            assert!(
                Instant::now() < deadline,
                "the origin saw {} requests for {path}, expected {n}",
                self.count(path)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` bodies for `path` were sent to the end.
    pub async fn wait_finished(&self, path: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.finished(path) < n {
            assert!(
                Instant::now() < deadline,
                "the origin finished {} bodies for {path}, expected {n}",
                self.finished(path)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops listening and closes every connection (the origin is "down")
    /// by the time this returns, not some time after: the accept loop is a
    /// task another thread may run.
    pub async fn stop(&self) {
        self.serving.stop().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OriginState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A body fed from a channel (pieces sent with pauses by a task); an `Err`
/// piece makes hyper abort the connection mid-body.
struct ChanBody(mpsc::Receiver<Result<Bytes, String>>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|p| p.map(Frame::data).map_err(Into::into)))
    }
}

async fn answer(
    state: Arc<Mutex<OriginState>>,
    req: Request<Incoming>,
) -> Result<Response<ChanBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let path = path_of(&target);
    let (seen, handler) = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let n = {
            let c = st.counts.entry(path.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let seen = Seen {
            method: parts.method.clone(),
            target,
            uri: parts.uri.to_string(),
            headers: parts.headers.clone(),
            body,
            n,
        };
        st.seen.push(seen.clone());
        (seen, st.routes.get(&path).cloned())
    };
    let reply = match handler {
        Some(h) => h(&seen),
        None => Reply::status(404).body("no such route\n"),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let Some(mut release) = reply.hold.clone() {
        let _ = tokio::time::timeout(WAIT, release.wait_for(|go| *go)).await;
    }
    let (tx, rx) = mpsc::channel(4);
    let mut resp = Response::new(ChanBody(rx));
    *resp.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (n, v) in &reply.headers {
        resp.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let bodiless = reply.status == 304 || reply.status == 204 || parts.method == Method::HEAD;
    if !reply.chunked && !resp.headers().contains_key("content-length") && reply.status != 304 {
        resp.headers_mut()
            .insert("content-length", HeaderValue::from(reply.body.len()));
    }
    let body = if bodiless {
        Bytes::new()
    } else {
        reply.body.clone()
    };
    let cut = reply.cut_after;
    let body = match cut {
        Some(n) => body.slice(..n.min(body.len())),
        None => body,
    };
    tokio::spawn(async move {
        let size = body.len().div_ceil(reply.pieces).max(1);
        let mut at = 0;
        let mut sent = 0;
        while at < body.len() {
            if sent > 0 && !reply.piece_delay.is_zero() {
                tokio::time::sleep(reply.piece_delay).await;
            }
            if let Some((after, release)) = &reply.stall {
                if sent == *after {
                    let mut release = release.clone();
                    let _ = tokio::time::timeout(WAIT, release.wait_for(|go| *go)).await;
                }
            }
            sent += 1;
            let end = (at + size).min(body.len());
            if tx.send(Ok(body.slice(at..end))).await.is_err() {
                return;
            }
            at = end;
        }
        if cut.is_some() {
            let _ = tx.send(Err("cut on purpose".to_string())).await;
            return;
        }
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        *st.finished.entry(path).or_insert(0) += 1;
    });
    Ok(resp)
}

// ------------------------------------------------------------ echo server

/// A TCP server on 127.0.0.1 that sends back what it reads.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("echo bind");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// ------------------------------------------------------------------- config

/// A squid.conf for one cuttle; `{port}`, `{dir}` in any line are replaced.
#[derive(Debug, Clone)]
pub struct Conf {
    /// visible_hostname.
    pub name: String,
    /// The http_port line.
    pub port_line: String,
    /// ACLs and http_access rules.
    pub access: Vec<String>,
    /// Anything else.
    pub extra: Vec<String>,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            name: "itest1".to_string(),
            port_line: "http_port 127.0.0.1:{port}".to_string(),
            access: vec![
                "acl localnet src 127.0.0.0/8".into(),
                "http_access allow localnet".into(),
                "http_access deny all".into(),
            ],
            extra: Vec::new(),
        }
    }
}

impl Conf {
    pub fn new() -> Conf {
        Conf::default()
    }

    pub fn access(mut self, lines: &[&str]) -> Conf {
        self.access = lines.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn extra(mut self, line: &str) -> Conf {
        self.extra.push(line.to_string());
        self
    }

    pub fn port_line(mut self, line: &str) -> Conf {
        self.port_line = line.to_string();
        self
    }

    pub fn text(&self, dir: &Path, port: u16) -> String {
        let mut lines = vec![self.port_line.clone()];
        lines.extend(self.access.iter().cloned());
        lines.push("cache_dir mmap {dir}/cache 32".into());
        lines.push("access_log stdio:{dir}/access.log squid".into());
        // Squid's default (/run/squid.pid) would be shared by every test.
        lines.push("pid_filename {dir}/cuttle.pid".into());
        lines.push(format!("visible_hostname {}", self.name));
        lines.extend(self.extra.iter().cloned());
        let mut text = lines.join("\n");
        text.push('\n');
        text.replace("{port}", &port.to_string())
            .replace("{dir}", &dir.display().to_string())
    }
}

// ------------------------------------------------------------------- cuttle

#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stderr: Vec<String>,
    closed: usize,
}

/// A running cuttle; killed (SIGKILL) and reaped when dropped.
pub struct Cuttle {
    child: Child,
    pub port: u16,
    pub name: String,
    /// Holds the config, cache_dir and access.log (removed last).
    pub dir: TempDir,
    pub conf_path: PathBuf,
    output: Arc<Mutex<Output>>,
    exited: Option<ExitStatus>,
}

impl Cuttle {
    /// Starts `cuttle run -f CONF` on a free port and waits until it listens.
    pub fn start(conf: &Conf) -> Cuttle {
        Cuttle::try_start(conf).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cuttle::start`], with its failure (cuttle's output) as an error,
    /// for tests whose config names more ports than `{port}` and that pick
    /// new ones when another process took one.
    pub fn try_start(conf: &Conf) -> Result<Cuttle, String> {
        let dir = TempDir::new("proxy");
        let conf_path = dir.path().join("squid.conf");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&conf_path, conf.text(dir.path(), port)).expect("write config");
            let args = [
                "run".to_string(),
                "-f".to_string(),
                conf_path.display().to_string(),
            ];
            match Cuttle::spawn(&args, &[], port) {
                Ok((child, output)) => {
                    return Ok(Cuttle {
                        child,
                        port,
                        name: conf.name.clone(),
                        dir,
                        conf_path,
                        output,
                        exited: None,
                    })
                }
                // Someone took the port between our probe and cuttle's bind.
                Err(e) if e.contains(&format!(":{port}: ")) => last = e,
                Err(e) => return Err(format!("cuttle did not start:\n{e}")),
            }
        }
        Err(format!("cuttle could not get a free port:\n{last}"))
    }

    /// Starts the binary with `args` and `env`, expecting it to listen on
    /// `port`; `dir` is kept for cleanup.
    pub fn start_raw(
        args: &[String],
        env: &[(&str, &Path)],
        port: u16,
        dir: TempDir,
        name: &str,
    ) -> Cuttle {
        let (child, output) =
            Cuttle::spawn(args, env, port).unwrap_or_else(|e| panic!("cuttle did not start:\n{e}"));
        Cuttle {
            child,
            port,
            name: name.to_string(),
            conf_path: dir.path().join("squid.conf"),
            dir,
            output,
            exited: None,
        }
    }

    fn spawn(
        args: &[String],
        env: &[(&str, &Path)],
        port: u16,
    ) -> Result<(Child, Arc<Mutex<Output>>), String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cuttle"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let output = Arc::new(Mutex::new(Output::default()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for (is_err, stream) in [
            (false, Box::new(out) as Box<dyn std::io::Read + Send>),
            (true, Box::new(err)),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut o = output.lock().unwrap_or_else(|p| p.into_inner());
                    if is_err {
                        o.stderr.push(line);
                    } else {
                        o.stdout.push(line);
                    }
                }
                output.lock().unwrap_or_else(|p| p.into_inner()).closed += 1;
            });
        }
        let want = format!("cuttle: listening on 127.0.0.1:{port} ");
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let o = output.lock().unwrap_or_else(|p| p.into_inner());
                if o.stdout.iter().any(|l| l.starts_with(&want)) {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the readers catch the last lines.
                std::thread::sleep(Duration::from_millis(50));
                let o = output.lock().unwrap_or_else(|p| p.into_inner());
                return Err(format!(
                    "exited with {status}\nstdout:\n{}\nstderr:\n{}",
                    o.stdout.join("\n"),
                    o.stderr.join("\n")
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let o = output.lock().unwrap_or_else(|p| p.into_inner());
                return Err(format!(
                    "no \"{want}\" line in time\nstdout:\n{}\nstderr:\n{}",
                    o.stdout.join("\n"),
                    o.stderr.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((child, output))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` ("TERM", "HUP", ...) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.pid());
    }

    pub fn stdout(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stdout
            .clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stderr
            .clone()
    }

    /// Waits for a stdout (or, with `stderr`, a stderr) line containing `needle`.
    pub async fn wait_output(&self, needle: &str, stderr: bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = if stderr { self.stderr() } else { self.stdout() };
            if lines.iter().any(|l| l.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no line containing {needle:?} on {}:\n{}",
                if stderr { "stderr" } else { "stdout" },
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit; its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(s);
                // Let the readers drain the pipes.
                let until = Instant::now() + Duration::from_secs(2);
                while self.output.lock().unwrap_or_else(|p| p.into_inner()).closed < 2
                    && Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return s;
            }
            assert!(Instant::now() < deadline, "cuttle did not exit in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Replaces the config file (for SIGHUP tests).
    pub fn rewrite_config(&self, conf: &Conf) {
        std::fs::write(&self.conf_path, conf.text(self.dir.path(), self.port))
            .expect("rewrite config");
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The access.log lines once there are at least `n` (cuttle flushes
    /// every 100 ms), then waits a little more so an unexpected extra line
    /// shows.
    pub async fn log(&self, n: usize) -> Vec<LogLine> {
        read_log(&self.log_path(), n).await
    }

    /// How this proxy's Via entry starts: `1.1 NAME (cuttle/`.
    pub fn via_header(&self) -> String {
        format!("1.1 {} (cuttle/", self.name)
    }
}

impl Drop for Cuttle {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if std::thread::panicking() {
            // A failing test: stop gracefully so the access.log is flushed,
            // and show it with cuttle's stderr under the test's output.
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.pid().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            eprintln!(
                "--- cuttle access.log:\n{log}--- cuttle stderr:\n{}",
                self.stderr().join("\n")
            );
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- access.log

/// One line of Squid's native access.log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub raw: String,
    pub client: String,
    /// `%Ss`, e.g. `TCP_MISS`.
    pub code: String,
    pub status: u16,
    pub bytes: u64,
    pub method: String,
    pub url: String,
    pub user: String,
    /// `%Sh/%<a`, e.g. `HIER_DIRECT/127.0.0.1`.
    pub hierarchy: String,
    pub content_type: String,
}

impl LogLine {
    pub fn parse(raw: &str) -> LogLine {
        let f: Vec<&str> = raw.split_whitespace().collect();
        assert!(f.len() >= 10, "not a squid access.log line: {raw:?}");
        let (code, status) = f[3]
            .split_once('/')
            .unwrap_or_else(|| panic!("no code/status in {raw:?}"));
        LogLine {
            raw: raw.to_string(),
            client: f[2].to_string(),
            code: code.to_string(),
            status: status
                .parse()
                .unwrap_or_else(|_| panic!("status in {raw:?}")),
            bytes: f[4].parse().unwrap_or_else(|_| panic!("bytes in {raw:?}")),
            method: f[5].to_string(),
            url: f[6].to_string(),
            user: f[7].to_string(),
            hierarchy: f[8].to_string(),
            content_type: f[9..].join(" "),
        }
    }

    /// `CODE/STATUS`, e.g. `TCP_HIT/200`.
    pub fn result(&self) -> String {
        format!("{}/{:03}", self.code, self.status)
    }
}

pub async fn read_log(path: &Path, n: usize) -> Vec<LogLine> {
    let read = || -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = read();
        if lines.len() >= n {
            // One more flush interval: a line we did not expect would show.
            tokio::time::sleep(Duration::from_millis(150)).await;
            return read().iter().map(|l| LogLine::parse(l)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} access.log lines in {}, have:\n{}",
            path.display(),
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------- client

/// A response as a client got it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// A field's values joined with ", " ("" when absent).
    pub fn header(&self, name: &str) -> String {
        join(&self.headers, name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The X-Cache verdict: "HIT" or "MISS".
    pub fn x_cache(&self) -> String {
        self.header("x-cache")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// A request to send through the proxy (absolute-form URL by default).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// What goes on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Bind the client socket to this address first (src ACL tests).
    pub from: Option<IpAddr>,
    /// Add a Host field from the URL (default on).
    pub host: bool,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
            from: None,
            host: true,
        }
    }

    pub fn get(url: &str) -> Req {
        Req::new("GET", url)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Req {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Req {
        self.body = body.into();
        self
    }

    pub fn from(mut self, ip: IpAddr) -> Req {
        self.from = Some(ip);
        self
    }

    pub fn no_host(mut self) -> Req {
        self.host = false;
        self
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).expect("method"))
            .uri(self.target.as_str());
        let uri: http::Uri = self.target.parse().expect("uri");
        if self.host
            && !self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("host"))
        {
            if let Some(a) = uri.authority() {
                b = b.header("host", a.as_str());
            }
        }
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT") {
            b = b.header("content-length", self.body.len());
        }
        b.body(Full::new(self.body.clone())).expect("request")
    }

    /// Sends on a new connection to `proxy`.
    pub async fn send(self, proxy: &Cuttle) -> Resp {
        self.send_to(proxy.addr()).await
    }

    pub async fn send_to(self, addr: SocketAddr) -> Resp {
        let mut conn = Conn::open_from(addr, self.from).await;
        conn.send(self).await
    }

    /// Sends on a new connection; `Err` when the response broke off.
    pub async fn try_send(self, proxy: &Cuttle) -> Result<Resp, String> {
        let mut conn = Conn::open_from(proxy.addr(), self.from).await;
        conn.try_send(self).await
    }
}

/// One client connection (keep-alive).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn::open_from(addr, None).await
    }

    /// A connection over TLS to `addr`, sending `server_name` as SNI and
    /// trusting only the CA in `ca` (a PEM file).
    pub async fn open_tls(addr: SocketAddr, server_name: &str, ca: &Path) -> Conn {
        let stream = tls::connect(addr, server_name, ca)
            .await
            .unwrap_or_else(|e| panic!("TLS to {addr} as {server_name}: {e}"));
        Conn::over(stream).await
    }

    pub async fn open_from(addr: SocketAddr, from: Option<IpAddr>) -> Conn {
        Conn::over(connect(addr, from).await).await
    }

    async fn over<S>(stream: S) -> Conn
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("client handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender }
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    pub async fn send(&mut self, req: Req) -> Resp {
        let what = format!("{} {}", req.method, req.target);
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Like `send`, but a broken response is an `Err`.
    pub async fn try_send(&mut self, req: Req) -> Result<Resp, String> {
        let fut = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection not ready: {e}"))?;
            let resp = self
                .sender
                .send_request(req.build())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("no response in {WAIT:?}")),
        }
    }
}

pub async fn connect(addr: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    let stream = match from {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let s = TcpSocket::new_v4().expect("socket");
            s.bind(SocketAddr::new(ip, 0)).expect("bind client address");
            s.connect(addr).await
        }
    };
    stream.unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Writes `request` on a new connection and reads until the server closes
/// (or `WAIT` passes).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr, None).await;
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until the end of a response head; the head and any body
/// bytes read past it.
pub async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ------------------------------------------------------------------- ICP

/// A UDP port free on `ip` a moment ago.
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind UDP {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"))
        .port()
}

/// A version-2 ICP_OP_QUERY as Squid sends it.
pub fn query(reqnum: u32, url: &str) -> Vec<u8> {
    let len = 20 + 4 + url.len() + 1;
    let mut q = vec![1, 2];
    q.extend_from_slice(&(len as u16).to_be_bytes());
    q.extend_from_slice(&reqnum.to_be_bytes());
    q.extend_from_slice(&[0; 16]);
    q.extend_from_slice(url.as_bytes());
    q.push(0);
    q
}

/// The reply Squid would send: `opcode`, version 2, reqnum, no options,
/// then `url` and a NUL.
pub fn expected_reply(opcode: u8, reqnum: u32, url: &str) -> Vec<u8> {
    let len = 20 + url.len() + 1;
    let mut r = vec![opcode, 2];
    r.extend_from_slice(&(len as u16).to_be_bytes());
    r.extend_from_slice(&reqnum.to_be_bytes());
    r.extend_from_slice(&[0; 12]);
    r.extend_from_slice(url.as_bytes());
    r.push(0);
    r
}

// ------------------------------------------------------------ cache digests

/// A Cache Digest in Squid's format sized for `capacity` entries (5 bits
/// each) that holds the GET keys of `urls`.
pub fn digest_of(capacity: u32, urls: &[String]) -> Vec<u8> {
    use cuttle_protocol::digest::Digest;
    use cuttle_protocol::key::{store_key, Method as KeyMethod};
    let mut d = Digest::new(capacity, 5);
    for url in urls {
        d.add(&store_key(KeyMethod::Get, url.as_bytes()));
    }
    let mut out = Vec::new();
    d.encode(&mut out);
    out
}

/// The last line of the access.log at `log` for `url` (waits for one).
pub async fn log_line_for(log: &Path, url: &str) -> LogLine {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .rfind(|l| l.split_whitespace().nth(6) == Some(url))
        {
            return LogLine::parse(l);
        }
        assert!(Instant::now() < deadline, "no line for {url}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET cache_object://127.0.0.1/NAME` (NAME is `PAGE` or `PAGE@PASSWORD`)
/// from `cuttle`: the status code and the body.
pub async fn mgr_page(cuttle: &Cuttle, name: &str) -> (u16, String) {
    let text = raw(
        cuttle.addr(),
        format!("GET cache_object://127.0.0.1/{name} HTTP/1.0\r\n\r\n").as_bytes(),
    )
    .await;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}
