//! `cuttle store verify` and `cuttle store ls` on real cache_dirs built
//! through the library: counts and exit status, a corrupted body byte,
//! the listing, and the errors (missing dir, not a store, in use).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cuttle::store::{DirSpec, Key, Store, StoreOptions, Times, DATA_FILE};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("cuttle-store-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cuttle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(args)
        .output()
        .expect("cuttle runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Opens the store, waiting out a lock that only a sibling test's child
/// can hold: a process forked by another test (to run cuttle) keeps a copy
/// of our just-closed descriptor, and with it the flock, until it execs.
fn open_store(path: &Path) -> Store {
    let spec = DirSpec::new(path.to_path_buf(), 1 << 20, 4096);
    for _ in 0..100 {
        match Store::open(std::slice::from_ref(&spec), StoreOptions::default()) {
            Err(cuttle::store::StoreError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            opened => return opened.expect("store opens").0,
        }
    }
    panic!("{} stayed locked for 2 s", path.display());
}

fn key_of(url: &str) -> Key {
    cuttle_protocol::key::store_key(cuttle_protocol::key::Method::Get, url.as_bytes())
}

/// A body no other entry (nor any header) contains: `tag` repeated.
fn body_of(tag: &str, len: usize) -> Vec<u8> {
    tag.bytes().cycle().take(len).collect()
}

fn put(store: &Store, url: &str, date: u32, body: &[u8]) {
    let headers = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let times = Times {
        date,
        expires: 0,
        last_modified: 0,
    };
    let mut w = store
        .writer(
            key_of(url),
            times,
            url.as_bytes(),
            headers.as_bytes(),
            Some(body.len() as u64),
        )
        .expect("writer");
    for chunk in body.chunks(1000) {
        w.write(chunk).expect("write");
    }
    w.commit().expect("commit");
}

/// Three entries (one of them spanning several slots), written and closed.
fn three_entries(dir: &Path) {
    let store = open_store(dir);
    put(
        &store,
        "http://b.example/two",
        1_700_000_000,
        &body_of("TWO!", 10_000),
    );
    put(
        &store,
        "http://a.example/one",
        1_000_000_000,
        &body_of("ONE!", 100),
    );
    put(&store, "http://c.example/three", 0, &body_of("THREE", 0));
    store.flush().expect("flush");
}

fn counts(stdout: &[u8]) -> Vec<(String, u64)> {
    text(stdout)
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(": ").unwrap_or_else(|| panic!("line {l:?}"));
            (name.to_string(), value.parse().expect("a count"))
        })
        .collect()
}

fn count(stdout: &[u8], name: &str) -> u64 {
    counts(stdout)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name:?} in {}", text(stdout)))
        .1
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn verify_counts_a_clean_store_and_exits_0() {
    let dir = TempDir::new("clean");
    three_entries(&dir.0);
    let out = cuttle(&["store", "verify", arg(&dir.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let names: Vec<String> = counts(&out.stdout).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "entries",
            "good",
            "bytes",
            "bad",
            "torn",
            "orphaned",
            "bad chains",
            "duplicates"
        ]
    );
    assert_eq!(count(&out.stdout, "entries"), 3);
    assert_eq!(count(&out.stdout, "good"), 3);
    assert_eq!(count(&out.stdout, "bad"), 0);
    assert_eq!(count(&out.stdout, "orphaned"), 0);
    // URL, header block and body of each entry.
    let expected: u64 = [
        ("http://b.example/two", 10_000),
        ("http://a.example/one", 100),
        ("http://c.example/three", 0),
    ]
    .iter()
    .map(|(url, len)| {
        let headers = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        (url.len() + headers.len() + len) as u64
    })
    .sum();
    assert_eq!(count(&out.stdout, "bytes"), expected);
    // Not a terminal: no progress bar, nothing on stderr.
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // An empty store is clean too.
    let empty = TempDir::new("empty");
    drop(open_store(&empty.0));
    let out = cuttle(&["store", "verify", arg(&empty.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(count(&out.stdout, "entries"), 0);
}

#[test]
fn verify_finds_a_corrupted_body_byte_and_exits_1() {
    let dir = TempDir::new("corrupt");
    three_entries(&dir.0);
    let file = dir.0.join(DATA_FILE);
    let mut data = std::fs::read(&file).expect("read the data file");
    let needle = body_of("ONE!", 100);
    let at = data
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the body is in the data file");
    data[at + 50] ^= 0x20;
    std::fs::write(&file, &data).expect("write the data file");

    let out = cuttle(&["store", "verify", arg(&dir.0)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(count(&out.stdout, "entries"), 3);
    assert_eq!(count(&out.stdout, "good"), 2);
    assert_eq!(count(&out.stdout, "bad"), 1);
    let err = text(&out.stderr);
    assert!(err.contains(arg(&dir.0)), "{err}");

    // ls leaves the bad entry out and says so.
    let out = cuttle(&["store", "ls", arg(&dir.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(!listing.contains("a.example"), "{listing}");
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(text(&out.stderr).contains("1 entries failed verification"));

    // Inspection changed nothing: the entry is still there, still bad.
    let out = cuttle(&["store", "verify", arg(&dir.0)]);
    assert_eq!(count(&out.stdout, "bad"), 1);
    let now = std::fs::read(&file).expect("read the data file");
    assert!(now == data, "verify and ls must not write");
}

#[test]
fn ls_lists_url_size_and_date_sorted_by_url() {
    let dir = TempDir::new("ls");
    three_entries(&dir.0);
    let out = cuttle(&["store", "ls", arg(&dir.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "http://a.example/one\t100\t2001-09-09T01:46:40Z\n\
         http://b.example/two\t10000\t2023-11-14T22:13:20Z\n\
         http://c.example/three\t0\t-\n"
    );

    let empty = TempDir::new("ls-empty");
    drop(open_store(&empty.0));
    let out = cuttle(&["store", "ls", arg(&empty.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn errors_name_the_path_and_exit_1() {
    let dir = TempDir::new("errors");
    for cmd in ["verify", "ls"] {
        // No such directory (and inspecting does not create it).
        let missing = dir.0.join("missing");
        let out = cuttle(&["store", cmd, arg(&missing)]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(out.stdout.is_empty());
        let err = text(&out.stderr);
        assert!(err.starts_with("cuttle: "), "{err}");
        assert!(err.contains(arg(&missing)), "{err}");
        assert!(!missing.exists(), "{cmd} created {}", missing.display());

        // A directory with no data file.
        let out = cuttle(&["store", cmd, arg(&dir.0)]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = text(&out.stderr);
        assert!(err.contains("not a cuttle cache_dir"), "{err}");
        assert!(err.contains(arg(&dir.0)), "{err}");
        assert!(
            !dir.0.join(DATA_FILE).exists(),
            "{cmd} created the data file"
        );
    }

    // A data file that is not a store.
    let other = TempDir::new("not-a-store");
    let file = other.0.join(DATA_FILE);
    std::fs::write(&file, vec![0xabu8; 64 << 10]).expect("write");
    for cmd in ["verify", "ls"] {
        let out = cuttle(&["store", cmd, arg(&other.0)]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(out.stdout.is_empty());
        let err = text(&out.stderr);
        assert!(err.starts_with("cuttle: "), "{err}");
        assert!(err.contains(arg(&file)), "{err}");
        assert!(err.contains("not a cuttle data file"), "{err}");
    }
}

#[test]
fn a_store_in_use_is_refused() {
    let dir = TempDir::new("in-use");
    three_entries(&dir.0);
    let held = open_store(&dir.0);
    for cmd in ["verify", "ls"] {
        let out = cuttle(&["store", cmd, arg(&dir.0)]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert!(out.stdout.is_empty());
        let err = text(&out.stderr);
        assert!(err.contains("in use"), "{err}");
        assert!(err.contains(arg(&dir.0)), "{err}");
    }
    drop(held);
    let out = cuttle(&["store", "verify", arg(&dir.0)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
