//! Cut-through (issue 20, after LSAM): a miss at a node deep enough in the
//! hierarchy goes up to its parent with `Cache-Control: only-if-cached`
//! and to the origin at once; the first usable answer wins and the other
//! request is dropped.
//!
//! The guarantee, one origin request per client request at most, holds
//! because only one of the two requests may reach the origin: a parent
//! (cuttle or Squid) answers an only-if-cached request from its cache or
//! with 504 and never fetches for it (RFC 9111 5.2.1.7), so the origin
//! request sent here is the only one. When that request fails before it
//! could reach the origin (no address, no connection) and the hierarchy
//! had no copy, the miss is forwarded as usual (the origin still saw
//! nothing of it); after any later failure it is an error, never a retry.
//!
//! With `exit=PEER` the fast request goes to that exit cache instead of
//! the origin: a normal request, so the exit fetches what it lacks (the
//! one origin request) and keeps it for the rest of the hierarchy.
//!
//! A node with `cut_through on` also passes an only-if-cached miss on to
//! its own parents, still only-if-cached ([`relay_only_if_cached`]), so a
//! child's hierarchy request looks in every cuttle level above it and in
//! the first Squid one.

use std::pin::pin;
use std::sync::Arc;

use http::{Response, StatusCode};

use crate::access_log::{Hierarchy, HierarchyCode, ResultCode, ResultTag};
use crate::config::{CutThrough, CutThroughMode, PeerType};
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::target::Target;
use crate::peers::select::Source;
use crate::stats::CutThroughWinner;
use crate::upstream::{FetchError, TOS_LOWER_EFFORT};

use super::forward::{Fetched, Forwarding, NotForwarded, Route};
use super::txn::Txn;
use super::Proxy;

/// Whether the hierarchy's answer is one to use: anything but a 5xx (504
/// is "not in my cache", the others a parent unwell).
fn hierarchy_usable(status: StatusCode) -> bool {
    !status.is_server_error()
}

/// Whether an origin request that failed so never reached the origin.
fn never_sent(e: &FetchError) -> bool {
    matches!(e, FetchError::Dns { .. } | FetchError::Connect { .. })
}

/// The two legs of a cut-through miss.
struct Race {
    /// The parent, asked with only-if-cached.
    parent: Route,
    parent_id: crate::peers::table::PeerId,
    /// The fast request: the origin (the selection's DIRECT source), or
    /// the exit cache of `exit=`.
    fast: Route,
    cut_through: CutThrough,
}

impl Proxy {
    /// Forwards a miss's fetch: raced up the hierarchy and to the origin
    /// when `cut_through` applies (see the module), else as Squid does.
    pub(super) async fn forward_miss(
        &self,
        fwd: &Forwarding<'_>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
        let cut_through = self.config.cut_through.value;
        if !cut_through.enabled {
            return self.forward_along(fwd, hierarchy).await;
        }
        let routes = self.routes_of(fwd).await;
        match self.race_of(&cut_through, fwd, &routes) {
            Some(race) => self.race(fwd, race, routes, hierarchy).await,
            None => self.forward_routes(fwd, routes, hierarchy).await,
        }
    }

    /// This node's depth under `cut_through` (see [`CutThrough::node_depth`]).
    pub(super) fn cut_through_depth(&self, cut_through: &CutThrough) -> u32 {
        let has_parent = self
            .config
            .cache_peers
            .iter()
            .any(|p| p.peer_type == PeerType::Parent);
        cut_through.node_depth(has_parent, None)
    }

    /// The race for `routes`, when there is one to run: this node is deep
    /// enough, the first source is a cache parent, and the fast request
    /// has somewhere to go: the `exit=` peer, else DIRECT when the
    /// selection allows it (never_direct is obeyed: no DIRECT, no race).
    fn race_of(
        &self,
        cut_through: &CutThrough,
        fwd: &Forwarding<'_>,
        routes: &[Route],
    ) -> Option<Race> {
        if !cut_through.applies_at(self.cut_through_depth(cut_through)) || fwd.body.is_some() {
            return None;
        }
        let first = routes.first()?;
        let parent_id = first.source.peer?;
        let peer = self.neighbours.table.get(parent_id)?;
        if peer.config.peer_type != PeerType::Parent || !first.source.absolute_form {
            return None;
        }
        let fast = match cut_through.exit {
            // An exit cache fetches (and keeps) what it lacks: a normal
            // request, the only one that may reach the origin.
            Some(id) => {
                let exit = self.neighbours.table.get(id)?;
                let code = HierarchyCode::CutThroughExit;
                Route {
                    source: Source::peer(id, &exit.config, &exit.host, code, PeerType::Parent),
                    local: first.local,
                    timed_out: false,
                    url: first.url.clone(),
                }
            }
            None => routes.iter().find(|r| r.source.peer.is_none())?.clone(),
        };
        let mut parent = first.clone();
        parent.source.only_if_cached = true;
        Some(Race {
            parent,
            parent_id,
            fast,
            cut_through: *cut_through,
        })
    }

    /// Runs `race`: the parent at once, the origin after the head start
    /// (background, on a CS1-marked connection) or at once (foreground),
    /// and at once when the parent said it has no copy. Whichever answers
    /// usably first is returned; the other request is dropped.
    async fn race(
        &self,
        fwd: &Forwarding<'_>,
        race: Race,
        routes: Vec<Route>,
        hierarchy: &mut Hierarchy,
    ) -> Result<Fetched, NotForwarded> {
        let Race {
            parent,
            parent_id,
            fast,
            cut_through,
        } = race;
        let rtt = self
            .neighbours
            .table
            .get(parent_id)
            .map_or(0, |p| p.state().rtt_ms);
        let wait = cut_through.head_start(rtt);
        let origin_client = match cut_through.mode {
            CutThroughMode::Foreground => self.upstream.clone(),
            CutThroughMode::Background => self.upstream.marked(TOS_LOWER_EFFORT),
        };
        let conn_slot = self.neighbours.open(parent_id);
        let mut up = pin!(async {
            let mut h = Hierarchy::none();
            let sent = self.send(&parent, fwd, &mut h).await;
            (sent, h)
        });
        // Lazy: nothing is sent before the select below first polls it.
        let mut down = pin!(async {
            let mut h = Hierarchy::none();
            let sent = self.send_via(&origin_client, &fast, fwd, &mut h).await;
            (sent, h)
        });
        let mut head_start = pin!(tokio::time::sleep(wait));
        let (mut up_done, mut go) = (false, wait.is_zero());
        let origin_failed: FetchError = loop {
            tokio::select! {
                biased;
                (sent, h) = &mut up, if !up_done => {
                    up_done = true;
                    match sent {
                        Ok(resp) if hierarchy_usable(resp.status()) => {
                            self.mgr.stats.note_cut_through(CutThroughWinner::Hierarchy);
                            self.note_forwarding(None);
                            *hierarchy = Hierarchy { code: HierarchyCode::ParentHit, ..h };
                            return Ok(Fetched {
                                resp,
                                proxy_only: parent.source.proxy_only,
                                peer: Some(parent_id),
                                _conn_slot: Some(conn_slot),
                            });
                        }
                        // No copy up there: the origin need not wait.
                        _ => go = true,
                    }
                }
                () = &mut head_start, if !go => go = true,
                (sent, h) = &mut down, if go => match sent {
                    Ok(resp) => {
                        self.mgr.stats.note_cut_through(CutThroughWinner::Origin);
                        self.note_forwarding(None);
                        let code = match fast.source.peer {
                            Some(_) => HierarchyCode::CutThroughExit,
                            None => HierarchyCode::CutThroughDirect,
                        };
                        *hierarchy = Hierarchy { code, ..h };
                        return Ok(Fetched {
                            resp,
                            proxy_only: fast.source.proxy_only,
                            peer: fast.source.peer,
                            _conn_slot: fast.source.peer.map(|id| self.neighbours.open(id)),
                        });
                    }
                    Err(e) if !up_done => {
                        // The hierarchy may still have it.
                        let (sent, h) = (&mut up).await;
                        match sent {
                            Ok(resp) if hierarchy_usable(resp.status()) => {
                                self.mgr.stats.note_cut_through(CutThroughWinner::Hierarchy);
                                *hierarchy = Hierarchy { code: HierarchyCode::ParentHit, ..h };
                                return Ok(Fetched {
                                    resp,
                                    proxy_only: parent.source.proxy_only,
                                    peer: Some(parent_id),
                                    _conn_slot: Some(conn_slot),
                                });
                            }
                            _ => break e,
                        }
                    }
                    Err(e) => break e,
                },
            }
        };
        self.mgr.stats.note_cut_through(CutThroughWinner::Neither);
        drop(conn_slot);
        if never_sent(&origin_failed) {
            // The origin saw nothing of this request: forward it as usual.
            return self.forward_routes(fwd, routes, hierarchy).await;
        }
        self.note_forwarding(Some(&origin_failed));
        Err(NotForwarded::Failed(origin_failed))
    }
}

/// An only-if-cached request this node cannot answer from its cache, at
/// a node with `cut_through on`: asked of its first cache parent, still
/// only-if-cached; that parent's answer when usable, else the
/// transaction back (the caller answers 504 as before).
pub(super) async fn relay_only_if_cached(
    proxy: &Arc<Proxy>,
    mut txn: Txn,
    target: &Target,
    parts: &http::request::Parts,
) -> Result<Response<ClientBody>, Txn> {
    if !proxy.config.cut_through.value.enabled {
        return Err(txn);
    }
    let fwd = Forwarding {
        method: &parts.method,
        target,
        headers: &parts.headers,
        client: txn.client,
        arrival: txn.arrival,
        siblings_ok: false,
        body: None,
        share_offer: false,
    };
    let routes = proxy.routes(&fwd).await;
    let parent = routes.into_iter().find(|r| {
        r.source.absolute_form
            && r.source
                .peer
                .and_then(|id| proxy.neighbours.table.get(id))
                .is_some_and(|p| p.config.peer_type == PeerType::Parent)
    });
    let Some(mut parent) = parent else {
        return Err(txn);
    };
    parent.source.only_if_cached = true;
    let _conn_slot = parent.source.peer.map(|id| proxy.neighbours.open(id));
    let mut h = Hierarchy::none();
    let resp = match proxy.send(&parent, &fwd, &mut h).await {
        Ok(resp) if hierarchy_usable(resp.status()) => resp,
        _ => return Err(txn),
    };
    txn.result = ResultCode::new(ResultTag::TcpMiss);
    txn.hierarchy = Hierarchy {
        code: HierarchyCode::ParentHit,
        ..h
    };
    let (rp, rb) = resp.into_parts();
    let mut headers = proxy.client_headers(&rp.headers);
    proxy.cache_status(&mut headers, false, None);
    Ok(proxy.respond(txn, rp.status, headers, ProxyBody::Upstream(Box::new(rb))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_5xx_from_the_hierarchy_is_no_answer() {
        assert!(hierarchy_usable(StatusCode::OK));
        assert!(hierarchy_usable(StatusCode::NOT_FOUND));
        assert!(!hierarchy_usable(StatusCode::GATEWAY_TIMEOUT));
        assert!(!hierarchy_usable(StatusCode::BAD_GATEWAY));
    }

    #[tokio::test]
    async fn the_origin_connection_is_marked_cs1() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let marked = crate::upstream::connect_marked(addr, None, Some(TOS_LOWER_EFFORT))
            .await
            .expect("connect");
        let tos = socket2::SockRef::from(&marked).tos_v4().expect("IP_TOS");
        assert_eq!(tos, TOS_LOWER_EFFORT);
        let plain = crate::upstream::connect_from(addr, None)
            .await
            .expect("connect");
        assert_eq!(socket2::SockRef::from(&plain).tos_v4().expect("IP_TOS"), 0);
    }
}
