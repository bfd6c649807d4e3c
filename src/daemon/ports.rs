//! The listening ports of a running cuttle: binding every http_port and
//! https_port at start (an https_port's certificates read once more), and
//! re-reading the https_ports' certificates after a reconfigure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, ListenAddr, PortMode, VPort};
use crate::http::server::Listener;
use crate::http::target::PortKind;
use crate::http::tls_accept::{self, PortCerts};

/// The listen backlog asked for; Linux caps it at net.core.somaxconn
/// (4096 by default since 5.4).
const LISTEN_BACKLOG: u32 = 65535;

/// The addresses to bind for one http_port.
fn bind_addrs(address: &ListenAddr, port: u16) -> Result<Vec<SocketAddr>, String> {
    Ok(match address {
        ListenAddr::Any => vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)],
        ListenAddr::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        ListenAddr::Host(h) if h.eq_ignore_ascii_case("localhost") => {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]
        }
        ListenAddr::Host(h) => std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), port))
            .map_err(|e| format!("cannot resolve http_port host {h}: {e}"))?
            .collect(),
    })
}

/// The certificates of each https_port, by port name, to re-read on
/// reconfigure.
type PortCertsByName = Vec<(String, Arc<PortCerts>)>;

pub(super) async fn bind_all(config: &Config) -> Result<(Vec<Listener>, PortCertsByName), String> {
    let mut out = Vec::new();
    let mut certs_by_name = Vec::new();
    for p in &config.http_ports {
        let tls = match &p.tls {
            None => None,
            Some(tls) => {
                // Read again at start: a file may have changed since the
                // configuration was checked.
                let certs = PortCerts::load(tls)
                    .map_err(|e| format!("{}: https_port {}: {e}", p.location, p.name))?;
                certs_by_name.push((p.name.clone(), Arc::clone(&certs)));
                Some(tls_accept::acceptor(certs).map_err(|e| format!("{}: {e}", p.location))?)
            }
        };
        let kind = match p.mode {
            PortMode::Forward => PortKind::Forward,
            PortMode::Accel => PortKind::Accel {
                defaultsite: p.defaultsite.clone(),
                vhost: p.vhost,
                vport: match p.vport {
                    VPort::Off => None,
                    VPort::ListeningPort => Some(p.port),
                    VPort::Fixed(n) => Some(n),
                },
                allow_direct: p.allow_direct,
                https: p.tls.is_some(),
            },
            PortMode::Intercept | PortMode::Tproxy => {
                return Err(format!(
                    "{}: http_port interception modes are not supported",
                    p.location
                ))
            }
        };
        for addr in bind_addrs(&p.address, p.port)? {
            let socket = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .map_err(|e| format!("{}: cannot open a socket: {e}", p.location))?;
            let _ = socket.set_reuseaddr(true);
            socket
                .bind(addr)
                .map_err(|e| format!("{}: cannot listen on {addr}: {e}", p.location))?;
            // As deep a queue of connections not yet accepted as the
            // kernel allows (it caps this at net.core.somaxconn): when
            // thousands of clients connect at once, a handshake dropped
            // for want of room is retried only a second later.
            let listener: TcpListener = socket
                .listen(LISTEN_BACKLOG)
                .map_err(|e| format!("{}: cannot listen on {addr}: {e}", p.location))?;
            out.push(Listener {
                listener,
                kind: kind.clone(),
                name: p.name.clone(),
                tls: tls.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err("no http_port configured: nothing to listen on".into());
    }
    // Said only once every port is bound: a "listening" line is never
    // followed by a failure to listen on the next port.
    for l in &out {
        let shown = l
            .listener
            .local_addr()
            .map_or_else(|_| l.name.clone(), |a| a.to_string());
        let mode = match (&l.kind, l.tls.is_some()) {
            (PortKind::Forward, false) => "forward proxy",
            (PortKind::Forward, true) => "forward proxy, TLS",
            (_, false) => "accelerator",
            (_, true) => "accelerator, TLS",
        };
        super::say(&format!("listening on {shown} ({mode})"));
    }
    Ok((out, certs_by_name))
}

/// SIGHUP, after a good reload: every https_port re-reads its certificates
/// (new connections get them; established ones keep theirs). A port whose
/// files went bad since the configuration was checked keeps its old ones.
pub(super) fn reload_certificates(config: &Config, port_certs: &PortCertsByName) {
    for p in &config.http_ports {
        let Some(tls) = &p.tls else { continue };
        let Some((_, certs)) = port_certs.iter().find(|(name, _)| *name == p.name) else {
            continue; // a new https_port: listens from the next restart
        };
        if let Err(e) = certs.reload(tls) {
            tracing::error!(
                "{}: https_port {}: {e}; keeping its old certificates",
                p.location,
                p.name
            );
        }
    }
}
