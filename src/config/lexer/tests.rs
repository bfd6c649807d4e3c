//! Unit tests of the squid.conf lexical layer: lines, tokens, includes, conditionals.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn words(text: &str) -> Vec<String> {
    tokenize(text)
        .unwrap()
        .0
        .into_iter()
        .map(|t| t.text)
        .collect()
}

#[test]
fn continuation_joins_lines_and_keeps_first_line_number() {
    let lines = logical_lines("a 1\ncache_dir rock /x 4096 \\\n    slot-size=16384\nb 2\n");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].0, 2);
    assert_eq!(
        words(&lines[1].1),
        ["cache_dir", "rock", "/x", "4096", "slot-size=16384"]
    );
    assert_eq!(lines[2].0, 4);
}

#[test]
fn continuation_at_end_of_file_is_kept() {
    let lines = logical_lines("x 1 \\");
    assert_eq!(lines, vec![(1, "x 1 ".to_string())]);
}

#[test]
fn comment_and_blank_lines_are_dropped() {
    let lines = logical_lines("# c\n\n   \t# indented comment\r\n  x 1\r\n");
    assert_eq!(lines, vec![(4, "  x 1".to_string())]);
}

#[test]
fn trailing_hash_token_ends_the_line() {
    assert_eq!(words("workers 16   # More workers"), ["workers", "16"]);
    assert_eq!(
        words("acl Safe_ports port 80\t# http"),
        ["acl", "Safe_ports", "port", "80"]
    );
    // A # inside a token is data, not a comment.
    assert_eq!(words("x a#b c"), ["x", "a#b", "c"]);
    // A # inside quotes is data.
    assert_eq!(words("x \"a # b\" c"), ["x", "a # b", "c"]);
    let (_, end) = tokenize("logformat x %a # tail").unwrap();
    assert_eq!(end, 15);
}

#[test]
fn quotes_and_escapes() {
    let (t, _) = tokenize(r#"acl w dstdomain "/etc/squid/white list.txt" "a\"b\\c""#).unwrap();
    assert_eq!(t[3].kind, TokenKind::Quoted);
    assert_eq!(t[3].text, "/etc/squid/white list.txt");
    assert_eq!(t[4].text, "a\"b\\c");
    assert!(tokenize("x \"open").unwrap_err().contains("unterminated"));
    assert!(tokenize("x \"a\"b").is_err());
}

#[test]
fn parameters_syntax_names_a_file() {
    let (t, _) = tokenize(r#"acl a dstdomain parameters("/etc/x.txt") y"#).unwrap();
    assert_eq!(t[3].kind, TokenKind::ParamsFile);
    assert_eq!(t[3].text, "/etc/x.txt");
    assert_eq!(t[4].text, "y");
    assert!(tokenize(r#"acl a dstdomain parameters("/x""#).is_err());
}

#[test]
fn rest_of_line_is_raw() {
    let (tokens, end) = tokenize("logformat w  %ts.%03tu  %>a # c").unwrap();
    let line = Line {
        location: Location::new("f", 1),
        text: "logformat w  %ts.%03tu  %>a # c".into(),
        tokens,
        end,
    };
    assert_eq!(line.rest_from(2), "%ts.%03tu  %>a");
    assert_eq!(line.rest_from(9), "");
}

#[test]
fn value_file_takes_first_word_and_skips_comments() {
    let words = value_file_words("# head\n.a.com  # tail\n\n  .b.org\n#.c\n.d");
    assert_eq!(
        words,
        vec![(2, ".a.com".into()), (4, ".b.org".into()), (6, ".d".into())]
    );
}

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let n = DIR_SEQ.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("cuttle-lexer-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(path: &Path, options: &LoadOptions) -> (Vec<Line>, Vec<Diagnostic>) {
    let mut files = Files::new(options, false);
    let mut diags = Vec::new();
    let text = files.read_top(path).unwrap();
    let lines = expand(&text, path, &mut files, &mut diags);
    (lines, diags)
}

#[test]
fn include_glob_expands_in_sorted_order_relative_to_the_including_file() {
    let dir = TempDir::new();
    dir.write("conf.d/b.conf", "second 2\n");
    dir.write("conf.d/a.conf", "first 1\n");
    dir.write("conf.d/skip.txt", "never 0\n");
    let top = dir.write("squid.conf", "before 0\ninclude conf.d/*.conf\nafter 3\n");
    let (lines, diags) = run(&top, &LoadOptions::default());
    assert!(diags.is_empty(), "{diags:?}");
    let names: Vec<&str> = lines.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["before", "first", "second", "after"]);
    assert_eq!(
        lines[1].location,
        Location::new(dir.0.join("conf.d/a.conf"), 1)
    );
}

#[test]
fn include_glob_matching_nothing_warns_but_a_missing_file_is_an_error() {
    let dir = TempDir::new();
    let top = dir.write(
        "squid.conf",
        "include nothing/*.conf\ninclude missing.conf\n",
    );
    let (lines, diags) = run(&top, &LoadOptions::default());
    assert!(lines.is_empty());
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert_eq!(
        (diags[0].severity, diags[0].location.line),
        (Severity::Warning, 1)
    );
    assert!(
        diags[0].message.contains("matches no file"),
        "{}",
        diags[0].message
    );
    assert_eq!(
        (diags[1].severity, diags[1].location.line),
        (Severity::Error, 2)
    );
    assert!(
        diags[1].message.contains("missing.conf"),
        "{}",
        diags[1].message
    );
}

#[test]
fn include_path_map_rewrites_absolute_paths() {
    let dir = TempDir::new();
    dir.write("real/x.conf", "mapped 1\n");
    let top = dir.write("squid.conf", "include /etc/squid/conf.d/*.conf\n");
    let options = LoadOptions {
        path_map: vec![
            (PathBuf::from("/etc"), PathBuf::from("/nonexistent")),
            (PathBuf::from("/etc/squid/conf.d"), dir.0.join("real")),
        ],
    };
    let (lines, diags) = run(&top, &options);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].name(), "mapped");
}

#[test]
fn include_loop_is_detected_with_a_clear_error() {
    let dir = TempDir::new();
    dir.write("b.conf", "in_b 1\ninclude a.conf\n");
    let top = dir.write("a.conf", "in_a 1\ninclude b.conf\n");
    let (lines, diags) = run(&top, &LoadOptions::default());
    assert_eq!(lines.len(), 2);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].message.contains("include loop"),
        "{}",
        diags[0].message
    );
    assert!(
        diags[0].message.contains("a.conf -> "),
        "{}",
        diags[0].message
    );
    assert_eq!(diags[0].location, Location::new(dir.0.join("b.conf"), 2));
}

#[test]
fn include_depth_is_limited() {
    let dir = TempDir::new();
    for i in 0..20 {
        dir.write(
            &format!("f{i}.conf"),
            &format!("level {i}\ninclude f{}.conf\n", i + 1),
        );
    }
    dir.write("f20.conf", "level 20\n");
    let top = dir.0.join("f0.conf");
    let (lines, diags) = run(&top, &LoadOptions::default());
    // Top file plus 16 levels of includes.
    assert_eq!(lines.len(), MAX_INCLUDE_DEPTH + 1);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].message.contains("16 levels"),
        "{}",
        diags[0].message
    );
}

#[test]
fn sandbox_refuses_includes() {
    let options = LoadOptions::default();
    let mut files = Files::new(&options, true);
    let mut diags = Vec::new();
    let lines = expand(
        "include /etc/passwd\ninclude /etc/*.conf\nx 1\n",
        Path::new("t.conf"),
        &mut files,
        &mut diags,
    );
    assert_eq!(lines.len(), 1);
    assert_eq!(diags.len(), 2);
    assert!(diags
        .iter()
        .all(|d| d.message.contains("file access is disabled")));
}

#[test]
fn devices_are_not_read() {
    let options = LoadOptions::default();
    let mut files = Files::new(&options, false);
    let err = files.read(Path::new("/dev/zero")).unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn conditionals_select_a_branch() {
    let options = LoadOptions::default();
    let mut files = Files::new(&options, false);
    let mut diags = Vec::new();
    let text = "if true\na 1\nelse\nb 1\nendif\nif ${process_number} = 2\nc 1\nif true\nd 1\nendif\nelse\ne 1\nendif\n";
    let lines = expand(text, Path::new("t.conf"), &mut files, &mut diags);
    assert!(diags.is_empty(), "{diags:?}");
    let names: Vec<&str> = lines.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["a", "e"]);
}

#[test]
fn unbalanced_conditionals_are_errors() {
    let options = LoadOptions::default();
    let mut files = Files::new(&options, false);
    let mut diags = Vec::new();
    expand(
        "endif\nif maybe\nx 1\n",
        Path::new("t.conf"),
        &mut files,
        &mut diags,
    );
    assert_eq!(diags.len(), 3, "{diags:?}");
    assert_eq!(diags[0].location.line, 1);
    assert!(diags[1].message.contains("unsupported condition"));
    assert!(diags[2].message.contains("no matching endif"));
}
