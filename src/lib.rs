//! cuttle: a caching HTTP proxy that speaks Squid's peer protocols.
//! Modules are layered as in DESIGN.md; each imports only those below it.

pub mod access;
pub mod access_log;
pub mod cache_log;
pub mod caching;
pub mod config;
pub mod daemon;
pub mod http;
pub mod inspect;
pub mod mgr;
pub mod peers;
pub mod sim;
pub mod stats;
pub mod store;
pub mod upstream;
