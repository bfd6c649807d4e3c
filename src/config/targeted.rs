//! `targeted_cache_control FIELD... [remove=on|off]` or `targeted_cache_control none`: the
//! targeted cache-control fields (RFC 9213) cuttle obeys on accelerator ports, highest
//! precedence first. cuttle's own directive: Squid has none like it.

use super::directives::Ctx;
use super::lexer::Line;
use super::values::parse_onoff;
use super::Setting;

/// The fields cuttle obeys and whether it removes them from responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetedCacheControl {
    /// Field names in lower case, highest precedence first; empty: none.
    pub fields: Vec<String>,
    /// `remove=on`: the listed fields do not reach the client (RFC 9213 §3 lets a cache
    /// that uses them remove them). Off by default: `CDN-Cache-Control` is typically
    /// passed on for the caches downstream.
    pub remove: bool,
}

impl Default for TargetedCacheControl {
    fn default() -> Self {
        TargetedCacheControl {
            fields: vec!["cdn-cache-control".to_string()],
            remove: false,
        }
    }
}

/// The name cuttle keeps its record of the field in force under (must not be listed):
/// `caching::targeted::INTERNAL_FIELD`, which a test there ties to this one.
const INTERNAL: &str = "cuttle-targeted-cache-control";

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn parse_targeted_cache_control(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let args = line.args();
    if args.is_empty() {
        ctx.error(
            &line.location,
            "targeted_cache_control: missing value (field names, or none)".into(),
        );
        return;
    }
    let mut value = TargetedCacheControl {
        fields: Vec::new(),
        remove: false,
    };
    let mut none = false;
    for token in args {
        let word = token.text.as_str();
        if let Some(setting) = word.strip_prefix("remove=") {
            match parse_onoff(setting) {
                Ok(on) => value.remove = on,
                Err(reason) => {
                    ctx.error(
                        &line.location,
                        format!("targeted_cache_control: {word}: {reason}"),
                    );
                    return;
                }
            }
            continue;
        }
        if word.eq_ignore_ascii_case("none") {
            none = true;
            continue;
        }
        let name = word.to_ascii_lowercase();
        let problem = if !is_field_name(word) {
            Some("is not a field name")
        } else if matches!(name.as_str(), "cache-control" | "expires" | "pragma") {
            Some("is what a targeted field replaces, not a targeted field")
        } else if name == INTERNAL || name.starts_with("x-cuttle-") {
            Some("is one of cuttle's internal fields")
        } else {
            None
        };
        if let Some(problem) = problem {
            ctx.error(
                &line.location,
                format!("targeted_cache_control: \"{word}\" {problem}"),
            );
            return;
        }
        if !value.fields.contains(&name) {
            value.fields.push(name);
        }
    }
    if none && !value.fields.is_empty() {
        ctx.error(
            &line.location,
            "targeted_cache_control: none cannot be combined with field names".into(),
        );
        return;
    }
    ctx.config.targeted_cache_control = Setting::at(value, line.location.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str_sandboxed, Config};

    fn load(text: &str) -> (Config, Vec<String>) {
        let loaded = load_str_sandboxed(text, "squid.conf");
        let diags = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        (loaded.config, diags)
    }

    #[test]
    fn default_is_cdn_cache_control_forwarded() {
        let (c, d) = load("http_port 3128\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.targeted_cache_control.value,
            TargetedCacheControl::default()
        );
        assert_eq!(c.targeted_cache_control.value.fields, ["cdn-cache-control"]);
        assert!(!c.targeted_cache_control.value.remove);
    }

    #[test]
    fn fields_in_order_none_and_remove() {
        let (c, d) = load(
            "targeted_cache_control Cuttle-Cache-Control CDN-Cache-Control cuttle-cache-control remove=on\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let v = &c.targeted_cache_control.value;
        assert_eq!(v.fields, ["cuttle-cache-control", "cdn-cache-control"]);
        assert!(v.remove);
        let (c, d) = load("targeted_cache_control none\n");
        assert!(d.is_empty(), "{d:?}");
        assert!(c.targeted_cache_control.value.fields.is_empty());
    }

    #[test]
    fn bad_values_are_errors_on_their_line() {
        for (text, says) in [
            ("targeted_cache_control\n", "missing value"),
            (
                "targeted_cache_control a(b)\n",
                "\"a(b)\" is not a field name",
            ),
            (
                "targeted_cache_control Cache-Control\n",
                "what a targeted field replaces",
            ),
            ("targeted_cache_control X-Cuttle-Vary-Marker\n", "internal"),
            (
                "targeted_cache_control a remove=perhaps\n",
                "remove=perhaps",
            ),
            ("targeted_cache_control none a\n", "none cannot be combined"),
        ] {
            let (_, d) = load(&format!("http_port 3128\n{text}"));
            assert_eq!(d.len(), 1, "{text}: {d:?}");
            assert!(
                d[0].starts_with("squid.conf:2: error: targeted_cache_control: "),
                "{d:?}"
            );
            assert!(d[0].contains(says), "{text}: {d:?}");
        }
    }
}
