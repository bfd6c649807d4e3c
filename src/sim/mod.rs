//! `cuttle simulate`: replays access logs over a mesh of squid.confs on a
//! virtual clock, driving the same decision code the proxy runs (peer
//! selection's sans-IO core, freshness, the store's replacement policy).

pub mod generate;
pub mod mesh;
pub mod trace;

pub use mesh::{ClientRange, Kind, Link, Mesh, Node};
pub use trace::{AccessLogReader, SkipCounts, Skipped, TraceRequest};
