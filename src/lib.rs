//! cuttle: a caching HTTP proxy that speaks Squid's peer protocols.
//! Modules are layered as in DESIGN.md; each imports only those below it.

pub mod config;
pub mod inspect;
pub mod store;
