//! The server_list page: each cache_peer's address, flags, counters and ICP/HTCP figures in Squid's layout.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cuttle_protocol::icp::Opcode;

use crate::mgr::{htcp_peer, percent, Sources};

use crate::config::{CachePeer, ConnectionAuth, PeerType};
use crate::peers::table::{Peer, PeerTable};

/// Squid's name for a peer's type in `server_list`.
fn type_name(t: PeerType) -> &'static str {
    match t {
        PeerType::Parent => "Parent",
        PeerType::Sibling => "Sibling",
        PeerType::Multicast => "Multicast",
    }
}

/// The `Flags` line: the peer's options as squid.conf spells them.
pub fn flags(p: &CachePeer) -> Vec<String> {
    let mut f: Vec<String> = Vec::new();
    let mut on = |set: bool, name: &str| {
        if set {
            f.push(name.to_string());
        }
    };
    on(p.proxy_only, "proxy-only");
    on(p.no_query, "no-query");
    on(p.background_ping, "background-ping");
    on(p.no_digest, "no-digest");
    on(p.default_parent, "default");
    on(p.round_robin, "round-robin");
    on(p.carp, "carp");
    on(p.load_aware, "load-aware");
    on(p.userhash, "userhash");
    on(p.sourcehash, "sourcehash");
    on(p.weighted_round_robin, "weighted-round-robin");
    on(p.multicast_responder, "multicast-responder");
    on(p.multicast_siblings, "multicast-siblings");
    on(p.closest_only, "closest-only");
    on(p.htcp.is_some(), "htcp");
    on(p.no_netdb_exchange, "no-netdb-exchange");
    on(p.no_delay, "no-delay");
    on(p.allow_miss, "allow-miss");
    on(p.originserver, "originserver");
    on(p.discovered, "discovered");
    if p.weight != 1 {
        f.push(format!("weight={}", p.weight));
    }
    if let Some(max) = p.max_conn {
        f.push(format!("max-conn={max}"));
    }
    if let Some(t) = p.connect_timeout {
        f.push(format!("connect-timeout={}", t.as_secs()));
    }
    if p.connect_fail_limit != 10 {
        f.push(format!("connect-fail-limit={}", p.connect_fail_limit));
    }
    if let Some(d) = &p.forceddomain {
        f.push(format!("forceddomain={d}"));
    }
    f.push(
        match p.connection_auth {
            ConnectionAuth::On => "connection-auth=on",
            ConnectionAuth::Off => "connection-auth=off",
            ConnectionAuth::Auto => "connection-auth=auto",
        }
        .to_string(),
    );
    f.push(if p.tls { "tls" } else { "tls-disable" }.to_string());
    f
}

/// The peer's addresses (its ICP address, else its host if an address).
pub fn addresses(peer: &Peer) -> Vec<String> {
    match peer.icp_addr {
        Some(a) => vec![a.ip().to_string()],
        None => peer
            .config
            .host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| vec![ip.to_string()])
            .unwrap_or_default(),
    }
}

/// Seconds between an instant and now; an instant never set is shown as
/// Squid shows a time it never set: seconds since the epoch.
fn ago(t: Option<Instant>) -> u64 {
    match t {
        Some(t) => t.elapsed().as_secs(),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

pub(super) fn server_list(s: &Sources<'_>) -> String {
    server_list_of(s.peers)
}

/// `mgr:server_list` for a peer table.
pub fn server_list_of(table: &PeerTable) -> String {
    let now = Instant::now();
    let mut o = String::new();
    for (id, p) in table.peers.iter().enumerate() {
        let c = &p.config;
        let st = p.state().clone();
        let _ = writeln!(o, "\n{:<11}: {}", type_name(c.peer_type), c.name);
        let _ = writeln!(o, "Host       : {}/{}/{}", c.host, c.http_port, c.icp_port);
        let _ = writeln!(o, "Flags      : {}", flags(c).join(" "));
        for (i, a) in addresses(p).iter().enumerate() {
            let _ = writeln!(o, "Address[{i}] : {a}");
        }
        let up = if table.is_up(id, now) { "Up" } else { "Down" };
        let _ = writeln!(o, "Status     : {up}");
        let _ = writeln!(o, "FETCHES    : {}", st.fetches);
        let _ = writeln!(o, "OPEN CONNS : {}", st.open_conns);
        let _ = writeln!(o, "AVG RTT    : {} msec", st.rtt_ms);
        if !c.no_query {
            let _ = writeln!(o, "LAST QUERY : {:>8} seconds ago", ago(st.last_query));
            match st.last_reply {
                Some(t) => {
                    let _ = writeln!(o, "LAST REPLY : {:>8} seconds ago", ago(Some(t)));
                }
                None => {
                    let _ = writeln!(o, "LAST REPLY : none received");
                }
            }
            let _ = writeln!(o, "PINGS SENT : {:>8}", st.pings_sent);
            let _ = writeln!(
                o,
                "PINGS ACKED: {:>8} {:>3}%",
                st.pings_acked,
                percent(st.pings_acked, st.pings_sent)
            );
        }
        let _ = writeln!(
            o,
            "IGNORED    : {:>8} {:>3}%",
            st.replies_ignored,
            percent(st.replies_ignored, st.pings_acked)
        );
        if !c.no_query {
            let _ = writeln!(o, "Histogram of PINGS ACKED:");
            if c.htcp.is_some() {
                let h = htcp_peer(p);
                let _ = writeln!(
                    o,
                    "\tMisses\t{:>8} {:>3}%",
                    h.misses,
                    percent(h.misses, st.pings_acked)
                );
                let _ = writeln!(
                    o,
                    "\tHits\t{:>8} {:>3}%",
                    h.hits,
                    percent(h.hits, st.pings_acked)
                );
            } else {
                for (op, &n) in st.replies_by_opcode.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    let name = u8::try_from(op)
                        .ok()
                        .and_then(Opcode::from_u8)
                        .map_or("ICP_INVALID", Opcode::name);
                    let _ = writeln!(
                        o,
                        "    {:>12.12} : {:>8} {:>3}%",
                        name,
                        n,
                        percent(n, st.pings_acked)
                    );
                }
            }
        }
        // cuttle's own lines (issue 19), only once there is something to
        // say, so a page without them reads as Squid's.
        if st.hits_not_stored > 0 {
            let _ = writeln!(
                o,
                "NOT STORED : {:>8} peer hits under peer_store_threshold",
                st.hits_not_stored
            );
        }
        if st.nearest_chosen > 0 {
            let _ = writeln!(
                o,
                "NEAREST    : {:>8} of several holders, {} over an earlier HIT",
                st.nearest_chosen, st.nearest_over_first
            );
        }
        if c.load_aware {
            let _ = writeln!(o, "LOAD       : {}", load_line(&st.load, st.rtt_ms, now));
        }
        let _ = writeln!(o, "keep-alive ratio: 0%");
    }
    o
}

/// cuttle's line for a `load-aware` peer: what peers/load.rs weighs it by.
fn load_line(m: &crate::peers::load::LoadMeter, rtt_ms: u64, now: Instant) -> String {
    let reported = match m.reported {
        Some((ms, at)) => format!(
            "reported {ms} ms {} s ago",
            now.saturating_duration_since(at).as_secs()
        ),
        None => "reported none".to_string(),
    };
    let load = m
        .load_ms(rtt_ms, now)
        .map_or("unknown".to_string(), |l| format!("{l:.1} ms"));
    format!(
        "service {:.1} ms over {} fetches, {reported}, load {load}",
        m.service_ms, m.samples
    )
}
