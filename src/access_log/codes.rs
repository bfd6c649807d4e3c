//! Squid's result codes (`%Ss`, e.g. `TCP_CF_MISS_ABORTED`) and hierarchy codes (`%Sh`, e.g. `TIMEOUT_HIER_DIRECT`), rendered and parsed exactly as Squid 5.7 writes them.

use std::fmt;
use std::str::FromStr;

/// The core of a result code: Squid's `LogTags_ot` (`src/LogTags.cc`).
/// Each renders as protocol (`TCP`, `UDP`, `NONE`, `ICP`) and the rest of
/// its name; [`ResultCode`] adds `_CF` between the two and the suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultTag {
    /// No tag was set: `NONE_NONE` (e.g. a connection closed before a request).
    None,
    TcpHit,
    TcpMiss,
    TcpRefreshUnmodified,
    TcpRefreshFailOld,
    TcpRefreshFailErr,
    TcpRefreshModified,
    /// Revalidation started; normally replaced by one of the other refresh tags.
    TcpRefresh,
    TcpClientRefreshMiss,
    TcpImsHit,
    TcpInmHit,
    TcpSwapfailMiss,
    TcpNegativeHit,
    TcpMemHit,
    TcpDenied,
    TcpDeniedReply,
    TcpOfflineHit,
    TcpRedirect,
    TcpTunnel,
    UdpHit,
    UdpMiss,
    UdpDenied,
    UdpInvalid,
    UdpMissNofetch,
    /// Squid-internal; never printed by Squid, kept for completeness.
    IcpQuery,
}

impl ResultTag {
    /// Every tag, in Squid's enum order.
    pub const ALL: [ResultTag; 25] = [
        ResultTag::None,
        ResultTag::TcpHit,
        ResultTag::TcpMiss,
        ResultTag::TcpRefreshUnmodified,
        ResultTag::TcpRefreshFailOld,
        ResultTag::TcpRefreshFailErr,
        ResultTag::TcpRefreshModified,
        ResultTag::TcpRefresh,
        ResultTag::TcpClientRefreshMiss,
        ResultTag::TcpImsHit,
        ResultTag::TcpInmHit,
        ResultTag::TcpSwapfailMiss,
        ResultTag::TcpNegativeHit,
        ResultTag::TcpMemHit,
        ResultTag::TcpDenied,
        ResultTag::TcpDeniedReply,
        ResultTag::TcpOfflineHit,
        ResultTag::TcpRedirect,
        ResultTag::TcpTunnel,
        ResultTag::UdpHit,
        ResultTag::UdpMiss,
        ResultTag::UdpDenied,
        ResultTag::UdpInvalid,
        ResultTag::UdpMissNofetch,
        ResultTag::IcpQuery,
    ];

    /// (protocol, rest): `TCP_MEM_HIT` is (`TCP`, `_MEM_HIT`).
    fn parts(self) -> (&'static str, &'static str) {
        use ResultTag::*;
        match self {
            None => ("NONE", "_NONE"),
            TcpHit => ("TCP", "_HIT"),
            TcpMiss => ("TCP", "_MISS"),
            TcpRefreshUnmodified => ("TCP", "_REFRESH_UNMODIFIED"),
            TcpRefreshFailOld => ("TCP", "_REFRESH_FAIL_OLD"),
            TcpRefreshFailErr => ("TCP", "_REFRESH_FAIL_ERR"),
            TcpRefreshModified => ("TCP", "_REFRESH_MODIFIED"),
            TcpRefresh => ("TCP", "_REFRESH"),
            TcpClientRefreshMiss => ("TCP", "_CLIENT_REFRESH_MISS"),
            TcpImsHit => ("TCP", "_IMS_HIT"),
            TcpInmHit => ("TCP", "_INM_HIT"),
            TcpSwapfailMiss => ("TCP", "_SWAPFAIL_MISS"),
            TcpNegativeHit => ("TCP", "_NEGATIVE_HIT"),
            TcpMemHit => ("TCP", "_MEM_HIT"),
            TcpDenied => ("TCP", "_DENIED"),
            TcpDeniedReply => ("TCP", "_DENIED_REPLY"),
            TcpOfflineHit => ("TCP", "_OFFLINE_HIT"),
            TcpRedirect => ("TCP", "_REDIRECT"),
            TcpTunnel => ("TCP", "_TUNNEL"),
            UdpHit => ("UDP", "_HIT"),
            UdpMiss => ("UDP", "_MISS"),
            UdpDenied => ("UDP", "_DENIED"),
            UdpInvalid => ("UDP", "_INVALID"),
            UdpMissNofetch => ("UDP", "_MISS_NOFETCH"),
            IcpQuery => ("ICP", "_QUERY"),
        }
    }

    /// Squid's `isTcpHit()`: the tags counted as hits in its statistics
    /// (TCP_HIT, TCP_IMS_HIT, TCP_INM_HIT, TCP_REFRESH_FAIL_OLD,
    /// TCP_REFRESH_UNMODIFIED, TCP_NEGATIVE_HIT, TCP_MEM_HIT, TCP_OFFLINE_HIT).
    pub fn is_hit(self) -> bool {
        use ResultTag::*;
        matches!(
            self,
            TcpHit
                | TcpImsHit
                | TcpInmHit
                | TcpRefreshFailOld
                | TcpRefreshUnmodified
                | TcpNegativeHit
                | TcpMemHit
                | TcpOfflineHit
        )
    }

    /// True for the ICP/HTCP answer tags (`UDP_*`).
    pub fn is_udp(self) -> bool {
        self.parts().0 == "UDP"
    }
}

/// A whole `%Ss` field: the tag, whether the request was collapsed onto
/// another (`_CF` after the protocol) and the error suffixes, which Squid
/// appends in the order `_IGNORED`, `_TIMEDOUT`, `_ABORTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResultCode {
    pub tag: ResultTag,
    /// `TCP_CF_HIT`: the response came from a collapsed (shared) fetch.
    pub collapsed: bool,
    /// `_IGNORED`: a refresh-related failure was ignored.
    pub ignored: bool,
    /// `_TIMEDOUT`: the transaction ended by a timeout.
    pub timed_out: bool,
    /// `_ABORTED`: the transaction was cut short (client or server gone).
    pub aborted: bool,
}

impl ResultCode {
    /// The plain tag, no `_CF`, no suffix.
    pub const fn new(tag: ResultTag) -> Self {
        ResultCode {
            tag,
            collapsed: false,
            ignored: false,
            timed_out: false,
            aborted: false,
        }
    }

    /// With `_CF`.
    pub const fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// With `_IGNORED`.
    pub const fn ignored(mut self) -> Self {
        self.ignored = true;
        self
    }

    /// With `_TIMEDOUT`.
    pub const fn timed_out(mut self) -> Self {
        self.timed_out = true;
        self
    }

    /// With `_ABORTED`.
    pub const fn aborted(mut self) -> Self {
        self.aborted = true;
        self
    }

    /// Squid's hit classification for statistics ([`ResultTag::is_hit`]);
    /// `_CF` and the suffixes do not change it, `UDP_HIT` is not a hit.
    pub fn is_hit(&self) -> bool {
        self.tag.is_hit()
    }
}

impl From<ResultTag> for ResultCode {
    fn from(tag: ResultTag) -> Self {
        ResultCode::new(tag)
    }
}

impl ResultCode {
    /// Appends the code as [`Display`](fmt::Display) writes it.
    pub fn push_to(&self, out: &mut String) {
        let (protocol, rest) = self.tag.parts();
        out.push_str(protocol);
        if self.collapsed {
            out.push_str("_CF");
        }
        out.push_str(rest);
        if self.ignored {
            out.push_str("_IGNORED");
        }
        if self.timed_out {
            out.push_str("_TIMEDOUT");
        }
        if self.aborted {
            out.push_str("_ABORTED");
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(32);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// A result or hierarchy code that is not one Squid writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCode(pub String);

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown code \"{}\"", self.0)
    }
}

impl std::error::Error for UnknownCode {}

impl FromStr for ResultCode {
    type Err = UnknownCode;

    /// Parses what [`Display`](fmt::Display) writes, e.g. `TCP_CF_MISS_ABORTED`.
    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        let unknown = || UnknownCode(s.to_string());
        let mut rest = s;
        let mut code = ResultCode::new(ResultTag::None);
        // Suffixes come in a fixed order; strip them from the end backwards.
        if let Some(r) = rest.strip_suffix("_ABORTED") {
            code.aborted = true;
            rest = r;
        }
        if let Some(r) = rest.strip_suffix("_TIMEDOUT") {
            code.timed_out = true;
            rest = r;
        }
        if let Some(r) = rest.strip_suffix("_IGNORED") {
            code.ignored = true;
            rest = r;
        }
        let (protocol, mut tail) = ["NONE", "TCP", "UDP", "ICP"]
            .iter()
            .find_map(|p| rest.strip_prefix(p).map(|t| (*p, t)))
            .ok_or_else(unknown)?;
        if let Some(t) = tail.strip_prefix("_CF") {
            // `_CF_` followed by the tag; `TCP_CF` alone is not a code.
            if t.starts_with('_') {
                code.collapsed = true;
                tail = t;
            }
        }
        code.tag = ResultTag::ALL
            .into_iter()
            .find(|t| t.parts() == (protocol, tail))
            .ok_or_else(unknown)?;
        Ok(code)
    }
}

/// Squid's `hier_code` (`src/hier_code.h`): how a request was forwarded.
/// The strings are the enum names Squid prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HierarchyCode {
    /// No forwarding: hits, errors, UDP lines, cache manager.
    HierNone,
    /// The origin server.
    HierDirect,
    SiblingHit,
    ParentHit,
    DefaultParent,
    /// In the enum, no longer produced.
    SingleParent,
    /// `FIRSTUP_PARENT` (the wiki's "FIRST_UP_PARENT" is not what Squid prints).
    FirstUpParent,
    FirstParentMiss,
    ClosestParentMiss,
    ClosestParent,
    ClosestDirect,
    /// In the enum, no longer produced.
    NoDirectFail,
    /// In the enum, no longer produced.
    SourceFastest,
    RoundrobinParent,
    CdParentHit,
    CdSiblingHit,
    Carp,
    AnyOldParent,
    UserhashParent,
    SourcehashParent,
    Pinned,
    OriginalDst,
    StandbyPool,
    /// cuttle's own: a peer's HTCP MON set said it holds the object.
    MonParentHit,
    MonSiblingHit,
    /// Squid 2.x only (`CACHE_DIGEST_HIT`); accepted when parsing old logs.
    CacheDigestHit,
    /// Squid 2.x only (`NO_CACHE_DIGEST_DIRECT`); accepted when parsing old logs.
    NoCacheDigestDirect,
    /// cuttle's own (`CUT_THROUGH_DIRECT`, issue 20): a cut-through miss
    /// that the origin answered before the hierarchy; Squid has no code.
    CutThroughDirect,
    /// cuttle's own (`CUT_THROUGH_EXIT`): a cut-through miss that the exit
    /// cache of `cut_through ... exit=PEER` answered before the hierarchy.
    CutThroughExit,
    /// cuttle's own (proxy sharing, issue 21): the body came from a
    /// candidate proxy an owner's share list named; the host is that proxy.
    ShareHit,
}

impl HierarchyCode {
    /// A peer's Cache Digest predicted the hit (CD_PARENT_HIT, CD_SIBLING_HIT).
    pub fn is_digest_hit(self) -> bool {
        matches!(
            self,
            HierarchyCode::CdParentHit | HierarchyCode::CdSiblingHit
        )
    }

    /// HTCP MON predicted the hit (MON_PARENT_HIT, MON_SIBLING_HIT).
    pub fn is_mon_hit(self) -> bool {
        matches!(
            self,
            HierarchyCode::MonParentHit | HierarchyCode::MonSiblingHit
        )
    }

    /// Every code: Squid 5.7's enum order, cuttle's MON codes, then the two
    /// Squid 2.x legacy ones, then cuttle's other codes.
    pub const ALL: [HierarchyCode; 30] = [
        HierarchyCode::HierNone,
        HierarchyCode::HierDirect,
        HierarchyCode::SiblingHit,
        HierarchyCode::ParentHit,
        HierarchyCode::DefaultParent,
        HierarchyCode::SingleParent,
        HierarchyCode::FirstUpParent,
        HierarchyCode::FirstParentMiss,
        HierarchyCode::ClosestParentMiss,
        HierarchyCode::ClosestParent,
        HierarchyCode::ClosestDirect,
        HierarchyCode::NoDirectFail,
        HierarchyCode::SourceFastest,
        HierarchyCode::RoundrobinParent,
        HierarchyCode::CdParentHit,
        HierarchyCode::CdSiblingHit,
        HierarchyCode::Carp,
        HierarchyCode::AnyOldParent,
        HierarchyCode::UserhashParent,
        HierarchyCode::SourcehashParent,
        HierarchyCode::Pinned,
        HierarchyCode::OriginalDst,
        HierarchyCode::StandbyPool,
        HierarchyCode::MonParentHit,
        HierarchyCode::MonSiblingHit,
        HierarchyCode::CacheDigestHit,
        HierarchyCode::NoCacheDigestDirect,
        HierarchyCode::CutThroughDirect,
        HierarchyCode::CutThroughExit,
        HierarchyCode::ShareHit,
    ];

    /// The exact string Squid prints.
    pub fn as_str(self) -> &'static str {
        use HierarchyCode::*;
        match self {
            HierNone => "HIER_NONE",
            HierDirect => "HIER_DIRECT",
            SiblingHit => "SIBLING_HIT",
            ParentHit => "PARENT_HIT",
            DefaultParent => "DEFAULT_PARENT",
            SingleParent => "SINGLE_PARENT",
            FirstUpParent => "FIRSTUP_PARENT",
            FirstParentMiss => "FIRST_PARENT_MISS",
            ClosestParentMiss => "CLOSEST_PARENT_MISS",
            ClosestParent => "CLOSEST_PARENT",
            ClosestDirect => "CLOSEST_DIRECT",
            NoDirectFail => "NO_DIRECT_FAIL",
            SourceFastest => "SOURCE_FASTEST",
            RoundrobinParent => "ROUNDROBIN_PARENT",
            CdParentHit => "CD_PARENT_HIT",
            CdSiblingHit => "CD_SIBLING_HIT",
            Carp => "CARP",
            AnyOldParent => "ANY_OLD_PARENT",
            UserhashParent => "USERHASH_PARENT",
            SourcehashParent => "SOURCEHASH_PARENT",
            Pinned => "PINNED",
            OriginalDst => "ORIGINAL_DST",
            StandbyPool => "STANDBY_POOL",
            MonParentHit => "MON_PARENT_HIT",
            MonSiblingHit => "MON_SIBLING_HIT",
            CacheDigestHit => "CACHE_DIGEST_HIT",
            NoCacheDigestDirect => "NO_CACHE_DIGEST_DIRECT",
            CutThroughDirect => "CUT_THROUGH_DIRECT",
            CutThroughExit => "CUT_THROUGH_EXIT",
            ShareHit => "SHARE_HIT",
        }
    }
}

impl fmt::Display for HierarchyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HierarchyCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        HierarchyCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_string()))
    }
}

/// A whole `%Sh/%<a` field: `[TIMEOUT_]CODE/host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hierarchy {
    pub code: HierarchyCode,
    /// `TIMEOUT_`: the ICP/HTCP wait ended by timeout, not by replies.
    pub timed_out: bool,
    /// After the `/`: the server or peer actually connected to. Squid ≥ 3.2
    /// logs its IP address; `None` (or empty) prints `-`.
    pub host: Option<String>,
}

impl Hierarchy {
    /// `HIER_NONE/-`.
    pub fn none() -> Self {
        Hierarchy::new(HierarchyCode::HierNone, None::<String>)
    }

    pub fn new(code: HierarchyCode, host: Option<impl Into<String>>) -> Self {
        Hierarchy {
            code,
            timed_out: false,
            host: host.map(Into::into),
        }
    }

    /// With the `TIMEOUT_` prefix.
    pub fn timed_out(mut self) -> Self {
        self.timed_out = true;
        self
    }
}

impl Default for Hierarchy {
    fn default() -> Self {
        Hierarchy::none()
    }
}

impl Hierarchy {
    /// Appends the field as [`Display`](fmt::Display) writes it.
    pub fn push_to(&self, out: &mut String) {
        if self.timed_out {
            out.push_str("TIMEOUT_");
        }
        out.push_str(self.code.as_str());
        out.push('/');
        out.push_str(
            self.host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("-"),
        );
    }
}

impl fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(48);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

impl FromStr for Hierarchy {
    type Err = UnknownCode;

    /// Parses `[TIMEOUT_]CODE/host`; a host of `-` is `None`.
    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        let (code, host) = s
            .split_once('/')
            .ok_or_else(|| UnknownCode(s.to_string()))?;
        let (timed_out, code) = match code.strip_prefix("TIMEOUT_") {
            Some(c) => (true, c),
            None => (false, code),
        };
        Ok(Hierarchy {
            code: code.parse()?,
            timed_out,
            host: (host != "-").then(|| host.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_tag_round_trips_with_every_flag() {
        for tag in ResultTag::ALL {
            for bits in 0..16u8 {
                let code = ResultCode {
                    tag,
                    collapsed: bits & 1 != 0,
                    ignored: bits & 2 != 0,
                    timed_out: bits & 4 != 0,
                    aborted: bits & 8 != 0,
                };
                let text = code.to_string();
                assert_eq!(text.parse::<ResultCode>(), Ok(code), "{text}");
            }
        }
    }

    #[test]
    fn result_codes_render_as_squid_does() {
        use ResultTag::*;
        let cases = [
            (ResultCode::new(None), "NONE_NONE"),
            (ResultCode::new(None).collapsed(), "NONE_CF_NONE"),
            (ResultCode::new(TcpHit).collapsed(), "TCP_CF_HIT"),
            (ResultCode::new(TcpMiss).collapsed(), "TCP_CF_MISS"),
            (ResultCode::new(TcpMiss).aborted(), "TCP_MISS_ABORTED"),
            (
                ResultCode::new(TcpRefreshFailOld)
                    .ignored()
                    .timed_out()
                    .aborted(),
                "TCP_REFRESH_FAIL_OLD_IGNORED_TIMEDOUT_ABORTED",
            ),
            (
                ResultCode::new(TcpTunnel).timed_out(),
                "TCP_TUNNEL_TIMEDOUT",
            ),
            (ResultCode::new(UdpMissNofetch), "UDP_MISS_NOFETCH"),
            (
                ResultCode::new(TcpClientRefreshMiss),
                "TCP_CLIENT_REFRESH_MISS",
            ),
            (ResultCode::new(TcpDeniedReply), "TCP_DENIED_REPLY"),
            (ResultCode::new(IcpQuery), "ICP_QUERY"),
        ];
        for (code, text) in cases {
            assert_eq!(code.to_string(), text);
        }
        for bad in [
            "",
            "TCP",
            "TCP_",
            "TCP_CF",
            "TCP_HITS",
            "FOO_HIT",
            "UDP_REFRESH",
            "TCP_ABORTED",
        ] {
            assert!(bad.parse::<ResultCode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hit_classification_is_squids() {
        let hits: Vec<_> = ResultTag::ALL.into_iter().filter(|t| t.is_hit()).collect();
        use ResultTag::*;
        assert_eq!(
            hits,
            [
                TcpHit,
                TcpRefreshUnmodified,
                TcpRefreshFailOld,
                TcpImsHit,
                TcpInmHit,
                TcpNegativeHit,
                TcpMemHit,
                TcpOfflineHit
            ]
        );
        assert!(ResultCode::new(TcpMemHit).collapsed().aborted().is_hit());
        assert!(!ResultCode::new(UdpHit).is_hit());
        assert!(!ResultCode::new(TcpRedirect).is_hit());
        assert!(UdpMissNofetch.is_udp() && !TcpHit.is_udp());
    }

    #[test]
    fn hierarchy_codes_round_trip() {
        for code in HierarchyCode::ALL {
            for timed_out in [false, true] {
                for host in [None, Some("127.0.0.12".to_string())] {
                    let h = Hierarchy {
                        code,
                        timed_out,
                        host,
                    };
                    assert_eq!(h.to_string().parse::<Hierarchy>(), Ok(h.clone()));
                }
            }
        }
        assert_eq!(HierarchyCode::FirstUpParent.as_str(), "FIRSTUP_PARENT");
        assert_eq!(
            Hierarchy::new(HierarchyCode::HierDirect, Some("127.0.0.1"))
                .timed_out()
                .to_string(),
            "TIMEOUT_HIER_DIRECT/127.0.0.1"
        );
        assert_eq!(Hierarchy::none().to_string(), "HIER_NONE/-");
        assert_eq!(
            Hierarchy::new(HierarchyCode::Carp, Some("")).to_string(),
            "CARP/-"
        );
        assert!("FIRST_UP_PARENT/-".parse::<Hierarchy>().is_err());
        assert!("HIER_DIRECT".parse::<Hierarchy>().is_err());
    }
}
