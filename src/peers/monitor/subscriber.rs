//! The subscribing side's task: one UDP socket of its own (on
//! `udp_outgoing_address` at start, an ephemeral port) from which MON
//! requests go to every `htcp=monitor` peer's HTCP port and on which the
//! peers' notices arrive; each notice goes to its peer's [`MonitorSlot`]
//! (by exact source address and port). Every [`TICK`] each slot says
//! whether to subscribe, subscribe again or renew. It follows the newest
//! peer table, as the digest fetcher does, and ends with the proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::{monitored, wire};
use crate::peers::htcp_server::MAX_DATAGRAM;
use crate::peers::table::PeerTable;

/// How often the slots are asked what to send.
pub const TICK: Duration = Duration::from_millis(100);

/// Subscription ids: from the clock, then spread by a large odd step, so
/// a restarted subscriber does not reuse the ids its peers may remember.
struct Ids(u32);

impl Ids {
    fn new() -> Ids {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Ids(nanos)
    }

    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9);
        self.0
    }
}

/// Runs until `newest` returns `None` (the proxy is gone).
pub async fn run<F>(newest: F, local: Option<IpAddr>)
where
    F: Fn() -> Option<Arc<PeerTable>>,
{
    let ip = local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let socket = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%ip, error = %e, "HTCP MON: cannot bind the subscriber's socket; no peer is monitored");
            return;
        }
    };
    let mut ids = Ids::new();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Some(table) = newest() else { return };
                let Some(data) = buf.get(..n) else { continue };
                let Some(incoming) = wire::parse(data) else { continue };
                let Some(peer) = table.by_icp_addr(from).and_then(|id| table.get(id)) else {
                    continue;
                };
                if !monitored(&peer.config) {
                    continue;
                }
                let now = Instant::now();
                if peer.mon.receive(incoming, now, &peer.config.name) {
                    if let Some(request) = peer.mon.tick(now, || ids.next()) {
                        let _ = socket.send_to(&request, from).await;
                    }
                }
            }
            _ = tick.tick() => {
                let Some(table) = newest() else { return };
                let now = Instant::now();
                for peer in table.peers.iter().filter(|p| monitored(&p.config)) {
                    let Some(addr) = peer.icp_addr else { continue };
                    if let Some(request) = peer.mon.tick(now, || ids.next()) {
                        if let Err(e) = socket.send_to(&request, addr).await {
                            tracing::debug!(peer = %peer.config.name, error = %e, "HTCP MON request not sent");
                        }
                    }
                }
            }
        }
    }
}
