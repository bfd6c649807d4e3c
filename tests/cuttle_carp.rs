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
//! member set.

mod peer_lab;
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cuttle_protocol::carp::{Carp, CarpMember, SourceHash};
use peer_lab::{start_cuttle, CuttleNode};
use support::{Conf, Conn, Cuttle, Req, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Concurrent clients.
const CLIENTS: usize = 8;

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
    accepted: Arc<Mutex<usize>>,
    stop: watch::Sender<bool>,
}

impl Parent {
    async fn start(name: &'static str, ip: Ipv4Addr) -> Parent {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind {ip}:0 ({e}); is 127.0.0.0/8 routed to lo?"));
        let addr = listener.local_addr().expect("parent addr");
        let targets = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (t, a) = (Arc::clone(&targets), Arc::clone(&accepted));
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                // Returning drops the listener: connections are refused.
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopped.changed() => return,
                };
                let Ok((mut stream, _)) = accepted else {
                    continue;
                };
                *a.lock().unwrap_or_else(|p| p.into_inner()) += 1;
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
                    t.lock().unwrap_or_else(|p| p.into_inner()).push(target);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                         Cache-Control: no-store\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{name}",
                        name.len()
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
            stop,
        }
    }

    /// Stops listening: the parent is gone (connections refused).
    fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn targets(&self) -> Vec<String> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap_or_else(|p| p.into_inner())
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

/// cuttle probes its parents (a TCP connect) before it uses them: send
/// warm-up requests until every parent accepted a connection and a
/// warm-up came back 200 from a parent.
async fn warm_up(cuttle: &impl Proxy, parents: &[Parent], from: Ipv4Addr) {
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
        if status == 200 && parents.iter().all(|p| p.accepted() > 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "parents not probed: accepted {:?}, last status {status}; cuttle output:\n{}",
            parents.iter().map(Parent::accepted).collect::<Vec<_>>(),
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
        if answer != want.name {
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
        &(peer_lines(&parents, "carp") + "never_direct allow all\n"),
    );
    warm_up(&cuttle, &parents, cuttle_ip).await;

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
    let parents = start_parents(12).await;
    let cuttle_ip = Ipv4Addr::new(127, 0, 4, 11);
    let cuttle = start_cuttle(
        tmp.path(),
        cuttle_ip,
        &(peer_lines(&parents, "sourcehash") + "never_direct allow all\n"),
    );
    // One client address always hashes to one parent: warm up from
    // several until every parent was probed.
    for last in 15..=30 {
        if parents.iter().all(|p| p.accepted() > 0) {
            break;
        }
        let url = format!("http://warmup.example.test/warmup/{last}");
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 4, last));
        let _ = Conn::open_from(cuttle.addr(), Some(from))
            .await
            .try_send(Req::get(&url))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warm_up(&cuttle, &parents, cuttle_ip).await;

    // 16 client addresses, 20 URLs each.
    let sent: Vec<Sent> = (0..320)
        .map(|i| {
            let url = format!("http://sourcehash.example.test/sh/{i}?k={}", i * 3);
            Sent {
                canonical: url.clone(),
                url,
                from: Ipv4Addr::new(127, 0, 4, 15 + (i % 16) as u8),
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
        "16 addresses, one parent: {per_parent:?}"
    );
    eprintln!(
        "sourcehash: {} requests, per parent {per_parent:?}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carp_skips_a_dead_parent_and_a_reload_rebuilds_the_member_set() {
    let parents = start_parents(22).await;
    // connect-fail-limit=1: one refused connection makes a parent dead.
    let option = "carp connect-fail-limit=1";
    let conf = |lines: &str| Conf::new().extra(lines).extra("never_direct allow all");
    let cuttle = Cuttle::start(&conf(&peer_lines(&parents, option)));
    let client = Ipv4Addr::LOCALHOST;
    warm_up(&cuttle, &parents, client).await;
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
    parents[dead].stop();
    let failover = varied_urls(client, "failover", 100)
        .into_iter()
        .find(|s| carp.choose(s.canonical.as_bytes(), |_| true) == Some(dead))
        .expect("a URL of beta.Parent");
    let answers = send_all(&cuttle, std::slice::from_ref(&failover)).await;
    assert_eq!(answers, ["Alpha"], "{}", cuttle.output());
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
