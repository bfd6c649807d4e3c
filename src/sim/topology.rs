//! The network of a mesh as the simulator uses it: for every pair of nodes
//! the shortest-latency path (Dijkstra over the links), its one-way
//! latency, its hops (links crossed) and its transfer time per byte (the
//! sum over its links of 1 / bandwidth); and for every node its path to
//! the origin: one hop of `origin_latency_ms` (at `origin_bandwidth_mbps`)
//! directly, or its path to `origin_via` followed by that node's path.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::mesh::Mesh;

/// One way along a path.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Path {
    pub latency_ms: f64,
    pub hops: u32,
    /// Seconds per byte of transfer (0: no bandwidth limit known).
    pub secs_per_byte: f64,
    /// No path exists (the nodes are not connected).
    pub unreachable: bool,
}

impl Path {
    fn then(self, next: Path) -> Path {
        Path {
            latency_ms: self.latency_ms + next.latency_ms,
            hops: self.hops + next.hops,
            secs_per_byte: self.secs_per_byte + next.secs_per_byte,
            unreachable: self.unreachable || next.unreachable,
        }
    }

    /// Milliseconds for `bytes` to cross the path's links.
    pub fn transfer_ms(&self, bytes: u64) -> f64 {
        bytes as f64 * self.secs_per_byte * 1000.0
    }
}

fn secs_per_byte(bandwidth_mbps: Option<f64>) -> f64 {
    match bandwidth_mbps {
        Some(mbps) if mbps > 0.0 && mbps.is_finite() => 8.0 / (mbps * 1e6),
        _ => 0.0,
    }
}

/// All pairs' paths and each node's path to the origin.
#[derive(Debug, Clone)]
pub struct Topology {
    n: usize,
    paths: Vec<Path>,
    origin: Vec<Path>,
}

#[derive(PartialEq)]
struct Visit {
    latency: f64,
    hops: u32,
    node: usize,
}

impl Eq for Visit {}

impl Ord for Visit {
    fn cmp(&self, other: &Self) -> Ordering {
        // A min-heap on latency, then hops.
        other
            .latency
            .total_cmp(&self.latency)
            .then(other.hops.cmp(&self.hops))
    }
}

impl PartialOrd for Visit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Topology {
    /// The paths of `mesh`; an error when `origin_via` goes round in a
    /// circle or names a node that cannot be reached.
    pub fn of(mesh: &Mesh) -> Result<Topology, String> {
        let n = mesh.nodes.len();
        let mut adjacent: Vec<Vec<(usize, Path)>> = vec![Vec::new(); n];
        for link in &mesh.links {
            let step = Path {
                latency_ms: link.latency_ms,
                hops: 1,
                secs_per_byte: secs_per_byte(link.bandwidth_mbps),
                unreachable: false,
            };
            adjacent[link.a].push((link.b, step));
            adjacent[link.b].push((link.a, step));
        }
        let mut paths = vec![
            Path {
                unreachable: true,
                ..Path::default()
            };
            n * n
        ];
        for source in 0..n {
            let row = &mut paths[source * n..(source + 1) * n];
            row[source] = Path::default();
            let mut done = vec![false; n];
            let mut heap = BinaryHeap::new();
            heap.push(Visit {
                latency: 0.0,
                hops: 0,
                node: source,
            });
            while let Some(Visit { node, .. }) = heap.pop() {
                if done[node] {
                    continue;
                }
                done[node] = true;
                let here = row[node];
                for &(next, step) in &adjacent[node] {
                    let via = here.then(step);
                    let known = row[next];
                    let better = known.unreachable
                        || via.latency_ms < known.latency_ms
                        || (via.latency_ms == known.latency_ms && via.hops < known.hops);
                    if !done[next] && better {
                        row[next] = via;
                        heap.push(Visit {
                            latency: via.latency_ms,
                            hops: via.hops,
                            node: next,
                        });
                    }
                }
            }
        }
        let direct = Path {
            latency_ms: mesh.origin_latency_ms,
            hops: 1,
            secs_per_byte: secs_per_byte(mesh.origin_bandwidth_mbps),
            unreachable: false,
        };
        let mut origin = Vec::with_capacity(n);
        for start in 0..n {
            let mut path = Path::default();
            let mut at = start;
            let mut seen = vec![false; n];
            loop {
                if seen[at] {
                    return Err(format!(
                        "{}: origin_via of node {} goes round in a circle",
                        mesh.path.display(),
                        mesh.nodes[start].name
                    ));
                }
                seen[at] = true;
                match mesh.nodes[at].origin_via {
                    Some(via) if via != at => {
                        let step = paths[at * n + via];
                        if step.unreachable {
                            return Err(format!(
                                "{}: node {} has no links to its origin_via {}",
                                mesh.path.display(),
                                mesh.nodes[at].name,
                                mesh.nodes[via].name
                            ));
                        }
                        path = path.then(step);
                        at = via;
                    }
                    _ => {
                        path = path.then(direct);
                        break;
                    }
                }
            }
            origin.push(path);
        }
        Ok(Topology { n, paths, origin })
    }

    /// The shortest-latency path from `a` to `b`.
    pub fn path(&self, a: usize, b: usize) -> Path {
        self.paths[a * self.n + b]
    }

    /// Node `a`'s path to the origin.
    pub fn origin(&self, a: usize) -> Path {
        self.origin[a]
    }
}
