#![no_main]
//! Any bytes as a `Cache-Share` value and as a `Link` value: the parsers
//! return, never panic; an offer or a list that parses re-encodes to a
//! value that parses to the same thing (load rounded to two places), and
//! every duplicate link's target re-encodes to a link that parses back.
use cuttle_protocol::share::{self, Share};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match share::parse(data) {
        Ok(Share::Offer(offer)) => {
            let wire = share::encode_offer(&offer).expect("a parsed offer encodes");
            let Ok(Share::Offer(again)) = share::parse(wire.as_bytes()) else {
                panic!("re-encoded offer {wire:?} does not parse");
            };
            assert_eq!(
                (again.url, again.ttl, &again.failed),
                (offer.url, offer.ttl, &offer.failed)
            );
        }
        Ok(Share::List(list)) => {
            assert_eq!(
                share::parse(share::encode_list(list).as_bytes()),
                Ok(Share::List(list))
            );
        }
        Ok(Share::Owner) | Err(_) => {}
    }
    if let Ok(links) = share::parse_links(data) {
        for link in links.iter().filter(|l| l.duplicate) {
            if let Some(wire) = share::encode_duplicate(link.target) {
                let again = share::parse_links(wire.as_bytes()).expect("re-encoded link parses");
                assert_eq!(again.len(), 1);
                assert_eq!(again[0].target, link.target);
            }
        }
    }
});
