//! cuttle's own hash-based parent selection, end to end: the real cuttle
//! binary with three `carp` parents (unequal weights, names unlike their
//! addresses), each an HTTP server in this test that records the request
//! targets it receives. Every one of 360 varied URLs (mixed-case hosts,
//! explicit default ports, other ports, address hosts, queries) must reach
//! the parent `cuttle_protocol::carp::Carp::choose` predicts for the URL's
//! canonical form, and cuttle's access.log must say `CARP/<that parent's
//! address>` for it, as Squid logs it. A second run does the same for
//! `sourcehash` parents with clients on 16 source addresses. A third stops
//! one CARP parent (its first URL fails over as ANY_OLD_PARENT, then only
//! its URLs move, each to the member the hash ranks next) and reloads with
//! the dead parent gone and another weight: routing follows the rebuilt
//! member set. A fourth puts a real Squid 5.7 and cuttle in front of the
//! same three parents: for 372 URLs (IPv6 literals, escapes, raw UTF-8, a
//! trailing dot, dot segments) both pick the same parent and send it the
//! same URL. Fails, never skips, when squid is missing.

mod peer_lab;
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::carp::{Carp, CarpMember, SourceHash};
use peer_lab::{start_cuttle, CuttleNode, Squid};
use support::{connect, Conf, Conn, Cuttle, Req, Stoppable, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Concurrent clients.
const CLIENTS: usize = 8;
/// Source addresses of the sourcehash clients: 127.0.4.9 and up.
const CLIENT_ADDRESSES: usize = 12;

/// A running cuttle as these checks see it (started by peer_lab on an
/// address of ours, or by support when the test signals it).
trait Proxy {
    fn addr(&self) -> SocketAddr;
    fn log(&self) -> PathBuf;
    fn output(&self) -> String;
}

impl Proxy for CuttleNode {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn log(&self) -> PathBuf {
        self.log.clone()
    }
    fn output(&self) -> String {
        CuttleNode::output(self)
    }
}

impl Proxy for Squid {
    fn addr(&self) -> SocketAddr {
        self.http_addr()
    }
    fn log(&self) -> PathBuf {
        self.access_log()
    }
    fn output(&self) -> String {
        self.cache_log()
    }
}

impl Proxy for Cuttle {
    fn addr(&self) -> SocketAddr {
        Cuttle::addr(self)
    }
    fn log(&self) -> PathBuf {
        self.log_path()
    }
    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout().join("\n"),
            self.stderr().join("\n")
        )
    }
}

/// An in-test parent: answers every request with its name and records the
/// request target (what cuttle sent it: the absolute URL) and how many
/// connections it accepted (cuttle's liveness probes included).
struct Parent {
    name: &'static str,
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
    /// The source address of every connection accepted.
    accepted: Arc<Mutex<Vec<IpAddr>>>,
    /// The accept loop; it owns the listener.
    listening: Stoppable,
}

impl Parent {
    async fn start(name: &'static str, ip: Ipv4Addr) -> Parent {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"));
        let addr = listener.local_addr().expect("parent addr");
        let targets = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (t, a) = (Arc::clone(&targets), Arc::clone(&accepted));
        let listening = Stoppable::spawn(|mut stopped| async move {
            loop {
                // Returning drops the listener: connections are refused.
                let accepted = tokio::select! {
                    biased;
                    _ = stopped.changed() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut stream, from)) = accepted else {
                    continue;
                };
                a.lock().unwrap_or_else(|p| p.into_inner()).push(from.ip());
                let t = Arc::clone(&t);
                tokio::spawn(async move {
                    // One request per connection (we answer Connection:
                    // close); a probe sends nothing and closes.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let target = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    // The body says who answered and what it was asked.
                    let body = format!("{name} {target}");
                    t.lock().unwrap_or_else(|p| p.into_inner()).push(target);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                         Cache-Control: no-store\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Parent {
            name,
            addr,
            targets,
            accepted,
            listening,
        }
    }

    /// Stops listening: the parent is gone (connections refused) when
    /// this returns, not some time after (the loop runs on another thread).
    async fn stop(&self) {
        self.listening.stop().await;
    }

    fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections accepted from `proxy` (its tcp_outgoing_address).
    fn accepted_from(&self, proxy: IpAddr) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|&&ip| ip == proxy)
            .count()
    }
}

/// Three parents with `option` (`carp` or `sourcehash`), unequal weights.
async fn start_parents(first: u8) -> Vec<Parent> {
    let names = ["Alpha", "beta.Parent", "gamma-3"];
    let mut parents = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        parents.push(Parent::start(name, Ipv4Addr::new(127, 0, 4, first + i as u8)).await);
    }
    parents
}

const WEIGHTS: [u32; 3] = [1, 3, 2];

fn member(p: &Parent, weight: u32) -> CarpMember<'static> {
    CarpMember {
        name: p.name,
        weight,
    }
}

/// The members of `peer_lines(parents, ..)`, in configuration order.
fn members(parents: &[Parent]) -> Vec<CarpMember<'static>> {
    parents
        .iter()
        .zip(WEIGHTS)
        .map(|(p, w)| member(p, w))
        .collect()
}

fn peer_line(p: &Parent, weight: u32, option: &str) -> String {
    format!(
        "cache_peer {} parent {} 0 {option} no-query name={} weight={weight}\n",
        p.addr.ip(),
        p.addr.port(),
        p.name
    )
}

fn peer_lines(parents: &[Parent], option: &str) -> String {
    parents
        .iter()
        .zip(WEIGHTS)
        .map(|(p, w)| peer_line(p, w, option))
        .collect()
}

/// cuttle probes its parents (a TCP connect) before it uses them, Squid
/// at start: send warm-up requests until every parent accepted a
/// connection from the proxy's `outgoing` address and a warm-up came back
/// 200 from a parent.
async fn warm_up(cuttle: &impl Proxy, parents: &[Parent], from: Ipv4Addr, outgoing: Ipv4Addr) {
    let outgoing = IpAddr::V4(outgoing);
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0.. {
        let url = format!("http://warmup.example.test/warmup/{i}");
        let status = match Conn::open_from(cuttle.addr(), Some(IpAddr::V4(from)))
            .await
            .try_send(Req::get(&url))
            .await
        {
            Ok(r) => r.status,
            Err(_) => 0,
        };
        if status == 200 && parents.iter().all(|p| p.accepted_from(outgoing) > 0) {
            // The proxy notes a probe's success just after our accept.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parents not probed: accepted {:?}, last status {status}; cuttle output:\n{}",
            parents
                .iter()
                .map(|p| p.accepted_from(outgoing))
                .collect::<Vec<_>>(),
            cuttle.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request: the URL as the client writes it, the canonical URL cuttle
/// must forward (and hash), and the client's source address.
#[derive(Debug, Clone)]
struct Sent {
    url: String,
    canonical: String,
    from: Ipv4Addr,
}

/// `count` distinct URLs whose path starts with `/tag/`; the canonical
/// form lower-cases the host and drops an explicit `:80`.
fn varied_urls(from: Ipv4Addr, tag: &str, count: usize) -> Vec<Sent> {
    (0..count)
        .map(|i| {
            let (host, canonical_host) = match i % 5 {
                0 => (
                    format!("site{}.example.test", i % 23),
                    format!("site{}.example.test", i % 23),
                ),
                1 => (
                    format!("WWW.Example{}.TEST", i % 11),
                    format!("www.example{}.test", i % 11),
                ),
                2 => {
                    let h = format!("10.{}.{}.{}", i % 7, (i * 13) % 256, (i * 29) % 256);
                    (h.clone(), h)
                }
                3 => (
                    format!("cdn-{}.images.example.test", i % 4),
                    format!("cdn-{}.images.example.test", i % 4),
                ),
                _ => (
                    format!("Media{}.Example.test", i % 9),
                    format!("media{}.example.test", i % 9),
                ),
            };
            let (port, canonical_port) = match (i / 5) % 4 {
                0 | 1 => (String::new(), String::new()),
                2 => (":80".to_string(), String::new()),
                _ => (format!(":{}", 8000 + i % 50), format!(":{}", 8000 + i % 50)),
            };
            let path = match i % 7 {
                0 => format!("/p/{i}"),
                1 => format!("/a/b/c/{i}.html"),
                2 => format!("/img/{i}.PNG"),
                3 => format!("/%7Euser/{i}/index%20page"),
                4 => format!("/caf%C3%A9/{i}"),
                5 => format!("/x;param={i}/y"),
                _ => format!("/{i}"),
            };
            let query = match i % 3 {
                0 => String::new(),
                1 => format!("?q={i}"),
                _ => format!("?a=1&b={}&c=%C3%A9", i * 7),
            };
            Sent {
                url: format!("http://{host}{port}/{tag}{path}{query}"),
                canonical: format!("http://{canonical_host}{canonical_port}/{tag}{path}{query}"),
                from,
            }
        })
        .collect()
}

/// The answering parent's name in a response body (`name target`).
fn parent_of(answer: &str) -> &str {
    answer.split(' ').next().unwrap_or_default()
}

/// Sends every request through cuttle, `CLIENTS` at a time; all must be
/// answered 200 by a parent. Returns the parent name each got.
async fn send_all(cuttle: &impl Proxy, sent: &[Sent]) -> Vec<String> {
    let queue = Arc::new(Mutex::new(
        sent.iter().cloned().enumerate().collect::<Vec<_>>(),
    ));
    let answers = Arc::new(Mutex::new(vec![String::new(); sent.len()]));
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (queue, answers, addr) = (Arc::clone(&queue), Arc::clone(&answers), cuttle.addr());
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((i, s)) = next else { return };
                let r = Conn::open_from(addr, Some(IpAddr::V4(s.from)))
                    .await
                    .try_send(Req::get(&s.url))
                    .await;
                let answer = match r {
                    Ok(r) if r.status == 200 => r.text(),
                    Ok(r) => format!("status {}", r.status),
                    Err(e) => format!("error {e}"),
                };
                answers.lock().unwrap_or_else(|p| p.into_inner())[i] = answer;
            }
        }));
    }
    for w in workers {
        w.await.expect("client task");
    }
    let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    answers
}

/// cuttle's access.log hierarchy field (`CODE/address`) by logged URL
/// (the query stripped after the `?`: strip_query_terms), waiting for
/// `want` lines with the marker.
async fn logged_hierarchy(cuttle: &impl Proxy, tag: &str, want: usize) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(cuttle.log()).unwrap_or_default();
        let mut by_url = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let (Some(url), Some(hier)) = (f.get(6), f.get(8)) {
                if url.contains(&format!("/{tag}/")) {
                    by_url.insert(url.to_string(), hier.to_string());
                }
            }
        }
        if by_url.len() >= want {
            return by_url;
        }
        assert!(
            Instant::now() < deadline,
            "{} access.log lines, expected {want}:\n{text}",
            by_url.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks one run: each request was answered by `predicted(i)`, that
/// parent received exactly the canonical URL, and the access.log line says
/// `code/<its address>`. Returns requests per parent.
async fn check(
    cuttle: &impl Proxy,
    tag: &str,
    parents: &[Parent],
    sent: &[Sent],
    answers: &[String],
    code: &str,
    predicted: impl Fn(&Sent) -> usize,
) -> BTreeMap<&'static str, usize> {
    let mut per_parent = BTreeMap::new();
    let mut wrong = Vec::new();
    for (s, answer) in sent.iter().zip(answers) {
        let want = &parents[predicted(s)];
        *per_parent.entry(want.name).or_insert(0) += 1;
        if parent_of(answer) != want.name {
            wrong.push(format!(
                "{} from {}: got {answer:?}, want {}",
                s.url, s.from, want.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} requests reached the wrong parent; first:\n{}\ncuttle output:\n{}",
        wrong.len(),
        sent.len(),
        wrong[..wrong.len().min(10)].join("\n"),
        cuttle.output()
    );
    // Each parent received exactly its URLs, in canonical form.
    for (k, p) in parents.iter().enumerate() {
        let mut got: Vec<String> = p
            .targets()
            .into_iter()
            .filter(|t| t.contains(&format!("/{tag}/")))
            .collect();
        let mut want: Vec<String> = sent
            .iter()
            .filter(|s| predicted(s) == k)
            .map(|s| s.canonical.clone())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "targets received by {}", p.name);
    }
    let logged = logged_hierarchy(cuttle, tag, sent.len()).await;
    for s in sent {
        // strip_query_terms keeps the `?`, as Squid does.
        let logged_url = match s.canonical.find('?') {
            Some(at) => &s.canonical[..=at],
            None => &s.canonical,
        };
        let want = format!("{code}/{}", parents[predicted(s)].addr.ip());
        assert_eq!(
            logged.get(logged_url),
            Some(&want),
            "access.log hierarchy for {logged_url}; logged URLs include {:?}",
            logged.iter().take(3).collect::<Vec<_>>()
        );
    }
    per_parent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carp_parents_get_the_urls_squid_would_send_them() {
    let tmp = TempDir::new("cuttle-carp");
    let parents = start_parents(2).await;
    let cuttle_ip = Ipv4Addr::new(127, 0, 4, 1);
    let cuttle = start_cuttle(
        tmp.path(),
        cuttle_ip,
        &(peer_lines(&parents, "carp")
            + &format!("never_direct allow all\ntcp_outgoing_address {cuttle_ip}\n")),
    );
    warm_up(&cuttle, &parents, cuttle_ip, cuttle_ip).await;

    let sent = varied_urls(cuttle_ip, "carp", 360);
    let answers = send_all(&cuttle, &sent).await;
    let carp = Carp::new(&members(&parents));
    let per_parent = check(&cuttle, "carp", &parents, &sent, &answers, "CARP", |s| {
        carp.choose(s.canonical.as_bytes(), |_| true)
            .expect("a member")
    })
    .await;
    // Every parent got a share, the heaviest the most (weights 1, 3, 2).
    assert_eq!(per_parent.len(), 3, "{per_parent:?}");
    assert!(
        per_parent["beta.Parent"] > per_parent["gamma-3"]
            && per_parent["gamma-3"] > per_parent["Alpha"],
        "{per_parent:?}"
    );
    // The canonical form matters: some URLs would go elsewhere if hashed
    // as the client wrote them.
    let as_written = sent
        .iter()
        .filter(|s| {
            carp.choose(s.url.as_bytes(), |_| true) != carp.choose(s.canonical.as_bytes(), |_| true)
        })
        .count();
    assert!(as_written > 0, "no URL depends on canonicalisation");
    eprintln!(
        "carp: {} URLs, per parent {per_parent:?}, {as_written} would differ if hashed as written",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sourcehash_parents_get_each_client_address_squid_would_send_them() {
    let tmp = TempDir::new("cuttle-sourcehash");
    let parents = start_parents(6).await;
    let cuttle_ip = Ipv4Addr::new(127, 0, 4, 5);
    let cuttle = start_cuttle(
        tmp.path(),
        cuttle_ip,
        &(peer_lines(&parents, "sourcehash")
            + &format!("never_direct allow all\ntcp_outgoing_address {cuttle_ip}\n")),
    );
    let client = |k: usize| Ipv4Addr::new(127, 0, 4, 9 + (k % CLIENT_ADDRESSES) as u8);
    // One client address always hashes to one parent: warm up from
    // several until every parent was probed.
    for k in 0..CLIENT_ADDRESSES {
        if parents
            .iter()
            .all(|p| p.accepted_from(IpAddr::V4(cuttle_ip)) > 0)
        {
            break;
        }
        let last = client(k).octets()[3];
        let url = format!("http://warmup.example.test/warmup/{last}");
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 4, last));
        let _ = Conn::open_from(cuttle.addr(), Some(from))
            .await
            .try_send(Req::get(&url))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warm_up(&cuttle, &parents, cuttle_ip, cuttle_ip).await;

    // 12 client addresses, 25 URLs each.
    let sent: Vec<Sent> = (0..300)
        .map(|i| {
            let url = format!("http://sourcehash.example.test/sh/{i}?k={}", i * 3);
            Sent {
                canonical: url.clone(),
                url,
                from: client(i),
            }
        })
        .collect();
    let answers = send_all(&cuttle, &sent).await;
    let hash = SourceHash::new(&members(&parents));
    let per_parent = check(
        &cuttle,
        "sh",
        &parents,
        &sent,
        &answers,
        "SOURCEHASH_PARENT",
        |s| {
            hash.choose(s.from.to_string().as_bytes(), |_| true)
                .expect("a member")
        },
    )
    .await;
    assert!(
        per_parent.len() >= 2,
        "{CLIENT_ADDRESSES} addresses, one parent: {per_parent:?}"
    );
    eprintln!(
        "sourcehash: {} requests, per parent {per_parent:?}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carp_skips_a_dead_parent_and_a_reload_rebuilds_the_member_set() {
    let parents = start_parents(21).await;
    // connect-fail-limit=1: one refused connection makes a parent dead.
    let option = "carp connect-fail-limit=1";
    let outgoing = Ipv4Addr::new(127, 0, 4, 24);
    let conf = |lines: &str| {
        Conf::new()
            .extra(lines)
            .extra("never_direct allow all")
            .extra(&format!("tcp_outgoing_address {outgoing}"))
    };
    // support's cuttle (it can be sent SIGHUP) listens on 127.0.0.1.
    let cuttle = Cuttle::start(&conf(&peer_lines(&parents, option)));
    let client = Ipv4Addr::LOCALHOST;
    warm_up(&cuttle, &parents, client, outgoing).await;
    let carp = Carp::new(&members(&parents));

    // All up.
    let sent = varied_urls(client, "up", 120);
    let answers = send_all(&cuttle, &sent).await;
    check(&cuttle, "up", &parents, &sent, &answers, "CARP", |s| {
        carp.choose(s.canonical.as_bytes(), |_| true)
            .expect("a member")
    })
    .await;

    // beta.Parent goes away. The first URL CARP gives it fails over to
    // the next source, the first other parent (ANY_OLD_PARENT, as Squid
    // falls down its list), and the refused connection marks beta dead.
    let dead = 1;
    parents[dead].stop().await;
    let failover = varied_urls(client, "failover", 100)
        .into_iter()
        .find(|s| carp.choose(s.canonical.as_bytes(), |_| true) == Some(dead))
        .expect("a URL of beta.Parent");
    let answers = send_all(&cuttle, std::slice::from_ref(&failover)).await;
    assert_eq!(
        answers.iter().map(|a| parent_of(a)).collect::<Vec<_>>(),
        ["Alpha"],
        "{}",
        cuttle.output()
    );
    let logged = logged_hierarchy(&cuttle, "failover", 1).await;
    assert_eq!(
        logged.values().collect::<Vec<_>>(),
        [&format!("ANY_OLD_PARENT/{}", parents[0].addr.ip())]
    );

    // beta dead: only its URLs move, each to the member the hash ranks
    // next; everyone else's URLs stay where they were.
    let sent = varied_urls(client, "dead", 200);
    let answers = send_all(&cuttle, &sent).await;
    check(&cuttle, "dead", &parents, &sent, &answers, "CARP", |s| {
        carp.choose(s.canonical.as_bytes(), |m| m != dead)
            .expect("a member")
    })
    .await;
    let moved = sent
        .iter()
        .filter(|s| carp.choose(s.canonical.as_bytes(), |_| true) == Some(dead))
        .count();
    assert!(moved > 30, "only {moved} URLs were beta's");

    // Reload without beta and with Alpha's weight raised from 1 to 4: the
    // member set, order and multipliers are rebuilt from the new lines.
    cuttle.rewrite_config(&conf(
        &(peer_line(&parents[0], 4, option) + &peer_line(&parents[2], 2, option)),
    ));
    cuttle.signal("HUP");
    cuttle.wait_output("configuration reloaded", false).await;
    let reloaded = Carp::new(&[member(&parents[0], 4), member(&parents[2], 2)]);
    let to_parent = [0, 2];
    let sent = varied_urls(client, "reloaded", 200);
    let answers = send_all(&cuttle, &sent).await;
    check(
        &cuttle,
        "reloaded",
        &parents,
        &sent,
        &answers,
        "CARP",
        |s| {
            reloaded
                .choose(s.canonical.as_bytes(), |_| true)
                .map(|m| to_parent[m])
                .expect("a member")
        },
    )
    .await;
    let reweighted = sent
        .iter()
        .filter(|s| {
            let before = carp.choose(s.canonical.as_bytes(), |m| m != dead);
            let after = reloaded
                .choose(s.canonical.as_bytes(), |_| true)
                .map(|m| to_parent[m]);
            before != after
        })
        .count();
    assert!(reweighted > 0, "the new weights moved no URL");
    eprintln!("carp: {moved} URLs moved off the dead parent, {reweighted} by the reload");
}

/// A GET of `url` (raw bytes: UTF-8 goes on the wire as is) through
/// `proxy` from `from`; the status and body.
async fn raw_get(proxy: SocketAddr, from: Ipv4Addr, url: &[u8], host: &str) -> (u16, String) {
    let mut stream = connect(proxy, Some(IpAddr::V4(from))).await;
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(url);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    if stream.write_all(&request).await.is_err() {
        return (0, "write failed".into());
    }
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
    if !matches!(read.await, Ok(Ok(_))) {
        return (0, "no complete response".into());
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The URLs of the Squid comparison: `varied_urls` plus forms a
/// canonicaliser may treat differently (IPv6 literals, lower-case escapes,
/// raw UTF-8, a trailing dot, dot segments). With the Host header to send.
fn mesh_urls() -> Vec<(Vec<u8>, String)> {
    let mut urls: Vec<(Vec<u8>, String)> = varied_urls(Ipv4Addr::LOCALHOST, "mesh", 300)
        .into_iter()
        .map(|s| {
            let host = s
                .url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (s.url.into_bytes(), host)
        })
        .collect();
    for i in 0..12 {
        let extra = [
            format!("http://[2001:DB8::{:x}]/mesh/v6/{i}", i + 1),
            format!("http://[2001:db8::1]:8080/mesh/v6port/{i}?x={i}"),
            format!("http://escapes.example.test/mesh/caf%c3%a9/{i}"),
            format!("http://utf8.example.test/mesh/café/naïve/{i}"),
            format!("http://Trailing.Example.TEST./mesh/dot/{i}"),
            format!("http://segments.example.test/mesh/a/../b/./{i}"),
        ];
        for url in extra {
            let host = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            urls.push((url.into_bytes(), host));
        }
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuttle_and_squid_send_every_url_to_the_same_carp_parent() {
    // One mesh: a real Squid 5.7 and cuttle with the same three carp
    // parents. For every URL both must pick the same parent and send it
    // the same URL (the CARP key): that is what lets a Squid and a cuttle
    // share parents without storing objects twice.
    let tmp = TempDir::new("cuttle-carp-squid");
    let parents = start_parents(27).await;
    let squid_ip = Ipv4Addr::new(127, 0, 4, 25);
    let cuttle_ip = Ipv4Addr::new(127, 0, 4, 26);
    let lines = peer_lines(&parents, "carp") + "never_direct allow all\n";
    let squid = Squid::start(
        &tmp.path().join("squid"),
        squid_ip,
        &cuttle_ip.to_string(),
        &(lines.clone() + "cache deny all\n"),
    );
    let cuttle = start_cuttle(
        &tmp.path().join("cuttle"),
        cuttle_ip,
        &(lines + &format!("tcp_outgoing_address {cuttle_ip}\n")),
    );
    warm_up(&squid, &parents, squid_ip, squid_ip).await;
    warm_up(&cuttle, &parents, cuttle_ip, cuttle_ip).await;

    let urls = Arc::new(mesh_urls());
    let queue = Arc::new(Mutex::new((0..urls.len()).collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(vec![
        ((0, String::new()), (0, String::new()));
        urls.len()
    ]));
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (urls, queue, results) = (Arc::clone(&urls), Arc::clone(&queue), Arc::clone(&results));
        let (squid_addr, cuttle_addr) = (squid.http_addr(), cuttle.addr);
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(i) = next else { return };
                let (url, host) = &urls[i];
                let by_squid = raw_get(squid_addr, squid_ip, url, host).await;
                let by_cuttle = raw_get(cuttle_addr, cuttle_ip, url, host).await;
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = (by_squid, by_cuttle);
            }
        }));
    }
    for w in workers {
        w.await.expect("client task");
    }
    let results = results.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut differ = Vec::new();
    let mut per_parent: BTreeMap<String, usize> = BTreeMap::new();
    for ((url, _), (by_squid, by_cuttle)) in urls.iter().zip(&results) {
        let url = String::from_utf8_lossy(url);
        assert_eq!(
            by_squid.0,
            200,
            "Squid: {url}: {by_squid:?}\n{}",
            squid.output()
        );
        if by_cuttle != by_squid {
            differ.push(format!("{url}: Squid {by_squid:?}, cuttle {by_cuttle:?}"));
        }
        *per_parent
            .entry(parent_of(&by_squid.1).to_string())
            .or_default() += 1;
    }
    assert!(
        differ.is_empty(),
        "cuttle and Squid differ on {} of {} URLs:\n{}",
        differ.len(),
        urls.len(),
        differ[..differ.len().min(15)].join("\n")
    );
    assert_eq!(per_parent.len(), 3, "{per_parent:?}");
    // cuttle logged each as CARP/<the parent's address>.
    let logged = logged_hierarchy(&cuttle, "mesh", urls.len()).await;
    for (_, by_cuttle) in &results {
        let (name, target) = by_cuttle.1.split_once(' ').unwrap_or_default();
        let parent = parents.iter().find(|p| p.name == name).expect("a parent");
        let logged_url = match target.find('?') {
            Some(at) => &target[..=at],
            None => target,
        };
        assert_eq!(
            logged.get(logged_url),
            Some(&format!("CARP/{}", parent.addr.ip())),
            "access.log hierarchy for {logged_url}"
        );
    }
    eprintln!(
        "carp mesh: {} URLs, cuttle and Squid agree on every parent and key, per parent \
         {per_parent:?}",
        urls.len()
    );
}
