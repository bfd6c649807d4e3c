//! Sending CLRs: the datagrams cuttle sends for a URL, and the
//! `htcp=forward-clr` peers allowed CLRs are relayed to.

use std::net::SocketAddr;

use cuttle_protocol::htcp::{self, Message, Specifier};

use crate::config::Config;
use crate::peers::resolve::PeerAddrs;

/// A peer CLRs are relayed to (`htcp=forward-clr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardTarget {
    pub addr: SocketAddr,
    /// `htcp=oldsquid`: MINOR 0 and the old layout.
    pub oldsquid: bool,
}

/// The forward-clr peers of `config` that have an address (a name's, as
/// the daemon resolved it beforehand: answering never waits on DNS).
pub fn forward_targets(config: &Config, addrs: &PeerAddrs) -> Vec<ForwardTarget> {
    config
        .cache_peers
        .iter()
        .filter_map(|p| {
            let h = p.htcp.filter(|h| h.forward_clr)?;
            let addr = addrs.icp_addr(&p.host, p.icp_port)?;
            Some(ForwardTarget {
                addr,
                oldsquid: h.oldsquid,
            })
        })
        .collect()
}

/// CLR datagrams for `url` as cuttle sends them: one naming GET and one
/// naming HEAD (a Squid peer purges for those, not for PURGE), VERSION
/// `1/1` and no request headers as Squid sends, MINOR per `oldsquid`.
pub fn clr_datagrams(
    url: &str,
    reason: u8,
    oldsquid: bool,
    response_desired: bool,
    mut trans_id: impl FnMut() -> u32,
) -> Vec<Vec<u8>> {
    ["GET", "HEAD"]
        .iter()
        .filter_map(|method| {
            let mut m = Message::clr_request(
                trans_id(),
                reason,
                Specifier::new(method, url),
                response_desired,
            );
            if oldsquid {
                m.minor = htcp::MINOR_OLD;
            }
            let mut out = Vec::new();
            m.encode(&mut out).ok().map(|()| out)
        })
        .collect()
}
