//! Peer selection in Squid's order (squid-spec 3.1-3.4): decide whether a
//! request may go direct (always_direct, never_direct, an accelerator
//! port without allow-direct, a loop), which peers to ask with ICP, and,
//! from their replies, the ordered list of sources the HTTP layer walks (a
//! peer with its hierarchy code, or DIRECT), falling back down the list on
//! failure. Each source carries what the peer's `login=` makes of the
//! client's credentials ([`credentials`], squid-spec 3.6).
//!
//! The deciding is done by the sans-IO core ([`super::core`]): who to ask
//! ([`super::core::decide::to_ping`]), the query round
//! ([`super::core::round`]) and the ordered sources ([`decide`]). This
//! module holds the request and source types and [`Neighbours`], the async
//! side: it sends the core's queries over the clients' sockets (opened by
//! [`Neighbours::open_clients`] or the responders', never by selecting),
//! feeds replies and the deadline back, and applies the core's effects to
//! the live table. Each round runs in a `peer_query` span (field `url`);
//! each reply is an event with `peer` and `code`.
//!
//! The "some parent" step tries sourcehash, userhash and CARP parents
//! before round-robin and first-up, as Squid does (squid-spec 3.2, 3.4, 4):
//! the member sets ([`HashParents`]) are built once per configuration and
//! scored with `cuttle_protocol::carp`, so cuttle sends a URL (or a client
//! address) to the same parent a Squid with the same `cache_peer` lines
//! would. `userhash` never picks by hash: cuttle has no proxy
//! authentication (configs with `proxy_auth` are refused), so there is never
//! a user name, and Squid skips userhash for a request without one; such
//! parents are still used by the later algorithms (first-up, any-old).
//!
//! Multicast (squid-spec 1.9): a `multicast` peer is asked with one query
//! to its group; replies come from the `multicast-responder` peers, which
//! are never asked directly and are the ones fetched from (SIBLING_HIT or
//! PARENT_HIT by their type; `multicast-siblings` makes them siblings).
//! The multicast peer itself is never a source. How many responders a
//! query waits for is counted by a background probe of each group
//! ([`Neighbours::start_multicast_counts`]), never by client queries.
//!
//! CLOSEST_PARENT_MISS (squid-spec 3.2): with `query_icmp on`, a parent
//! whose ICP MISS reported the smallest origin RTT (SRC_RTT) is the next
//! source, before the first parent to answer (FIRST_PARENT_MISS); see
//! [`super::icp_client::ParentMisses`]. Neither is used when the wait ran
//! out: Squid 5.7 then skips the replies that did arrive and goes on with
//! the parent algorithms, logged with the TIMEOUT_ prefix (seen: a parent
//! that answered MISS with SRC_RTT while another stayed silent gave
//! `TIMEOUT_FIRSTUP_PARENT/<first parent in config order>`).
//!
//! Cache digests (squid-spec 3.2 a, 5.4): before any query, a peer whose
//! digest ([`super::peer_digest`]) predicts a hit and is usable is the
//! first source (CD_SIBLING_HIT, CD_PARENT_HIT) and nobody is asked; when
//! no digest predicts a hit the query round asks every peer it would
//! have asked without digests, as Squid 5.7 does.
//!
//! Not implemented: the decisions Squid takes from its
//! own NetDB: CLOSEST_PARENT (no queries), CLOSEST_DIRECT (the origin
//! nearer than the closest parent's report) and `minimum_direct_rtt`.
//! cuttle's NetDB (from its own DIRECT handshakes) only answers peers.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::core::decide::{decide, decide_with_digest, digest_choice, to_ping};
use super::htcp_client::{ClrTrigger, HtcpClient};
use super::icp_client::{Ask, IcpClient, Replies};
use super::querier::{lock, QuerySocket, QuerySockets};
use super::resolve::PeerAddrs;
use super::table::{PeerId, PeerTable};
use crate::access;
use crate::access_log::HierarchyCode;
use crate::config::{CachePeer, Config, PeerType};

mod credentials;
mod mon;
mod nearest;
pub use credentials::{credentials, ClientCredentials, Credentials, PeerAuth};

pub use super::core::decide::{
    direct, peer_allowed, peer_type_for, queries_wanted, Decision, Direct, HashParents,
};

/// What selection looks at besides the config.
#[derive(Debug, Clone, Copy)]
pub struct SelectRequest<'a> {
    /// The request as ACLs see it (never_direct, cache_peer_access, ...).
    pub access: access::Request<'a>,
    /// Squid's clientHierarchical (see [`hierarchical`]).
    pub hierarchical: bool,
    /// Siblings may be used (no client reload, not a revalidation, no loop).
    pub siblings_ok: bool,
    /// Our Via was in the request.
    pub looped: bool,
    /// Accelerated, on an http_port without `allow-direct` (Squid's
    /// noDirect): parents only, as under never_direct.
    pub accel_no_direct: bool,
}

/// Squid's clientHierarchical (squid-spec 3.1): GET (or TRACE), no
/// credentials (Authorization header or user-info in the URL), no loop.
pub fn hierarchical(
    method: &str,
    has_authorization: bool,
    url_has_userinfo: bool,
    looped: bool,
) -> bool {
    (method == "GET" || method == "TRACE") && !has_authorization && !url_has_userinfo && !looped
}

/// The URL holds a `hierarchy_stoplist` word (Squid 3.4's rule): it is
/// not hierarchical then.
pub fn stoplisted(config: &Config, url: &str) -> bool {
    config
        .hierarchy_stoplist
        .iter()
        .any(|word| url.contains(word.value.as_str()))
}

/// One place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `None` = DIRECT (the URL's own host).
    pub peer: Option<PeerId>,
    pub code: HierarchyCode,
    /// Shared with the peer table (a peer's) or made once per selection
    /// (DIRECT's): a selection copies no host per source.
    pub host: Arc<str>,
    pub port: u16,
    /// Send `Cache-Control: only-if-cached` (a sibling without allow-miss).
    pub only_if_cached: bool,
    /// Send absolute-form (any peer but an originserver one).
    pub absolute_form: bool,
    /// proxy-only: do not store what this peer sends.
    pub proxy_only: bool,
    /// What `login=` makes of the client's credentials (see [`credentials`]).
    pub login: Option<PeerAuth>,
    /// connect-timeout= of the peer.
    pub connect_timeout: Option<Duration>,
}

impl Source {
    pub(crate) fn direct(host: &str, port: u16) -> Source {
        Source::direct_shared(Arc::from(host), port)
    }

    /// DIRECT to `host`, already shared text (made once per URL).
    pub(crate) fn direct_shared(host: Arc<str>, port: u16) -> Source {
        Source {
            peer: None,
            code: HierarchyCode::HierDirect,
            host,
            port,
            only_if_cached: false,
            absolute_form: false,
            proxy_only: false,
            login: None,
            connect_timeout: None,
        }
    }

    /// Peer `id`, whose config is `p` and host `host` (its table's shared
    /// copy of `p.host`).
    pub(crate) fn peer(
        id: PeerId,
        p: &CachePeer,
        host: &Arc<str>,
        code: HierarchyCode,
        peer_type: PeerType,
    ) -> Source {
        Source {
            peer: Some(id),
            code,
            host: Arc::clone(host),
            port: p.http_port,
            only_if_cached: peer_type == PeerType::Sibling && !p.allow_miss,
            absolute_form: !p.originserver,
            proxy_only: p.proxy_only,
            login: match &p.login {
                // An accelerator's origin expects its users' Authorization
                // (Squid drops it unless login=PASSTHRU; issue 16).
                None if p.originserver => Some(PeerAuth::Relay),
                login => login.as_ref().and_then(PeerAuth::of),
            },
            connect_timeout: p.connect_timeout,
        }
    }
}

/// The ordered sources, and whether the ICP wait timed out (`TIMEOUT_`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub sources: Vec<Source>,
    pub timed_out: bool,
    /// The ICP round, when one was made.
    pub replies: Option<Replies>,
}

/// The peers layer as the HTTP layer uses it: the table and its hash
/// member sets (both rebuilt on reload) and the ICP client (shared across
/// reloads, made on first use).
pub struct Neighbours {
    pub table: Arc<PeerTable>,
    /// The hash-based parent sets of `table`'s configuration.
    pub hashes: Arc<HashParents>,
    icp: Arc<Mutex<IcpShared>>,
}

/// What every generation of [`Neighbours`] shares: the ICP and HTCP
/// clients, the responders' sockets they send from (or, in tests, the
/// address they bind their own to: udp_outgoing_address of the newest
/// configuration), and the task counting multicast groups.
struct IcpShared {
    local: Option<IpAddr>,
    /// The responders' sockets the clients send from (the daemon's);
    /// `None`: each client binds an ephemeral socket of its own (tests).
    sockets: Option<Arc<QuerySockets>>,
    /// The sockets the current clients were made on.
    icp_on: Option<QuerySocket>,
    htcp_on: Option<QuerySocket>,
    /// The newest table: replies that match no query are credited to it,
    /// and its multicast groups are the ones counted.
    table: Arc<PeerTable>,
    client: Option<Arc<IcpClient>>,
    htcp: Option<Arc<HtcpClient>>,
    /// The clients' counters, kept across the clients a reload makes anew
    /// (mgr pages and /metrics never go backwards).
    icp_counters: Arc<super::icp_client::ClientCounters>,
    htcp_counters: Arc<super::htcp_client::HtcpClientCounters>,
    counter: Option<tokio::task::JoinHandle<()>>,
    /// The task fetching peers' Cache Digests, and the local address its
    /// connections leave from (the newest tcp_outgoing_address).
    digests: Option<tokio::task::JoinHandle<()>>,
    digest_local: Option<IpAddr>,
    /// The HTCP MON subscriber's task (`htcp=monitor` peers).
    monitors: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for IcpShared {
    fn drop(&mut self) {
        if let Some(task) = self.counter.take() {
            task.abort();
        }
        if let Some(task) = self.digests.take() {
            task.abort();
        }
        if let Some(task) = self.monitors.take() {
            task.abort();
        }
    }
}

/// Counts the responders of every multicast group of the newest table
/// when its count is due (squid-spec 1.9), for as long as any generation
/// of [`Neighbours`] lives.
async fn count_multicast_groups(shared: std::sync::Weak<Mutex<IcpShared>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (table, client) = {
            let mut icp = lock(&shared);
            let table = Arc::clone(&icp.table);
            if !table
                .peers
                .iter()
                .any(|p| p.config.peer_type == PeerType::Multicast)
            {
                continue;
            }
            (table, icp.client())
        };
        drop(shared);
        let Some(client) = client else { continue };
        for id in table.mcast_counts_due(Instant::now()) {
            let (client, table) = (Arc::clone(&client), Arc::clone(&table));
            tokio::spawn(async move { client.count_group(&table, id).await });
        }
    }
}

impl IcpShared {
    /// The ICP client, made on first use (inside the runtime) and again
    /// when the ICP responder's socket changed. With no icp_port it is
    /// one that sends no ICP query (Squid's "ICP is disabled!").
    fn client(&mut self) -> Option<Arc<IcpClient>> {
        let Some(sockets) = &self.sockets else {
            return bound_once(&mut self.client, "ICP", || {
                IcpClient::bind(
                    self.local,
                    Arc::clone(&self.table),
                    Arc::clone(&self.icp_counters),
                )
            });
        };
        let now = sockets.icp.get();
        if self.client.is_none() || !same_socket(&now, &self.icp_on) {
            self.client = Some(Arc::new(IcpClient::on(
                now.as_ref(),
                self.local,
                Arc::clone(&self.table),
                Arc::clone(&self.icp_counters),
            )));
            self.icp_on = now;
        }
        self.client.clone()
    }

    /// The HTCP client, made on first use (inside the runtime) and again
    /// when the HTCP responder's socket changed; none without htcp_port.
    fn htcp_client(&mut self) -> Option<Arc<HtcpClient>> {
        let Some(sockets) = &self.sockets else {
            return bound_once(&mut self.htcp, "HTCP", || {
                HtcpClient::bind(
                    self.local,
                    Arc::clone(&self.table),
                    Arc::clone(&self.htcp_counters),
                )
            });
        };
        let now = sockets.htcp.get();
        if self.htcp.is_none() || !same_socket(&now, &self.htcp_on) {
            self.htcp = now.as_ref().map(|q| {
                Arc::new(HtcpClient::on(
                    q,
                    Arc::clone(&self.table),
                    Arc::clone(&self.htcp_counters),
                ))
            });
            self.htcp_on = now;
        }
        self.htcp.clone()
    }
}

fn same_socket(a: &Option<QuerySocket>, b: &Option<QuerySocket>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same(b),
        _ => false,
    }
}

/// The client in `slot`, bound by `bind` first when there is none yet; a
/// failure is logged and left for the next use to retry.
fn bound_once<C>(
    slot: &mut Option<Arc<C>>,
    protocol: &str,
    bind: impl FnOnce() -> std::io::Result<C>,
) -> Option<Arc<C>> {
    if slot.is_none() {
        match bind() {
            Ok(c) => *slot = Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(protocol, error = %e, "cannot open the client socket");
                return None;
            }
        }
    }
    slot.clone()
}

impl Neighbours {
    /// Neighbours whose ICP and HTCP clients bind ephemeral sockets of
    /// their own on udp_outgoing_address (tests).
    pub fn new(config: &Config) -> Neighbours {
        Neighbours::build(config, None)
    }

    /// Neighbours whose queries leave from the responders' sockets in
    /// `sockets`, as Squid's do (the daemon's).
    pub fn on_sockets(config: &Config, sockets: Arc<QuerySockets>) -> Neighbours {
        Neighbours::build(config, Some(sockets))
    }

    fn build(config: &Config, sockets: Option<Arc<QuerySockets>>) -> Neighbours {
        let addrs = sockets
            .as_ref()
            .map_or_else(PeerAddrs::literal_only, |s| s.peer_addrs());
        let table = Arc::new(PeerTable::new(config, None, Instant::now(), &addrs));
        Neighbours {
            hashes: Arc::new(HashParents::new(table.as_ref())),
            icp: Arc::new(Mutex::new(IcpShared {
                sockets,
                icp_on: None,
                htcp_on: None,
                local: config.udp_outgoing_address.value,
                table: Arc::clone(&table),
                client: None,
                htcp: None,
                icp_counters: Arc::default(),
                htcp_counters: Arc::default(),
                counter: None,
                digests: None,
                digest_local: None,
                monitors: None,
            })),
            table,
        }
    }

    /// The same neighbours under a new config: peers that stay keep their
    /// state. The ICP and HTCP clients are kept unless udp_outgoing_address
    /// changed: then the next query makes new ones (on the responders'
    /// sockets, which the daemon rebinds; in tests, on new sockets of their
    /// own). Queries in flight hold the old clients; replies that reach
    /// them later are dropped (their queries are over).
    pub fn reconfigure(&self, config: &Config) -> Neighbours {
        let addrs = lock(&self.icp)
            .sockets
            .as_ref()
            .map_or_else(PeerAddrs::literal_only, |s| s.peer_addrs());
        let table = Arc::new(PeerTable::new(
            config,
            Some(&self.table),
            Instant::now(),
            &addrs,
        ));
        {
            let mut icp = lock(&self.icp);
            icp.table = Arc::clone(&table);
            let local = config.udp_outgoing_address.value;
            if icp.local != local {
                icp.local = local;
                icp.client = None;
                icp.htcp = None;
            } else {
                if let Some(c) = &icp.client {
                    c.set_table(Arc::clone(&table));
                }
                if let Some(c) = &icp.htcp {
                    c.set_table(Arc::clone(&table));
                }
            }
        }
        Neighbours {
            hashes: Arc::new(HashParents::new(table.as_ref())),
            table,
            icp: Arc::clone(&self.icp),
        }
    }

    /// The ICP client, bound now if it is not yet (inside the runtime):
    /// the explicit step that opens its socket.
    pub fn icp_client(&self) -> Option<Arc<IcpClient>> {
        lock(&self.icp).client()
    }

    /// Binds the ICP client, and the HTCP one when a peer speaks HTCP, if
    /// they are not yet (inside the runtime): the step that opens their
    /// sockets, so that selecting never does.
    pub fn open_clients(&self) {
        let mut icp = lock(&self.icp);
        icp.client();
        if self.table.peers.iter().any(|p| p.speaks_htcp()) {
            icp.htcp_client();
        }
    }

    /// The ICP client selection uses: the one on the responder's socket
    /// (following it when rebound), or one already bound by
    /// [`Neighbours::icp_client`]; selecting never binds a socket.
    fn current_icp_client(&self) -> Option<Arc<IcpClient>> {
        let mut icp = lock(&self.icp);
        if icp.sockets.is_some() {
            icp.client()
        } else {
            icp.client.clone()
        }
    }

    /// As [`Neighbours::current_icp_client`], for HTCP.
    fn current_htcp_client(&self) -> Option<Arc<HtcpClient>> {
        let mut icp = lock(&self.icp);
        if icp.sockets.is_some() {
            icp.htcp_client()
        } else {
            icp.htcp.clone()
        }
    }

    /// The ICP client's counters, across every client a reload made
    /// (never binds one).
    pub fn icp_counters(&self) -> Option<Arc<super::icp_client::ClientCounters>> {
        Some(Arc::clone(&lock(&self.icp).icp_counters))
    }

    /// The HTCP client's counters, as [`Neighbours::icp_counters`].
    pub fn htcp_counters(&self) -> Option<Arc<super::htcp_client::HtcpClientCounters>> {
        Some(Arc::clone(&lock(&self.icp).htcp_counters))
    }

    /// Starts counting multicast groups' responders in the background
    /// (inside the runtime), once for all generations, when this one has a
    /// multicast peer. Client queries never count: they wait for the
    /// average of these counts (squid-spec 1.9).
    pub fn start_multicast_counts(&self) {
        let multicast = self
            .table
            .peers
            .iter()
            .any(|p| p.config.peer_type == PeerType::Multicast);
        let mut icp = lock(&self.icp);
        if multicast && icp.counter.is_none() {
            icp.counter = Some(tokio::spawn(count_multicast_groups(Arc::downgrade(
                &self.icp,
            ))));
        }
    }

    /// Starts fetching peers' Cache Digests in the background (inside the
    /// runtime), once for all generations, when this one has a peer that
    /// wants one; the task follows the newest table (squid-spec 5.4).
    /// Its connections leave from `local` (tcp_outgoing_address; the
    /// newest generation's).
    pub fn start_digest_fetches(&self, timeouts: crate::upstream::Timeouts, local: Option<IpAddr>) {
        let wanted = self
            .table
            .peers
            .iter()
            .any(|p| super::peer_digest::wants_digest(&p.config));
        let mut icp = lock(&self.icp);
        icp.digest_local = local;
        if wanted && icp.digests.is_none() {
            let shared = Arc::downgrade(&self.icp);
            let newest = move || {
                shared.upgrade().map(|s| {
                    let s = lock(&s);
                    (Arc::clone(&s.table), s.digest_local)
                })
            };
            let client = super::peer_digest::client(timeouts);
            icp.digests = Some(tokio::spawn(super::peer_digest::run(client, newest)));
        }
    }

    /// Notes that peer `id` answered a fetch its digest predicted as a
    /// hit with 504 (it did not have the object).
    pub fn note_digest_false_hit(&self, id: PeerId) {
        if let Some(p) = self.table.get(id) {
            p.digest.note_false_hit();
        }
    }

    /// The HTCP client, bound on first use (inside the runtime).
    pub fn htcp_client(&self) -> Option<Arc<HtcpClient>> {
        lock(&self.icp).htcp_client()
    }

    /// Sends HTCP CLRs for `url` to the `htcp` peers whose options allow it
    /// (squid-spec 2.6); returns how many datagrams went out.
    pub fn send_clr(&self, url: &str, trigger: ClrTrigger) -> usize {
        if !self.table.peers.iter().any(|p| p.speaks_htcp()) {
            return 0;
        }
        self.htcp_client()
            .map_or(0, |c| c.send_clr(&self.table, url, trigger))
    }

    /// Starts TCP liveness probes of peers that are down (at most one per
    /// peer per second), as Squid does whenever it consults a down peer.
    pub fn probe_down_peers(&self, tcp_local: Option<IpAddr>, default_timeout: Duration) {
        if self.table.peers.is_empty() {
            return;
        }
        for id in self.table.probes_due(Instant::now()) {
            let timeout = self
                .table
                .get(id)
                .and_then(|p| p.config.connect_timeout)
                .unwrap_or(default_timeout);
            tokio::spawn(Arc::clone(&self.table).probe(id, tcp_local, timeout));
        }
    }

    /// Full selection for a miss: the direct decision, ICP queries (HTCP
    /// TST for `htcp` peers, carrying the request's `headers`) to the peers
    /// that would be pinged (when any), then the source list. The decision
    /// core does the deciding; this sends, waits and applies its effects,
    /// reading the clock once per event (the start; a reply or the deadline
    /// is the end of the round).
    pub async fn select(
        &self,
        config: &Config,
        req: &SelectRequest<'_>,
        headers: &http::HeaderMap,
    ) -> Selection {
        let mut now = Instant::now();
        let direct = direct(config, req);
        let mut replies = None;
        if queries_wanted(direct, req) {
            let start = self.table.next_ping_start();
            // A peer whose MON set holds the object is used without
            // asking; then one whose digest predicts a hit.
            if let Some(selection) = self.mon_selection(config, req, direct, start, now) {
                return selection;
            }
            let (hit, effects) = digest_choice(self.table.as_ref(), config, req, start, now);
            self.table.apply_all(&effects);
            if let Some(hit) = hit {
                self.note_nearest_digest(hit.0, req.access.url);
                let decision = decide_with_digest(
                    self.table.as_ref(),
                    &self.hashes,
                    config,
                    req,
                    direct,
                    Some(hit),
                    None,
                    now,
                );
                self.table.apply_all(&decision.effects);
                return decision.selection;
            }
            let (targets, effects) = to_ping(self.table.as_ref(), config, req, start, now);
            self.table.apply_all(&effects);
            if !targets.is_empty() {
                let span = tracing::debug_span!("peer_query", url = req.access.url);
                if let Some((r, ended)) = self
                    .query_round(req, headers, targets, now)
                    .instrument(span)
                    .await
                {
                    replies = Some(r);
                    now = ended;
                }
            }
        }
        let decision = decide_with_digest(
            self.table.as_ref(),
            &self.hashes,
            config,
            req,
            direct,
            None,
            replies,
            now,
        );
        self.table.apply_all(&decision.effects);
        if let Some(r) = &decision.selection.replies {
            self.note_nearest_reply(r, &decision.selection);
        }
        decision.selection
    }

    /// One query round to `targets` over the current clients: `None`
    /// without an ICP client (no round made).
    async fn query_round(
        &self,
        req: &SelectRequest<'_>,
        headers: &http::HeaderMap,
        mut targets: Vec<(PeerId, PeerType)>,
        now: Instant,
    ) -> Option<(Replies, Instant)> {
        let client = self.current_icp_client()?;
        let htcp_peers: Vec<PeerId> = targets
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| self.table.get(*id).is_some_and(|p| p.speaks_htcp()))
            .collect();
        let htcp = if htcp_peers.is_empty() {
            None
        } else {
            self.current_htcp_client()
        };
        if htcp.is_none() {
            // No HTCP socket: its peers are not asked nor waited for, and
            // Squid says so for each.
            targets.retain(|(id, _)| {
                let asked = !htcp_peers.contains(id);
                if !asked {
                    let peer = self.table.get(*id).map_or("", |p| p.name());
                    tracing::warn!(peer, "HTCP is disabled! Cannot send HTCP request to peer.");
                }
                asked
            });
        }
        let round = htcp
            .as_ref()
            .map(|c| c.round(&self.table, req.access.url, headers));
        let send = |peers: &[PeerId], at: Instant, tx: &_| {
            round.as_ref().map_or(0, |r| r.send(peers, at, tx))
        };
        let co: Option<&super::icp_client::CoQuery<'_>> = round.is_some().then_some(&send);
        let (replies, ended) = client
            .query_with(
                &self.table,
                Ask {
                    url: req.access.url,
                    host: req.access.host,
                    now,
                },
                &targets,
                co,
            )
            .await;
        tracing::debug!(
            sent = replies.sent,
            expected = replies.expected,
            timed_out = replies.timed_out,
            hit = ?replies.hit.and_then(|id| self.table.get(id)).map(|p| p.name()),
            "peer query round over"
        );
        Some((replies, ended))
    }

    /// Selection without ICP (revalidations, other methods).
    pub fn select_without_queries(&self, config: &Config, req: &SelectRequest<'_>) -> Selection {
        let direct = direct(config, req);
        select_applied(
            &self.table,
            &self.hashes,
            config,
            req,
            direct,
            None,
            Instant::now(),
        )
    }

    /// A fetch from peer `id` is starting: counts it against max-conn
    /// until the guard drops.
    pub fn open(&self, id: PeerId) -> ConnGuard {
        if let Some(p) = self.table.get(id) {
            let mut s = p.state();
            s.open_conns += 1;
            s.fetches += 1;
        }
        ConnGuard {
            table: Arc::clone(&self.table),
            id,
        }
    }

    /// Peer `id`'s hit was delivered without being stored
    /// (`peer_store_threshold`).
    pub fn note_hit_not_stored(&self, id: PeerId) {
        if let Some(p) = self.table.get(id) {
            p.state().hits_not_stored += 1;
        }
    }

    /// A fetch from peer `id` (`None`: an origin) got its response head
    /// after `took`: the peer's load meter and this process's own.
    pub fn note_service(&self, id: Option<PeerId>, took: Duration) {
        super::load::note_own_service(took);
        let peer = id.and_then(|id| Some((self.table.get(id)?, self.hashes.load_scale(id))));
        if let Some((p, scale)) = peer {
            p.state().load.note_service(took, scale);
        }
    }

    /// The outcome of connecting to peer `id`.
    pub fn note_connect(&self, id: PeerId, ok: bool) {
        if ok {
            self.table.note_tcp_success(id);
        } else {
            self.table.note_tcp_failure(id);
        }
    }
}

/// The ordered sources (squid-spec 3.2) as the core decides them, with
/// the decision's effects applied to `table` (round-robin steps, resets).
pub fn select_applied(
    table: &PeerTable,
    hashes: &HashParents,
    config: &Config,
    req: &SelectRequest<'_>,
    direct: Direct,
    replies: Option<&Replies>,
    now: Instant,
) -> Selection {
    let decision = decide(table, hashes, config, req, direct, replies, now);
    table.apply_all(&decision.effects);
    decision.selection
}

/// Holds one of a peer's max-conn slots.
pub struct ConnGuard {
    table: Arc<PeerTable>,
    id: PeerId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(p) = self.table.get(self.id) {
            let mut s = p.state();
            s.open_conns = s.open_conns.saturating_sub(1);
        }
    }
}

/// `tcp_outgoing_address`: the first line whose ACLs all match.
pub fn tcp_outgoing_address(config: &Config, req: &access::Request<'_>) -> Option<IpAddr> {
    config
        .tcp_outgoing_address
        .iter()
        .find(|line| access::matches_all(&line.acls, config, req))
        .map(|line| line.address)
}

#[cfg(test)]
pub(crate) mod tests;
