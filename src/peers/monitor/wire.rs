//! cuttle's MON profile on the wire (see the module above): building and
//! reading subscription requests, control responses and object notices
//! with `cuttle_protocol::htcp`.

use cuttle_protocol::htcp::{
    self, Auth, Detail, Identity, Message, MonAction, MonReason, MonReply, Op, Specifier,
};
use cuttle_protocol::Text;

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

/// A MON response as the subscriber reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    Notice {
        trans_id: u32,
        /// Lease seconds left.
        lease: u8,
        notice: Notice,
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
        Notice::Object {
            key,
            times: Some(t),
        } => (
            MonAction::Added,
            format!(
                "Store-Key: {}\r\nStore-Times: {} {} {}\r\n",
                hex(key),
                t.date,
                t.expires,
                t.last_modified
            ),
        ),
        Notice::Object { key, times: None } => {
            (MonAction::Deleted, format!("Store-Key: {}\r\n", hex(key)))
        }
    };
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
                specifier: Specifier::new("GET", ""),
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
        let req = request(5, 60);
        let m = htcp::parse(&req).unwrap();
        assert_eq!(m.op, Op::MonRequest { time: 60 });
        assert!(m.response_desired());
        assert_eq!(parse(&req), None, "a request is no response");
    }
}
