//! The hash-based parent sets (sourcehash, userhash, CARP; squid-spec
//! 4.2, 4.5), split from `decide.rs`, which asks them per request.

use std::net::IpAddr;

use super::decide::{peer_allowed, peer_type_for, At};
use super::{PeerId, PeerInfo, PeerView};
use crate::access_log::HierarchyCode;
use crate::config::{CachePeer, Config, PeerType};
use crate::peers::load::LoadAwareCarp;
use crate::peers::select::SelectRequest;
use cuttle_protocol::carp::{carp_key, Carp, CarpKeyParts, CarpMember, SourceHash, UrlParts};

/// The hash-based parent sets of one configuration (squid-spec 4.2, 4.5):
/// the `sourcehash`, `userhash` and `carp` parents in configuration order
/// with their member hashes and load multipliers. Built with the peer
/// table, so a reload rebuilds them; liveness is not part of them (a down
/// member is skipped per request, after scoring, as Squid does). With
/// `load-aware` members the CARP multipliers follow the members' measured
/// loads (peers/load.rs), read through the view per request.
#[derive(Debug, Clone, Default)]
pub struct HashParents {
    carp: MemberSet<Carp>,
    /// With `load-aware` members: CARP weighted by measured load.
    carp_load: Option<LoadAwareCarp>,
    sourcehash: MemberSet<SourceHash>,
    /// Built like Squid, never consulted: there is no authenticated user.
    userhash: MemberSet<SourceHash>,
}

/// One algorithm's member table and, per member index, its peer.
#[derive(Debug, Clone, Default)]
struct MemberSet<T> {
    hash: T,
    peers: Vec<PeerId>,
}

impl<T> MemberSet<T> {
    fn build(
        view: &impl PeerView,
        member: fn(&CachePeer) -> bool,
        new: fn(&[CarpMember<'_>]) -> T,
    ) -> MemberSet<T> {
        let configs: Vec<(PeerId, PeerInfo<'_>)> = (0..view.peer_count())
            .filter_map(|id| view.peer(id).map(|p| (id, p)))
            .filter(|(_, p)| member(p.config))
            .collect();
        let members: Vec<CarpMember<'_>> = configs
            .iter()
            .map(|(_, p)| CarpMember {
                name: &p.config.name,
                weight: p.config.weight,
            })
            .collect();
        MemberSet {
            hash: new(&members),
            peers: configs.iter().map(|(id, _)| *id).collect(),
        }
    }
}

impl HashParents {
    /// The member sets of the view's configuration. The config reader only
    /// accepts `carp`, `sourcehash` and `userhash` on parents, as Squid.
    pub fn new(view: &impl PeerView) -> HashParents {
        let carp = MemberSet::build(view, |p| p.carp, Carp::new);
        let carp_load = LoadAwareCarp::new(
            carp.peers
                .iter()
                .filter_map(|&id| view.peer(id))
                .map(|p| (p.config.name.clone(), p.config.weight, p.config.load_aware))
                .collect(),
        );
        HashParents {
            carp,
            carp_load,
            sourcehash: MemberSet::build(view, |p| p.sourcehash, SourceHash::new),
            userhash: MemberSet::build(view, |p| p.userhash, SourceHash::new),
        }
    }

    /// Some CARP member is `load-aware`: only then is a peer's load read.
    pub fn load_aware(&self) -> bool {
        self.carp_load.is_some()
    }

    /// The scale `load-aware` CARP gives peer `id`'s weight now (1: not
    /// scaled, or not a `load-aware` CARP member): its load meter weighs
    /// a fetch by it.
    pub fn load_scale(&self, id: PeerId) -> f64 {
        let member = self.carp.peers.iter().position(|&p| p == id);
        match (&self.carp_load, member) {
            (Some(load), Some(m)) => load.scale(m),
            _ => 1.0,
        }
    }

    /// The CARP members' peers, by member index.
    pub fn carp_peers(&self) -> &[PeerId] {
        &self.carp.peers
    }

    /// The sourcehash members' peers, by member index.
    pub fn sourcehash_peers(&self) -> &[PeerId] {
        &self.sourcehash.peers
    }

    /// The userhash members' peers, by member index.
    pub fn userhash_peers(&self) -> &[PeerId] {
        &self.userhash.peers
    }

    /// Squid's peerSourceHashSelectParent, peerUserHashSelectParent and
    /// carpSelectParent, in that order: the first that picks a parent.
    pub(super) fn choose<V: PeerView>(
        &self,
        at: &At<'_, V>,
        config: &Config,
        req: &SelectRequest<'_>,
    ) -> Option<(PeerId, HierarchyCode)> {
        let eligible = |set_peers: &[PeerId], member: usize| {
            set_peers
                .get(member)
                .is_some_and(|&id| hash_parent_okay(at, config, req, id))
        };
        if !self.sourcehash.peers.is_empty() {
            let key = client_address_text(req.access.client);
            let peers = &self.sourcehash.peers;
            if let Some(id) = self
                .sourcehash
                .hash
                .choose(key.as_bytes(), |m| eligible(peers, m))
                .and_then(|m| peers.get(m))
            {
                return Some((*id, HierarchyCode::SourcehashParent));
            }
        }
        // userhash: Squid hashes the authenticated user name and skips the
        // algorithm when the request has none. cuttle refuses proxy_auth,
        // so no request has one and userhash never picks here.
        if !self.carp.peers.is_empty() {
            let url = UrlParts {
                full: req.access.url.as_bytes(),
                scheme: req.access.scheme.as_bytes(),
                host: req.access.host.as_bytes(),
                port: req.access.port,
                path_and_query: req.access.path.as_bytes(),
            };
            let peers = &self.carp.peers;
            let key_of = |m: usize| {
                let parts = peers
                    .get(m)
                    .and_then(|&id| at.peer(id))
                    .and_then(|p| p.config.carp_key);
                match parts {
                    Some(k) => carp_key(
                        CarpKeyParts {
                            scheme: k.scheme,
                            host: k.host,
                            port: k.port,
                            path: k.path,
                            params: k.params,
                        },
                        &url,
                    ),
                    None => std::borrow::Cow::Borrowed(url.full),
                }
            };
            let scaled = self
                .carp_load
                .as_ref()
                .map(|l| l.table(|m| peers.get(m).and_then(|&id| at.view.load_ms(id, at.now))));
            if let Some(id) = scaled
                .as_deref()
                .unwrap_or(&self.carp.hash)
                .choose_keyed(key_of, |m| eligible(peers, m))
                .and_then(|m| peers.get(m))
            {
                return Some((*id, HierarchyCode::Carp));
            }
        }
        None
    }
}

/// Squid's peerHTTPOkay for a hash member: up, below max-conn, allowed by
/// cache_peer_access and, should neighbor_type_domain make it a sibling
/// for this host, allowed to use siblings. Like Squid, the hash algorithms
/// do not ask whether the member is a parent for this host.
fn hash_parent_okay<V: PeerView>(
    at: &At<'_, V>,
    config: &Config,
    req: &SelectRequest<'_>,
    id: PeerId,
) -> bool {
    let Some(p) = at.peer(id) else {
        return false;
    };
    let sibling_here = peer_type_for(p.config, req.access.host) == PeerType::Sibling;
    (!sibling_here || req.siblings_ok)
        && peer_allowed(config, p.config, &req.access)
        && at.http_okay_of(id, &p)
}

/// The client address as Squid prints it for the sourcehash key: dotted
/// IPv4 (also for IPv4-mapped IPv6 clients of a dual-stack port), IPv6
/// compressed and without brackets.
pub(crate) fn client_address_text(client: IpAddr) -> String {
    client.to_canonical().to_string()
}
