//! Runs cuttle as a proxy: loads the config (or the embedded default),
//! opens the cache_log, writes the pid file, opens the store and the access
//! logs, binds the http_ports, serves, and handles Squid's signals:
//! SIGTERM/SIGINT stop accepting and let requests in flight finish (up to
//! `shutdown_lifetime`) before the store is flushed; SIGHUP re-reads the
//! config and swaps it in, keeping the old one if the new one has errors;
//! SIGUSR1 rotates the logs (`logfile_rotate`); SIGUSR2 toggles full
//! debugging. [`signal_running`] is `cuttle -k ACTION`: it signals the
//! instance named by the pid file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::access_log::Logger;
use crate::cache_log;
use crate::config::{self, Config, LoadOptions, Loaded};
use crate::http::proxy::{self, Proxy};
use crate::http::server;
use crate::mgr::Manager;
use crate::peers::htcp_server::{Htcp, HtcpServerStats};
use crate::peers::icp_server::{HitOnly, Icp, IcpServerStats};
use crate::peers::monitor::Publisher;
use crate::peers::netdb::NetDb;
use crate::peers::querier::{QuerySockets, Slot};
use crate::peers::resolve::PeerAddrs;
use crate::peers::responder::{Protocol, Responder};
use crate::store::Store;

mod fd_limit;
mod mesh;
mod ports;
use ports::{bind_all, reload_certificates};

/// Where the embedded default keeps its cache_dir and log: the first of
/// `$XDG_CACHE_HOME/cuttle`, `$HOME/.cache/cuttle`, `/var/cache/cuttle`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("cuttle");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("cuttle");
    }
    PathBuf::from("/var/cache/cuttle")
}

/// The squid.conf cuttle runs with when given none: a forward proxy on
/// localhost:3128 for localhost only (Squid's default rules), ICP on the
/// standard port 3130 and HTCP on 4827 answering localhost only, a 256 MB
/// cache_dir and its access.log in `dir`. (A squid.conf without
/// `icp_port`/`htcp_port` has neither, as in Squid.)
pub fn default_config_text(dir: &Path) -> String {
    format!(
        "# cuttle's embedded default configuration\n\
         http_port 127.0.0.1:3128\n\
         acl SSL_ports port 443\n\
         acl Safe_ports port 80 21 443 70 210 1025-65535 280 488 591 777\n\
         http_access deny !Safe_ports\n\
         http_access deny CONNECT !SSL_ports\n\
         http_access allow localhost manager\n\
         http_access deny manager\n\
         http_access allow localhost\n\
         http_access deny all\n\
         icp_port 3130\n\
         htcp_port 4827\n\
         udp_incoming_address 127.0.0.1\n\
         icp_access allow localhost\n\
         icp_access deny all\n\
         htcp_access allow localhost\n\
         htcp_access deny all\n\
         htcp_clr_access allow localhost\n\
         htcp_clr_access deny all\n\
         cache_dir mmap {dir} 256\n\
         access_log stdio:{dir}/access.log squid\n\
         pid_filename none\n",
        dir = dir.display()
    )
}

/// How `cuttle run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The squid.conf; `None` for the embedded default.
    pub config: Option<PathBuf>,
}

fn load(options: &RunOptions) -> Loaded {
    match &options.config {
        Some(path) => config::load_file(path, &LoadOptions::default()),
        None => {
            let dir = default_cache_dir();
            config::load_str(
                &default_config_text(&dir),
                "<embedded default>",
                &LoadOptions::default(),
            )
        }
    }
}

/// A start-up line on stdout (`cuttle: MESSAGE`), also in the cache_log.
fn say(message: &str) {
    println!("cuttle: {message}");
    cache_log::note(&format!("cuttle: {message}"));
}

/// Squid's form of a fatal error, on stderr and in the cache_log.
fn fatal(message: &str) {
    eprintln!("{}| FATAL: {message}", cache_log::squid_time_now());
    cache_log::note(&format!("FATAL: {message}"));
}

/// The pid file of a running cuttle: written at start, removed when
/// dropped (at any exit of [`run`] after it was written), unless another
/// process rewrote it meanwhile.
struct PidFile {
    path: PathBuf,
    pid: i32,
}

/// What a pid file says.
enum PidRead {
    Pid(i32),
    Malformed,
    Unreadable(std::io::Error),
}

fn read_pid(path: &Path) -> PidRead {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => PidRead::Pid(pid),
            _ => PidRead::Malformed,
        },
        Err(e) => PidRead::Unreadable(e),
    }
}

/// Sends `signal` to `pid`; 0 only checks that it could be sent.
fn send_signal(pid: i32, signal: i32) -> std::io::Result<()> {
    use rustix::process::{kill_process, test_kill_process, Pid, Signal};
    let invalid = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let pid = Pid::from_raw(pid).ok_or_else(invalid)?;
    let sent = match signal {
        0 => test_kill_process(pid),
        n => kill_process(pid, Signal::from_named_raw(n).ok_or_else(invalid)?),
    };
    sent.map_err(std::io::Error::from)
}

/// Whether process `pid` exists (one of another user's counts).
fn process_alive(pid: i32) -> bool {
    match send_signal(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// An OS error as Squid prints it: `(2) No such file or directory`.
fn squid_errno(e: &std::io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let text = e.to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text)
        .to_string();
    format!("({code}) {text}")
}

impl PidFile {
    /// Writes our pid to `path`, unless a live process other than us is
    /// named there (a stale file is replaced).
    fn create(path: &Path) -> Result<PidFile, String> {
        let pid = std::process::id() as i32;
        if let PidRead::Pid(other) = read_pid(path) {
            if other != pid && process_alive(other) {
                return Err(format!(
                    "cuttle is already running: Found fresh instance PID file ({}) with PID {other}",
                    path.display()
                ));
            }
        }
        // Written aside and renamed: a reader never sees a partial pid.
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".new-{pid}"));
        let aside = PathBuf::from(aside);
        std::fs::write(&aside, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&aside, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&aside);
                format!("failed to write {}: {}", path.display(), squid_errno(&e))
            })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if matches!(read_pid(&self.path), PidRead::Pid(p) if p == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `cuttle -k ACTION`: sends `signal` (0 for `check`) to the instance whose
/// pid `pid_filename` names, as `squid -k` does, with Squid's messages and
/// exit status 1 when that fails.
pub fn signal_running(options: &RunOptions, signal: i32) -> std::process::ExitCode {
    let loaded = load(options);
    // Warnings are for `cuttle check`; squid -k is silent about them too.
    if loaded.has_errors() {
        for d in loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == config::Severity::Error)
        {
            eprintln!("{d}");
        }
        fatal("the configuration has errors");
        return std::process::ExitCode::FAILURE;
    }
    let Some(path) = &loaded.config.pid_filename.value else {
        fatal("no pid_filename configured");
        return std::process::ExitCode::FAILURE;
    };
    let pid = match read_pid(path) {
        PidRead::Pid(pid) => pid,
        PidRead::Malformed => {
            fatal(&format!("Malformed PID file ({})", path.display()));
            return std::process::ExitCode::FAILURE;
        }
        PidRead::Unreadable(e) => {
            fatal(&format!(
                "failed to open {}: {}",
                path.display(),
                squid_errno(&e)
            ));
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = send_signal(pid, signal) {
        fatal(&format!(
            "failed to send signal {signal} to cuttle instance with PID {pid}: {}",
            squid_errno(&e)
        ));
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// Prints diagnostics; true when there are errors.
fn report(loaded: &Loaded) -> bool {
    for d in &loaded.diagnostics {
        match d.severity {
            config::Severity::Error => eprintln!("{d}"),
            config::Severity::Warning => tracing::warn!("{d}"),
        }
    }
    loaded.has_errors()
}

/// Runs the proxy until SIGTERM or SIGINT. Returns the exit status.
pub fn run(options: RunOptions) -> std::process::ExitCode {
    let loaded = load(&options);
    // Opened first, so the config's warnings are in it too.
    if let Err(e) = cache_log::open(loaded.config.cache_log.value.as_deref()) {
        let path = loaded
            .config
            .cache_log
            .value
            .as_deref()
            .unwrap_or(Path::new(""));
        eprintln!("cuttle: cache_log: cannot open {}: {e}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    if report(&loaded) {
        eprintln!("cuttle: the configuration has errors; not starting");
        cache_log::note("FATAL: the configuration has errors; not starting");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cuttle: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Before the pid file exists: from then on `-k` may signal us, and
    // no signal of Squid's may kill cuttle (their default action would,
    // leaving the pid file and losing buffered log lines).
    let signals = {
        let _in_runtime = runtime.enter();
        match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cuttle: cannot handle signals: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    let _pid_file = match loaded
        .config
        .pid_filename
        .value
        .as_deref()
        .map(PidFile::create)
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            fatal(&e);
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options, loaded.config, signals)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The access logs were flushed when serve() dropped the logger.
            eprintln!("cuttle: {e}");
            cache_log::note(&format!("FATAL: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The signals Squid uses, caught.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Signals {
    /// Needs a runtime context (tokio's signal driver).
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

async fn serve(options: RunOptions, config: Config, signals: Signals) -> Result<(), String> {
    let Signals {
        mut term,
        mut int,
        mut hup,
        mut usr1,
        mut usr2,
    } = signals;
    match &config.cache_log.value {
        Some(path) => say(&format!("cache_log {}", path.display())),
        None => say("cache_log none (messages go to stderr)"),
    }
    if let Some(path) = &config.pid_filename.value {
        say(&format!("pid_filename {}", path.display()));
    }
    match fd_limit::raise(config.max_filedescriptors.value) {
        Ok(n) => say(&format!("With {n} file descriptors available")),
        Err(e) => tracing::warn!("max_filedescriptors: {e}"),
    }
    let (store, rebuild) = Store::open_config(&config).map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    if store.is_memory() {
        let bytes = config.cache_mem.value;
        let size = if bytes.is_multiple_of(1 << 20) {
            format!("{} MB", bytes >> 20)
        } else {
            format!("{} KB", bytes >> 10)
        };
        say(&format!(
            "no cache_dir: caching in memory (cache_mem {size})"
        ));
    }
    for u in store.usage().iter().filter(|_| !store.is_memory()) {
        say(&format!(
            "cache_dir {} ({} entries, {} MB)",
            u.path.display(),
            u.entries,
            (u64::from(u.slots) * u64::from(u.slot_size)) >> 20
        ));
    }
    if rebuild.torn + rebuild.bad_chains > 0 {
        tracing::warn!(
            torn = rebuild.torn,
            bad_chains = rebuild.bad_chains,
            "dropped damaged entries at start"
        );
    }
    let logger = Logger::from_config(&config).map_err(|e| e.to_string())?;
    if logger.is_disabled() {
        say("access_log none");
    }
    for path in logger.paths() {
        say(&format!("access_log {path}"));
    }
    let (listeners, port_certs) = bind_all(&config).await?;
    let grace = config.shutdown_lifetime.value;
    let config = Arc::new(config);
    // ICP responder (icp_port): its own thread; see peers::icp_server.
    let icp_stats = Arc::new(IcpServerStats::default());
    let hit_only = Arc::new(HitOnly::default());
    // Origin RTTs: DIRECT fetches write them, SRC_RTT answers read them.
    let netdb = Arc::new(NetDb::default());
    // The responders' sockets, which the proxy's ICP/HTCP queries leave from.
    let query_sockets = Arc::new(QuerySockets::default());
    // Peer names are resolved here, before the peer table is built from them.
    query_sockets.set_peer_addrs(PeerAddrs::resolve(&config).await);
    let mut icp = Udp::start(&config, &logger, (&query_sockets, |s| &s.icp), {
        let (store, stats) = (Arc::clone(&store), Arc::clone(&icp_stats));
        let (hit_only, netdb) = (Arc::clone(&hit_only), Arc::clone(&netdb));
        move || {
            Icp::new(
                Arc::clone(&store),
                Arc::clone(&stats),
                Arc::clone(&hit_only),
                Arc::clone(&netdb),
            )
        }
    })?;
    let htcp_stats = Arc::new(HtcpServerStats::default());
    // HTCP MON subscriptions to this node (peers::monitor::publisher).
    let mon_publisher = Arc::new(Publisher::default());
    let manager = Arc::new(
        Manager::new(icp_stats, Arc::clone(&htcp_stats))
            .with_mon_publisher(Arc::clone(&mon_publisher)),
    );
    let mut discovered = mesh::start(
        &config,
        Arc::clone(&manager.mesh),
        Arc::clone(&manager.stats),
    )?;
    let proxy = Arc::new(Proxy::new(
        config,
        Arc::clone(&store),
        logger.clone(),
        hit_only,
        netdb,
        manager,
        Arc::clone(&query_sockets),
    ));
    // HTCP responder (htcp_port): its own thread; see peers::htcp_server.
    let mut htcp = Udp::start(&proxy.config(), &logger, (&query_sockets, |s| &s.htcp), {
        let (store, markers) = (Arc::clone(&store), proxy.known_markers());
        let publisher = Arc::clone(&mon_publisher);
        move || {
            Htcp::new(
                Arc::clone(&store),
                Arc::clone(&markers),
                Arc::clone(&htcp_stats),
                Arc::clone(&publisher),
            )
        }
    })?;
    let mon_task = tokio::spawn(crate::peers::monitor::publisher::run(
        mon_publisher,
        Arc::clone(&store),
        Arc::clone(&query_sockets),
    ));
    let (proxy_tx, proxy_rx) = watch::channel(proxy);
    // The cache manager's samples (5min/60min, the status page's charts).
    let sampler = tokio::spawn(proxy::sampler(proxy_rx.clone()));
    // Hit metering's reports (purges, evictions, timeouts): idle when off.
    let meter_reporter = tokio::spawn(proxy::meter_reporter(proxy_rx.clone()));
    // Pushed invalidations and updates from HTCP MON peers: idle without.
    let mon_updater = tokio::spawn(proxy::mon_updater(proxy_rx.clone()));
    // The Cache Digest peers fetch: built now (the index is loaded), then
    // each digest_rebuild_period.
    let digest_builder = tokio::spawn(proxy::digest_builder(proxy_rx.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let server = tokio::spawn(server::serve(listeners, proxy_rx, stop_rx, grace));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                if reload(&options, &proxy_tx, &logger, &query_sockets).await {
                    reload_certificates(&proxy_tx.borrow().config(), &port_certs);
                    icp.reload(&proxy_tx.borrow().config(), &logger);
                    htcp.reload(&proxy_tx.borrow().config(), &logger);
                    // Only now: the queriers send from the new sockets.
                    say("configuration reloaded");
                }
            }
            Some(found) = recv_discovered(&mut discovered) => {
                mesh::apply(&proxy_tx, &query_sockets, &found).await;
                icp.reload(&proxy_tx.borrow().config(), &logger);
                htcp.reload(&proxy_tx.borrow().config(), &logger);
            }
            _ = usr1.recv() => {
                let keep = proxy_tx.borrow().config().logfile_rotate.value;
                logger.rotate(keep);
                if let Err(e) = cache_log::rotate(keep) {
                    tracing::error!(error = %e, "cache_log: cannot rotate");
                }
                say("logs rotated");
            }
            _ = usr2.recv() => match cache_log::toggle_debug() {
                Some(filter) => say(&format!("SIGUSR2: debugging now at {filter:?} (RUST_LOG)")),
                None => say("SIGUSR2: ignored (debugging level not adjustable)"),
            },
        }
    }
    say("shutting down");
    sampler.abort();
    meter_reporter.abort();
    mon_updater.abort();
    digest_builder.abort();
    mon_task.abort();
    let _ = stop_tx.send(true);
    icp.stop();
    htcp.stop();
    if let Err(e) = server.await {
        tracing::error!(error = %e, "server task failed");
    }
    logger.flush();
    store.flush().map_err(|e| e.to_string())?;
    say("stopped");
    Ok(())
}

/// The next parent list from the discovery task; never ready without one.
async fn recv_discovered(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<crate::peers::discovery::Discovered>>,
) -> Option<crate::peers::discovery::Discovered> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// SIGHUP: re-read the config; swap it in when it has no errors (true).
async fn reload(
    options: &RunOptions,
    proxy: &watch::Sender<Arc<Proxy>>,
    logger: &Logger,
    query_sockets: &QuerySockets,
) -> bool {
    let mut loaded = load(options);
    if report(&loaded) {
        eprintln!("cuttle: the new configuration has errors; keeping the old one");
        return false;
    }
    let old = proxy.borrow().config();
    mesh::carry_discovered(&old, &mut loaded.config);
    if old.mesh != loaded.config.mesh {
        tracing::warn!("mesh_discovery changes take effect at the next restart");
    }
    // An https_port's certificate files are re-read now (reload_certificates).
    let listening = |ports: &[config::Located<config::HttpPort>]| {
        ports
            .iter()
            .map(|p| {
                let port = config::HttpPort {
                    tls: p
                        .tls
                        .as_ref()
                        .map(|_| config::TlsPort { certs: Vec::new() }),
                    ..p.value.clone()
                };
                config::Located::new(port, p.location.clone())
            })
            .collect::<Vec<_>>()
    };
    if listening(&old.http_ports) != listening(&loaded.config.http_ports) {
        tracing::warn!("http_port changes take effect at the next restart");
    }
    if old
        .cache_dirs
        .iter()
        .map(|d| &d.value)
        .ne(loaded.config.cache_dirs.iter().map(|d| &d.value))
    {
        tracing::warn!("cache_dir changes take effect at the next restart");
    }
    if crate::store::memory_only(&old) && old.cache_mem.value != loaded.config.cache_mem.value {
        tracing::warn!("with no cache_dir, cache_mem changes take effect at the next restart");
    }
    if old.pid_filename.value != loaded.config.pid_filename.value {
        tracing::warn!("pid_filename changes take effect at the next restart");
    }
    if let Err(e) = cache_log::open(loaded.config.cache_log.value.as_deref()) {
        tracing::error!(error = %e, "cache_log: cannot open; keeping the old one");
    }
    logger.reopen();
    // Squid re-reads offline_mode: a run-time toggle ends here.
    crate::config::OFFLINE_TOGGLED.store(false, std::sync::atomic::Ordering::Relaxed);
    // The new peers' names, resolved before their table is built.
    query_sockets.set_peer_addrs(PeerAddrs::resolve(&loaded.config).await);
    let next = proxy.borrow().with_config(Arc::new(loaded.config));
    let _ = proxy.send(Arc::new(next));
    true
}

/// A datagram responder (ICP, HTCP) across reloads: rebound when where it
/// listens changed, reconfigured in place otherwise. With
/// udp_outgoing_address, a second one on that address and the same port
/// is the socket queries leave from, as Squid's outgoing socket.
struct Udp<P: Protocol> {
    server: Option<Responder<P>>,
    outgoing: Option<Responder<P>>,
    /// Where the socket queries leave from is published.
    sockets: Arc<QuerySockets>,
    slot: fn(&QuerySockets) -> &Slot,
    /// The protocol's side for each (re)start, made of what outlives a
    /// rebind (counters, hit-only mode, the NetDB...).
    protocol: Box<dyn Fn() -> P + Send>,
}

impl<P: Protocol> Udp<P> {
    /// Starts the responder when its port is set.
    fn start(
        config: &Arc<Config>,
        logger: &Logger,
        (sockets, slot): (&Arc<QuerySockets>, fn(&QuerySockets) -> &Slot),
        protocol: impl Fn() -> P + Send + 'static,
    ) -> Result<Udp<P>, String> {
        let mut udp = Udp {
            server: None,
            outgoing: None,
            sockets: Arc::clone(sockets),
            slot,
            protocol: Box::new(protocol),
        };
        udp.server = udp.bind(config, logger)?;
        udp.outgoing = udp.bind_outgoing(config, logger);
        udp.publish();
        Ok(udp)
    }

    /// Where the outgoing socket goes: udp_outgoing_address and the port,
    /// when that address is set and is not where the responder listens.
    fn outgoing_addr(config: &Config) -> Option<std::net::SocketAddr> {
        let listen = Responder::<P>::listen_addr(config)?;
        let ip = config.udp_outgoing_address.value?;
        (ip != listen.ip()).then(|| std::net::SocketAddr::new(ip, listen.port()))
    }

    /// Binds the outgoing socket; on failure queries leave from the
    /// listening socket (said once).
    fn bind_outgoing(&self, config: &Arc<Config>, logger: &Logger) -> Option<Responder<P>> {
        let addr = Self::outgoing_addr(config)?;
        let protocol = (self.protocol)();
        let addrs = self.sockets.peer_addrs();
        match Responder::start_at(
            addr,
            true,
            Arc::clone(config),
            &addrs,
            logger.clone(),
            protocol,
        ) {
            Ok(r) => {
                println!("cuttle: {} queries from {addr}", P::NAME);
                Some(r)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot bind {} on udp_outgoing_address {addr} ({e}); queries leave from the {} socket",
                    P::NAME,
                    P::NAME
                );
                None
            }
        }
    }

    /// Tells the queriers which socket to send from.
    fn publish(&self) {
        let from = self.outgoing.as_ref().or(self.server.as_ref());
        (self.slot)(&self.sockets).set(from.map(Responder::query_socket));
    }

    /// Binds and starts a responder when its port is set; prints where it
    /// listens.
    fn bind(&self, config: &Arc<Config>, logger: &Logger) -> Result<Option<Responder<P>>, String> {
        let addrs = self.sockets.peer_addrs();
        let server = Responder::start(
            Arc::clone(config),
            &addrs,
            logger.clone(),
            (self.protocol)(),
        )
        .map_err(|e| {
            let at = P::port(config)
                .location
                .as_ref()
                .map_or(String::new(), |l| format!("{l}: "));
            format!("{at}{e}")
        })?;
        if let Some(s) = &server {
            say(&format!("{} on {}", P::NAME, s.local_addr()));
        }
        Ok(server)
    }

    /// After a reload: rebind when the port or udp_incoming_address
    /// changed, else swap the config in place.
    fn reload(&mut self, config: &Arc<Config>, logger: &Logger) {
        let wanted = (
            Responder::<P>::listen_addr(config),
            Self::outgoing_addr(config),
        );
        let bound = (
            self.server.as_ref().map(|s| s.local_addr()),
            self.outgoing.as_ref().map(|s| s.local_addr()),
        );
        if wanted == bound {
            let addrs = self.sockets.peer_addrs();
            for s in self.server.iter().chain(&self.outgoing) {
                s.reconfigure(Arc::clone(config), &addrs, logger.clone());
            }
            return;
        }
        self.halt();
        match self.bind(config, logger) {
            Ok(s) => self.server = s,
            Err(e) => eprintln!("cuttle: {e}; {} is off until the next reload", P::NAME),
        }
        self.outgoing = self.bind_outgoing(config, logger);
        self.publish();
    }

    /// Stops the responder's thread (it notices within a tick) and closes
    /// its socket.
    fn stop(&mut self) {
        (self.slot)(&self.sockets).set(None);
        self.halt();
    }

    /// Stops the responders; queries keep the socket published until the
    /// next one is.
    fn halt(&mut self) {
        for old in [self.server.take(), self.outgoing.take()]
            .into_iter()
            .flatten()
        {
            tokio::task::block_in_place(|| old.stop());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_keeps_its_cache_dir_rather_than_caching_in_memory() {
        let dir = PathBuf::from("/nonexistent/cuttle-default");
        let loaded = config::load_str(
            &default_config_text(&dir),
            "<embedded default>",
            &LoadOptions::default(),
        );
        assert!(!crate::store::memory_only(&loaded.config));
        let specs = crate::store::specs_from_config(&loaded.config);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].path, dir);
    }
}
