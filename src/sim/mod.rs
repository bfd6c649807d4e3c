//! `cuttle simulate`: replays access logs over a mesh of squid.confs on a
//! virtual clock, driving the same decision code the proxy runs (peer
//! selection's sans-IO core, freshness, the store's replacement policy).

pub mod changes;
pub mod chart;
pub mod cut_through;
pub mod engine;
pub mod generate;
pub mod load;
pub mod mesh;
pub mod node;
pub mod objects;
pub mod redirect;
pub mod report;
pub mod sharing;
pub mod store;
pub mod threshold;
pub mod topology;
pub mod trace;
pub mod verdicts;

#[cfg(test)]
mod tests;

pub use engine::{Engine, Options};
pub use mesh::{ClientRange, Kind, Link, Mesh, Node};
pub use report::{NodeStats, Report, Row};
pub use trace::{AccessLogReader, Change, SkipCounts, Skipped, TraceRequest};
