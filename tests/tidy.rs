//! Keeps the shape of DESIGN.md honest: every source file says what it is
//! for in a `//!` first line, protocol/ stays sans-IO and free of `unsafe`,
//! and modules of src/ import only modules of a lower (or their own) layer.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_source_file_opens_with_its_purpose() {
    for dir in [
        "src",
        "protocol/src",
        "tests",
        "protocol/tests",
        "fuzz/fuzz_targets",
    ] {
        for path in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with("#!["))
                .unwrap_or("");
            assert!(
                first.starts_with("//!"),
                "{} must open with a //! line saying what it is for",
                path.display()
            );
        }
    }
}

#[test]
fn protocol_is_sans_io_and_safe() {
    let lib = std::fs::read_to_string(root().join("protocol/src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("#![forbid(unsafe_code)]"));
    let manifest = std::fs::read_to_string(root().join("protocol/Cargo.toml")).expect("Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .unwrap_or("");
    for banned in ["tokio", "mio", "socket2", "hyper"] {
        assert!(
            !deps.contains(banned),
            "protocol/ must not depend on {banned}"
        );
    }
}

/// Layer of each top-level module of src/ (DESIGN.md, "Layout"); a module may
/// use modules of its own layer or below.
const LAYERS: &[(&str, u8)] = &[
    ("config", 1),
    ("inspect", 2),
    ("stats", 2),
    ("shutdown", 2),
    ("access", 2),
    ("access_log", 2),
    ("cache_log", 2),
    ("store", 2),
    ("caching", 3),
    ("upstream", 3),
    ("peers", 4),
    ("mgr", 5),
    ("http", 6),
    ("daemon", 7),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

#[test]
fn modules_import_only_lower_layers() {
    let src = root().join("src");
    for path in rust_files(&src) {
        let rel = path.strip_prefix(&src).expect("under src");
        let module = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if matches!(module.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let own = layer_of(&module).unwrap_or_else(|| {
            panic!("src/{module} has no layer: add it to LAYERS in tests/tidy.rs")
        });
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        for (n, line) in text.lines().enumerate() {
            for used in line.split("crate::").skip(1) {
                let name: String = used
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if let Some(theirs) = layer_of(&name) {
                    assert!(
                        theirs <= own,
                        "{}:{}: {module} (layer {own}) uses {name} (layer {theirs})",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

/// DESIGN.md: every `unsafe` of the daemon lives in store/map.rs, each
/// block with a `// SAFETY:` line.
#[test]
fn unsafe_lives_only_in_the_store_map() {
    let src = root().join("src");
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        let rel = path.strip_prefix(&src).expect("under src");
        let uses: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let code = l.split("//").next().unwrap_or("");
                code.contains("unsafe {")
                    || code.contains("unsafe impl")
                    || code.contains("unsafe fn")
            })
            .map(|(n, _)| n)
            .collect();
        if rel != Path::new("store/map.rs") {
            assert!(
                uses.is_empty(),
                "src/{}: unsafe outside store/map.rs",
                rel.display()
            );
            continue;
        }
        assert!(uses.len() >= 5, "the map's unsafe blocks were not found");
        let lines: Vec<&str> = text.lines().collect();
        for n in uses {
            let justified = lines[..n]
                .iter()
                .rev()
                .take(6)
                .any(|l| l.trim_start().starts_with("// SAFETY:"));
            assert!(
                justified,
                "src/store/map.rs:{}: unsafe without a // SAFETY: line",
                n + 1
            );
        }
    }
}
