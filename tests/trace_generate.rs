//! `cuttle trace generate` as a user runs it: its output is read back with
//! the simulator's own access.log reader, and the popularity of the default
//! trace is checked against what measured proxy traces show.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use cuttle::sim::{AccessLogReader, ClientRange, TraceRequest};

fn cuttle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .output()
        .expect("cuttle runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trace_generate");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

/// Generates a trace with `args` into a file and reads it back.
fn generate(name: &str, args: &[&str]) -> (Vec<TraceRequest>, String) {
    let path = scratch(name);
    let path_text = path.to_str().expect("utf-8 path");
    let mut all = vec!["trace", "generate", "-o", path_text];
    all.extend_from_slice(args);
    let out = cuttle(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("the trace was written");
    let mut reader = AccessLogReader::new(text.as_bytes());
    let requests: Vec<TraceRequest> = reader.by_ref().map(|r| r.expect("read")).collect();
    assert_eq!(reader.skipped().total(), 0, "every generated line replays");
    std::fs::remove_file(&path).expect("remove the trace");
    (requests, text)
}

/// The popularity figures of a trace over its distinct documents:
/// (share of requests drawn by the top 1% of documents, by the top 10%,
/// share of documents that draw 70% of requests, that draw 90%).
fn popularity(requests: &[TraceRequest]) -> (f64, f64, f64, f64) {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for r in requests {
        *counts.entry(r.url.as_str()).or_default() += 1;
    }
    let mut counts: Vec<u64> = counts.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let documents = counts.len() as f64;
    let total = requests.len() as f64;
    let share_of_top = |fraction: f64| {
        let top = (documents * fraction).round() as usize;
        counts[..top].iter().sum::<u64>() as f64 / total
    };
    let documents_for = |share: f64| {
        let mut sum = 0;
        let needed = counts
            .iter()
            .position(|c| {
                sum += c;
                sum as f64 >= share * total
            })
            .expect("the shares reach 100%");
        (needed + 1) as f64 / documents
    };
    (
        share_of_top(0.01),
        share_of_top(0.10),
        documents_for(0.70),
        documents_for(0.90),
    )
}

#[test]
fn the_default_trace_has_the_popularity_of_measured_proxy_traces() {
    let (requests, _) = generate("default.log", &["--requests", "50000"]);
    assert_eq!(requests.len(), 50000);
    let (top1, top10, docs70, docs90) = popularity(&requests);
    let shown = format!(
        "top 1% of documents draw {:.1}%, top 10% draw {:.1}%, \
         {:.1}% of documents draw 70%, {:.1}% draw 90%",
        top1 * 100.0,
        top10 * 100.0,
        docs70 * 100.0,
        docs90 * 100.0
    );
    println!("{shown}");
    assert!((0.20..=0.35).contains(&top1), "{shown}");
    assert!((0.45..=0.55).contains(&top10), "{shown}");
    assert!((0.25..=0.40).contains(&docs70), "{shown}");
    assert!((0.70..=0.80).contains(&docs90), "{shown}");
}

#[test]
fn a_seed_writes_the_same_trace_and_a_document_keeps_its_size() {
    let args = [
        "--requests",
        "3000",
        "--objects",
        "500",
        "--zipf",
        "0.9",
        "--clients",
        "10.1.0.0/16,10.2.0.7",
        "--seed",
        "42",
        "--duration",
        "60",
    ];
    let (requests, text) = generate("seeded-a.log", &args);
    let (_, again) = generate("seeded-b.log", &args);
    assert_eq!(text, again, "same seed, same trace");
    let mut other_args = args;
    other_args[9] = "43";
    let (_, other) = generate("seeded-c.log", &other_args);
    assert_ne!(text, other, "another seed, another trace");

    let mut sizes: HashMap<&str, u64> = HashMap::new();
    let mut hosts = std::collections::HashSet::new();
    for r in &requests {
        let size = *sizes.entry(r.url.as_str()).or_insert(r.size);
        assert_eq!(size, r.size, "{} changed size", r.url);
        hosts.insert(r.url.split('/').nth(2).expect("absolute URL"));
    }
    assert!(sizes.len() <= 500);
    assert!(hosts.len() > 5, "URLs spread over hosts: {hosts:?}");

    let range = ClientRange::parse("10.1.0.0/16").expect("range");
    let single: std::net::IpAddr = "10.2.0.7".parse().expect("address");
    assert!(requests
        .iter()
        .all(|r| range.contains(r.client) || r.client == single));
    assert!(requests.iter().any(|r| r.client == single));
    assert!(requests.iter().any(|r| r.client != single));

    let first = requests.first().expect("requests").time;
    let last = requests.last().expect("requests").time;
    assert!(requests.windows(2).all(|w| w[0].time <= w[1].time));
    assert!(
        last - first > 30.0 && last - first < 90.0,
        "{first}..{last}"
    );
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    let out = cuttle(&["trace", "generate", "--requests", "5", "--zipf", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--zipf"), "{err}");
    let out = cuttle(&["trace", "generate", "--clients", "10.0.0.0/40"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("prefix"), "{err}");
}
