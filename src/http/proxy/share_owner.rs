//! Proxy sharing, the owner's side (`share_log on`; issue 21): a GET that
//! carries an offer (`Cache-Share: url=...`) for a resource of at least
//! `min_size` bytes is answered, when the share log holds a candidate
//! nearer to the requester than this cache, with a bodiless `300 Multiple
//! Choices` naming up to `candidates` of them (`Link: <PROXY>;
//! rel=duplicate`, `Cache-Share: candidates=N; length=BYTES`, and the
//! copy's ETag and Last-Modified so the requester can check a candidate's
//! copy); otherwise with the body. Either way the offerer is logged: it
//! will cache what it gets, from a candidate or from here. Requests without an offer always get the body.
//! Every other response of this cache says `Cache-Share: log`, which is
//! how requesters learn to offer here.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use cuttle_protocol::share::{self, Share};

use crate::peers::share_log::{Asker, Offered, Offering};

use super::headers::content_length;
use super::txn::Txn;
use super::Proxy;

/// An offer a request carried, kept for the response.
#[derive(Debug)]
pub(super) struct OfferSeen {
    proxy_url: String,
    ttl: u32,
    load: Option<f32>,
    /// The address the request came in on: the owner's locality.
    local: IpAddr,
    /// The page this object was requested for (its `Referer`).
    referer: Option<String>,
}

fn field() -> HeaderName {
    HeaderName::from_static(share::FIELD)
}

/// Whether a response may be cached by the requester (it will then hold
/// a copy to share).
fn shareable(headers: &HeaderMap) -> bool {
    !headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim())
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
}

/// Whether a response is an HTML page.
fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
}

impl Proxy {
    /// The offer of a GET to this owner; the candidates it reports failed
    /// leave the log now.
    pub(super) fn share_offer_seen(
        &self,
        method: &Method,
        headers: &HeaderMap,
        local: IpAddr,
    ) -> Option<Box<OfferSeen>> {
        if !self.config.share.log.value.on || method != Method::GET {
            return None;
        }
        let value = headers.get(share::FIELD)?;
        let Ok(Share::Offer(offer)) = share::parse(value.as_bytes()) else {
            return None;
        };
        let failed: Vec<String> = offer.failed.iter().map(|u| u.to_string()).collect();
        self.sharing.drop_failed(&failed);
        let referer = headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Some(Box::new(OfferSeen {
            proxy_url: offer.url.to_string(),
            ttl: offer.ttl,
            load: offer.load,
            local,
            referer,
        }))
    }

    /// For a response about to go out: the head of the share list to send
    /// instead (see the module's doc), or `None` (the offerer, if any, is
    /// then logged, and the response gets the owner mark).
    pub(super) fn share_answer(
        &self,
        txn: &mut Txn,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Option<HeaderMap> {
        let settings = &self.config.share;
        let log = &settings.log.value;
        if let Some(offer) = txn.share_offer.take() {
            let length = content_length(headers);
            let ok = status == StatusCode::OK && txn.method == "GET";
            let now = Instant::now();
            let locality = settings.locality_of(txn.client);
            let asker = Asker {
                proxy_url: &offer.proxy_url,
                locality,
                owner_locality: settings.locality_of(offer.local),
            };
            if status == StatusCode::OK && is_html(headers) {
                self.piggyback(&txn.url, &asker, headers, now);
            }
            if ok && length.is_some_and(|l| l >= log.min_size) {
                if let Some(page) = &offer.referer {
                    self.sharing.note_embedded(page, &txn.url);
                }
            }
            let offering = Offering {
                asker,
                ip: txn.client,
                load: offer.load,
                ttl: offer.ttl,
            };
            let response = Offered {
                ok,
                length,
                shareable: shareable(headers),
            };
            let candidates = self
                .sharing
                .answer_offer(&txn.url, &offering, &response, log, now);
            if !candidates.is_empty() {
                return Some(self.share_list(&candidates, length, headers));
            }
        }
        if !headers.contains_key(share::FIELD) {
            headers.insert(field(), HeaderValue::from_static(share::OWNER));
        }
        None
    }

    /// Piggybacks on the page `page` (an HTML 200 going to an offerer) a
    /// `Link: <CANDIDATE>; rel=duplicate; anchor="URL"` for each large
    /// object seen embedded in it (requested with the page as `Referer`)
    /// that has candidates near the asker, so that its requests go there
    /// first.
    fn piggyback(&self, page: &str, asker: &Asker<'_>, headers: &mut HeaderMap, now: Instant) {
        let n = self.config.share.log.value.candidates as usize;
        let mut named = 0;
        for url in self.sharing.embedded(page) {
            for c in self.sharing.candidates(&url, asker, n, now) {
                if let Some(v) = share::encode_duplicate_of(&c, &url)
                    .and_then(|v| HeaderValue::from_str(&v).ok())
                {
                    headers.append(header::LINK, v);
                    named += 1;
                }
            }
        }
        if named > 0 {
            self.sharing
                .counters
                .lists_piggybacked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The head of a share list naming `candidates`, with the validators
    /// of the copy `headers` describes.
    fn share_list(
        &self,
        candidates: &[String],
        length: Option<u64>,
        headers: &HeaderMap,
    ) -> HeaderMap {
        let mut list = HeaderMap::new();
        let mut named = 0;
        for c in candidates {
            if let Some(v) = share::encode_duplicate(c).and_then(|v| HeaderValue::from_str(&v).ok())
            {
                list.append(header::LINK, v);
                named += 1;
            }
        }
        let head = share::encode_list(share::List {
            candidates: named,
            length,
        });
        if let Ok(v) = HeaderValue::from_str(&head) {
            list.insert(field(), v);
        }
        for name in [header::ETAG, header::LAST_MODIFIED, header::DATE] {
            if let Some(v) = headers.get(&name) {
                list.insert(name, v.clone());
            }
        }
        // A list is for the one requester that offered: never cached.
        list.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        list.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        self.sharing
            .counters
            .lists_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        list
    }
}
