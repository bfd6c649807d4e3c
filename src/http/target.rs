//! Where a request goes: its URL in Squid's canonical form (the text the
//! store key hashes and peers look up), from an absolute-form request on a
//! forward-proxy port, a CONNECT authority, or an origin-form request on an
//! accelerator port (Host header with `vhost`, else `defaultsite`).

use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Uri};

/// How an `http_port` takes requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    Forward,
    Accel {
        defaultsite: Option<String>,
        vhost: bool,
        /// Port to put in accelerated URLs (`vport=`); `None` = the URL's.
        vport: Option<u16>,
        /// `allow-direct`: accelerated requests may go DIRECT.
        allow_direct: bool,
        /// An https_port: its requests' URLs are `https://`, as Squid
        /// makes them.
        https: bool,
    },
}

/// The resolved target of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case scheme (`http`, `https`, ...).
    pub scheme: String,
    /// Lower-case host, trailing dot removed; IPv6 in brackets.
    pub host: String,
    pub port: u16,
    /// Path and query exactly as received (`/` when empty).
    pub path_and_query: String,
    /// The canonical absolute URL (`host:port` for CONNECT).
    pub url: String,
}

/// Why a request has no usable target (ERR_INVALID_URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTarget(pub String);

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn canonical(scheme: &str, host: &str, port: u16, path_and_query: &str) -> String {
    // Pieces pushed, not format!: every request makes one (a hit too).
    let mut url = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 9);
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    if default_port(scheme) != Some(port) {
        url.push(':');
        url.push_str(itoa::Buffer::new().format(port));
    }
    url.push_str(path_and_query);
    url
}

fn from_authority(
    scheme: &str,
    authority: &Authority,
    path_and_query: &str,
) -> Result<Target, BadTarget> {
    let host = normalize_host(authority.host());
    if host.is_empty() {
        return Err(BadTarget("empty host".into()));
    }
    let port = match authority.port_u16() {
        Some(p) => p,
        None => {
            default_port(scheme).ok_or_else(|| BadTarget(format!("no port for scheme {scheme}")))?
        }
    };
    let path_and_query = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    Ok(Target {
        scheme: scheme.to_string(),
        url: canonical(scheme, &host, port, path_and_query),
        host,
        port,
        path_and_query: path_and_query.to_string(),
    })
}

impl Target {
    /// The target of `method uri` with `headers`, received on a port of `kind`.
    pub fn of_request(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        kind: &PortKind,
    ) -> Result<Target, BadTarget> {
        if method == Method::CONNECT {
            let authority = uri
                .authority()
                .ok_or_else(|| BadTarget("CONNECT needs host:port".into()))?;
            let port = authority
                .port_u16()
                .ok_or_else(|| BadTarget("CONNECT needs a port".into()))?;
            let host = normalize_host(authority.host());
            return Ok(Target {
                scheme: "https".into(),
                url: format!("{host}:{port}"),
                host,
                port,
                path_and_query: String::new(),
            });
        }
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        if let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) {
            // Absolute-form, on a forward or accelerator port alike.
            let scheme = scheme.as_str().to_ascii_lowercase();
            return from_authority(&scheme, authority, path_and_query);
        }
        match kind {
            PortKind::Forward => Err(BadTarget(format!(
                "{path_and_query} is not an absolute URL (this port is a forward proxy)"
            ))),
            PortKind::Accel {
                defaultsite,
                vhost,
                vport,
                https,
                ..
            } => {
                let scheme = if *https {
                    Scheme::HTTPS.as_str()
                } else {
                    Scheme::HTTP.as_str()
                };
                let host_header = headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.is_empty());
                let site = match (vhost, host_header, defaultsite) {
                    (true, Some(h), _) => h.to_string(),
                    (_, _, Some(d)) => d.clone(),
                    (false, Some(h), None) => h.to_string(),
                    (_, None, None) => {
                        return Err(BadTarget("no Host header and no defaultsite".into()))
                    }
                };
                let authority: Authority = site
                    .parse()
                    .map_err(|_| BadTarget(format!("bad host {site:?}")))?;
                let mut target = from_authority(scheme, &authority, path_and_query)?;
                if let Some(vport) = vport {
                    if authority.port_u16().is_none() {
                        target.port = *vport;
                        target.url =
                            canonical(scheme, &target.host, *vport, &target.path_and_query);
                    }
                }
                Ok(target)
            }
        }
    }

    /// `host:port` as it goes in a Host header (port only when not default).
    pub fn host_header(&self) -> String {
        if default_port(&self.scheme) == Some(self.port) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        method: &str,
        uri: &str,
        host: Option<&str>,
        kind: &PortKind,
    ) -> Result<Target, BadTarget> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(http::header::HOST, h.parse().expect("header"));
        }
        Target::of_request(
            &method.parse().expect("method"),
            &uri.parse().expect("uri"),
            &headers,
            kind,
        )
    }

    #[test]
    fn absolute_urls_become_canonical() {
        let t =
            target("GET", "http://Example.COM./a?b=1", None, &PortKind::Forward).expect("target");
        assert_eq!(t.url, "http://example.com/a?b=1");
        assert_eq!((t.host.as_str(), t.port), ("example.com", 80));
        let t = target(
            "GET",
            "http://127.0.0.1:18080/obj/5k",
            None,
            &PortKind::Forward,
        )
        .expect("target");
        assert_eq!(t.url, "http://127.0.0.1:18080/obj/5k");
        let t = target("GET", "http://h:80", None, &PortKind::Forward).expect("target");
        assert_eq!(t.url, "http://h/");
        assert_eq!(t.host_header(), "h");
    }

    #[test]
    fn origin_form_needs_an_accelerator() {
        assert!(target("GET", "/x", Some("h"), &PortKind::Forward).is_err());
        let accel = PortKind::Accel {
            defaultsite: Some("www.example.com".into()),
            vhost: true,
            vport: None,
            allow_direct: false,
            https: false,
        };
        assert_eq!(
            target("GET", "/x", Some("other.example"), &accel)
                .expect("t")
                .url,
            "http://other.example/x"
        );
        assert_eq!(
            target("GET", "/x", None, &accel).expect("t").url,
            "http://www.example.com/x"
        );
        let no_vhost = PortKind::Accel {
            defaultsite: Some("www.example.com".into()),
            vhost: false,
            vport: None,
            allow_direct: false,
            https: false,
        };
        assert_eq!(
            target("GET", "/x", Some("other.example"), &no_vhost)
                .expect("t")
                .url,
            "http://www.example.com/x"
        );
        let https = PortKind::Accel {
            defaultsite: Some("www.example.com".into()),
            vhost: true,
            vport: None,
            allow_direct: false,
            https: true,
        };
        let t = target("GET", "/x", Some("www.example.com:443"), &https).expect("t");
        assert_eq!(t.url, "https://www.example.com/x");
        assert_eq!(t.host_header(), "www.example.com");
    }

    #[test]
    fn connect_is_host_and_port() {
        let t = target("CONNECT", "example.com:443", None, &PortKind::Forward).expect("t");
        assert_eq!(t.url, "example.com:443");
        assert_eq!(t.port, 443);
    }
}
