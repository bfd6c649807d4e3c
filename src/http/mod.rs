//! The proxy server: accepting connections, routing requests through the
//! cache, collapsed forwarding, error pages.

pub mod body;
pub mod collapse;
pub mod errors;
pub mod hot;
pub mod proxy;
pub mod server;
pub mod target;
