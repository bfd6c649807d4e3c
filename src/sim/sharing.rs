//! Proxy sharing in the simulator (issue 21): with `share_owner =
//! "owner.conf"` in the mesh file the origin has an accelerator in front
//! of it, the owner, whose squid.conf (read by the proxy's own loader)
//! says `share_log on|off [min_size=SIZE] [candidates=N] [lifetime=TIME]
//! [max_memory=SIZE]` and `share_locality NAME CIDR...`. Both sides run
//! the proxy's own code: the owner's log and its answer are
//! `peers::share_log::Sharing` (`answer_offer`, the one rule
//! `http::proxy::share_owner` calls: a list of candidates in the asker's
//! locality when the owner is not in it, for a response of at least
//! `min_size` bytes; the offerer logged for `lifetime` or its offer's
//! ttl; the `max_memory` budget, 1 MiB by default, and 10 entries a
//! resource), on the virtual clock. A node's locality is its `address`'s,
//! the owner's that of its first `http_port` address. Each node keeps the
//! requester's memory the proxy keeps (`offers_to`: `share_offer on` with
//! a `share_offer_url`, to a server learnt to keep a log from an earlier
//! response, or any with `to=all`; the failed candidates it reports in
//! its next offer, which the owner then drops from every resource).
//!
//! A node that gets a list probes its first `probes` candidates at once
//! (each a round trip, at most `probe_timeout`; a candidate holds the
//! object fresh, or answers 504 and counts as failed) and fetches from
//! the quickest holder; the probes that failed before it are noted. When
//! none holds it, it asks the origin again without an offer once every
//! probe has answered. The list's bytes (its head, as the owner writes
//! it) count as bytes the owner sent. The simulator has no pages (a trace
//! line has no Referer), so lists piggybacked on pages are not modelled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use cuttle_protocol::share;

use super::engine::{unix, Class, Engine, Served};
use crate::caching::freshness::is_fresh;
use crate::config::{ListenAddr, OfferTo, Share};
use crate::peers::share_log::{self, Asker, Offered, Offering};

/// The owner's log, the nodes' requester memories and what sharing did.
pub struct Sharing {
    /// The owner's `share_log` and `share_locality` settings.
    owner: Share,
    owner_locality: Option<String>,
    /// The owner's log (the proxy's own).
    log: share_log::Sharing,
    /// Per node: its requester memory (the proxy's own).
    requesters: Vec<share_log::Sharing>,
    /// Per node: its `share_locality` in the owner's config.
    localities: Vec<Option<String>>,
    /// Each node's `share_offer_url`, to the node.
    by_url: HashMap<String, usize>,
    /// Offers the owner received.
    pub offers: u64,
    /// Lists the owner sent, and their bytes.
    pub lists: u64,
    pub list_bytes: u64,
    /// Bodies fetched from a candidate.
    pub share_hits: u64,
    /// Lists after which the origin sent the body after all.
    pub fallbacks: u64,
}

/// What sharing did in a run (the report's line).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub offers: u64,
    pub lists: u64,
    /// The lists' heads on the wire: bytes the owner sent besides bodies.
    pub list_bytes: u64,
    pub share_hits: u64,
    pub fallbacks: u64,
    /// The owner's log at the end: entries, bytes of state.
    pub log_entries: usize,
    pub log_bytes: usize,
}

/// An IMF-fixdate's length (`Sun, 06 Nov 1994 08:49:37 GMT`).
const HTTP_DATE: usize = 29;

/// The bytes of a list's head as the owner writes it
/// (`http::proxy::share_owner`): the status line, a `Link` per candidate,
/// `Cache-Share`, `Last-Modified` and `Date` (the simulator's objects have
/// no ETag), `Cache-Control: no-store`, `Content-Length: 0`, the blank
/// line. Fields every response carries (Via, Server) are left out, as
/// they are from a body's count.
pub fn list_bytes(candidates: &[String], length: u64) -> u64 {
    let field = |name: &str, value: usize| name.len() + 2 + value + 2;
    let links: usize = candidates
        .iter()
        .filter_map(|c| share::encode_duplicate(c))
        .map(|v| field("Link", v.len()))
        .sum();
    let head = share::encode_list(share::List {
        candidates: candidates.len() as u32,
        length: Some(length),
    });
    let bytes = "HTTP/1.1 300 Multiple Choices\r\n".len()
        + links
        + field("Cache-Share", head.len())
        + field("Last-Modified", HTTP_DATE)
        + field("Date", HTTP_DATE)
        + field("Cache-Control", "no-store".len())
        + field("Content-Length", 1)
        + 2;
    bytes as u64
}

impl Sharing {
    /// The mesh's sharing, if it names an owner whose config says
    /// `share_log on`.
    pub fn of(mesh: &super::Mesh) -> Option<Sharing> {
        let owner = mesh.share_owner.as_ref()?;
        let share = &owner.config.share;
        if !share.log.value.on {
            return None;
        }
        let address = owner
            .config
            .http_ports
            .iter()
            .find_map(|p| match p.value.address {
                ListenAddr::Ip(ip) => Some(ip),
                _ => None,
            });
        let locality =
            |ip: Option<IpAddr>| ip.and_then(|ip| share.locality_of(ip)).map(str::to_string);
        let mut by_url = HashMap::new();
        for (i, n) in mesh.nodes.iter().enumerate() {
            if let Some(url) = &n.config.share.offer_url.value {
                by_url.entry(url.clone()).or_insert(i);
            }
        }
        Some(Sharing {
            owner: share.clone(),
            owner_locality: locality(address),
            log: share_log::Sharing::with_budget(share.log.value.max_memory),
            requesters: mesh
                .nodes
                .iter()
                .map(|_| share_log::Sharing::default())
                .collect(),
            localities: mesh
                .nodes
                .iter()
                .map(|n| locality(Some(n.address)))
                .collect(),
            by_url,
            offers: 0,
            lists: 0,
            list_bytes: 0,
            share_hits: 0,
            fallbacks: 0,
        })
    }

    /// The run's figures.
    pub fn summary(&self) -> Summary {
        let (log_entries, log_bytes) = self.log.size();
        Summary {
            offers: self.offers,
            lists: self.lists,
            list_bytes: self.list_bytes,
            share_hits: self.share_hits,
            fallbacks: self.fallbacks,
            log_entries,
            log_bytes,
        }
    }
}

/// What the owner's answer to a fetch from the origin came to.
pub(super) enum Shared {
    /// No list: the origin sends the body.
    Body,
    /// A candidate sent it.
    Hit(Served),
    /// A list whose candidates all failed: the origin sends the body
    /// from this time on (ms).
    Fallback(f64),
}

/// A probe's answer: when (ms), from which candidate (its URL), and the
/// birth of the fresh copy it holds (`None`: 504, or no answer in time).
struct Probe {
    answered: f64,
    candidate: String,
    node: Option<usize>,
    held: Option<u64>,
}

impl Engine<'_> {
    /// Node `at` is about to fetch `object` (`size` bytes; a HEAD when
    /// `head`) from the origin at `now_ms`: what proxy sharing makes of it.
    pub(super) fn shared(
        &mut self,
        at: usize,
        object: u32,
        (size, head): (u64, bool),
        now_ms: f64,
        epoch: f64,
    ) -> Shared {
        let now = self.instant(now_ms);
        let Some(sharing) = &mut self.sharing else {
            return Shared::Body;
        };
        let node = &self.mesh.nodes[at];
        let found = self.objects.get(object);
        let Some(url) = &found.url else {
            return Shared::Body;
        };
        let server = format!("{}:{}", url.host, url.port);
        let requester = &sharing.requesters[at];
        let offers = !head && requester.offers_to(&node.config.share, &server);
        // Every response of the owner says `Cache-Share`: a requester
        // learns that this server keeps a log (with `to=all` it offers
        // anyway, and the memory's 1,024 servers are not searched).
        let offer = &node.config.share.offer.value;
        if offer.on && offer.to == OfferTo::Owners {
            requester.note_owner(&server);
        }
        let Some(proxy_url) = node
            .config
            .share
            .offer_url
            .value
            .as_deref()
            .filter(|_| offers)
        else {
            return Shared::Body;
        };
        sharing.offers += 1;
        let failed = requester.take_failed(share::MAX_FAILED, now);
        sharing.log.drop_failed(&failed);
        let offering = Offering {
            asker: Asker {
                proxy_url,
                locality: sharing.localities[at].as_deref(),
                owner_locality: sharing.owner_locality.as_deref(),
            },
            ip: node.address,
            load: None,
            ttl: share::DEFAULT_TTL,
        };
        let response = Offered {
            ok: true,
            length: Some(size),
            shareable: true,
        };
        let candidates = sharing.log.answer_offer(
            &found.full,
            &offering,
            &response,
            &sharing.owner.log.value,
            now,
        );
        if candidates.is_empty() {
            return Shared::Body;
        }
        sharing.lists += 1;
        sharing.list_bytes += list_bytes(&candidates, size);
        let origin = self.topology.origin(at);
        let listed = now_ms + 2.0 * origin.latency_ms;
        let timeout_ms = offer.probe_timeout.as_secs_f64() * 1000.0;
        let mut probes: Vec<Probe> = candidates
            .iter()
            .take(offer.probes as usize)
            .map(|c| {
                let node = sharing.by_url.get(c).copied();
                let path = node.map(|n| self.topology.path(n, at));
                let rtt = path
                    .filter(|p| !p.unreachable)
                    .map_or(f64::INFINITY, |p| 2.0 * p.latency_ms);
                let answered = listed + rtt.min(timeout_ms);
                let held = node
                    .filter(|_| rtt <= timeout_ms)
                    .and_then(|n| self.nodes[n].store.peek(&self.holdings, object))
                    .filter(|h| is_fresh(&h.times, unix(epoch, answered)))
                    .map(|h| u64::from(h.times.date));
                Probe {
                    answered,
                    candidate: c.clone(),
                    node,
                    held,
                }
            })
            .collect();
        probes.sort_by(|a, b| a.answered.total_cmp(&b.answered));
        let winner = probes.iter().position(|p| p.held.is_some());
        // The probes that failed before the winner answered are noted, to
        // be reported in the next offer; the slower ones are not waited for.
        for p in &probes[..winner.unwrap_or(probes.len())] {
            let when = now + Duration::from_nanos(((p.answered - now_ms).max(0.0) * 1e6) as u64);
            sharing.requesters[at].note_failed(&p.candidate, when);
        }
        let won = winner.and_then(|w| probes.get(w));
        let Some((c, answered, birth)) = won.and_then(|p| Some((p.node?, p.answered, p.held?)))
        else {
            sharing.fallbacks += 1;
            let all_answered = probes.iter().map(|p| p.answered).fold(listed, f64::max);
            return Shared::Fallback(all_answered);
        };
        sharing.share_hits += 1;
        let p = self.topology.path(c, at);
        self.stats[c].peer_requests += 1;
        self.nodes[c].store.touch(&self.holdings, object);
        Shared::Hit(Served {
            class: Class::Sibling,
            done_ms: answered + 2.0 * p.latency_ms + p.transfer_ms(size),
            bytes_hops: size as f64 * f64::from(p.hops),
            birth,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::engine::{Engine, Options};
    use super::super::mesh::Mesh;
    use super::super::report::Report;
    use super::super::tests::get;
    use super::super::trace::{SkipCounts, TraceRequest};
    use super::list_bytes;

    /// a and b 5 ms apart, c 100 ms from a; the origin 50 ms from each.
    const TRIO: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
share_owner = "owner.conf"
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
[nodes.c]
config = "c.conf"
address = "10.0.0.3"
clients = ["10.3.0.0/16"]
[[links]]
a = "a"
b = "b"
latency_ms = 5
[[links]]
a = "a"
b = "c"
latency_ms = 100
"#;

    /// a and b near each other, c far, the owner at home.
    const LOCALITIES: &str = "share_locality near 10.0.0.1 10.0.0.2\n\
                              share_locality far 10.0.0.3\n\
                              share_locality home 192.0.2.1\n";

    /// A scratch directory with the mesh file `mesh`, the owner's
    /// squid.conf (`share_log` and `share_locality` lines `owner`) and a
    /// squid.conf per node (`node`'s lines, `ADDR` its address, then
    /// `extra`'s lines for the nodes it names).
    fn lab(name: &str, mesh: &str, owner: &str, node: &str, extra: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("owner.conf"),
            format!("http_port 192.0.2.1:80 accel vhost\npid_filename none\n{owner}"),
        )
        .unwrap();
        for (n, address) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
            let more = extra.iter().find(|(e, _)| *e == n).map_or("", |(_, l)| *l);
            let lines = node.replace("ADDR", &format!("10.0.0.{address}"));
            std::fs::write(
                dir.join(format!("{n}.conf")),
                format!("http_port 3128\npid_filename none\n{lines}{more}"),
            )
            .unwrap();
        }
        std::fs::write(dir.join("mesh.toml"), mesh).unwrap();
        dir
    }

    fn run<'m>(mesh: &'m Mesh, trace: &[TraceRequest]) -> (Engine<'m>, Report) {
        let mut engine = Engine::new(mesh, Options::default()).unwrap();
        for r in trace {
            engine.request(r);
        }
        let report = engine.finish(SkipCounts::default()).unwrap();
        (engine, report)
    }

    fn load(dir: &PathBuf) -> Mesh {
        let mesh = Mesh::load(&dir.join("mesh.toml")).unwrap();
        let _ = std::fs::remove_dir_all(dir);
        mesh
    }

    const OFFERS_TO_ALL: &str = "share_offer on to=all\nshare_offer_url http://ADDR:3128/\n";

    #[test]
    fn a_node_in_the_askers_locality_serves_what_the_owner_logged() {
        let owner = format!("share_log on\n{LOCALITIES}");
        let mesh = load(&lab("sharing", TRIO, &owner, OFFERS_TO_ALL, &[]));
        let trace = [
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(10.0, "10.2.0.1", "/big", 100_000),
            get(20.0, "10.3.0.1", "/big", 100_000),
            get(30.0, "10.1.0.1", "/small", 5_000),
            get(40.0, "10.2.0.1", "/small", 5_000),
        ];
        let (engine, report) = run(&mesh, &trace);
        let sharing = engine.sharing.as_ref().expect("the owner keeps a log");
        assert_eq!(
            (sharing.lists, sharing.share_hits, sharing.fallbacks),
            (1, 1, 0)
        );
        let row = |name: &str| report.nodes.iter().find(|r| r.node == name).unwrap();
        // b got /big from a; c, in another locality, and /small (under
        // 10 KB) from the origin.
        assert_eq!(
            [row("a"), row("b"), row("c")].map(|r| r.origin_requests),
            [2, 1, 1]
        );
        assert_eq!(row("b").hit_ratio_sibling, 0.5);
        assert_eq!(row("a").peer_requests, 1);
        assert_eq!(report.total.origin_bytes, 210_000);
        // The list counts as bytes leaving the owner.
        let list = list_bytes(&["http://10.0.0.1:3128/".to_string()], 100_000);
        assert!((200..1000).contains(&list), "{list}");
        assert_eq!(report.sharing.map(|s| s.list_bytes), Some(list));
        assert_eq!(report.owner_bytes(), 210_000 + list);
        assert!(report.table().contains("1 lists"), "{}", report.table());
    }

    #[test]
    fn without_localities_nothing_is_nearer_than_the_owner() {
        let mesh = load(&lab("nolocal", TRIO, "share_log on\n", OFFERS_TO_ALL, &[]));
        let trace = [
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(10.0, "10.2.0.1", "/big", 100_000),
        ];
        let (engine, report) = run(&mesh, &trace);
        assert_eq!(engine.sharing.as_ref().map(|s| s.lists), Some(0));
        assert_eq!(report.total.origin_bytes, 200_000);
        // share_log off: no owner at all.
        let off = format!("share_log off\n{LOCALITIES}");
        let mesh = load(&lab("logoff", TRIO, &off, OFFERS_TO_ALL, &[]));
        let (engine, report) = run(&mesh, &trace);
        assert!(engine.sharing.is_none());
        assert!(report.sharing.is_none());
    }

    #[test]
    fn the_owners_share_log_line_sets_size_length_and_lifetime() {
        let owner =
            format!("share_log on min_size=4KB candidates=1 lifetime=60\n{LOCALITIES}share_locality near 10.0.0.3\n");
        let mesh = load(&lab("settings", TRIO, &owner, OFFERS_TO_ALL, &[]));
        let trace = [
            // 5,000 bytes is over min_size=4KB: c gets a list naming a,
            // b one naming c only (candidates=1, the newest first).
            get(0.0, "10.1.0.1", "/small", 5_000),
            get(1.0, "10.3.0.1", "/small", 5_000),
            get(2.0, "10.2.0.1", "/small", 5_000),
            // a's entry for /big is gone after 60 s.
            get(10.0, "10.1.0.1", "/big", 100_000),
            get(71.0, "10.2.0.1", "/big", 100_000),
        ];
        let (engine, report) = run(&mesh, &trace);
        let sharing = engine.sharing.as_ref().expect("the owner keeps a log");
        assert_eq!((sharing.lists, sharing.share_hits), (2, 2));
        let one = |node: u8| list_bytes(&[format!("http://10.0.0.{node}:3128/")], 5_000);
        assert_eq!(sharing.list_bytes, one(1) + one(3));
        assert_eq!(report.total.origin_bytes, 5_000 + 200_000);
    }

    #[test]
    fn the_owners_max_memory_bounds_its_log() {
        // An entry here is its URL (26 bytes), its proxy URL (21) and 64:
        // 111 bytes, so 1 KB holds 9 of them.
        let owner = format!("share_log on max_memory=1KB\n{LOCALITIES}");
        let mesh = load(&lab("budget", TRIO, &owner, OFFERS_TO_ALL, &[]));
        let mut trace: Vec<_> = (0..10)
            .map(|n| get(f64::from(n), "10.1.0.1", &format!("/big{n}"), 100_000))
            .collect();
        // b asks for the oldest (gone: the body) and the newest (a list).
        trace.push(get(20.0, "10.2.0.1", "/big0", 100_000));
        trace.push(get(21.0, "10.2.0.1", "/big9", 100_000));
        let (engine, _) = run(&mesh, &trace);
        let sharing = engine.sharing.as_ref().expect("the owner keeps a log");
        assert_eq!((sharing.lists, sharing.share_hits), (1, 1));
        let summary = sharing.summary();
        assert_eq!((summary.log_entries, summary.log_bytes), (9, 9 * 111));
    }

    #[test]
    fn a_candidate_that_failed_a_probe_leaves_the_log_at_the_next_offer() {
        let owner = format!("share_log on\n{LOCALITIES}share_locality near 10.0.0.3\n");
        // a keeps nothing over 50 KB, but it offered: it is logged.
        let small = "maximum_object_size 50 KB\nmaximum_object_size_in_memory 50 KB\n";
        let mesh = load(&lab("failed", TRIO, &owner, OFFERS_TO_ALL, &[("a", small)]));
        let trace = [
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(1.0, "10.1.0.1", "/other", 100_000),
            // b's probe of a fails: b gets /big from the origin.
            get(2.0, "10.2.0.1", "/big", 100_000),
            // b's next offer reports a: the owner drops it everywhere,
            // so /other comes with the body, not a list naming a.
            get(3.0, "10.2.0.1", "/other", 100_000),
            // c is sent to b, which holds /other.
            get(4.0, "10.3.0.1", "/other", 100_000),
        ];
        let (engine, report) = run(&mesh, &trace);
        let sharing = engine.sharing.as_ref().expect("the owner keeps a log");
        assert_eq!(
            (sharing.lists, sharing.share_hits, sharing.fallbacks),
            (2, 1, 1)
        );
        let row = |name: &str| report.nodes.iter().find(|r| r.node == name).unwrap();
        assert_eq!(row("b").peer_requests, 1);
        assert_eq!(report.total.origin_bytes, 400_000);
    }

    #[test]
    fn a_node_offers_to_a_server_it_learnt_keeps_a_log() {
        let owner = format!("share_log on\n{LOCALITIES}");
        let to_owners = "share_offer on\nshare_offer_url http://ADDR:3128/\n";
        let mesh = load(&lab("learnt", TRIO, &owner, to_owners, &[]));
        let trace = [
            // a's first request to the server carries no offer: not logged.
            get(0.0, "10.1.0.1", "/big", 100_000),
            get(1.0, "10.1.0.1", "/big2", 100_000),
            get(2.0, "10.2.0.1", "/big", 100_000),
            get(3.0, "10.2.0.1", "/big2", 100_000),
        ];
        let (engine, _) = run(&mesh, &trace);
        let sharing = engine.sharing.as_ref().expect("the owner keeps a log");
        assert_eq!(
            (sharing.offers, sharing.lists, sharing.share_hits),
            (2, 1, 1)
        );
        // Without share_offer_url nothing is offered.
        let no_url = "share_offer on to=all\n";
        let mesh = load(&lab("nourl", TRIO, &owner, no_url, &[]));
        let (engine, _) = run(&mesh, &trace);
        assert_eq!(engine.sharing.as_ref().map(|s| s.offers), Some(0));
    }

    #[test]
    fn the_owners_config_errors_name_its_file_and_line() {
        let dir = lab(
            "badowner",
            TRIO,
            "share_log on min_size=lots\n",
            OFFERS_TO_ALL,
            &[],
        );
        let e = Mesh::load(&dir.join("mesh.toml")).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            e.contains("share_owner") && e.contains("owner.conf:3"),
            "{e}"
        );
    }
}
