//! `mesh_discovery GROUP:PORT [ttl=N] [role=client|exit|auto] [interval=TIME]` and `mesh_discovery_key SECRET` (cuttle's own, issue 20): multicast neighbour discovery that builds the parent tree by itself.

use std::net::SocketAddr;
use std::time::Duration;

use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_time, parse_uint, MILLISECONDS};
use super::Setting;

pub use cuttle_protocol::discovery::Role as MeshRole;

/// One `mesh_discovery` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshDiscovery {
    /// The multicast group and UDP port announcements go to.
    pub group: SocketAddr,
    /// Multicast TTL of announcements (1: this link only).
    pub ttl: u8,
    pub role: MeshRole,
    /// How often this node announces itself; silence for 3 intervals
    /// removes a node from the tree.
    pub interval: Duration,
}

/// Both directives; `discovery` is `None` without a `mesh_discovery` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    pub discovery: Setting<Option<MeshDiscovery>>,
    /// The shared secret announcements are signed with (HMAC-SHA256).
    pub key: Setting<Option<String>>,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            discovery: Setting::default_value(None),
            key: Setting::default_value(None),
        }
    }
}

/// The default announcement interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

fn parse_role(word: &str) -> Result<MeshRole, String> {
    match word.to_ascii_lowercase().as_str() {
        "client" => Ok(MeshRole::Client),
        "exit" => Ok(MeshRole::Exit),
        "auto" => Ok(MeshRole::Auto),
        _ => Err(format!("role \"{word}\" is not client, exit or auto")),
    }
}

/// `interval=2` (seconds), `interval=500ms`, `interval=2s`.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = match unit {
        "" | "s" | "sec" => "second",
        "ms" => "millisecond",
        other => other,
    };
    let (interval, _) = parse_time(number, Some(unit), MILLISECONDS)
        .map_err(|e| format!("interval={text}: {e}"))?;
    if interval < Duration::from_millis(100) {
        return Err(format!("interval={text}: must be at least 100 ms"));
    }
    Ok(interval)
}

fn parse_group(text: &str) -> Result<SocketAddr, String> {
    let group: SocketAddr = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not GROUP:PORT (an IP address and a port)"))?;
    if !group.ip().is_multicast() {
        return Err(format!("{} is not a multicast address", group.ip()));
    }
    if group.port() == 0 {
        return Err(format!("\"{text}\": port 0"));
    }
    Ok(group)
}

fn parse_line(line: &Line) -> Result<MeshDiscovery, String> {
    let args = line.args();
    let group = args.first().ok_or("missing GROUP:PORT")?;
    let mut value = MeshDiscovery {
        group: parse_group(&group.text)?,
        ttl: 1,
        role: MeshRole::Auto,
        interval: DEFAULT_INTERVAL,
    };
    for option in args.get(1..).unwrap_or(&[]) {
        let text = option.text.as_str();
        let (name, arg) = text.split_once('=').unwrap_or((text, ""));
        match name {
            "ttl" => {
                value.ttl = parse_uint(arg)
                    .ok()
                    .and_then(|n| u8::try_from(n).ok())
                    .filter(|&n| n >= 1)
                    .ok_or(format!("ttl={arg}: must be 1-255"))?;
            }
            "role" => value.role = parse_role(arg)?,
            "interval" => value.interval = parse_interval(arg)?,
            _ => return Err(format!("unknown option \"{text}\"")),
        }
    }
    Ok(value)
}

pub(super) fn parse_mesh_discovery(ctx: &mut Ctx<'_, '_>, line: &Line) {
    match parse_line(line) {
        Ok(value) => {
            ctx.config.mesh.discovery = Setting::at(Some(value), line.location.clone());
        }
        Err(reason) => ctx.error(&line.location, format!("mesh_discovery: {reason}")),
    }
}

pub(super) fn parse_mesh_discovery_key(ctx: &mut Ctx<'_, '_>, line: &Line) {
    match line.args() {
        [secret] if !secret.text.is_empty() => {
            ctx.config.mesh.key = Setting::at(Some(secret.text.clone()), line.location.clone());
        }
        _ => ctx.error(
            &line.location,
            "mesh_discovery_key: needs exactly one word, the shared secret".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions};

    fn load(text: &str) -> crate::config::Loaded {
        load_str(text, "squid.conf", &LoadOptions::default())
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::config::Severity::Error)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn mesh_discovery_reads_group_ttl_role_interval_and_the_key() {
        let loaded = load(
            "http_port 3128\n\
             mesh_discovery 239.255.80.1:4999 ttl=3 role=exit interval=500ms\n\
             mesh_discovery_key s3cret\n",
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let mesh = &loaded.config.mesh;
        assert_eq!(
            mesh.discovery.value,
            Some(MeshDiscovery {
                group: "239.255.80.1:4999".parse().unwrap(),
                ttl: 3,
                role: MeshRole::Exit,
                interval: Duration::from_millis(500),
            })
        );
        assert_eq!(mesh.key.value.as_deref(), Some("s3cret"));
        assert_eq!(mesh.discovery.location.as_ref().map(|l| l.line), Some(2));
        // The cache manager's config page does not show the secret.
        assert!(loaded
            .config
            .lines
            .iter()
            .any(|l| l.value == "mesh_discovery_key XXXXXXXX"));
        // Nothing is left for the "not used" warnings.
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    }

    #[test]
    fn mesh_discovery_defaults_to_auto_ttl_1_every_10_seconds() {
        let loaded = load("mesh_discovery [ff02::77]:4999\n");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let d = loaded.config.mesh.discovery.value.unwrap();
        assert_eq!(
            (d.ttl, d.role, d.interval),
            (1, MeshRole::Auto, DEFAULT_INTERVAL)
        );
        assert_eq!(loaded.config.mesh.key.value, None);
        let loaded = load("mesh_discovery 239.1.1.1:5 interval=2\n");
        let d = loaded.config.mesh.discovery.value.unwrap();
        assert_eq!(d.interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_mesh_discovery_values_are_errors_at_their_line() {
        for (line, message) in [
            ("mesh_discovery", "missing GROUP:PORT"),
            (
                "mesh_discovery 10.0.0.1:4999",
                "10.0.0.1 is not a multicast address",
            ),
            ("mesh_discovery 239.1.1.1", "is not GROUP:PORT"),
            ("mesh_discovery 239.1.1.1:0", "port 0"),
            ("mesh_discovery 239.1.1.1:5 ttl=0", "ttl=0: must be 1-255"),
            (
                "mesh_discovery 239.1.1.1:5 ttl=256",
                "ttl=256: must be 1-255",
            ),
            (
                "mesh_discovery 239.1.1.1:5 role=boss",
                "role \"boss\" is not client, exit or auto",
            ),
            (
                "mesh_discovery 239.1.1.1:5 interval=0",
                "must be at least 100 ms",
            ),
            ("mesh_discovery 239.1.1.1:5 interval=soon", "interval=soon"),
            (
                "mesh_discovery 239.1.1.1:5 colour=red",
                "unknown option \"colour=red\"",
            ),
            ("mesh_discovery_key", "needs exactly one word"),
            ("mesh_discovery_key a b", "needs exactly one word"),
        ] {
            let errors = errors(&format!("http_port 3128\n{line}\n"));
            assert_eq!(errors.len(), 1, "{line}: {errors:?}");
            assert!(
                errors[0].starts_with("squid.conf:2: ") && errors[0].contains(message),
                "{line}: {errors:?}"
            );
        }
    }
}
