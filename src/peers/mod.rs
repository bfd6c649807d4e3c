//! Neighbours: the peer table built from `cache_peer` lines, the ICP
//! endpoints (answering peers' queries, asking peers on a miss), peer
//! selection in Squid's order with its hierarchy codes, peer health, and
//! the NetDB of origin RTTs behind SRC_RTT answers.
//!
//! Layer 4 of DESIGN.md: it uses config, access, access_log, store,
//! caching and upstream, never http.

pub mod icp_client;
pub mod icp_server;
pub mod netdb;
pub mod responder;
pub mod select;
pub mod table;
