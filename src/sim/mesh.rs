//! Mesh files: the nodes of a simulated (or lab) mesh, each with its own
//! squid.conf, and the network between them, as TOML:
//!
//! ```toml
//! origin_latency_ms = 80          # node -> origin, one way, unless a link says otherwise
//! [nodes.pop1]
//! config = "pop1.conf"            # path relative to MESH.toml
//! address = "10.0.1.1"            # the address other nodes' cache_peer lines use for it
//! clients = ["10.1.0.0/16"]       # trace client addresses served by this node
//! kind = "cuttle"                 # or "squid" (which program the mesh lab starts)
//! origin_via = "igr1"             # reach the origin through this node (default: directly)
//! service_ms = 0.5                # per-request service time (FIFO), simulator only
//! [[links]]
//! a = "pop1"
//! b = "igr1"
//! latency_ms = 4
//! bandwidth_mbps = 1000           # optional: no transfer time on the link without it
//! ```
//!
//! `origin_bandwidth_mbps` (top level, optional) is the bandwidth of each
//! node's own path to the origin. `reply_jitter_ms` (top level, default
//! [`DEFAULT_REPLY_JITTER_MS`]) delays each ICP/HTCP reply by a seeded
//! uniform draw in `[0, reply_jitter_ms)`: the scheduling noise that
//! decides which of several equally near peers answers first.
//! `client_latency_ms` (top level, default 0) is one way between a node
//! and its clients; only a redirect (`holder_redirect`) pays it, twice.
//! `share_owner` (top level, optional) names the squid.conf of the
//! accelerator in front of the origin, proxy sharing's owner
//! (`sim::sharing`). Hops between nodes are the links of the
//! shortest-latency path (see `topology`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{self, Config, LoadOptions};

/// Which program a node is in the real mesh lab (the simulator runs
/// cuttle's decision code for both, with each node's own squid.conf; the
/// one difference it models: a Squid garbles the Squid digests it reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Cuttle,
    Squid,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeshFile {
    #[serde(default = "default_origin_latency")]
    origin_latency_ms: f64,
    #[serde(default)]
    origin_bandwidth_mbps: Option<f64>,
    nodes: BTreeMap<String, NodeFile>,
    #[serde(default)]
    links: Vec<LinkFile>,
    #[serde(default = "default_reply_jitter")]
    reply_jitter_ms: f64,
    #[serde(default)]
    client_latency_ms: f64,
    /// The owner's squid.conf: the accelerator in front of the origin,
    /// whose `share_log` and `share_locality` lines proxy sharing follows
    /// (`sim::sharing`).
    #[serde(default)]
    share_owner: Option<PathBuf>,
}

/// The reply jitter when the mesh file says nothing: the spread of a
/// busy proxy's event loop on a LAN or loopback (a fraction of a
/// millisecond), enough to split ties between equally near peers and too
/// small to reorder peers whose links differ by a millisecond or more.
pub const DEFAULT_REPLY_JITTER_MS: f64 = 0.2;

fn default_reply_jitter() -> f64 {
    DEFAULT_REPLY_JITTER_MS
}

fn default_origin_latency() -> f64 {
    80.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    config: PathBuf,
    address: IpAddr,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    origin_via: Option<String>,
    #[serde(default = "default_service_ms")]
    service_ms: f64,
}

/// A proxy's own time per request when the mesh file says nothing: small
/// beside any link latency.
pub const DEFAULT_SERVICE_MS: f64 = 0.5;

fn default_service_ms() -> f64 {
    DEFAULT_SERVICE_MS
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkFile {
    a: String,
    b: String,
    latency_ms: f64,
    #[serde(default)]
    bandwidth_mbps: Option<f64>,
}

/// An address range of trace clients (`10.1.0.0/16`, a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRange {
    pub network: IpAddr,
    pub prefix: u8,
}

impl ClientRange {
    pub fn parse(text: &str) -> Result<ClientRange, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0..={max}"))?,
        };
        Ok(ClientRange { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            let keep = u32::from(prefix);
            let shift = u32::from(width) - keep;
            if keep == 0 {
                0
            } else {
                (bits >> shift) << shift
            }
        }
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The node of each trace client, remembered (cleared when it holds
/// `limit` addresses: memory must not grow with the trace). A client is
/// remembered by its address cut to the longest prefix of any node's
/// client ranges: the bits below it cannot change which range holds it,
/// so a trace with a fresh address per request still finds its node here.
pub(crate) struct ClientNodes {
    by_prefix: hashbrown::HashMap<IpAddr, Option<usize>>,
    v4_prefix: u8,
    v6_prefix: u8,
    limit: usize,
}

impl ClientNodes {
    pub(crate) fn new(mesh: &Mesh, limit: usize) -> ClientNodes {
        let longest = |v4: bool| {
            let ranges = mesh.nodes.iter().flat_map(|n| &n.clients);
            ranges
                .filter(|r| r.network.is_ipv4() == v4)
                .map(|r| r.prefix)
                .max()
                .unwrap_or(0)
        };
        ClientNodes {
            by_prefix: hashbrown::HashMap::default(),
            v4_prefix: longest(true),
            v6_prefix: longest(false),
            limit,
        }
    }

    /// [`Mesh::node_for_client`] of `ip`.
    pub(crate) fn node(&mut self, mesh: &Mesh, ip: IpAddr) -> Option<usize> {
        let key = match ip {
            IpAddr::V4(a) => {
                let cut = u32::from(a).checked_shr(32 - u32::from(self.v4_prefix));
                let bits = cut.map_or(0, |c| c << (32 - u32::from(self.v4_prefix)));
                IpAddr::V4(bits.into())
            }
            IpAddr::V6(a) => {
                let cut = u128::from(a).checked_shr(128 - u32::from(self.v6_prefix));
                let bits = cut.map_or(0, |c| c << (128 - u32::from(self.v6_prefix)));
                IpAddr::V6(bits.into())
            }
        };
        if self.by_prefix.len() >= self.limit {
            self.by_prefix.clear();
        }
        *self
            .by_prefix
            .entry(key)
            .or_insert_with(|| mesh.node_for_client(key))
    }
}

/// One node of a mesh.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub config_path: PathBuf,
    pub config: Config,
    pub address: IpAddr,
    pub clients: Vec<ClientRange>,
    pub kind: Kind,
    /// The node through which this one reaches the origin (`None`:
    /// directly, one hop plus the origin latency).
    pub origin_via: Option<usize>,
    /// The node's service time per request in the simulator (FIFO).
    pub service_ms: f64,
}

/// A link between two nodes (indexes into [`Mesh::nodes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub a: usize,
    pub b: usize,
    pub latency_ms: f64,
    pub bandwidth_mbps: Option<f64>,
}

/// A mesh read from its file, every node's squid.conf loaded.
#[derive(Debug)]
pub struct Mesh {
    pub path: PathBuf,
    pub origin_latency_ms: f64,
    pub origin_bandwidth_mbps: Option<f64>,
    /// In name order (the TOML table's keys, sorted).
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// Each ICP/HTCP reply is delayed by a uniform draw in `[0, this)`.
    pub reply_jitter_ms: f64,
    /// One way between a node and its clients: what a redirect's extra
    /// round trip costs (the 302 back, the client's new request out).
    pub client_latency_ms: f64,
    /// `share_owner = "owner.conf"`: the accelerator in front of the
    /// origin, its squid.conf loaded (`sim::sharing`).
    pub share_owner: Option<Owner>,
}

/// The accelerator in front of the origin (proxy sharing's owner).
#[derive(Debug)]
pub struct Owner {
    pub config_path: PathBuf,
    pub config: Config,
}

/// `path`'s squid.conf, read by the proxy's own loader; its first error
/// names the mesh file, `what` and the squid.conf's file:line.
fn load_config(mesh: &Path, what: &str, path: &Path) -> Result<Config, String> {
    let loaded = config::load_file(path, &LoadOptions::default());
    match loaded
        .diagnostics
        .iter()
        .find(|d| d.severity == config::Severity::Error)
    {
        Some(error) => Err(format!("{} ({what}): {error}", mesh.display())),
        None => Ok(loaded.config),
    }
}

impl Mesh {
    /// Reads `path` and each node's squid.conf (relative to `path`'s
    /// directory). Errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Mesh, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Mesh::from_str(&text, path)
    }

    /// [`Mesh::load`] of `text` as if read from `path`.
    pub fn from_str(text: &str, path: &Path) -> Result<Mesh, String> {
        let file: MeshFile =
            toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let names: Vec<&String> = file.nodes.keys().collect();
        let index = |name: &str, what: &str| -> Result<usize, String> {
            names
                .iter()
                .position(|n| n.as_str() == name)
                .ok_or_else(|| format!("{}: {what} names no node {name:?}", path.display()))
        };
        let mut nodes = Vec::with_capacity(file.nodes.len());
        for (name, node) in &file.nodes {
            let config_path = dir.join(&node.config);
            let config = load_config(path, &format!("node {name}"), &config_path)?;
            let clients = node
                .clients
                .iter()
                .map(|c| ClientRange::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: node {name}: clients: {e}", path.display()))?;
            if !(node.service_ms.is_finite() && node.service_ms >= 0.0) {
                return Err(format!(
                    "{}: node {name}: service_ms must be 0 or more",
                    path.display()
                ));
            }
            let origin_via = match &node.origin_via {
                Some(via) => Some(index(via, &format!("node {name}'s origin_via"))?),
                None => None,
            };
            nodes.push(Node {
                name: name.clone(),
                config_path,
                config,
                address: node.address,
                clients,
                kind: node.kind,
                origin_via,
                service_ms: node.service_ms,
            });
        }
        let mut links = Vec::with_capacity(file.links.len());
        for link in &file.links {
            let a = index(&link.a, "a link")?;
            let b = index(&link.b, "a link")?;
            if !(link.latency_ms.is_finite() && link.latency_ms >= 0.0) {
                return Err(format!(
                    "{}: link {}-{}: latency_ms must be 0 or more",
                    path.display(),
                    link.a,
                    link.b
                ));
            }
            links.push(Link {
                a,
                b,
                latency_ms: link.latency_ms,
                bandwidth_mbps: link.bandwidth_mbps,
            });
        }
        for (key, value) in [
            ("reply_jitter_ms", file.reply_jitter_ms),
            ("client_latency_ms", file.client_latency_ms),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{}: {key} must be 0 or more", path.display()));
            }
        }
        let share_owner = match &file.share_owner {
            Some(owner) => {
                let config_path = dir.join(owner);
                let config = load_config(path, "share_owner", &config_path)?;
                Some(Owner {
                    config_path,
                    config,
                })
            }
            None => None,
        };
        Ok(Mesh {
            reply_jitter_ms: file.reply_jitter_ms,
            client_latency_ms: file.client_latency_ms,
            share_owner,
            path: path.to_path_buf(),
            origin_latency_ms: file.origin_latency_ms,
            origin_bandwidth_mbps: file.origin_bandwidth_mbps,
            nodes,
            links,
        })
    }

    /// The node that serves trace client `ip`: the first (in name order)
    /// whose `clients` contain it.
    pub fn node_for_client(&self, ip: IpAddr) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.clients.iter().any(|c| c.contains(ip)))
    }

    /// The node whose `address` is `ip` (what a cache_peer line names).
    pub fn node_at(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.address == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ranges_match_by_prefix() {
        let r = ClientRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains("10.1.200.3".parse().unwrap()));
        assert!(!r.contains("10.2.0.1".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
        assert!(ClientRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap()));
        assert!(ClientRange::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(ClientRange::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn a_mesh_file_loads_its_nodes_configs_and_names_its_errors() {
        let dir = std::env::temp_dir().join(format!("cuttle-mesh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.conf"), "http_port 3128\npid_filename none\n").unwrap();
        std::fs::write(
            dir.join("b.conf"),
            "http_port 3128\npid_filename none\ncache_peer 10.0.0.1 sibling 3128 3130\n",
        )
        .unwrap();
        let path = dir.join("mesh.toml");
        let text = r#"
origin_latency_ms = 50
[nodes.a]
config = "a.conf"
address = "10.0.0.1"
clients = ["10.1.0.0/16"]
[nodes.b]
config = "b.conf"
address = "10.0.0.2"
clients = ["10.2.0.0/16"]
kind = "squid"
origin_via = "a"
[[links]]
a = "a"
b = "b"
latency_ms = 4
bandwidth_mbps = 1000
"#;
        let mesh = Mesh::from_str(text, &path).unwrap();
        assert_eq!(mesh.nodes.len(), 2);
        assert_eq!(mesh.origin_latency_ms, 50.0);
        assert_eq!(mesh.nodes[1].kind, Kind::Squid);
        assert_eq!(mesh.nodes[1].origin_via, Some(0));
        assert_eq!(mesh.nodes[1].config.cache_peers.len(), 1);
        assert_eq!(mesh.node_for_client("10.2.3.4".parse().unwrap()), Some(1));
        assert_eq!(mesh.node_at("10.0.0.1".parse().unwrap()), Some(0));
        let bad = text.replace("b = \"b\"", "b = \"c\"");
        let e = Mesh::from_str(&bad, &path).unwrap_err();
        assert!(e.contains("a link names no node \"c\""), "{e}");
        assert_eq!(mesh.reply_jitter_ms, DEFAULT_REPLY_JITTER_MS);
        let jittery = format!("reply_jitter_ms = 0.5\n{text}");
        assert_eq!(
            Mesh::from_str(&jittery, &path).unwrap().reply_jitter_ms,
            0.5
        );
        let e = Mesh::from_str(&format!("reply_jitter_ms = -1\n{text}"), &path).unwrap_err();
        assert!(e.contains("reply_jitter_ms must be 0 or more"), "{e}");
        assert_eq!(mesh.client_latency_ms, 0.0);
        let e = Mesh::from_str(&format!("client_latency_ms = -5\n{text}"), &path).unwrap_err();
        assert!(e.contains("client_latency_ms must be 0 or more"), "{e}");
        let e = Mesh::from_str(&text.replace("a.conf", "missing.conf"), &path).unwrap_err();
        assert!(e.contains("missing.conf"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
