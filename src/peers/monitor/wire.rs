//! cuttle's MON profile on the wire (see the module above): building and
//! reading subscription requests, control responses, object notices and
//! change notices (pushed invalidation and update) with
//! `cuttle_protocol::htcp`.

use cuttle_protocol::htcp::{
    self, Auth, Detail, Identity, Message, MonAction, MonReason, MonReply, Op, Specifier,
};
use cuttle_protocol::Text;

use crate::caching::push::PushKind;
use crate::store::{Key, Times};

/// RESPONSE of a refused subscription: too many subscribers (RFC 2756).
pub const REFUSED_TOO_MANY: u8 = 1;

/// What one MON response with RESPONSE 0 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A subscription starts (n = 0); a full resync follows.
    Start,
    /// In sync up to here (end of resync, renewal, heartbeat).
    Synced,
    /// The subscription is over.
    Ended,
    /// The object of `key` is held with `times` (`Some`) or gone (`None`).
    Object { key: Key, times: Option<Times> },
}

/// A change notice: the object of `key` changed at the publisher (a new
/// version, a PURGE, an unsafe method, an accepted CLR). On the wire it is
/// an object notice whose SPECIFIER names the URL (object notices leave it
/// empty): ACTION Deleted for an invalidation (the subscriber drops its
/// copy), ACTION Replaced with `Store-Times` for an update (the publisher
/// holds the new version with these times; the subscriber refetches it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Key,
    pub url: String,
    pub kind: PushKind,
    /// An update's new version's times.
    pub times: Option<Times>,
}

/// A MON response as the subscriber reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Notice {
        trans_id: u32,
        /// Lease seconds left.
        lease: u8,
        notice: Notice,
    },
    /// A change notice; for the set, an object notice.
    Change {
        trans_id: u32,
        lease: u8,
        change: Change,
    },
    /// RESPONSE other than 0 (MO clear): refused.
    Refused { trans_id: u32, code: u8 },
    /// MO set: the whole message failed ("opcode not implemented"...).
    NotImplemented { trans_id: u32, code: u8 },
}

/// A subscription request (or renewal, or with `lease` 0 its end).
pub fn request(sub_id: u32, lease: u8) -> Vec<u8> {
    let msg = Message {
        minor: htcp::MINOR_RFC,
        response: 0,
        f1: true,
        reserved: 0,
        trans_id: sub_id,
        op: Op::MonRequest { time: lease },
        auth: Auth::None,
    };
    let mut out = Vec::with_capacity(16);
    // A fixed, tiny message: encoding cannot fail.
    let _ = msg.encode(&mut out);
    out
}

fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Key> {
    let text = text.as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, pair) in text.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        key[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(key)
}

fn object_hdrs(key: &Key, times: Option<&Times>) -> String {
    match times {
        Some(t) => format!(
            "Store-Key: {}\r\nStore-Times: {} {} {}\r\n",
            hex(key),
            t.date,
            t.expires,
            t.last_modified
        ),
        None => format!("Store-Key: {}\r\n", hex(key)),
    }
}

/// Appends the response `notice` of a subscription (MINOR `minor`,
/// TRANS-ID `trans_id`, `lease` seconds left).
pub fn encode_notice(
    minor: u8,
    trans_id: u32,
    lease: u8,
    notice: &Notice,
    out: &mut Vec<u8>,
) -> Result<(), cuttle_protocol::Error> {
    let (action, cache_hdrs) = match notice {
        Notice::Start => (MonAction::Added, String::new()),
        Notice::Synced => (MonAction::Refreshed, String::new()),
        Notice::Ended => (MonAction::Deleted, String::new()),
        Notice::Object { key, times } => {
            let action = match times {
                Some(_) => MonAction::Added,
                None => MonAction::Deleted,
            };
            (action, object_hdrs(key, times.as_ref()))
        }
    };
    encode_reply(minor, trans_id, lease, action, "", &cache_hdrs, out)
}

/// Appends the change notice `change` of a subscription.
pub fn encode_change(
    minor: u8,
    trans_id: u32,
    lease: u8,
    change: &Change,
    out: &mut Vec<u8>,
) -> Result<(), cuttle_protocol::Error> {
    let (action, times) = match change.kind {
        PushKind::Invalidate => (MonAction::Deleted, None),
        PushKind::Update => (MonAction::Replaced, change.times.as_ref()),
    };
    let cache_hdrs = object_hdrs(&change.key, times);
    encode_reply(
        minor,
        trans_id,
        lease,
        action,
        &change.url,
        &cache_hdrs,
        out,
    )
}

fn encode_reply(
    minor: u8,
    trans_id: u32,
    lease: u8,
    action: MonAction,
    url: &str,
    cache_hdrs: &str,
    out: &mut Vec<u8>,
) -> Result<(), cuttle_protocol::Error> {
    let msg = Message {
        minor,
        response: 0,
        f1: false,
        reserved: 0,
        trans_id,
        op: Op::MonResponse(Some(MonReply {
            time: lease,
            action,
            reason: MonReason::Other,
            identity: Identity {
                specifier: Specifier::new("GET", url),
                detail: Detail {
                    resp_hdrs: Text(b""),
                    entity_hdrs: Text(b""),
                    cache_hdrs: Text(cache_hdrs.as_bytes()),
                },
            },
        })),
        auth: Auth::None,
    };
    msg.encode(out)
}

/// Appends a refusal of subscription `trans_id` (RESPONSE `code`).
pub fn encode_refusal(minor: u8, trans_id: u32, code: u8, out: &mut Vec<u8>) {
    let msg = Message {
        minor,
        response: code,
        f1: false,
        reserved: 0,
        trans_id,
        op: Op::MonResponse(None),
        auth: Auth::None,
    };
    let _ = msg.encode(out);
}

/// Reads a MON response; `None` for anything else (or a notice that does
/// not follow the profile).
pub fn parse(datagram: &[u8]) -> Option<Incoming> {
    let msg = htcp::parse(datagram).ok()?;
    let Op::MonResponse(reply) = msg.op else {
        return None;
    };
    let trans_id = msg.trans_id;
    if msg.is_overall_response() {
        return Some(Incoming::NotImplemented {
            trans_id,
            code: msg.response,
        });
    }
    if msg.response != 0 {
        return Some(Incoming::Refused {
            trans_id,
            code: msg.response,
        });
    }
    let reply = reply?;
    let cache_hdrs = std::str::from_utf8(reply.identity.detail.cache_hdrs.as_bytes()).ok()?;
    let mut key = None;
    let mut times = None;
    for line in cache_hdrs.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Store-Key") {
            key = Some(unhex(value)?);
        } else if name.eq_ignore_ascii_case("Store-Times") {
            let mut n = value.split(' ').map(str::parse::<u32>);
            let (Some(Ok(date)), Some(Ok(expires)), Some(Ok(last_modified))) =
                (n.next(), n.next(), n.next())
            else {
                return None;
            };
            times = Some(Times {
                date,
                expires,
                last_modified,
            });
        }
    }
    let url = reply.identity.specifier.uri.as_bytes();
    if let (false, Some(key)) = (url.is_empty(), key) {
        let url = std::str::from_utf8(url).ok()?.to_string();
        let (kind, times) = match reply.action {
            MonAction::Deleted => (PushKind::Invalidate, None),
            MonAction::Replaced => (PushKind::Update, Some(times.unwrap_or_default())),
            _ => return None,
        };
        return Some(Incoming::Change {
            trans_id,
            lease: reply.time,
            change: Change {
                key,
                url,
                kind,
                times,
            },
        });
    }
    let notice = match (key, reply.action) {
        (Some(key), MonAction::Deleted) => Notice::Object { key, times: None },
        (Some(key), _) => Notice::Object {
            key,
            // Held, but with no times: never fresh.
            times: Some(times.unwrap_or_default()),
        },
        (None, MonAction::Added) => Notice::Start,
        (None, MonAction::Refreshed) => Notice::Synced,
        (None, MonAction::Deleted) => Notice::Ended,
        (None, _) => return None,
    };
    Some(Incoming::Notice {
        trans_id,
        lease: reply.time,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let times = Times {
            date: 1,
            expires: 2_000_000_000,
            last_modified: 3,
        };
        for notice in [
            Notice::Start,
            Notice::Synced,
            Notice::Ended,
            Notice::Object {
                key: [0xab; 16],
                times: Some(times),
            },
            Notice::Object {
                key: [7; 16],
                times: None,
            },
        ] {
            let mut out = Vec::new();
            encode_notice(1, 41, 30, &notice, &mut out).unwrap();
            assert_eq!(
                parse(&out),
                Some(Incoming::Notice {
                    trans_id: 41,
                    lease: 30,
                    notice
                })
            );
        }
        let mut out = Vec::new();
        encode_refusal(1, 9, REFUSED_TOO_MANY, &mut out);
        assert_eq!(
            parse(&out),
            Some(Incoming::Refused {
                trans_id: 9,
                code: 1
            })
        );
        for change in [
            Change {
                key: [3; 16],
                url: "http://o.test/a".into(),
                kind: PushKind::Invalidate,
                times: None,
            },
            Change {
                key: [4; 16],
                url: "http://o.test/b?x=1".into(),
                kind: PushKind::Update,
                times: Some(times),
            },
        ] {
            let mut out = Vec::new();
            encode_change(1, 77, 20, &change, &mut out).unwrap();
            let m = htcp::parse(&out).unwrap();
            let Op::MonResponse(Some(reply)) = m.op else {
                panic!("a MON response: {m:?}");
            };
            let action = match change.kind {
                PushKind::Invalidate => MonAction::Deleted,
                PushKind::Update => MonAction::Replaced,
            };
            assert_eq!(reply.action, action);
            assert_eq!(
                reply.identity.specifier.uri.as_bytes(),
                change.url.as_bytes()
            );
            assert_eq!(
                parse(&out),
                Some(Incoming::Change {
                    trans_id: 77,
                    lease: 20,
                    change
                })
            );
        }
        let req = request(5, 60);
        let m = htcp::parse(&req).unwrap();
        assert_eq!(m.op, Op::MonRequest { time: 60 });
        assert!(m.response_desired());
        assert_eq!(parse(&req), None, "a request is no response");
    }
}
