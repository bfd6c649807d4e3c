//! squid.conf lexical layer: physical lines to logical lines (comments, backslash continuations), tokens (quotes, `#` comments), `include` expansion (globs, path map, depth and loop checks), `if`/`else`/`endif`, and bounded file reading.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::{Diagnostic, LoadOptions, Location, Severity};

/// Squid documents a hard-coded include nesting limit of 16 levels.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;
/// Limits that keep a hostile or mistaken config (or a fuzzer) from making
/// the loader read without bound: per file, in total, and file count.
const MAX_FILE_BYTES: u64 = 16 << 20;
const MAX_TOTAL_BYTES: u64 = 64 << 20;
const MAX_FILES: usize = 1024;
/// Nested `if` blocks beyond this are refused (Squid has no documented limit).
const MAX_IF_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A word delimited by whitespace.
    Bare,
    /// `"..."` with the quotes removed and escapes resolved.
    Quoted,
    /// `parameters("/path")`: values to be read from a file.
    ParamsFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub text: String,
    /// Byte offset of the token's first character in the logical line.
    pub offset: usize,
}

impl Token {
    /// True for an unquoted word equal to `word`.
    pub fn is(&self, word: &str) -> bool {
        self.kind == TokenKind::Bare && self.text == word
    }
}

/// One directive line after continuation joining, comment removal and include
/// expansion.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub location: Location,
    pub text: String,
    pub tokens: Vec<Token>,
    /// Byte offset where the line's content ends (a trailing `#` comment starts
    /// here, or the line's length).
    pub end: usize,
}

impl Line {
    /// The directive name (always present: empty lines are never produced).
    pub fn name(&self) -> &str {
        self.tokens.first().map(|t| t.text.as_str()).unwrap_or("")
    }

    /// The arguments after the directive name.
    pub fn args(&self) -> &[Token] {
        self.tokens.get(1..).unwrap_or(&[])
    }

    /// The raw text from token `index` to the end of the content, as written
    /// (for directives like `logformat` that take the rest of the line).
    pub fn rest_from(&self, index: usize) -> &str {
        match self.tokens.get(index) {
            Some(t) => self.text.get(t.offset..self.end).unwrap_or("").trim(),
            None => "",
        }
    }
}

fn is_space(b: u8) -> bool {
    // Squid's separator set.
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Split text into logical lines: `(first physical line number, text)`.
/// Lines that are empty or start with `#` (after leading blanks) are dropped;
/// a line ending in a backslash is joined with the next one, as Squid does.
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut buf) = match pending.take() {
            Some(p) => p,
            None => {
                let trimmed = raw.trim_start_matches([' ', '\t']);
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                (number, String::new())
            }
        };
        buf.push_str(raw);
        if buf.ends_with('\\') {
            buf.pop();
            pending = Some((start, buf));
        } else {
            out.push((start, buf));
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

/// Split one logical line into tokens. A `#` that starts a token (outside
/// quotes) ends the line, which is how Squid 5 treats trailing comments.
/// Returns the tokens and the offset where content ends.
pub(crate) fn tokenize(text: &str) -> Result<(Vec<Token>, usize), String> {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        let Some(&first) = bytes.get(i) else {
            return Ok((tokens, len));
        };
        if first == b'#' {
            return Ok((tokens, i));
        }
        if first == b'"' {
            let (value, next) = quoted(text, i)?;
            tokens.push(Token {
                kind: TokenKind::Quoted,
                text: value,
                offset: i,
            });
            i = next;
            continue;
        }
        const PARAMS: &str = "parameters(\"";
        if text.get(i..).is_some_and(|rest| rest.starts_with(PARAMS)) {
            let quote = i + PARAMS.len() - 1;
            let (value, next) = quoted_inner(text, quote)?;
            if bytes.get(next) != Some(&b')') {
                return Err("parameters(\"...\") is missing its closing parenthesis".into());
            }
            let after = next + 1;
            if bytes.get(after).is_some_and(|&b| !is_space(b)) {
                return Err("unexpected text after parameters(\"...\")".into());
            }
            tokens.push(Token {
                kind: TokenKind::ParamsFile,
                text: value,
                offset: i,
            });
            i = after;
            continue;
        }
        let start = i;
        while bytes.get(i).is_some_and(|&b| !is_space(b)) {
            i += 1;
        }
        // Delimiters are ASCII, so `start..i` lies on character boundaries.
        let word = text.get(start..i).unwrap_or("");
        tokens.push(Token {
            kind: TokenKind::Bare,
            text: word.to_string(),
            offset: start,
        });
    }
}

/// A quoted token starting at `open` (the `"`), which must be followed by
/// whitespace or the end of the line.
fn quoted(text: &str, open: usize) -> Result<(String, usize), String> {
    let (value, next) = quoted_inner(text, open)?;
    if text.as_bytes().get(next).is_some_and(|&b| !is_space(b)) {
        return Err("unexpected text right after a closing quote".into());
    }
    Ok((value, next))
}

/// The contents of `"..."` starting at `open`; returns the value and the
/// offset just past the closing quote. `\"` and `\\` are escapes, as are
/// `\n`, `\r`, `\t`; any other backslash is kept literally.
fn quoted_inner(text: &str, open: usize) -> Result<(String, usize), String> {
    let mut value = String::new();
    let rest = text.get(open + 1..).unwrap_or("");
    let mut chars = rest.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, open + 1 + at + 1)),
            '\\' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            _ => value.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

/// Reads files named by the configuration: applies the path map, refuses
/// anything but regular files, and enforces the size and count limits.
pub(crate) struct Files<'o> {
    options: &'o LoadOptions,
    /// Refuse every file named by the configuration.
    sandbox: bool,
    files_read: usize,
    bytes_read: u64,
}

impl<'o> Files<'o> {
    pub fn new(options: &'o LoadOptions, sandbox: bool) -> Self {
        Files {
            options,
            sandbox,
            files_read: 0,
            bytes_read: 0,
        }
    }

    /// The path to open for `written`, as it appears in a line of
    /// `including_file`: relative paths resolve against that file's
    /// directory, then the longest matching path_map prefix is rewritten.
    pub fn resolve(&self, written: &str, including_file: &Path) -> PathBuf {
        let path = Path::new(written);
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            including_file
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(path)
        };
        self.map(&joined)
    }

    fn map(&self, path: &Path) -> PathBuf {
        let mut best: Option<(usize, PathBuf)> = None;
        for (from, to) in &self.options.path_map {
            if let Ok(rest) = path.strip_prefix(from) {
                let depth = from.components().count();
                if best.as_ref().is_none_or(|(d, _)| depth > *d) {
                    let mapped = if rest.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(rest)
                    };
                    best = Some((depth, mapped));
                }
            }
        }
        best.map(|(_, p)| p).unwrap_or_else(|| path.to_path_buf())
    }

    /// Read a file named inside the configuration (refused in sandbox mode).
    pub fn read(&mut self, path: &Path) -> Result<String, String> {
        if self.sandbox {
            return Err(format!(
                "\"{}\" not read: file access is disabled",
                path.display()
            ));
        }
        self.read_top(path)
    }

    /// Read a file, whatever the sandbox setting (the caller named it).
    pub fn read_top(&mut self, path: &Path) -> Result<String, String> {
        let shown = path.display();
        if self.files_read >= MAX_FILES {
            return Err(format!(
                "cannot open \"{shown}\": more than {MAX_FILES} configuration files read"
            ));
        }
        let meta = fs::metadata(path)
            .map_err(|e| format!("cannot open \"{shown}\": {}", io_reason(&e)))?;
        if meta.is_dir() {
            return Err(format!("cannot open \"{shown}\": it is a directory"));
        }
        if !meta.is_file() {
            // Devices and FIFOs could block or never end.
            return Err(format!("cannot open \"{shown}\": not a regular file"));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "cannot open \"{shown}\": larger than {} MiB",
                MAX_FILE_BYTES >> 20
            ));
        }
        let file = fs::File::open(path)
            .map_err(|e| format!("cannot open \"{shown}\": {}", io_reason(&e)))?;
        let mut buf = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read \"{shown}\": {}", io_reason(&e)))?;
        let size = buf.len() as u64;
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "cannot open \"{shown}\": larger than {} MiB",
                MAX_FILE_BYTES >> 20
            ));
        }
        if self.bytes_read + size > MAX_TOTAL_BYTES {
            return Err(format!(
                "cannot open \"{shown}\": more than {} MiB of configuration read in total",
                MAX_TOTAL_BYTES >> 20
            ));
        }
        self.files_read += 1;
        self.bytes_read += size;
        // Comments in old configs are often Latin-1; keep going rather than refuse.
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A comparable identity for loop detection: the canonical path when the file
/// exists, else the path made absolute lexically.
fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// State of one `if` block.
struct Cond {
    location: Location,
    /// Whether the enclosing blocks are active.
    outer_active: bool,
    /// The condition's value.
    value: bool,
    in_else: bool,
}

impl Cond {
    fn active(&self) -> bool {
        self.outer_active && (self.value != self.in_else)
    }
}

struct Expander<'a, 'o> {
    files: &'a mut Files<'o>,
    diags: &'a mut Vec<Diagnostic>,
    out: Vec<Line>,
}

impl Expander<'_, '_> {
    fn error(&mut self, location: Location, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Error,
            location,
            message,
        });
    }

    fn warning(&mut self, location: Location, message: String) {
        self.diags.push(Diagnostic {
            severity: Severity::Warning,
            location,
            message,
        });
    }

    fn expand_text(&mut self, text: &str, file: &Path, stack: &mut Vec<PathBuf>) {
        let mut conds: Vec<Cond> = Vec::new();
        for (number, raw) in logical_lines(text) {
            let location = Location::new(file, number);
            let (tokens, end) = match tokenize(&raw) {
                Ok(t) => t,
                Err(reason) => {
                    self.error(location, reason);
                    continue;
                }
            };
            let Some(first) = tokens.first() else {
                continue;
            };
            if first.kind != TokenKind::Bare {
                self.error(location, "expected a directive name".into());
                continue;
            }
            let active = conds.last().is_none_or(Cond::active);
            match first.text.as_str() {
                "if" => {
                    if conds.len() >= MAX_IF_DEPTH {
                        self.error(
                            location,
                            format!("if: more than {MAX_IF_DEPTH} nested if blocks"),
                        );
                        continue;
                    }
                    let value = if active {
                        match eval_condition(tokens.get(1..).unwrap_or(&[])) {
                            Ok(v) => v,
                            Err(reason) => {
                                self.error(location.clone(), format!("if: {reason}"));
                                false
                            }
                        }
                    } else {
                        false
                    };
                    conds.push(Cond {
                        location,
                        outer_active: active,
                        value,
                        in_else: false,
                    });
                }
                "else" => match conds.last_mut() {
                    Some(c) if !c.in_else => c.in_else = true,
                    Some(_) => self.error(location, "else: a second else for the same if".into()),
                    None => self.error(location, "else: no matching if".into()),
                },
                "endif" => {
                    if conds.pop().is_none() {
                        self.error(location, "endif: no matching if".into());
                    }
                }
                _ if !active => {}
                "include" => {
                    let line = Line {
                        location,
                        text: raw,
                        tokens,
                        end,
                    };
                    self.include(&line, file, stack);
                }
                _ => self.out.push(Line {
                    location,
                    text: raw,
                    tokens,
                    end,
                }),
            }
        }
        for c in conds {
            self.error(
                c.location,
                "if: no matching endif before the end of the file".into(),
            );
        }
    }

    fn include(&mut self, line: &Line, file: &Path, stack: &mut Vec<PathBuf>) {
        let args = line.args();
        if args.is_empty() {
            self.error(line.location.clone(), "include: missing file name".into());
            return;
        }
        for arg in args {
            let resolved = self.files.resolve(&arg.text, file);
            let Some(pattern) = resolved.to_str() else {
                self.error(
                    line.location.clone(),
                    format!(
                        "include: path \"{}\" is not valid UTF-8",
                        resolved.display()
                    ),
                );
                continue;
            };
            if !has_glob_meta(pattern) {
                self.include_one(&resolved, line, stack);
                continue;
            }
            if self.files.sandbox {
                self.error(
                    line.location.clone(),
                    format!("include: \"{pattern}\" not expanded: file access is disabled"),
                );
                continue;
            }
            // POSIX glob (what Squid uses) has no recursive `**`.
            let mut pattern = pattern.to_string();
            while pattern.contains("**") {
                pattern = pattern.replace("**", "*");
            }
            match glob::glob(&pattern) {
                Err(e) => self.error(
                    line.location.clone(),
                    format!("include: bad pattern \"{pattern}\": {}", e.msg),
                ),
                Ok(paths) => {
                    let matched: Vec<PathBuf> = paths.flatten().take(MAX_FILES + 1).collect();
                    // Squid refuses to start on this; a warning is enough to
                    // tell the admin without failing configs that rely on it.
                    if matched.is_empty() {
                        self.warning(
                            line.location.clone(),
                            format!(
                                "include: \"{pattern}\" matches no file (Squid refuses to start on this)"
                            ),
                        );
                    }
                    for path in matched {
                        self.include_one(&path, line, stack);
                    }
                }
            }
        }
    }

    fn include_one(&mut self, path: &Path, line: &Line, stack: &mut Vec<PathBuf>) {
        if stack.len() > MAX_INCLUDE_DEPTH {
            self.error(
                line.location.clone(),
                format!(
                    "include: \"{}\" would nest includes more than {MAX_INCLUDE_DEPTH} levels deep",
                    path.display()
                ),
            );
            return;
        }
        let id = identity(path);
        if let Some(at) = stack.iter().position(|p| *p == id) {
            let chain: Vec<String> = stack
                .get(at..)
                .unwrap_or(&[])
                .iter()
                .map(|p| p.display().to_string())
                .chain(std::iter::once(id.display().to_string()))
                .collect();
            self.error(
                line.location.clone(),
                format!("include: include loop: {}", chain.join(" -> ")),
            );
            return;
        }
        match self.files.read(path) {
            Err(reason) => self.error(line.location.clone(), format!("include: {reason}")),
            Ok(text) => {
                stack.push(id);
                self.expand_text(&text, path, stack);
                stack.pop();
            }
        }
    }
}

/// Squid's `if` conditions: `true`, `false`, or `INTEGER = INTEGER`.
/// `${process_number}` is 1: cuttle is a single process.
fn eval_condition(args: &[Token]) -> Result<bool, String> {
    let int = |t: &Token| -> Result<i64, String> {
        let s = if t.text == "${process_number}" {
            "1"
        } else {
            t.text.as_str()
        };
        s.parse::<i64>()
            .map_err(|_| format!("\"{}\" is not an integer", t.text))
    };
    match args {
        [t] if t.is("true") => Ok(true),
        [t] if t.is("false") => Ok(false),
        [a, eq, b] if eq.is("=") => Ok(int(a)? == int(b)?),
        [] => Err("missing condition".into()),
        _ => Err("unsupported condition (Squid supports true, false and INTEGER = INTEGER)".into()),
    }
}

/// Turn `text` (the contents of `file`) into directive lines, expanding
/// includes and conditionals. Problems become diagnostics.
pub(crate) fn expand(
    text: &str,
    file: &Path,
    files: &mut Files<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Line> {
    let mut expander = Expander {
        files,
        diags,
        out: Vec::new(),
    };
    let mut stack = vec![identity(file)];
    expander.expand_text(text, file, &mut stack);
    expander.out
}

/// Values read from a quoted value file (`acl x dstdomain "/path"`): the
/// first word of each line; blank lines and `#` comment lines are skipped.
pub(crate) fn value_file_words(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let word = raw
            .split(|c: char| c.is_ascii() && is_space(c as u8))
            .find(|w| !w.is_empty());
        match word {
            Some(w) if !w.starts_with('#') => out.push((index + 1, w.to_string())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
