//! Mesh discovery (issue 20) with real cuttle processes, inside a private
//! network namespace the test makes for itself (`unshare -rn`, as
//! tests/icp_multicast.rs does) so that `lo` carries multicast: six nodes
//! on their own 127.0.21.x addresses, one `exit`, one `client`, four
//! `auto`, started in random order with a shared `mesh_discovery_key`,
//! build a parent tree to the exit with no cycle (read from each node's
//! `mgr:mesh` page); a forged, unsigned announcement is ignored and
//! counted; then the middle node is killed and its children re-parent
//! while requests through the client node keep succeeding. Also: `cuttle
//! check` accepts both directives and rejects bad values at their line.

mod peer_lab;
mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cuttle_protocol::discovery::{self, Announcement, Role};
use peer_lab::{free_udp_port, mgr_page, start_cuttle, CuttleNode};
use rand::seq::SliceRandom;
use support::{Conn, Origin, Reply, Req, TempDir};

const NETNS_ENV: &str = "CUTTLE_ITEST_IN_MESH_NETNS";
const TEST_NAME: &str = "six_nodes_build_a_tree_and_heal_it_when_the_middle_node_dies";
const GROUP: &str = "239.255.21.1";
const KEY: &str = "mesh-test-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_build_a_tree_and_heal_it_when_the_middle_node_dies() {
    if std::env::var_os(NETNS_ENV).is_some() {
        return in_namespace().await;
    }
    let me = std::env::current_exe().expect("test binary");
    let setup = "ip link set lo up \
        && ip link set lo multicast on \
        && ip route add 239.0.0.0/8 dev lo \
        && exec \"$0\" \"$@\"";
    let out = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", setup])
        .arg(&me)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .output()
        .expect("run `unshare -rn` (util-linux) for a private network namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
}

/// A node's own line of its mgr:mesh page: (depth, parent).
fn own_line(page: &str) -> Option<(String, String)> {
    let line = page.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|n| n.ends_with('*'))
    })?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f.get(2)?.to_string(), f.get(3)?.to_string()))
}

struct Mesh {
    nodes: BTreeMap<String, (Role, CuttleNode)>,
}

impl Mesh {
    /// Each live node's (depth, parent) as its own page says.
    async fn places(&self) -> BTreeMap<String, (Role, String, String)> {
        let mut out = BTreeMap::new();
        for (name, (role, node)) in &self.nodes {
            let page = mgr_page(node.addr, "mesh").await;
            if let Some((depth, parent)) = own_line(&page) {
                out.insert(name.clone(), (*role, depth, parent));
            }
        }
        out
    }

    /// None when every node's chain of parents reaches the exit, without
    /// a cycle, a client parent or a dead node; else what is wrong.
    async fn tree_problem(&self) -> Option<String> {
        let places = self.places().await;
        if places.len() != self.nodes.len() {
            return Some(format!("not every page answered: {places:?}"));
        }
        for start in places.keys() {
            let mut at = start.clone();
            let mut seen = vec![at.clone()];
            loop {
                let (role, depth, parent) = &places[&at];
                if *role == Role::Exit {
                    if depth != "0" {
                        return Some(format!("exit {at} at depth {depth}"));
                    }
                    break;
                }
                if parent == "-" {
                    return Some(format!(
                        "{at} (on {start}'s chain) has no parent: {places:?}"
                    ));
                }
                let Some((parent_role, _, _)) = places.get(parent) else {
                    return Some(format!("{at}'s parent {parent} is not running: {places:?}"));
                };
                if *parent_role == Role::Client {
                    return Some(format!("client {parent} is {at}'s parent"));
                }
                if seen.contains(parent) {
                    return Some(format!("cycle {seen:?} -> {parent}"));
                }
                seen.push(parent.clone());
                at = parent.clone();
            }
            let (_, depth, _) = &places[start];
            let hops = (seen.len() - 1).to_string();
            if *depth != hops {
                return Some(format!(
                    "{start} says depth {depth}, its chain has {hops} hops: {places:?}"
                ));
            }
        }
        None
    }

    async fn wait_for_tree(&self, within: Duration) -> BTreeMap<String, (Role, String, String)> {
        let deadline = Instant::now() + within;
        loop {
            match self.tree_problem().await {
                None => return self.places().await,
                Some(problem) => assert!(
                    Instant::now() < deadline,
                    "no tree within {within:?}: {problem}\n{}",
                    self.outputs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn outputs(&self) -> String {
        self.nodes
            .iter()
            .map(|(n, (_, node))| format!("--- {n}:\n{}", node.output()))
            .collect()
    }
}

async fn in_namespace() {
    let origin = Origin::start().await;
    origin.route("/page", |_| Reply::ok("from the origin"));
    let tmp = TempDir::new("mesh-discovery");
    let port = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let mut roles = [
        Role::Exit,
        Role::Client,
        Role::Auto,
        Role::Auto,
        Role::Auto,
        Role::Auto,
    ];
    roles.shuffle(&mut rand::thread_rng());
    let mut mesh = Mesh {
        nodes: BTreeMap::new(),
    };
    let mut client = None;
    for (i, role) in roles.iter().enumerate() {
        let ip = Ipv4Addr::new(127, 0, 21, i as u8 + 1);
        let icp = free_udp_port(ip);
        let node = start_cuttle(
            &tmp.path().join(format!("n{i}")),
            ip,
            &format!(
                "icp_port {icp}\n\
                 udp_incoming_address {ip}\n\
                 udp_outgoing_address {ip}\n\
                 tcp_outgoing_address {ip}\n\
                 icp_access allow test_clients\n\
                 mesh_discovery {GROUP}:{port} role={} interval=1\n\
                 mesh_discovery_key {KEY}\n",
                role.name()
            ),
        );
        let name = format!("cuttle-{ip}");
        if *role == Role::Client {
            client = Some(name.clone());
        }
        mesh.nodes.insert(name, (*role, node));
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 700)).await;
    }
    let client = client.expect("a client node");
    let places = mesh.wait_for_tree(Duration::from_secs(30)).await;
    eprintln!("tree: {places:?}");

    // A forged announcement (no MAC) claiming to be an exit is ignored
    // and counted.
    let forged = Announcement {
        name: "intruder",
        addr: Some("127.0.21.99".parse().unwrap()),
        http_port: 3128,
        icp_port: 3130,
        htcp_port: 0,
        role: Role::Exit,
        depth: 0,
        load: 0,
        seq: 1,
        parent: "",
    };
    let mut wire = Vec::new();
    discovery::encode(&forged, None, &mut wire).unwrap();
    let sender = std::net::UdpSocket::bind("127.0.21.200:0").unwrap();
    sender
        .send_to(&wire, SocketAddr::new(GROUP.parse().unwrap(), port))
        .unwrap();
    let (_, first) = mesh.nodes.values().next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = mgr_page(first.addr, "mesh").await;
        if page.contains("Announcements without a valid MAC (ignored): 1") {
            assert!(!page.contains("intruder"), "{page}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forgery was not counted:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The client's parent is in its peer table, marked discovered.
    let (_, client_node) = &mesh.nodes[&client];
    let client_addr = client_node.addr;
    let (_, _, client_parent) = &places[&client];
    let servers = mgr_page(client_addr, "server_list").await;
    assert!(
        servers.contains(&format!("Parent     : {client_parent}"))
            && servers.contains(" discovered "),
        "{servers}"
    );
    // The status page has the tree too, and marks the parent discovered.
    let status = mgr_page(client_addr, "status").await;
    assert!(
        status.contains("<pre id=\"mesh\">") && status.contains(&format!("{client}*")),
        "{status}"
    );
    assert!(status.contains("parent (discovered)"), "{status}");
    // `cuttle mesh tree` shows the page; `emit-squid-conf` turns it into
    // cache_peer lines with the exit as default.
    let cli = |what: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["mesh", what, "--node", &client_addr.to_string()])
            .output()
            .expect("cuttle mesh");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tree = cli("tree");
    assert!(tree.contains(&format!("{client}*")), "{tree}");
    let squid_conf = cli("emit-squid-conf");
    eprintln!("cuttle mesh tree:\n{tree}\ncuttle mesh emit-squid-conf:\n{squid_conf}");
    let exit = places
        .iter()
        .find(|(_, (r, _, _))| *r == Role::Exit)
        .map(|(n, _)| n.clone())
        .unwrap();
    assert!(
        squid_conf.lines().any(|l| l.starts_with("cache_peer ")
            && l.contains(" default ")
            && l.contains(&format!("name={exit}"))),
        "{squid_conf}"
    );
    assert!(
        !squid_conf.contains(&format!("name={client}")),
        "{squid_conf}"
    );

    // Requests through the client node, all the while.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Held (written) while the middle node is killed: no request is half
    // way through it then. A response whose body the SIGKILL cuts is lost
    // to any proxy; what must not fail is every request after the death.
    let killing = Arc::new(tokio::sync::RwLock::new(()));
    let url = origin.url("/page");
    let load = tokio::spawn({
        let (ok, failed, stop) = (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop));
        let killing = Arc::clone(&killing);
        async move {
            // Bounded: at most 600 requests (a minute at 10 a second).
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answered = {
                    let _alive = killing.read().await;
                    Conn::open(client_addr).await.try_send(Req::get(&url)).await
                };
                match answered {
                    Ok(r) if r.status == 200 && r.text() == "from the origin" => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("a request through the client failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // The middle node: an auto node that is some node's parent, on the
    // client's chain when there is one there.
    let mut chain = Vec::new();
    let mut at = client.clone();
    while let Some((_, _, parent)) = places.get(&at).filter(|(_, _, p)| p != "-") {
        chain.push(parent.clone());
        at = parent.clone();
    }
    let has_child = |n: &String| places.values().any(|(_, _, parent)| parent == n);
    let is_auto = |n: &String| places.get(n).is_some_and(|(r, _, _)| *r == Role::Auto);
    let middle = chain
        .iter()
        .find(|n| is_auto(n))
        .cloned()
        .or_else(|| places.keys().find(|n| is_auto(n) && has_child(n)).cloned())
        .unwrap_or_else(|| panic!("no auto node has a child: {places:?}"));
    let children: Vec<String> = places
        .iter()
        .filter(|(_, (_, _, parent))| *parent == middle)
        .map(|(n, _)| n.clone())
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("killing {middle}, the parent of {children:?}");
    let (_, killed) = mesh.nodes.remove(&middle).unwrap();
    {
        let _between_requests = killing.write().await;
        // Killed and reaped here (Node's drop).
        drop(killed);
    }
    // 3 silent intervals, 1 of hold-down, then re-parenting.
    let healed = mesh.wait_for_tree(Duration::from_secs(20)).await;
    eprintln!("healed: {healed:?}");
    for child in &children {
        let (_, _, parent) = &healed[child];
        assert_ne!(parent, &middle, "{child} kept the dead parent");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("requests through the client: {ok} succeeded, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "{ok} succeeded");
    // They went up the tree: the client logged parent hierarchy codes.
    let (_, client_node) = &mesh.nodes[&client];
    let lines = peer_lab::log_lines(&client_node.log, &origin.url("/page"), ok);
    assert!(
        lines.iter().any(|l| l[8].contains("PARENT")),
        "the client never used a parent: {:?}",
        lines.iter().map(|l| l[8].clone()).collect::<Vec<_>>()
    );
}

#[test]
fn cuttle_check_accepts_mesh_discovery_and_rejects_bad_values_at_their_line() {
    let tmp = TempDir::new("mesh-check");
    let check = |text: &str| {
        let conf = tmp.path().join("squid.conf");
        std::fs::write(&conf, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["check", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            conf,
        )
    };
    let (ok, stderr, _) = check(
        "http_port 127.0.0.1:3128\npid_filename none\n\
         mesh_discovery 239.255.21.1:4999 ttl=2 role=auto interval=2\n\
         mesh_discovery_key secret\n",
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("mesh_discovery"), "{stderr}");
    let (ok, stderr, conf) = check(
        "http_port 127.0.0.1:3128\npid_filename none\n\
         mesh_discovery 10.1.2.3:4999 role=boss\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{}:3: error: mesh_discovery: 10.1.2.3 is not a multicast address",
            conf.display()
        )),
        "{stderr}"
    );
}

/// A plain Squid joins a discovered tree through `cuttle mesh
/// emit-squid-conf`: an exit and an auto node (host loopback, 127.0.22.x,
/// a group port of the test's own) find each other, the auto node caches
/// an object on the way through it, and a Squid given the emitted lines
/// asks both by ICP and fetches the object from a parent (PARENT_HIT),
/// the origin untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_given_emit_squid_conf_joins_the_tree_and_logs_parent_hits() {
    let origin = peer_lab::text_origin(Ipv4Addr::LOCALHOST, &["/held"]).await;
    let held = origin.url("/held");
    let tmp = TempDir::new("mesh-squid");
    let port = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let start = |i: u8, role: &str| {
        let ip = Ipv4Addr::new(127, 0, 22, i);
        let icp = free_udp_port(ip);
        start_cuttle(
            &tmp.path().join(format!("n{i}")),
            ip,
            &format!(
                "icp_port {icp}\n\
                 udp_incoming_address {ip}\n\
                 udp_outgoing_address {ip}\n\
                 tcp_outgoing_address {ip}\n\
                 icp_access allow test_clients\n\
                 mesh_discovery 239.255.22.1:{port} role={role} interval=1\n"
            ),
        )
    };
    let exit = start(1, "exit");
    let auto = start(2, "auto");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = mgr_page(auto.addr, "mesh").await;
        if own_line(&page).is_some_and(|(_, parent)| parent == "cuttle-127.0.22.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the auto node never took the exit as parent:\n{page}\n{}\n{}",
            auto.output(),
            exit.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        peer_lab::get(auto.addr, &held).await,
        (200, peer_lab::text_body("/held"))
    );
    assert_eq!(origin.count("/held"), 1);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["mesh", "emit-squid-conf", "--node", &auto.addr.to_string()])
        .output()
        .expect("cuttle mesh emit-squid-conf");
    assert!(out.status.success(), "{out:?}");
    let lines = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("emit-squid-conf:\n{lines}");
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.starts_with("cache_peer "))
            .count(),
        2,
        "{lines}"
    );
    let squid_ip = Ipv4Addr::new(127, 0, 22, 3);
    let squid = peer_lab::Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        "127.0.0.1/32",
        &format!(
            "{lines}\
             icp_query_timeout 2000\n\
             never_direct allow all\n\
             server_persistent_connections off\n\
             debug_options ALL,1 15,2\n"
        ),
    );
    squid.wait_probed(auto.addr);
    squid.wait_probed(exit.addr);
    assert_eq!(
        peer_lab::get(squid.http_addr(), &held).await,
        (200, peer_lab::text_body("/held"))
    );
    let logged = peer_lab::log_lines(&squid.access_log(), &held, 1);
    assert!(
        logged
            .iter()
            .any(|l| l[8].starts_with("PARENT_HIT/127.0.22.")),
        "Squid's log for {held}: {logged:?}\n{}",
        squid.cache_log()
    );
    assert_eq!(origin.count("/held"), 1, "the origin was asked again");
}

/// The section of a server_list page about the peer `name`, if listed.
fn peer_section(page: &str, kind: &str, name: &str) -> Option<String> {
    let head = format!("{kind:<11}: {name}\n");
    let start = page.find(&head)?;
    let rest = &page[start..];
    Some(rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string())
}

/// Discovered siblings (issue 20): two exits (host loopback, 127.0.23.x,
/// a group port of the test's own) are both at depth 0, so each lists the
/// other as a discovered `sibling` (auto nodes rarely share a depth: the
/// tree rule prefers the deepest parent, so they chain). An object
/// fetched through one is then fetched through the other: its sibling
/// has it (SIBLING_HIT), the origin is asked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_the_same_depth_are_siblings_and_serve_each_other_hits() {
    let origin = peer_lab::text_origin(Ipv4Addr::LOCALHOST, &["/shared"]).await;
    let shared = origin.url("/shared");
    let tmp = TempDir::new("mesh-siblings");
    let port = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let start = |i: u8| {
        let ip = Ipv4Addr::new(127, 0, 23, i);
        let icp = free_udp_port(ip);
        start_cuttle(
            &tmp.path().join(format!("n{i}")),
            ip,
            &format!(
                "icp_port {icp}\n\
                 udp_incoming_address {ip}\n\
                 udp_outgoing_address {ip}\n\
                 tcp_outgoing_address {ip}\n\
                 icp_access allow test_clients\n\
                 icp_query_timeout 3000\n\
                 mesh_discovery 239.255.23.1:{port} role=exit interval=1\n"
            ),
        )
    };
    // icp_query_timeout: the dynamic one follows loopback RTTs down to
    // milliseconds, which a busy machine's answer misses (a TIMEOUT_ in
    // 18 ms was seen).
    let (a, b) = (start(1), start(2));
    let (a_name, b_name) = ("cuttle-127.0.23.1", "cuttle-127.0.23.2");
    for (node, sibling) in [(&a, b_name), (&b, a_name)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let page = mgr_page(node.addr, "server_list").await;
            let listed = peer_section(&page, "Sibling", sibling);
            if listed.is_some_and(|s| s.contains(" discovered") && s.contains("Status     : Up")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sibling} never became an up, discovered sibling:\n{page}\n{}",
                mgr_page(node.addr, "mesh").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        peer_lab::get(a.addr, &shared).await,
        (200, peer_lab::text_body("/shared"))
    );
    assert_eq!(origin.count("/shared"), 1);
    assert_eq!(
        peer_lab::get(b.addr, &shared).await,
        (200, peer_lab::text_body("/shared"))
    );
    // b's log also holds its answer to a's ICP query: wait for its GET.
    let logged = peer_lab::lines_where(&b.log, &shared, |l| l[5] == "GET");
    assert!(
        logged.iter().any(|l| l[8] == "SIBLING_HIT/127.0.23.1"),
        "{b_name}'s log for {shared}: {logged:?}\n{}",
        b.output()
    );
    assert_eq!(origin.count("/shared"), 1, "the origin was asked again");
}

/// LSAM's client role (issue 20): a `role=client` node serves its own
/// users and accepts no requests from other proxies. An exit and a client
/// (host loopback, 127.0.24.x): from the exit's address (a discovered
/// node) the client answers ICP queries with DENIED and HTCP TSTs not at
/// all, except the RTT probe the nodes send each other (so the exit still
/// measures it); the same queries from an address outside the mesh get
/// the configured icp_access/htcp_access answers. The exit never lists
/// the client as a peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_node_answers_no_queries_from_discovered_nodes_but_the_rtt_probe() {
    let tmp = TempDir::new("mesh-client-role");
    let port = free_udp_port(Ipv4Addr::UNSPECIFIED);
    let start = |i: u8, role: &str| {
        let ip = Ipv4Addr::new(127, 0, 24, i);
        let (icp, htcp) = (free_udp_port(ip), free_udp_port(ip));
        let node = start_cuttle(
            &tmp.path().join(format!("n{i}")),
            ip,
            &format!(
                "icp_port {icp}\n\
                 htcp_port {htcp}\n\
                 udp_incoming_address {ip}\n\
                 udp_outgoing_address {ip}\n\
                 tcp_outgoing_address {ip}\n\
                 icp_access allow test_clients\n\
                 htcp_access allow test_clients\n\
                 mesh_discovery 239.255.24.1:{port} role={role} interval=1\n"
            ),
        );
        (node, ip, icp, htcp)
    };
    let (exit, exit_ip, _, _) = start(1, "exit");
    let (client, client_ip, client_icp, client_htcp) = start(2, "client");
    let (exit_name, client_name) = ("cuttle-127.0.24.1", "cuttle-127.0.24.2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = mgr_page(client.addr, "mesh").await;
        if own_line(&page).is_some_and(|(_, parent)| parent == exit_name) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client never took the exit as parent:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let icp_to_client = SocketAddr::new(client_ip.into(), client_icp);
    let htcp_to_client = SocketAddr::new(client_ip.into(), client_htcp);
    let object = format!("http://{exit_ip}/object");
    let probe = format!("http://{client_name}/cuttle-mesh-rtt");
    let answer = |command: &[&str], to, from, url: &str| {
        let (lines, _, all) = peer_lab::cuttle_query(command, to, from, &[url]);
        let answer = lines
            .first()
            .and_then(|l| l.get(1))
            .cloned()
            .unwrap_or_default();
        (answer, all)
    };
    let outsider = Ipv4Addr::LOCALHOST;
    // The refusal is in the client's config after one more announcement:
    // ask until it is (a busy machine may delay that announcement past a
    // fixed pause), then ask the rest.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, all) = answer(&["icp", "query"], icp_to_client, exit_ip, &object);
        if got == "ICP_DENIED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a discovered node's ICP query: {got} (not ICP_DENIED): {all}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (got, all) = answer(&["icp", "query"], icp_to_client, exit_ip, &probe);
    assert_eq!(got, "ICP_MISS", "the RTT probe: {all}");
    let (got, all) = answer(&["icp", "query"], icp_to_client, outsider, &object);
    assert_eq!(got, "ICP_MISS", "an outsider's ICP query: {all}");
    let (got, all) = answer(&["htcp", "tst"], htcp_to_client, outsider, &object);
    assert_eq!(got, "NOT_FOUND", "an outsider's HTCP TST: {all}");
    let (got, all) = answer(&["htcp", "tst"], htcp_to_client, exit_ip, &object);
    assert_eq!(got, "TIMEOUT", "a discovered node's HTCP TST: {all}");
    // The exit measured the client's RTT (the probe is answered) and
    // never lists it as a peer.
    let mesh = mgr_page(exit.addr, "mesh").await;
    let line = mesh
        .lines()
        .find(|l| l.starts_with(client_name))
        .unwrap_or_else(|| panic!("{mesh}"));
    assert_ne!(line.split_whitespace().nth(4), Some("-"), "{mesh}");
    let servers = mgr_page(exit.addr, "server_list").await;
    assert!(!servers.contains(client_name), "{servers}");
}
