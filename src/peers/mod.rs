//! Neighbours: the peer table built from `cache_peer` lines, the ICP and
//! HTCP endpoints (answering peers' queries and CLRs, asking peers on a
//! miss, sending CLRs), peer selection in Squid's order with its hierarchy
//! codes, peer health, and the NetDB of origin RTTs behind SRC_RTT answers.
//!
//! Layer 4 of DESIGN.md: it uses config, access, access_log, store,
//! caching and upstream, never http.

pub mod batch_io;
pub mod core;
pub mod discovery;
pub mod holder;
pub mod htcp_client;
pub mod htcp_server;
pub mod icp_client;
pub mod icp_server;
pub mod load;
pub mod monitor;
pub mod netdb;
pub mod peer_digest;
pub mod querier;
pub mod refcount;
pub mod resolve;
pub mod responder;
pub mod select;
pub mod share_log;
pub mod store_digest;
pub mod table;
