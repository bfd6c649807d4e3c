//! What a peer's `login=` makes of the client's credentials
//! (squid-spec 3.6): each [`Source`] carries its [`PeerAuth`], and
//! [`credentials`] turns it and the client's headers into what is sent.

use super::Source;
use crate::config::PeerLogin;

/// A peer's `login=` as it is applied to each request (squid-spec 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAuth {
    /// `login=user:password`: these Basic credentials, ready to send.
    Basic(String),
    /// `login=*SUFFIX:password`: the client's user name, then these bytes
    /// (SUFFIX, `:`, password), as Basic credentials.
    ClientUser(Vec<u8>),
    /// `login=PASSTHRU`, and `login=PASS` (which differs only with
    /// external ACL credentials, and cuttle has no external ACLs): the
    /// client's credentials go through.
    Relay,
    /// `login=PROXYPASS`: as Relay, and an originserver peer gets the
    /// client's Basic Proxy-Authorization as its Authorization.
    ProxyPass,
}

impl PeerAuth {
    /// `None` for `login=NEGOTIATE` (no Kerberos here; the config reader
    /// warned): such a peer gets no credentials.
    pub(crate) fn of(login: &PeerLogin) -> Option<PeerAuth> {
        Some(match login {
            PeerLogin::Credentials(c) => PeerAuth::Basic(format!("Basic {}", base64(&unescape(c)))),
            PeerLogin::ClientUser(rest) => PeerAuth::ClientUser(unescape(rest)),
            PeerLogin::Pass | PeerLogin::PassThru => PeerAuth::Relay,
            PeerLogin::ProxyPass => PeerAuth::ProxyPass,
            PeerLogin::Negotiate(_) => return None,
        })
    }
}

/// The credential fields of the request a client sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCredentials<'a> {
    pub proxy_authorization: Option<&'a str>,
    pub authorization: Option<&'a str>,
    /// Arrived on an accelerator port, where a user's credentials are in
    /// Authorization (on a forward port, in Proxy-Authorization).
    pub accelerated: bool,
}

/// The `Proxy-Authorization` and `Authorization` fields of a request to
/// `source` (`None`: the field is not sent), as Squid builds them
/// (squid-spec 3.6): the client's Proxy-Authorization goes only to a proxy
/// peer whose login= relays (PASS, PASSTHRU, PROXYPASS), its Authorization
/// to the origin and proxy peers, and to an originserver peer only when
/// login= relays (an originserver peer without login= gets
/// [`PeerAuth::Relay`], unlike in Squid); then, when the peer's own field (Proxy-Authorization, or
/// Authorization for an originserver) is still empty, login= fills it.
pub fn credentials(source: &Source, client: &ClientCredentials<'_>) -> Credentials {
    let relays = matches!(source.login, Some(PeerAuth::Relay | PeerAuth::ProxyPass));
    let to_peer = source.peer.is_some();
    let to_origin_peer = to_peer && !source.absolute_form;
    let mut out = Credentials {
        proxy_authorization: client
            .proxy_authorization
            .filter(|_| to_peer && !to_origin_peer && relays)
            .map(str::to_string),
        authorization: client
            .authorization
            .filter(|_| !to_origin_peer || relays)
            .map(str::to_string),
    };
    if !to_peer {
        return out;
    }
    let field = if to_origin_peer {
        &mut out.authorization
    } else {
        &mut out.proxy_authorization
    };
    if field.is_some() {
        return out;
    }
    *field = match &source.login {
        None | Some(PeerAuth::Relay) => None,
        Some(PeerAuth::ProxyPass) => client
            .proxy_authorization
            .filter(|v| to_origin_peer && basic_token(v).is_some())
            .map(str::to_string),
        Some(PeerAuth::ClientUser(rest)) => {
            // Squid sends "-" when it knows no user name.
            let user = client_user(client).unwrap_or_else(|| b"-".to_vec());
            let mut plain = user;
            plain.extend_from_slice(rest);
            Some(format!("Basic {}", base64(&plain)))
        }
        Some(PeerAuth::Basic(value)) => Some(value.clone()),
    };
    out
}

/// The fields [`credentials`] decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub proxy_authorization: Option<String>,
    pub authorization: Option<String>,
}

/// The token of a `Basic` credentials field.
fn basic_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then(|| token.trim())
}

/// The user name in the client's Basic credentials: Proxy-Authorization,
/// or Authorization on an accelerator port. Squid takes the name its own
/// proxy authentication verified; cuttle has none, so this is the name
/// the client claims.
fn client_user(client: &ClientCredentials<'_>) -> Option<Vec<u8>> {
    let field = if client.accelerated {
        client.authorization
    } else {
        client.proxy_authorization
    }?;
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::STANDARD
        .decode(basic_token(field)?)
        .ok()?;
    let user = match plain.iter().position(|&b| b == b':') {
        Some(colon) => plain.get(..colon)?.to_vec(),
        None => plain,
    };
    (!user.is_empty()).then_some(user)
}

/// A login= value with its %-escapes decoded as Squid decodes them: `%%`
/// is `%`, `%XX` is that byte unless it is 0; anything else stays as it is.
pub(crate) fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        if b.get(i) == Some(&b'%') {
            out.push(b'%');
            i += 1;
            continue;
        }
        let hex = b
            .get(i..i + 2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) if v != 0 => {
                out.push(v);
                i += 2;
            }
            _ => out.push(b'%'),
        }
    }
    out
}

pub(crate) fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}
