//! `cuttle mesh tree|emit-squid-conf`: the discovery tree of a running node, read from its `mgr:mesh` page.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use cuttle::peers::discovery::{parse_page, squid_conf_lines};

#[derive(Debug, Subcommand)]
pub(super) enum MeshCommand {
    /// Print the tree as a running node sees it (its `mgr:mesh` page).
    #[command(after_help = "\
Examples:
  cuttle mesh tree --node 127.0.0.1:3128

One line per node: name (this node marked *), role, depth (hops to an exit,
`-` without a path), parent, RTT in ms, seconds since its last announcement,
address, http and ICP ports, load (requests in its last interval). The node
must allow the manager page to this address (http_access ... manager).")]
    Tree(NodeArgs),
    /// Print cache_peer lines a plain Squid can use to join the tree.
    #[command(after_help = "\
Examples:
  cuttle mesh emit-squid-conf --node 127.0.0.1:3128 >> /etc/squid/squid.conf

Squid cannot discover: these lines are the tree as the node sees it now,
the deepest nodes first, the exit last as `default`; re-run it when the
tree changes. Exits 1 when the node runs no mesh_discovery.")]
    EmitSquidConf(NodeArgs),
}

#[derive(Debug, Args)]
pub(super) struct NodeArgs {
    /// The node's http_port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3128")]
    node: String,
}

/// The body of `mgr:mesh` from the node at `node`.
fn fetch(node: &str) -> Result<String, String> {
    let addr: SocketAddr = node
        .to_socket_addrs()
        .map_err(|e| format!("{node}: {e}"))?
        .next()
        .ok_or(format!("{node}: no address"))?;
    let timeout = Duration::from_secs(5);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{node}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let host = addr.ip();
    let request = format!("GET cache_object://{host}/mesh HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{node}: {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("{node}: {e}"))?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or(format!("{node}: not an HTTP reply"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        let status = head.lines().next().unwrap_or("");
        return Err(format!("{node}: mgr:mesh answered {status}"));
    }
    Ok(body.to_string())
}

pub(super) fn run(command: &MeshCommand) -> ExitCode {
    let (MeshCommand::Tree(args) | MeshCommand::EmitSquidConf(args)) = command;
    let page = match fetch(&args.node) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("cuttle mesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    if page.starts_with("mesh_discovery is off") {
        eprintln!("cuttle mesh: {} runs no mesh_discovery", args.node);
        return ExitCode::FAILURE;
    }
    match command {
        MeshCommand::Tree(_) => print!("{page}"),
        MeshCommand::EmitSquidConf(_) => {
            print!("{}", squid_conf_lines(&parse_page(&page, Instant::now())))
        }
    }
    ExitCode::SUCCESS
}
