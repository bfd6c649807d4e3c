//! `holder_redirect` in the simulator (issue 19): a node whose squid.conf
//! has an accelerator port takes its clients' requests on it, and decides
//! a miss with the proxy's own rule (`peers::holder`: the same conditions,
//! its `holder_redirect` ACLs, its size floor over the sizes it has seen)
//! on the sources selection chose. A redirected request costs the client
//! a round trip to its node and back (`client_latency_ms` twice, the 302's
//! few hundred bytes not counted), then goes to the holder over the path
//! between the client's node and the holder, marked: the holder serves it
//! (from its copy, or fetching it if it no longer holds it) and never
//! redirects it. The node asked stores nothing (it never saw the body);
//! the body's bytes are the holder's, not the node's. With the node's
//! `peer_store_threshold` N, the redirect counts as a reference, and past
//! N the miss is fetched (from the nearest holder) and stored instead.

use std::time::Instant;

use super::engine::{Class, Engine, Served};
use crate::access;
use crate::peers::holder::{accelerates, holder_url, may_redirect, Ask};
use crate::peers::select::Source;

/// Slots of each node's table of sizes seen (as the proxy's `SizesSeen`).
const SIZE_SLOTS: usize = 4096;

/// One node's sizes seen: (tag of the key, size) per slot.
type SizesSeen = Box<[(u32, u64)]>;

/// Every node's redirect state.
pub struct Redirects {
    /// Per node: it has an accelerator port (its clients come in on it).
    accelerated: Vec<bool>,
    /// Per node: accelerated, with `holder_redirect` rules (else the rule
    /// says no to everything, and is not asked: most meshes have none).
    redirecting: Vec<bool>,
    /// Per node, with a size floor: the sizes it has seen, a fixed table
    /// (a tag of the key and the size), a collision forgetting the older.
    sizes: Vec<Option<SizesSeen>>,
    /// A redirected request is being served: its holder does not redirect.
    marked: bool,
    /// The client request being replayed was redirected.
    redirected: bool,
}

/// (slot, tag) of an object's key; the tag is never 0.
fn place(key: &[u8; 16]) -> (usize, u32) {
    let slot = usize::from(u16::from_le_bytes([key[0], key[1]])) % SIZE_SLOTS;
    (slot, u32::from_le_bytes([key[2], key[3], key[4], 0]).max(1))
}

impl Redirects {
    pub fn of(mesh: &super::Mesh) -> Redirects {
        Redirects {
            accelerated: mesh.nodes.iter().map(|n| accelerates(&n.config)).collect(),
            redirecting: mesh
                .nodes
                .iter()
                .map(|n| accelerates(&n.config) && !n.config.holder_redirect.is_empty())
                .collect(),
            sizes: mesh
                .nodes
                .iter()
                .map(|n| {
                    (n.config.holder_redirect_min_size.value > 0)
                        .then(|| vec![(0, 0); SIZE_SLOTS].into_boxed_slice())
                })
                .collect(),
            marked: false,
            redirected: false,
        }
    }

    /// Whether node `at` may redirect at all (most meshes' nodes do not).
    #[inline]
    pub fn redirecting(&self, at: usize) -> bool {
        self.redirecting.get(at).copied().unwrap_or(false)
    }

    /// Whether the client request just replayed was redirected (and forgets it).
    pub fn take_redirected(&mut self) -> bool {
        std::mem::take(&mut self.redirected)
    }

    /// Node `at` fetched the object of `key` (`size` bytes) for a miss: it
    /// has seen its Content-Length, as the proxy notes it.
    pub fn note_size(&mut self, at: usize, key: &[u8; 16], size: u64) {
        if let Some(Some(table)) = self.sizes.get_mut(at) {
            let (slot, tag) = place(key);
            if let Some(s) = table.get_mut(slot) {
                *s = (tag, size);
            }
        }
    }

    fn size_seen(&self, at: usize, key: &[u8; 16]) -> Option<u64> {
        let table = self.sizes.get(at)?.as_ref()?;
        let (slot, tag) = place(key);
        table
            .get(slot)
            .and_then(|&(t, size)| (t == tag).then_some(size))
    }
}

impl Engine<'_> {
    /// The miss of `object` at node `at` (a client's own request arrived
    /// at `now`, its sources selected by `now_ms`) answered with a 302 to
    /// the holder and served by it, when the proxy's rule redirects it;
    /// else `None`. A redirect counts as a reference for the node's
    /// `peer_store_threshold` (a request not redirected is counted by the
    /// caller, where the proxy's fetch counts it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn redirect_to_holder(
        &mut self,
        at: usize,
        object: u32,
        size: u64,
        head: bool,
        client: std::net::IpAddr,
        sources: &[Source],
        (now, now_ms): (Instant, f64),
    ) -> Option<Served> {
        // Only a client's request at its own node: not one a node sends
        // on (a parent's), nor one redirected (marked).
        if !self.redirects.redirecting(at) || self.chain.len() != 1 || self.redirects.marked {
            return None;
        }
        // A stale copy here: the proxy revalidates it, never redirects.
        if self.nodes[at].store.peek(&self.holdings, object).is_some() {
            return None;
        }
        let config = self.nodes[at].config;
        let key = *self.objects.key(object);
        let ask = Ask {
            accelerated: self.redirects.accelerated.get(at).copied().unwrap_or(false),
            get: !head,
            // A trace line says nothing of Range, credentials or
            // only-if-cached; the node asked saw no marker.
            excluded: false,
            marked: false,
            siblings_ok: true,
            size_seen: self.redirects.size_seen(at, &key),
            references: self.thresholds.next(at, &key, now),
        };
        let allowed = || {
            let o = self.objects.get(object);
            let Some(parts) = o.url.as_ref() else {
                return false;
            };
            let req = access::Request {
                client,
                method: "GET",
                scheme: parts.scheme(),
                host: &parts.host,
                port: parts.port,
                path: parts.path(),
                url: &parts.full,
                local_ip: Some(self.nodes[at].address),
                local_port: 0,
                port_name: "",
                dst_addrs: None,
            };
            access::check_with(
                &config.holder_redirect,
                config,
                &req,
                &access::Details::default(),
            )
            .allowed()
        };
        if !may_redirect(config, &ask, allowed) {
            return None;
        }
        let first = sources.first()?;
        let id = first.peer?;
        let peer = config.cache_peers.get(id)?;
        holder_url(first.code, peer.value.public_url.as_deref())?;
        let holder = self.nodes[at].peers.get(id).and_then(|p| p.node)?;
        let path = self.topology.path(at, holder);
        if path.unreachable || holder == at {
            return None;
        }
        self.thresholds.note(at, &key, now);
        // The 302 back to the client and its new request out, then on to
        // the holder along the client's node's path to it.
        let arrive = now_ms + 2.0 * self.mesh.client_latency_ms + path.latency_ms;
        let chain = std::mem::take(&mut self.chain);
        self.redirects.marked = true;
        let got = self.serve(holder, object, size, head, client, arrive);
        self.redirects.marked = false;
        self.chain = chain;
        self.redirects.redirected = true;
        self.stats[at].redirects += 1;
        if got.class == Class::Failed {
            return Some(got);
        }
        self.stats[holder].proxy_bytes += size;
        Some(Served {
            // The holder's copy is a sibling hit for the node asked; what
            // the holder had to fetch counts where it came from.
            class: match got.class {
                Class::Local => Class::Sibling,
                other => other,
            },
            done_ms: got.done_ms + path.latency_ms + path.transfer_ms(size),
            bytes_hops: got.bytes_hops + size as f64 * f64::from(path.hops),
            birth: got.birth,
        })
    }
}

#[cfg(test)]
mod tests {

    use super::super::engine::{Engine, Options};
    use super::super::mesh::Mesh;
    use super::super::tests::get;
    use super::super::trace::{SkipCounts, TraceRequest};
    use super::super::{NodeStats, Report};

    /// Accelerators a, b, c; a and b redirect, c does not; a is nearer to
    /// b than to c. Clients one way `{client}` ms from their node.
    const TRIO: &str = r#"
origin_latency_ms = 50
reply_jitter_ms = 0
client_latency_ms = {client}
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
latency_ms = 20
[[links]]
a = "b"
b = "c"
latency_ms = 5
"#;

    /// Runs `requests` over the trio (`redirect`: a's and b's
    /// holder_redirect lines); the report and each node's counts.
    fn run(
        tag: &str,
        redirect: &str,
        client_ms: f64,
        ttl: Option<u64>,
        requests: &[TraceRequest],
    ) -> (Report, Vec<NodeStats>) {
        let dir =
            std::env::temp_dir().join(format!("cuttle-sim-redir-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let node = |peers: &[(&str, &str)], extra: &str| {
            let mut conf = String::from(
                "http_port 80 accel defaultsite=origin.example\npid_filename none\n\
                 icp_port 3130\nicp_access allow all\ndigest_generation off\ncache_mem 1 MB\n",
            );
            for (address, name) in peers {
                conf.push_str(&format!(
                    "cache_peer {address} sibling 80 3130 public-url=http://{name}.example\n"
                ));
            }
            conf + extra + "\n"
        };
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write(
            "a.conf",
            node(&[("10.0.0.2", "b"), ("10.0.0.3", "c")], redirect),
        );
        write(
            "b.conf",
            node(&[("10.0.0.1", "a"), ("10.0.0.3", "c")], redirect),
        );
        write("c.conf", node(&[], ""));
        write(
            "mesh.toml",
            TRIO.replace("{client}", &client_ms.to_string()),
        );
        let mesh = Mesh::load(&dir.join("mesh.toml")).unwrap();
        let mut engine = Engine::new(
            &mesh,
            Options {
                ttl,
                seed: 0,
                update_hits: None,
            },
        )
        .unwrap();
        for r in requests {
            engine.request(r);
        }
        let report = engine.finish(SkipCounts::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (report, engine.stats().to_vec())
    }

    #[test]
    fn a_miss_the_holder_has_is_redirected_served_by_it_and_not_stored() {
        // b fetches /x; a, having asked its siblings once (for /w: a
        // sibling that never answered is not asked), asks for /x three times.
        let mut trace = vec![
            get(0.0, "10.2.0.1", "/x", 1000),
            get(5.0, "10.1.0.1", "/w", 1000),
        ];
        trace.extend((0..3).map(|i| get(10.0 + f64::from(i), "10.1.0.1", "/x", 1000)));
        let (report, stats) = run("plain", "holder_redirect allow all", 10.0, None, &trace);
        let (a, b) = (&stats[0], &stats[1]);
        // Each counted, each a sibling hit served from b's copy: a never
        // saw the body, so it stores nothing and the next is redirected too.
        assert_eq!((a.redirects, a.sibling_hits, a.local_hits), (3, 3, 0));
        assert_eq!(
            (report.total.redirects, report.total.origin_requests),
            (3, 2)
        );
        // /x at b only, /w at a.
        assert_eq!(
            (report.stored.distinct_objects, report.stored.copies),
            (2, 2)
        );
        // /x's bodies left b only: its own client's and a's three clients'.
        assert_eq!((a.proxy_bytes, b.proxy_bytes), (1000, 4000));
        assert!(report.holder_redirect);
        // The redirect's price: the client's round trip to a (2 x 10 ms)
        // on top of the relay's path; relaying, a stores /x at once.
        let (relayed, relay_stats) = run("relay", "", 10.0, None, &trace);
        assert_eq!(relay_stats[0].redirects, 0);
        assert_eq!(
            (relay_stats[0].sibling_hits, relay_stats[0].local_hits),
            (1, 2)
        );
        assert_eq!(relayed.stored.copies, 3);
        assert_eq!(
            (relay_stats[0].proxy_bytes, relay_stats[1].proxy_bytes),
            (4000, 2000)
        );
        assert!(!relayed.holder_redirect);
    }

    #[test]
    fn with_a_threshold_a_url_is_redirected_n_times_then_fetched_and_stored() {
        // As above, with peer_store_threshold 2: a's first two requests for
        // /x are redirected (and counted), the third is fetched from b and
        // stored, the last two are local hits.
        let mut trace = vec![
            get(0.0, "10.2.0.1", "/x", 1000),
            get(5.0, "10.1.0.1", "/w", 1000),
        ];
        trace.extend((0..5).map(|i| get(10.0 + f64::from(i), "10.1.0.1", "/x", 1000)));
        let redirect = "holder_redirect allow all\npeer_store_threshold 2";
        let (report, stats) = run("threshold", redirect, 10.0, None, &trace);
        let (a, b) = (&stats[0], &stats[1]);
        assert_eq!((a.redirects, a.sibling_hits, a.local_hits), (2, 3, 2));
        assert_eq!(
            (report.total.redirects, report.total.origin_requests),
            (2, 2)
        );
        // /x at a and b, /w at a.
        assert_eq!(
            (report.stored.distinct_objects, report.stored.copies),
            (2, 3)
        );
        // b sent /x to its client, to a's two redirected clients and to a
        // once; a sent /w, the relayed /x and its two local hits.
        assert_eq!((a.proxy_bytes, b.proxy_bytes), (4000, 4000));
    }

    #[test]
    fn a_redirected_request_is_never_redirected_again() {
        // Clients 20 s away (so b's copy, an ICP HIT when a asks, has aged
        // out by the time the client reaches b): b fetched /x at 0, c at
        // 50, every copy lives 100 s; a's client asks at 65 (a asked its
        // siblings before, for /w).
        let trace = [
            get(0.0, "10.2.0.1", "/x", 1000),
            get(10.0, "10.1.0.1", "/w", 1000),
            get(50.0, "10.3.0.1", "/x", 1000),
            get(65.0, "10.1.0.1", "/x", 1000),
        ];
        let (report, stats) = run(
            "twice",
            "holder_redirect allow all",
            20_000.0,
            Some(100),
            &trace,
        );
        let (a, b, c) = (&stats[0], &stats[1], &stats[2]);
        // a sent the client to b; b, its copy stale, would send it on to c
        // (a HIT there) but serves it, relaying c's copy.
        assert_eq!((a.redirects, b.redirects), (1, 0));
        assert_eq!(a.sibling_hits, 1);
        assert_eq!(c.proxy_bytes, 2000, "c's client's and b's");
        assert_eq!(b.proxy_bytes, 2000, "b's client's and a's");
        assert_eq!(report.total.origin_requests, 3);
    }

    #[test]
    fn a_stale_copy_here_is_fetched_again_not_redirected() {
        // a fetched /x at 0, b at 150; copies live 100 s, so at 160 a's is
        // stale and b's a HIT: the proxy revalidates its own copy.
        let trace = [
            get(0.0, "10.1.0.1", "/x", 1000),
            get(150.0, "10.2.0.1", "/x", 1000),
            get(160.0, "10.1.0.1", "/x", 1000),
        ];
        let (report, stats) = run(
            "stale",
            "holder_redirect allow all",
            10.0,
            Some(100),
            &trace,
        );
        assert_eq!((stats[0].redirects, stats[0].sibling_hits), (0, 1));
        assert_eq!(report.total.redirects, 0);
    }
}
