//! Keeps the shape of DESIGN.md honest: every source file says what it is
//! for in a `//!` first line, no code file grows past 800 lines, protocol/
//! stays sans-IO and free of `unsafe`, the layer table matches the modules of
//! src/, and modules of src/ import only modules of a lower (or their own)
//! layer, however the `use` is written.

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
    ("access", 2),
    ("access_log", 2),
    ("cache_log", 2),
    ("store", 2),
    ("caching", 3),
    ("upstream", 3),
    ("peers", 4),
    ("mgr", 5),
    ("sim", 5),
    ("http", 6),
    ("daemon", 7),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The modules of src/ that are not layered: the crate roots and the
/// command line, which may use anything.
const UNLAYERED: &[&str] = &["lib", "main", "cli"];

/// The top-level modules of src/: its `.rs` files and folders, and what
/// lib.rs and main.rs declare.
fn top_level_modules() -> Vec<String> {
    let src = root().join("src");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            names.push(name);
        }
    }
    for root_file in ["lib.rs", "main.rs"] {
        let text = std::fs::read_to_string(src.join(root_file)).expect("crate root");
        names.extend(declared_modules(&text));
    }
    names.sort();
    names.dedup();
    names
}

/// The names of `mod name;` declarations (any visibility) in `text`.
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub ")
                .or_else(|| line.strip_prefix("pub(crate) "))
                .or_else(|| line.strip_prefix("pub(super) "))
                .unwrap_or(line);
            let name = rest.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

#[test]
fn the_layer_table_matches_the_tree() {
    let src = root().join("src");
    for (module, _) in LAYERS {
        assert!(
            src.join(format!("{module}.rs")).is_file() || src.join(module).is_dir(),
            "LAYERS in tests/tidy.rs lists `{module}`, but there is no src/{module}.rs or src/{module}/"
        );
    }
    for module in top_level_modules() {
        assert!(
            UNLAYERED.contains(&module.as_str()) || layer_of(&module).is_some(),
            "src/{module} has no layer: add it to LAYERS in tests/tidy.rs"
        );
    }
}

/// Every top-level module a text names, as (1-based line, module), in a
/// file whose module is `depth` modules below the crate root (src/a.rs and
/// src/a/mod.rs: 1, src/a/b.rs: 2): through `crate::` (and `$crate::` in
/// macros), or through a chain of `super::` that climbs to the crate root.
/// Plain paths (`crate::config::Config`) and grouped imports
/// (`use crate::{http, store::{Dir, Hit}};`, over as many lines as they
/// take) are read; `self` and `*` in a group name no module. Inline modules
/// are not counted in `depth`: in one, a chain reported as reaching the root
/// stops a module short of it (harmless while no module declares a child
/// named like a top-level module).
fn crate_paths(text: &str, depth: usize) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut from = 0;
    while from < bytes.len() {
        let rest = &text[from..];
        let next = [rest.find("crate::"), rest.find("super::")]
            .into_iter()
            .flatten()
            .min();
        let Some(offset) = next else { break };
        let at = from + offset;
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            // `some_crate::`, or the middle of a `super::` chain already read
            from = at + 1;
            continue;
        }
        let (mut i, at_root) = if text[at..].starts_with("crate::") {
            (at + "crate::".len(), true)
        } else {
            let mut i = at;
            let mut climbs = 0;
            while text[i..].starts_with("super::") {
                i += "super::".len();
                climbs += 1;
            }
            (i, climbs >= depth)
        };
        if at_root {
            i = names_after(text, i, &mut found);
        }
        from = i.max(at + 1);
    }
    found
}

/// Reads the path after `crate::` starting at byte `i`: its first name, or
/// the first name of each item of a group. Returns where reading stopped.
fn names_after(text: &str, mut i: usize, found: &mut Vec<(usize, String)>) -> usize {
    let bytes = text.as_bytes();
    let line_at = |i: usize| text[..i].matches('\n').count() + 1;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ident_at = |i: usize| {
        let end = (i..bytes.len())
            .find(|&j| !is_ident(bytes[j]))
            .unwrap_or(bytes.len());
        &text[i..end]
    };
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    if bytes.get(i) != Some(&b'{') {
        let name = ident_at(i);
        if !name.is_empty() && name != "self" {
            found.push((line_at(i), name.to_string()));
        }
        return i + name.len();
    }
    // A group: the first name of each item at depth 1 is a module.
    let mut depth = 0usize;
    let mut item_start = true;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                item_start = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => item_start = true,
            b if item_start && is_ident(b) => {
                let name = ident_at(i);
                if name != "self" {
                    found.push((line_at(i), name.to_string()));
                }
                item_start = false;
                i += name.len();
                continue;
            }
            b if !b.is_ascii_whitespace() => item_start = false,
            _ => {}
        }
        i += 1;
    }
    i
}

#[test]
fn crate_paths_sees_plain_grouped_multi_line_and_super_imports() {
    let sample = "use crate::config::Config;\n\
                  use crate::{http, store::{Dir, Hit}};\n\
                  use crate::{\n    self,\n    peers::select,\n    mgr::{self, text},\n    *,\n};\n\
                  let x = crate::upstream::connect(); // not_a_crate::daemon\n\
                  $crate::stats::count!();\n\
                  use super::super::{caching, store::Dir};\n\
                  use super::sibling;\n\
                  pub(super) fn f() -> super::super::daemon::Daemon {}\n";
    let paths = crate_paths(sample, 2);
    let seen: Vec<(usize, &str)> = paths
        .iter()
        .map(|(line, name)| (*line, name.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "config"),
            (2, "http"),
            (2, "store"),
            (5, "peers"),
            (6, "mgr"),
            (9, "upstream"),
            (10, "stats"),
            (11, "caching"),
            (11, "store"),
            (13, "daemon"),
        ]
    );
}

#[test]
fn modules_import_only_lower_layers() {
    let src = root().join("src");
    let mut violations = Vec::new();
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
        if UNLAYERED.contains(&module.as_str()) {
            continue;
        }
        let own = layer_of(&module).unwrap_or_else(|| {
            panic!("src/{module} has no layer: add it to LAYERS in tests/tidy.rs")
        });
        let depth = rel.components().count() - usize::from(rel.ends_with("mod.rs"));
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        for (line, name) in crate_paths(&text, depth) {
            if let Some(theirs) = layer_of(&name) {
                if theirs > own {
                    violations.push(format!(
                        "{}:{line}: {module} (layer {own}) uses {name} (layer {theirs})",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Longest a code file may be: past this a file has more than one reason
/// to change and is split by responsibility.
const MAX_LINES: usize = 800;

/// Code files allowed past [`MAX_LINES`], each with the reason.
const LONG_FILES: &[(&str, &str)] = &[];

/// The files that may declare the module in `path` (under the crate root
/// folder `crate_dir`); none for a crate root itself.
fn declaring_files(crate_dir: &Path, path: &Path) -> Vec<PathBuf> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = path.parent().expect("in a folder");
    let parent_dir = if stem == "mod" {
        dir.parent().expect("in a folder")
    } else {
        dir
    };
    if parent_dir == crate_dir {
        if matches!(stem.as_str(), "lib" | "main") {
            return Vec::new();
        }
        return vec![crate_dir.join("lib.rs"), crate_dir.join("main.rs")];
    }
    vec![parent_dir.with_extension("rs"), parent_dir.join("mod.rs")]
}

/// The name `path` is declared by (`foo` for foo.rs and foo/mod.rs).
fn module_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem == "mod" {
        path.parent()
            .and_then(|d| d.file_name())
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    } else {
        stem
    }
}

/// Whether `text` declares `mod name;` under `#[cfg(test)]`.
fn declares_test_module(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.iter().enumerate().any(|(n, line)| {
        declared_modules(line).first().is_some_and(|m| m == name)
            && lines[..n]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("#["))
                .any(|l| *l == "#[cfg(test)]")
    })
}

/// Whether the module in `path` exists only under `#[cfg(test)]`: it or a
/// module around it is declared that way (tests.rs, a tests/ folder, the
/// property and model tests).
fn is_test_only(crate_dir: &Path, path: &Path) -> bool {
    let name = module_name(path);
    declaring_files(crate_dir, path)
        .into_iter()
        .filter(|parent| parent.is_file())
        .any(|parent| {
            let text = std::fs::read_to_string(&parent).expect("source is UTF-8");
            declares_test_module(&text, &name) || is_test_only(crate_dir, &parent)
        })
}

#[test]
fn test_modules_are_recognised() {
    let src = root().join("src");
    for test_only in ["access/tests.rs", "store/tests.rs", "caching/proptests.rs"] {
        assert!(is_test_only(&src, &src.join(test_only)), "{test_only}");
    }
    for code in ["access.rs", "store/mod.rs", "store/dir.rs", "lib.rs"] {
        assert!(!is_test_only(&src, &src.join(code)), "{code}");
    }
}

#[test]
fn no_code_file_is_over_800_lines() {
    let mut too_long = Vec::new();
    for dir in ["src", "protocol/src"] {
        let crate_dir = root().join(dir);
        for path in rust_files(&crate_dir) {
            let rel = path
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .to_string();
            let lines = std::fs::read_to_string(&path)
                .expect("source is UTF-8")
                .lines()
                .count();
            let excepted = LONG_FILES.iter().any(|(file, _)| *file == rel);
            if excepted {
                assert!(
                    lines > MAX_LINES,
                    "{rel} is {lines} lines now: remove it from LONG_FILES in tests/tidy.rs"
                );
            }
            if lines > MAX_LINES && !excepted && !is_test_only(&crate_dir, &path) {
                too_long.push(format!("{rel}: {lines} lines"));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "over {MAX_LINES} lines; split by responsibility:\n{}",
        too_long.join("\n")
    );
}

/// DESIGN.md: every `unsafe` of the daemon lives in store/map.rs (the
/// memory map) and peers/batch_io.rs (recvmmsg/sendmmsg), each block with
/// a `// SAFETY:` line.
#[test]
fn unsafe_lives_only_in_the_store_map_and_batch_io() {
    const ALLOWED: [(&str, usize); 2] = [("store/map.rs", 5), ("peers/batch_io.rs", 4)];
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
        let Some(&(_, at_least)) = ALLOWED.iter().find(|(f, _)| rel == Path::new(f)) else {
            assert!(
                uses.is_empty(),
                "src/{}: unsafe outside store/map.rs and peers/batch_io.rs",
                rel.display()
            );
            continue;
        };
        assert!(
            uses.len() >= at_least,
            "src/{}: its unsafe blocks were not found",
            rel.display()
        );
        let lines: Vec<&str> = text.lines().collect();
        for n in uses {
            let justified = lines[..n]
                .iter()
                .rev()
                .take(6)
                .any(|l| l.trim_start().starts_with("// SAFETY:"));
            assert!(
                justified,
                "src/{}:{}: unsafe without a // SAFETY: line",
                rel.display(),
                n + 1
            );
        }
    }
}
