//! The proxy server: accepting connections, routing requests through the
//! cache, collapsed forwarding, error pages, cache manager requests.

pub mod body;
pub mod client_io;
pub mod client_name;
pub mod collapse;
pub mod errors;
pub mod hot;
mod lean;
pub mod proxy;
pub mod server;
pub mod target;
pub mod tls_accept;
