//! Header work: X-Cache labels, the request sent upstream (Via,
//! X-Forwarded-For, hop-by-hop fields), what goes back to the client.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request};

use crate::caching;
use crate::config::{Config, ForwardedFor};
use crate::http::body::ProxyBody;
use crate::http::target::Target;

use super::admit::Arrival;
use super::Proxy;

/// Squid's `X-Cache: HIT from NAME` and `X-Cache-Lookup: HIT from NAME:PORT`.
pub(super) struct Labels {
    pub(super) hit: HeaderValue,
    pub(super) miss: HeaderValue,
    /// Per http_port: (port, hit, miss).
    pub(super) lookup: Vec<(u16, HeaderValue, HeaderValue)>,
}

impl Labels {
    pub(super) fn new(name: &str, config: &Config) -> Labels {
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("cuttle"))
        };
        Labels {
            hit: value(format!("HIT from {name}")),
            miss: value(format!("MISS from {name}")),
            lookup: config
                .http_ports
                .iter()
                .map(|p| {
                    (
                        p.port,
                        value(format!("HIT from {name}:{}", p.port)),
                        value(format!("MISS from {name}:{}", p.port)),
                    )
                })
                .collect(),
        }
    }
}

pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    caching::remove_hop_by_hop(headers);
}

impl Proxy {
    /// cache (None when the request could not be cached at all).
    pub(super) fn cache_status(
        &self,
        headers: &mut HeaderMap,
        hit: bool,
        lookup: Option<(bool, u16)>,
    ) {
        let labels = &self.labels;
        headers.insert(
            "x-cache",
            if hit {
                labels.hit.clone()
            } else {
                labels.miss.clone()
            },
        );
        if let Some((found, port)) = lookup {
            let value = match labels.lookup.iter().find(|(p, _, _)| *p == port) {
                Some((_, hit, miss)) => Some(if found { hit.clone() } else { miss.clone() }),
                None => {
                    let word = if found { "HIT" } else { "MISS" };
                    HeaderValue::from_str(&format!("{word} from {}:{port}", self.name)).ok()
                }
            };
            if let Some(v) = value {
                headers.insert("x-cache-lookup", v);
            }
        }
    }

    /// The request to send upstream: origin-form, end-to-end fields of the
    /// client's request, Host, our Via, X-Forwarded-For.
    pub(super) fn upstream_request(
        &self,
        method: &Method,
        target: &Target,
        client_headers: &HeaderMap,
        client: IpAddr,
        body: ProxyBody,
    ) -> Request<ProxyBody> {
        let mut headers = client_headers.clone();
        remove_hop_by_hop(&mut headers);
        if let Ok(host) = HeaderValue::from_str(&target.host_header()) {
            headers.insert(header::HOST, host);
        }
        headers.append(header::VIA, self.via.clone());
        let previous = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let append = |value: String| match &previous {
            Some(prev) => format!("{prev}, {value}"),
            None => value,
        };
        let xff = match self.config.forwarded_for.value {
            ForwardedFor::On => Some(append(client.to_string())),
            ForwardedFor::Off => Some(append("unknown".into())),
            ForwardedFor::Truncate => Some(client.to_string()),
            ForwardedFor::Transparent => previous.clone(),
            ForwardedFor::Delete => None,
        };
        headers.remove("x-forwarded-for");
        if let Some(v) = xff.and_then(|x| HeaderValue::from_str(&x).ok()) {
            headers.insert("x-forwarded-for", v);
        }
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = target
            .path_and_query
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.headers_mut() = headers;
        req
    }

    /// Prepares the head of every response from upstream for the caching rules: records
    /// the targeted cache-control field in force (RFC 9213) for a request that came in on
    /// an accelerator port, removing the fields when `remove=on` says so; and drops any
    /// record of one the response came with (only cuttle writes it).
    pub(super) fn take_targeted(&self, headers: &mut HeaderMap, arrival: Arrival) {
        let targeted = &self.config.targeted_cache_control.value;
        caching::targeted::intake(
            headers,
            caching::targeted::Intake {
                targets: &targeted.fields,
                accelerated: arrival.accelerated(),
                remove: targeted.remove,
            },
        );
    }

    /// An upstream response's fields as passed to the client.
    pub(super) fn client_headers(&self, upstream: &HeaderMap) -> HeaderMap {
        let mut headers = upstream.clone();
        remove_hop_by_hop(&mut headers);
        headers
    }

    pub(super) fn is_loop(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(&self.loop_marker))
    }
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
