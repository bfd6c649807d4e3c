//! The real-process mesh lab: starts the nodes of a mesh file as real
//! processes (cuttle for `kind = "cuttle"`, Squid for `kind = "squid"`),
//! each on its own 127.x.y.z address, an origin that serves every document
//! of a trace with the trace's size, and replays the trace through the
//! nodes as HTTP proxy requests; then reads every node's access.log and
//! tabulates what happened, beside `cuttle simulate`'s prediction.
//!
//! Included by tests/mesh_lab.rs (CI's short form, and the full form
//! benches/mesh.sh runs); it has no `main` of its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use cuttle::sim::{AccessLogReader, Kind, Mesh};

#[path = "report.rs"]
mod report;
use report::read_logs;
pub use report::{full_report, table, LabReport, OriginTotals};

/// The lifetime the lab origin gives every document (Cache-Control
/// max-age, seconds): longer than a replay takes and than a generated
/// trace spans (an hour by default), so neither the lab nor the simulator
/// (`cuttle simulate --ttl` with the same figure) revalidates.
pub const ORIGIN_TTL_SECS: u64 = 86_400;
/// The address the replayer sends from: a node's access.log line from it
/// is a client request, a line from another node's address is a peer's.
pub const CLIENT_ADDRESS: &str = "127.18.255.254";

/// What to run.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub mesh: PathBuf,
    pub trace: PathBuf,
    /// At most this many trace requests are replayed.
    pub requests: usize,
    /// At most this many requests in flight.
    pub concurrency: usize,
    pub cuttle: PathBuf,
    pub squid: PathBuf,
    /// Where node configs, logs and the rewritten trace go (created).
    pub work: PathBuf,
}

/// A document of the trace as the lab serves it.
#[derive(Debug, Clone)]
struct Document {
    size: u64,
}

/// The lab origin's counts, by the address a request came from.
#[derive(Default)]
struct OriginCounts {
    requests: AtomicU64,
    bytes: AtomicU64,
    by_source: Mutex<HashMap<IpAddr, (u64, u64)>>,
}

/// The path the lab serves a trace URL under: the URL's host and path, so
/// every request of a document reaches the same lab URL and keys stay as
/// varied (for CARP and digests) as the trace's.
fn lab_path(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let path: String = rest
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("/{path}")
}

/// Starts the origin on 127.0.0.1: every known path is a 200 with a body of
/// its trace size, cachable for [`ORIGIN_TTL_SECS`], after `latency`.
async fn start_origin(
    documents: Arc<HashMap<String, Document>>,
    latency: Duration,
    counts: Arc<OriginCounts>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let documents = documents.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let documents = documents.clone();
                    let counts = counts.clone();
                    async move {
                        tokio::time::sleep(latency).await;
                        let reply = origin_reply(&request, &documents);
                        let sent = reply.body().size_hint().exact().unwrap_or(0);
                        counts.requests.fetch_add(1, Ordering::Relaxed);
                        counts.bytes.fetch_add(sent, Ordering::Relaxed);
                        if let Ok(mut by) = counts.by_source.lock() {
                            let e = by.entry(peer.ip()).or_default();
                            e.0 += 1;
                            e.1 += sent;
                        }
                        Ok::<_, std::convert::Infallible>(reply)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

fn origin_reply(
    request: &Request<Incoming>,
    documents: &HashMap<String, Document>,
) -> Response<Full<Bytes>> {
    let Some(document) = documents.get(request.uri().path()) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not in the trace\n")));
        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
        return r;
    };
    let body = if request.method() == hyper::Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(vec![b'x'; document.size as usize])
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(
        "cache-control",
        format!("max-age={ORIGIN_TTL_SECS}")
            .parse()
            .expect("a valid header value"),
    );
    h.insert(
        "last-modified",
        hyper::header::HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    r
}

/// How long the lab waits after the last node listens before replaying.
const SETTLE: Duration = Duration::from_secs(2);

/// The order to start nodes in: a node after every node it uses as a
/// parent (cache_peer ... parent, or origin_via), so parents are up first.
fn start_order(mesh: &Mesh) -> Vec<usize> {
    let parents: Vec<Vec<usize>> = mesh
        .nodes
        .iter()
        .map(|node| {
            let mut up: Vec<usize> = node
                .config
                .cache_peers
                .iter()
                .filter(|p| p.value.peer_type == cuttle::config::PeerType::Parent)
                .filter_map(|p| p.value.host.parse().ok().and_then(|ip| mesh.node_at(ip)))
                .collect();
            up.extend(node.origin_via);
            up
        })
        .collect();
    // A node's level: 0 without parents, else one more than its highest
    // parent's (bounded by the node count, so a cycle cannot loop).
    let mut level = vec![0usize; mesh.nodes.len()];
    for _ in 0..mesh.nodes.len() {
        for (i, up) in parents.iter().enumerate() {
            level[i] = up
                .iter()
                .map(|p| level[*p] + 1)
                .max()
                .unwrap_or(0)
                .min(mesh.nodes.len());
        }
    }
    let mut order: Vec<usize> = (0..mesh.nodes.len()).collect();
    order.sort_by_key(|i| level[*i]);
    order
}

/// A started node process.
struct Running {
    name: String,
    child: Child,
    dir: PathBuf,
    listen: SocketAddr,
}

/// Directives the lab sets itself for every node (files of its own), so
/// they are dropped from the node's squid.conf.
const LAB_OWNED: &[&str] = &[
    "pid_filename",
    "access_log",
    "cache_log",
    "cache_store_log",
    "coredump_dir",
    "netdb_filename",
    "logfile_daemon",
];

/// The squid.conf the lab runs a node with: the mesh's file with its own
/// log and pid paths (and cache_dir paths moved into the lab directory).
fn lab_conf(original: &str, dir: &Path, kind: Kind) -> String {
    let mut out = String::new();
    let mut dirs = 0;
    for line in original.lines() {
        let mut words = line.split_whitespace();
        let directive = words.next().unwrap_or("");
        if LAB_OWNED.contains(&directive) {
            continue;
        }
        if directive == "cache_dir" {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 3 {
                dirs += 1;
                let moved = dir.join(format!("cache{dirs}"));
                let _ = writeln!(
                    out,
                    "cache_dir {} {} {}",
                    words[1],
                    moved.display(),
                    words[3..].join(" ")
                );
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    let d = dir.display();
    let _ = writeln!(out, "# ---- added by the mesh lab ----");
    let _ = writeln!(out, "pid_filename {d}/node.pid");
    let _ = writeln!(out, "access_log stdio:{d}/access.log squid");
    let _ = writeln!(out, "cache_log {d}/cache.log");
    if kind == Kind::Squid {
        // Private Squid on loopback (see README "The mesh lab"): no ICMP
        // pinger (else sites "closer" than minimum_direct_rtt go DIRECT
        // without asking peers), no DNS off loopback, its own files, and
        // ICP queries logged so the lab can count them.
        let _ = writeln!(out, "cache_store_log none");
        let _ = writeln!(out, "netdb_filename stdio:{d}/netdb.state");
        let _ = writeln!(out, "coredump_dir {d}");
        let _ = writeln!(out, "pinger_enable off");
        let _ = writeln!(out, "minimum_direct_rtt 0");
        let _ = writeln!(out, "dns_nameservers 127.0.0.1");
        let _ = writeln!(out, "shutdown_lifetime 1 seconds");
        let _ = writeln!(out, "log_icp_queries on");
    }
    out
}

fn start_node(mesh: &Mesh, index: usize, options: &LabOptions) -> Result<Running, String> {
    let node = &mesh.nodes[index];
    let dir = options.work.join(&node.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let original = std::fs::read_to_string(&node.config_path)
        .map_err(|e| format!("{}: {e}", node.config_path.display()))?;
    let conf = dir.join("squid.conf");
    std::fs::write(&conf, lab_conf(&original, &dir, node.kind))
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let port = node
        .config
        .http_ports
        .first()
        .map(|p| p.value.port)
        .ok_or_else(|| format!("node {}: its squid.conf has no http_port", node.name))?;
    let listen = SocketAddr::new(node.address, port);
    // Something already answering there (another lab run on the same
    // mesh) would take this run's requests into its logs and pass the
    // readiness check for a node that failed to bind: refuse instead.
    if std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_ok() {
        return Err(format!(
            "node {}: something already listens on {listen} (another mesh lab running?)",
            node.name
        ));
    }
    let out = std::fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
    let child = match node.kind {
        Kind::Cuttle => Command::new(&options.cuttle)
            .arg("run")
            .arg("-f")
            .arg(&conf)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", options.cuttle.display()))?,
        Kind::Squid => {
            // Squid drops root for `proxy`: its files must be writable.
            if unsafe { libc::geteuid() } == 0 {
                let _ = Command::new("chown")
                    .args(["-R", "proxy:proxy"])
                    .arg(&dir)
                    .status();
            }
            // Its own service name keeps its shared memory and IPC
            // sockets apart from any other Squid on the machine.
            let service = format!("mlab{}{}", std::process::id(), node.name);
            if original
                .lines()
                .any(|l| l.trim_start().starts_with("cache_dir"))
            {
                let _ = Command::new(&options.squid)
                    .args(["-n", &service, "-N", "-z", "-f"])
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Command::new(&options.squid)
                .args(["-n", &service, "-N", "-f"])
                .arg(&conf)
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("{}: {e}", options.squid.display()))?
        }
    };
    Ok(Running {
        name: node.name.clone(),
        child,
        dir,
        listen,
    })
}

async fn wait_listening(node: &mut Running) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(node.listen).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            return Err(format!(
                "node {} exited ({status}) before listening on {}; see {}",
                node.name,
                node.listen,
                node.dir.join("stderr.log").display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {} does not listen on {}",
                node.name, node.listen
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL after 15 s: the logs are complete once it exits.
fn stop_node(node: &mut Running) {
    let pid = node.child.id() as libc::pid_t;
    // Safety: a plain kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = node.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = node.child.kill();
    let _ = node.child.wait();
}

/// Why a replayed request did not count as answered: the step that
/// failed and, for I/O, the error's kind (so a run's failures can be
/// counted by cause).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplayFailure {
    /// The replayer's socket could not be opened or bound to
    /// [`CLIENT_ADDRESS`].
    Bind(std::io::ErrorKind),
    /// The TCP connect to the node failed.
    Connect(std::io::ErrorKind),
    /// The request could not be sent or its response head read: the
    /// node closed or reset the connection first (`detail` says which).
    Exchange(String),
    /// A response, but not a 200.
    Status(u16),
    /// The body broke off (`detail` as for `Exchange`).
    Body(String),
    /// A whole body, shorter or longer than the document's size.
    WrongSize { got: u64, want: u64 },
    /// No answer within [`REPLAY_TIMEOUT`].
    Timeout,
}

impl std::fmt::Display for ReplayFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayFailure::Bind(kind) => write!(f, "bind: {kind:?}"),
            ReplayFailure::Connect(kind) => write!(f, "connect: {kind:?}"),
            ReplayFailure::Exchange(detail) => write!(f, "exchange: {detail}"),
            ReplayFailure::Status(status) => write!(f, "status {status}"),
            ReplayFailure::Body(detail) => write!(f, "body: {detail}"),
            ReplayFailure::WrongSize { got, want } if got < want => write!(f, "short body"),
            ReplayFailure::WrongSize { .. } => write!(f, "long body"),
            ReplayFailure::Timeout => write!(f, "timeout"),
        }
    }
}

/// How long one replayed request may take.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a hyper client error was, as briefly as a count can key it: the
/// I/O error kind underneath when there is one, else hyper's class.
fn hyper_failure(e: &hyper::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("{:?}", io.kind());
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        "closed before a whole message".into()
    } else if e.is_closed() || e.is_canceled() {
        "connection closed".into()
    } else if e.is_parse() {
        "unparsable response".into()
    } else {
        e.to_string()
    }
}

/// A socket bound to [`CLIENT_ADDRESS`] whose port is chosen at connect,
/// not at bind (IP_BIND_ADDRESS_NO_PORT). Bound with port 0, the kernel
/// must pick a port free for every destination, and every port still in
/// TIME_WAIT from an earlier connection counts as taken: the replayer
/// closes first, so each request leaves one behind for 60 s, and two full
/// runs back to back (40,000 connections within a minute) outgrow the
/// 28,232 ports of net.ipv4.ip_local_port_range: bind failed with
/// EADDRINUSE for thousands of the second run's requests. Chosen at
/// connect, a port need only be unique for its node's address, and on
/// loopback the kernel reuses TIME_WAIT ports (net.ipv4.tcp_tw_reuse).
fn replayer_socket() -> std::io::Result<tokio::net::TcpSocket> {
    use std::os::fd::AsRawFd;
    let socket = tokio::net::TcpSocket::new_v4()?;
    let on: libc::c_int = 1;
    // Safety: setsockopt(2) on a socket we own, with a c_int option value
    // of the size given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let from: IpAddr = CLIENT_ADDRESS
        .parse()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(socket)
}

/// Sends one proxy request from [`CLIENT_ADDRESS`]; Ok when it got a 200
/// with the whole body, else why not.
async fn replay_one(proxy: SocketAddr, url: String, size: u64) -> Result<(), ReplayFailure> {
    let attempt = async {
        let socket = replayer_socket().map_err(|e| ReplayFailure::Bind(e.kind()))?;
        let stream = socket
            .connect(proxy)
            .await
            .map_err(|e| ReplayFailure::Connect(e.kind()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ReplayFailure::Exchange(hyper_failure(&e)))?;
        tokio::spawn(conn);
        let host = url.split('/').nth(2).unwrap_or_default().to_string();
        let request = Request::get(url.as_str())
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ReplayFailure::Exchange(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ReplayFailure::Exchange(hyper_failure(&e)))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(ReplayFailure::Status(response.status().as_u16()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ReplayFailure::Body(hyper_failure(&e)))?
            .to_bytes();
        if body.len() as u64 != size {
            return Err(ReplayFailure::WrongSize {
                got: body.len() as u64,
                want: size,
            });
        }
        Ok(())
    };
    tokio::time::timeout(REPLAY_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(ReplayFailure::Timeout))
}

/// Runs the lab: every node started, the trace replayed, the nodes
/// stopped, their logs read.
pub async fn run(options: &LabOptions) -> Result<LabReport, String> {
    let started = Instant::now();
    let mesh = Mesh::load(&options.mesh)?;
    std::fs::create_dir_all(&options.work)
        .map_err(|e| format!("{}: {e}", options.work.display()))?;

    // The trace, cut to `requests`, each request with its node.
    let file = std::fs::File::open(&options.trace)
        .map_err(|e| format!("{}: {e}", options.trace.display()))?;
    let mut plan: Vec<(usize, String, u64)> = Vec::new();
    let mut documents: HashMap<String, Document> = HashMap::new();
    for request in AccessLogReader::new(BufReader::new(file)) {
        if plan.len() >= options.requests {
            break;
        }
        let request = request.map_err(|e| format!("{}: {e}", options.trace.display()))?;
        let Some(node) = mesh.node_for_client(request.client) else {
            return Err(format!(
                "{}: client {} is in no node's clients",
                options.trace.display(),
                request.client
            ));
        };
        let path = lab_path(&request.url);
        // A document keeps the size of its first request.
        let size = documents
            .entry(path.clone())
            .or_insert(Document { size: request.size })
            .size;
        plan.push((node, path, size));
    }

    let counts = Arc::new(OriginCounts::default());
    let latency = Duration::from_secs_f64(mesh.origin_latency_ms.max(0.0) / 1000.0);
    let (origin, origin_task) = start_origin(Arc::new(documents), latency, counts.clone())
        .await
        .map_err(|e| format!("lab origin: {e}"))?;

    // The trace as the lab replays it, for `cuttle simulate`.
    write_lab_trace(options, &mesh, &plan, origin)?;

    // Parents first, each listening before the next starts: a node that
    // finds its parent down at start marks it dead and fails requests
    // (never_direct) until it revives it.
    let mut running: Vec<Option<Running>> = (0..mesh.nodes.len()).map(|_| None).collect();
    let mut result = Ok(());
    for index in start_order(&mesh) {
        match start_node(&mesh, index, options) {
            Ok(mut node) => {
                let listening = wait_listening(&mut node).await;
                running[index] = Some(node);
                if let Err(e) = listening {
                    result = Err(e);
                    break;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        // Siblings started before their peers see them dead until a probe
        // or an ICP reply revives them (Squid probes within a second).
        tokio::time::sleep(SETTLE).await;
    }
    let mut running: Vec<Running> = running.into_iter().flatten().collect();
    let mut sent = vec![0u64; mesh.nodes.len()];
    let mut failed = vec![0u64; mesh.nodes.len()];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); mesh.nodes.len()];
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    if result.is_ok() {
        // In trace order, at most `concurrency` at a time.
        let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (node, path, size) in &plan {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            let proxy = SocketAddr::new(
                mesh.nodes[*node].address,
                running
                    .iter()
                    .find(|r| r.name == mesh.nodes[*node].name)
                    .map_or(0, |r| r.listen.port()),
            );
            let url = format!("http://{origin}{path}");
            let (node, size) = (*node, *size);
            sent[node] += 1;
            tasks.spawn(async move {
                let began = Instant::now();
                let outcome = replay_one(proxy, url, size).await;
                drop(permit);
                (node, outcome, began.elapsed().as_secs_f64() * 1000.0)
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((node, Ok(()), ms)) => latencies[node].push(ms),
                Ok((node, Err(why), _)) => {
                    failed[node] += 1;
                    *failures.entry(why.to_string()).or_insert(0) += 1;
                }
                Err(_) => {}
            }
        }
    }
    for node in &mut running {
        stop_node(node);
    }
    origin_task.abort();
    result?;
    // Back in mesh order (the report's and `sent`'s).
    running.sort_by_key(|r| mesh.nodes.iter().position(|n| n.name == r.name));

    let logs: Vec<PathBuf> = running.iter().map(|r| r.dir.join("access.log")).collect();
    let totals = OriginTotals {
        requests: counts.requests.load(Ordering::Relaxed),
        bytes: counts.bytes.load(Ordering::Relaxed),
        by_source: counts
            .by_source
            .lock()
            .map_err(|_| "the origin's counts are poisoned")?
            .clone(),
    };
    let mut report = read_logs(&mesh, &logs, &totals);
    for (i, n) in report.nodes.iter_mut().enumerate() {
        n.sent = sent[i];
        n.client_errors += failed[i];
        n.latencies_ms = std::mem::take(&mut latencies[i]);
        report.replay_errors += failed[i];
    }
    report.replay_failures = failures;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The trace the lab replayed, URLs as the nodes saw them, beside the
/// node directories (`lab-trace.log`): what `cuttle simulate` is given.
fn write_lab_trace(
    options: &LabOptions,
    mesh: &Mesh,
    plan: &[(usize, String, u64)],
    origin: SocketAddr,
) -> Result<(), String> {
    let path = lab_trace_path(options);
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let input = std::fs::File::open(&options.trace)
        .map_err(|e| format!("{}: {e}", options.trace.display()))?;
    let mut written = 0;
    for line in BufReader::new(input).lines() {
        if written == plan.len() {
            break;
        }
        let line = line.map_err(|e| e.to_string())?;
        let Ok(request) = cuttle::sim::trace::parse_line(&line) else {
            continue;
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (_, path, _) = &plan[written];
        debug_assert_eq!(mesh.node_for_client(request.client), Some(plan[written].0));
        let mut rewritten: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        rewritten[6] = format!("http://{origin}{path}");
        writeln!(out, "{}", rewritten.join(" ")).map_err(|e| e.to_string())?;
        written += 1;
    }
    out.flush().map_err(|e| e.to_string())
}

pub fn lab_trace_path(options: &LabOptions) -> PathBuf {
    options.work.join("lab-trace.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_already_answering_is_refused() {
        let taken = std::net::TcpListener::bind("127.18.9.7:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("mesh-lab-taken-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.conf"),
            format!("http_port 127.18.9.7:{port}\npid_filename none\n"),
        )
        .unwrap();
        let mesh = Mesh::from_str(
            "[nodes.a]\nconfig = \"a.conf\"\naddress = \"127.18.9.7\"\nclients = [\"10.1.0.0/16\"]\n",
            &dir.join("mesh.toml"),
        )
        .unwrap();
        let options = LabOptions {
            mesh: dir.join("mesh.toml"),
            trace: dir.join("trace.log"),
            requests: 1,
            concurrency: 1,
            cuttle: dir.join("no-such-cuttle"),
            squid: dir.join("no-such-squid"),
            work: dir.join("work"),
        };
        let refused = start_node(&mesh, 0, &options).map(|_| ()).unwrap_err();
        assert!(refused.contains("already listens"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_replayer_s_port_is_chosen_at_connect_not_at_bind() {
        let socket = replayer_socket().unwrap();
        // Bound to the client address, no port reserved yet: a port taken
        // at bind would have to be free towards every destination (see
        // `replayer_socket`).
        let bound = socket.local_addr().unwrap();
        assert_eq!(bound.ip().to_string(), CLIENT_ADDRESS);
        assert_eq!(bound.port(), 0, "the port is left to connect");
        let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = socket.connect(node.local_addr().unwrap()).await.unwrap();
        let (_, seen) = node.accept().await.unwrap();
        assert_eq!(seen, stream.local_addr().unwrap());
        assert_eq!(seen.ip().to_string(), CLIENT_ADDRESS);
        assert_ne!(seen.port(), 0);
    }
}
