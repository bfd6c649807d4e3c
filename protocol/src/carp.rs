//! Hash-based parent choice exactly as Squid 5.7 computes it: CARP
//! (`cache_peer ... carp`), `sourcehash` and `userhash` (squid-spec 4 and
//! 3.4). Pure arithmetic: the caller says which members are usable for a
//! request (up, allowed, under max-conn) through an `eligible` closure.
//!
//! Squid's quirks are reproduced on purpose, because a mesh only agrees on
//! where a URL lives if every member picks the same parent:
//! - member hashes are over the `name` as configured (no lower-casing);
//! - members are ordered by integer weight, ties in configuration order;
//! - CARP's URL hash is one accumulator that keeps running across members,
//!   so the k-th member hashes the key as if it were repeated k times;
//! - bytes are added as signed `char`s (x86), so 0x80..=0xFF count negative;
//! - load multipliers are `f64`, computed with `pow` in Squid's order.

use std::borrow::Cow;

/// One hash member: a parent with the `carp` (or `sourcehash`, `userhash`)
/// option, in configuration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarpMember<'a> {
    /// The peer's `name=` (else its host as written): the hashed identity.
    pub name: &'a str,
    /// `weight=` (Squid parses it to at least 1; a member with weight 0 is
    /// left out of the set, as Squid does).
    pub weight: u32,
}

/// What Squid computes once per configuration for one member (its
/// `mgr:carp` line): the member's hash, load factor and load multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberInfo {
    /// Index into the `members` slice given to the constructor.
    pub index: usize,
    /// Hash of the member's name.
    pub hash: u32,
    /// weight / sum of weights (0 when it is below 1/1000, as in Squid).
    pub load_factor: f64,
    /// The factor scores are multiplied by.
    pub multiplier: f64,
}

/// The member table shared by all three algorithms: members with a weight,
/// in Squid's order (weight ascending, ties in configuration order).
#[derive(Debug, Clone, Default, PartialEq)]
struct Table {
    members: Vec<MemberInfo>,
}

impl Table {
    fn new(members: &[CarpMember<'_>]) -> Table {
        let in_set: Vec<(usize, &CarpMember<'_>)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.weight > 0)
            .collect();
        // Squid sums weights in an int; u64 keeps huge weights from wrapping.
        let total: u64 = in_set.iter().map(|(_, m)| u64::from(m.weight)).sum();
        let mut sorted: Vec<(u32, MemberInfo)> = in_set
            .iter()
            .map(|&(index, m)| {
                let mut load_factor = f64::from(m.weight) / total as f64;
                if (load_factor * 1000.0).floor() == 0.0 {
                    load_factor = 0.0;
                }
                let info = MemberInfo {
                    index,
                    hash: member_hash(m.name),
                    load_factor,
                    multiplier: 0.0,
                };
                (m.weight, info)
            })
            .collect();
        // Stable: equal weights stay in configuration order, as glibc's
        // qsort (a merge sort) leaves them (squid-spec 4.2 step 3, 9).
        sorted.sort_by_key(|(weight, _)| *weight);

        // Squid's multipliers (squid-spec 4.2 step 4), in f64 and in the
        // same order of operations so results agree to the last bit.
        let factors: Vec<f64> = sorted.iter().map(|(_, info)| info.load_factor).collect();
        for ((_, info), x) in sorted.iter_mut().zip(multipliers(&factors)) {
            info.multiplier = x;
        }
        Table {
            members: sorted.into_iter().map(|(_, info)| info).collect(),
        }
    }

    /// The same members and hash order with each member's weight scaled
    /// by `scale(index)` (clamped to 0..=1): new factors, and multipliers
    /// computed over the factors in ascending order (the algorithm needs
    /// that order; Squid's is by integer weight, which is the same thing
    /// unscaled). The order keys are hashed in stays Squid's, so a member's
    /// key hashes, and its URLs, do not change with anyone's load.
    fn scaled(&self, members: &[CarpMember<'_>], scale: impl Fn(usize) -> f64) -> Table {
        let weights: Vec<f64> = self
            .members
            .iter()
            .map(|m| {
                let weight = members.get(m.index).map_or(0, |c| c.weight);
                let s = scale(m.index);
                f64::from(weight)
                    * if s.is_finite() {
                        s.clamp(0.0, 1.0)
                    } else {
                        1.0
                    }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut table = self.clone();
        for (member, weight) in table.members.iter_mut().zip(&weights) {
            // Squid's 1/1000 floor applies to the configured factor only:
            // a member scaled below it keeps its trickle (it is measured
            // by it), one configured below it stays out as in Squid.
            let configured = member.load_factor;
            member.load_factor = if total > 0.0 && configured > 0.0 {
                weight / total
            } else {
                0.0
            };
        }
        let mut ascending: Vec<usize> = (0..table.members.len()).collect();
        ascending.sort_by(|&a, &b| {
            table.members[a]
                .load_factor
                .total_cmp(&table.members[b].load_factor)
        });
        let factors: Vec<f64> = ascending
            .iter()
            .map(|&p| table.members[p].load_factor)
            .collect();
        for (&p, x) in ascending.iter().zip(multipliers(&factors)) {
            table.members[p].multiplier = x;
        }
        table
    }

    /// Highest score among eligible members; `hash_before(position)` gives
    /// the key hash for the member at that position in Squid's order.
    fn choose(
        &self,
        mut hash_before: impl FnMut(usize) -> u32,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        // Squid starts the best score at 0 and wants strictly more, so a
        // score of exactly 0 never wins and ties keep the earlier member.
        let mut best: Option<(f64, usize)> = None;
        for (position, member) in self.members.iter().enumerate() {
            let key_hash = hash_before(position);
            let score = f64::from(finish(key_hash ^ member.hash)) * member.multiplier;
            let best_score = best.map_or(0.0, |(s, _)| s);
            if score > best_score && eligible(member.index) {
                best = Some((score, member.index));
            }
        }
        best.map(|(_, index)| index)
    }
}

/// Squid's multipliers (squid-spec 4.2 step 4) for load factors in
/// ascending order, in f64 and in Squid's order of operations.
fn multipliers(factors: &[f64]) -> Vec<f64> {
    let k_total = factors.len();
    let (mut x_last, mut p_last, mut x_product) = (0.0_f64, 0.0_f64, 1.0_f64);
    let mut out = Vec::with_capacity(k_total);
    for (k, &factor) in factors.iter().enumerate() {
        let remaining = (k_total - k) as f64;
        let mut x = (remaining * (factor - p_last)) / x_product;
        x += x_last.powf(remaining);
        x = x.powf(1.0 / remaining);
        x_product *= x;
        x_last = x;
        p_last = factor;
        out.push(x);
    }
    out
}

/// One byte into a running hash: `h + rotl(h, 19) + c`, with `c` a signed
/// `char` as on x86 Linux (squid-spec 4.3 step 3).
fn add_byte(hash: u32, byte: u8) -> u32 {
    let signed = i32::from(byte as i8) as u32;
    hash.wrapping_add(hash.rotate_left(19)).wrapping_add(signed)
}

fn add_bytes(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |h, &b| add_byte(h, b))
}

/// The mixing step applied to member hashes and to combined hashes.
fn finish(hash: u32) -> u32 {
    hash.wrapping_add(hash.wrapping_mul(0x6253_1965))
        .rotate_left(21)
}

/// Hash of a member's name (squid-spec 4.1). Squid reads the name as a C
/// string, so it ends at a NUL byte.
pub fn member_hash(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    finish(add_bytes(0, &bytes[..end]))
}

/// CARP over the members of one configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carp {
    table: Table,
}

impl Carp {
    /// Computed once per configuration: member hashes, load factors and
    /// multipliers, in Squid's order. `members` are the `carp` parents in
    /// configuration order.
    pub fn new(members: &[CarpMember<'_>]) -> Carp {
        Carp {
            table: Table::new(members),
        }
    }

    /// Load-aware CARP: the members of `new` with each one's weight
    /// scaled by `scale(index)` (0..=1; 1 is its configured share). Keys
    /// are hashed in Squid's order as in `new`, so with every scale at 1
    /// this is `new` exactly, and scaling one member down moves only URLs
    /// away from it, about as many as the share it sheds.
    pub fn scaled(members: &[CarpMember<'_>], scale: impl Fn(usize) -> f64) -> Carp {
        Carp {
            table: Table::new(members).scaled(members, scale),
        }
    }

    /// Index (into the `members` slice given to `new`) of the member Squid
    /// would pick for this key, considering only members for which
    /// `eligible(index)` is true; None if none is eligible.
    ///
    /// `key` is the same for every member: Squid's effective request URI
    /// (absolute URI in its canonical form; `host:port` for CONNECT). Use
    /// [`Carp::choose_keyed`] when members have `carp-key=`.
    pub fn choose(&self, key: &[u8], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.choose_keyed(|_| key, eligible)
    }

    /// Like [`Carp::choose`], with a key per member (`key_of(index)`, see
    /// [`carp_key`]) for members configured with `carp-key=`.
    ///
    /// Every member's key is added to one running hash, members in Squid's
    /// order, whether or not the member is eligible: a down member changes
    /// nobody else's score (squid-spec 4.3 steps 2 and 5).
    pub fn choose_keyed<K: AsRef<[u8]>>(
        &self,
        mut key_of: impl FnMut(usize) -> K,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let members = &self.table.members;
        let mut running = 0_u32;
        self.table.choose(
            |position| {
                running = add_bytes(running, key_of(members[position].index).as_ref());
                running
            },
            eligible,
        )
    }

    /// The members in Squid's order with their hash, factor and multiplier
    /// (what Squid's `mgr:carp` page lists).
    pub fn members(&self) -> &[MemberInfo] {
        &self.table.members
    }

    /// True when no member has a weight: CARP picks nothing.
    pub fn is_empty(&self) -> bool {
        self.table.members.is_empty()
    }
}

/// `sourcehash` and `userhash` (squid-spec 4.5, 3.4): CARP's member
/// hashes, factors, multipliers and scoring, but the key is hashed once
/// (no accumulation). The key is the client's IP address as text for
/// `sourcehash` (`127.0.0.1`, IPv6 without brackets, e.g. `::1`) and the
/// authenticated user name for `userhash` (no user: no choice, the caller
/// skips the algorithm). Squid hashes the user name as its auth scheme
/// stores it: Basic with `casesensitive off` (the default) lower-cases
/// ASCII letters first (verified against Squid 5.7 in tests/carp_squid.rs).
/// Squid tries sourcehash, then userhash, then CARP.
/// Build one table per option from the parents that carry it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHash {
    table: Table,
}

/// `userhash` works exactly like `sourcehash` with the user name as key.
pub type UserHash = SourceHash;

impl SourceHash {
    /// Computed once per configuration from the `sourcehash` (or
    /// `userhash`) parents in configuration order.
    pub fn new(members: &[CarpMember<'_>]) -> SourceHash {
        SourceHash {
            table: Table::new(members),
        }
    }

    /// Index of the member Squid would pick for this client address text or
    /// user name among the eligible ones; None if none is eligible.
    pub fn choose(&self, key: &[u8], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let key_hash = add_bytes(0, key);
        self.table.choose(|_| key_hash, eligible)
    }

    /// The members in Squid's order with their hash, factor and multiplier.
    pub fn members(&self) -> &[MemberInfo] {
        &self.table.members
    }

    /// True when no member has a weight.
    pub fn is_empty(&self) -> bool {
        self.table.members.is_empty()
    }
}

/// Which URL parts `carp-key=` selects (any of scheme, host, port, path,
/// params; the order written does not matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CarpKeyParts {
    pub scheme: bool,
    pub host: bool,
    pub port: bool,
    pub path: bool,
    pub params: bool,
}

/// The parts of a request URL as Squid holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// The effective request URI, canonical (what `choose` takes without
    /// `carp-key`); the fallback when the selected parts are empty.
    pub full: &'a [u8],
    /// Lower-case scheme name, e.g. `http`.
    pub scheme: &'a [u8],
    /// Host as Squid stores it: lower-cased, an IPv6 literal in brackets
    /// (`[2001:db8::1]`), as tests/carp_squid.rs verified against Squid.
    pub host: &'a [u8],
    /// The port, with the scheme's default filled in (80 for http): Squid
    /// writes `:80` in the key even when the URL omits it (verified).
    pub port: u16,
    /// Path with the query, e.g. `/a/b?x=1`.
    pub path_and_query: &'a [u8],
}

/// The CARP key of one member with `carp-key=` (squid-spec 4.4):
/// `[scheme "://"][host][":" port][path before "?"]["?" and the rest]`,
/// or the full URI when that comes out empty.
pub fn carp_key<'a>(parts: CarpKeyParts, url: &UrlParts<'a>) -> Cow<'a, [u8]> {
    let (path, query) = match url.path_and_query.iter().position(|&b| b == b'?') {
        Some(at) => url.path_and_query.split_at(at),
        None => (url.path_and_query, &[][..]),
    };
    let mut key = Vec::new();
    if parts.scheme {
        key.extend_from_slice(url.scheme);
        if !key.is_empty() {
            key.extend_from_slice(b"://");
        }
    }
    if parts.host {
        key.extend_from_slice(url.host);
    }
    if parts.port {
        key.extend_from_slice(format!(":{}", url.port).as_bytes());
    }
    if parts.path {
        key.extend_from_slice(path);
    }
    if parts.params {
        key.extend_from_slice(query);
    }
    if key.is_empty() {
        Cow::Borrowed(url.full)
    } else {
        Cow::Owned(key)
    }
}

#[cfg(test)]
mod scaled_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn members<'a>(list: &[(&'a str, u32)]) -> Vec<CarpMember<'a>> {
        list.iter()
            .map(|&(name, weight)| CarpMember { name, weight })
            .collect()
    }

    /// Squid's `mgr:carp` prints multipliers and factors with `%f`.
    fn six_places(x: f64) -> String {
        format!("{x:.6}")
    }

    const WEIGHTED: [(&str, u32); 3] = [("alpha", 1), ("Beta", 2), ("gamma-3", 3)];
    const EQUAL: [(&str, u32); 3] = [("zeta", 1), ("Alpha", 1), ("mid", 1)];

    #[test]
    fn member_table_matches_squid_mgr_carp() {
        // squid-spec 4.6: hash, multiplier, factor per member.
        let carp = Carp::new(&members(&WEIGHTED));
        let got: Vec<(usize, String, String, String)> = carp
            .members()
            .iter()
            .map(|m| {
                (
                    m.index,
                    format!("{:08x}", m.hash),
                    six_places(m.multiplier),
                    six_places(m.load_factor),
                )
            })
            .collect();
        let want = [
            (0, "f2c69b1e", "0.793701", "0.166667"),
            (1, "7d1b7887", "1.024663", "0.333333"),
            (2, "6e5adff4", "1.229596", "0.500000"),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0, g.1.as_str(), g.2.as_str(), g.3.as_str()), w);
        }

        let carp = Carp::new(&members(&EQUAL));
        let hashes: Vec<String> = carp
            .members()
            .iter()
            .map(|m| format!("{:08x}", m.hash))
            .collect();
        assert_eq!(hashes, ["c71ef390", "2e051272", "5389fe28"]);
        for m in carp.members() {
            assert_eq!(six_places(m.multiplier), "1.000000");
            assert_eq!(six_places(m.load_factor), "0.333333");
        }
        // Equal weights keep configuration order.
        let order: Vec<usize> = carp.members().iter().map(|m| m.index).collect();
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn weighted_routing_matches_squid() {
        let list = members(&WEIGHTED);
        let carp = Carp::new(&list);
        let cases = [
            ("http://site1.example.test/path/1?q=13", "gamma-3"),
            ("http://site2.example.test/path/2?q=26", "alpha"),
            ("http://site3.example.test/path/3?q=39", "Beta"),
            ("http://site4.example.test/path/4?q=52", "Beta"),
            ("http://site5.example.test/path/5?q=65", "gamma-3"),
            ("http://site1.example.test/path/8?q=104", "Beta"),
        ];
        for (url, want) in cases {
            let got = carp.choose(url.as_bytes(), |_| true).map(|i| list[i].name);
            assert_eq!(got, Some(want), "{url}");
        }
    }

    #[test]
    fn equal_weight_routing_matches_squid_including_raw_utf8() {
        let list = members(&EQUAL);
        let carp = Carp::new(&list);
        let cases = [
            ("http://h1.example.test/x/1", "zeta"),
            ("http://h2.example.test/x/2", "Alpha"),
            ("http://h0.example.test/x/5", "mid"),
            ("http://utf.example.test/caf%C3%A9", "mid"),
            // Raw UTF-8: bytes >= 0x80 count as negative (signed char).
            ("http://utf.example.test/café", "Alpha"),
            ("http://utf.example.test/naïve/ü", "zeta"),
        ];
        for (url, want) in cases {
            let got = carp.choose(url.as_bytes(), |_| true).map(|i| list[i].name);
            assert_eq!(got, Some(want), "{url}");
        }
    }

    #[test]
    fn table_is_sorted_by_weight_and_stable_for_ties() {
        let list = members(&[("c", 3), ("a1", 1), ("b", 2), ("a2", 1), ("none", 0)]);
        let carp = Carp::new(&list);
        let order: Vec<usize> = carp.members().iter().map(|m| m.index).collect();
        // Weight 0 is out of the set; equal weights in configuration order.
        assert_eq!(order, [1, 3, 2, 0]);
        // The multipliers follow squid-spec 4.2 for factors 1/7, 1/7, 2/7, 3/7.
        let f: [f64; 4] = [1.0 / 7.0, 1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0];
        let mut x = [0.0_f64; 4];
        let x1 = (4.0 * f[0]).powf(1.0 / 4.0);
        x[0] = x1;
        let x2 = ((3.0 * (f[1] - f[0])) / x1 + x1.powf(3.0)).powf(1.0 / 3.0);
        x[1] = x2;
        let x3 = ((2.0 * (f[2] - f[1])) / (x1 * x2) + x2.powf(2.0)).powf(1.0 / 2.0);
        x[2] = x3;
        let x4 = (f[3] - f[2]) / (x1 * x2 * x3) + x3;
        x[3] = x4;
        for (m, want) in carp.members().iter().zip(x) {
            assert!((m.multiplier - want).abs() < 1e-12, "{m:?} vs {want}");
        }
    }

    #[test]
    fn tiny_factors_are_zeroed_and_never_chosen() {
        // 1 / 1001 < 1/1000: Squid sets the factor to 0, so the first
        // multiplier is 0, every score of that member is 0 and 0 never wins.
        let list = members(&[("small", 1), ("big", 1000)]);
        let carp = Carp::new(&list);
        assert_eq!(carp.members()[0].load_factor, 0.0);
        assert_eq!(carp.members()[0].multiplier, 0.0);
        for i in 0..2000 {
            let url = format!("http://tiny.example.test/{i}");
            assert_eq!(carp.choose(url.as_bytes(), |_| true), Some(1), "{url}");
            assert_eq!(carp.choose(url.as_bytes(), |i| i == 0), None, "{url}");
        }
    }

    #[test]
    fn no_members_or_none_eligible_chooses_nothing() {
        let carp = Carp::new(&[]);
        assert!(carp.is_empty());
        assert_eq!(carp.choose(b"http://x/", |_| true), None);
        let carp = Carp::new(&members(&WEIGHTED));
        assert_eq!(carp.choose(b"http://x/", |_| false), None);
        let zero = Carp::new(&members(&[("a", 0)]));
        assert!(zero.is_empty());
    }

    #[test]
    fn url_hash_accumulates_across_members() {
        // Member k hashes the key as if written k times: recompute one score
        // table by hand and check the choice matches the highest score.
        let list = members(&WEIGHTED);
        let carp = Carp::new(&list);
        for i in 0..500 {
            let url = format!("http://acc{i}.example.test/p?{i}");
            let mut running = 0_u32;
            let mut best = (0.0_f64, None);
            for m in carp.members() {
                running = add_bytes(running, url.as_bytes());
                let score = f64::from(finish(running ^ m.hash)) * m.multiplier;
                if score > best.0 {
                    best = (score, Some(m.index));
                }
            }
            assert_eq!(carp.choose(url.as_bytes(), |_| true), best.1, "{url}");
        }
        // And the repeated key is the same as concatenation.
        let once = add_bytes(0, b"abc");
        assert_eq!(add_bytes(once, b"abc"), add_bytes(0, b"abcabc"));
    }

    #[test]
    fn bytes_are_signed() {
        assert_eq!(add_byte(0, 0xE9), 0xFFFF_FFE9);
        assert_eq!(add_byte(0, 0x7F), 0x7F);
        // A name with a non-ASCII byte hashes differently from unsigned math.
        let unsigned = finish("é".bytes().fold(0_u32, |h, b| {
            h.wrapping_add(h.rotate_left(19)).wrapping_add(u32::from(b))
        }));
        assert_ne!(member_hash("é"), unsigned);
    }

    #[test]
    fn an_ineligible_member_moves_only_its_own_urls() {
        // Eligibility is checked after scoring, so the other members' scores
        // do not change: only the down member's URLs move (minimal
        // reshuffling holds for liveness changes).
        let list = members(&[("p1", 1), ("p2", 2), ("p3", 3), ("p4", 4)]);
        let carp = Carp::new(&list);
        for down in 0..list.len() {
            let mut moved = 0;
            for i in 0..3000 {
                let url = format!("http://h{}.example.test/{i}?x={}", i % 37, i * 7);
                let all = carp.choose(url.as_bytes(), |_| true);
                let without = carp.choose(url.as_bytes(), |m| m != down);
                if all == Some(down) {
                    moved += 1;
                    assert_ne!(without, Some(down));
                    assert!(without.is_some());
                } else {
                    assert_eq!(without, all, "{url} moved though {down} was not its member");
                }
            }
            assert!(moved > 0, "member {down} had no URLs");
        }
    }

    #[test]
    fn removing_the_last_equal_weight_member_moves_only_its_urls() {
        // With equal weights every multiplier is 1 and the other members'
        // positions (so their accumulated hashes) are unchanged when the
        // last member in Squid's order leaves: minimal reshuffling holds.
        let four = members(&[("n1", 1), ("n2", 1), ("n3", 1), ("n4", 1)]);
        let carp4 = Carp::new(&four);
        let carp3 = Carp::new(&four[..3]);
        for i in 0..3000 {
            let url = format!("http://eq{}.example.test/{i}", i % 11);
            let before = carp4.choose(url.as_bytes(), |_| true);
            let after = carp3.choose(url.as_bytes(), |_| true);
            if before != Some(3) {
                assert_eq!(after, before, "{url}");
            }
        }
    }

    #[test]
    fn removing_a_member_before_others_reshuffles_because_of_the_quirk() {
        // Squid's accumulating hash breaks minimal reshuffling: removing a
        // member shifts the later members' positions, so their URL hashes
        // change and URLs move between members that both stayed. Documented
        // here as Squid's behaviour (cuttle must reproduce it).
        let four = members(&[("n1", 1), ("n2", 1), ("n3", 1), ("n4", 1)]);
        let without_first = &four[1..];
        let carp4 = Carp::new(&four);
        let carp3 = Carp::new(without_first);
        let (mut kept_member_moved, total) = (0, 3000);
        for i in 0..total {
            let url = format!("http://eq{}.example.test/{i}", i % 11);
            let before = carp4.choose(url.as_bytes(), |_| true);
            let after = carp3.choose(url.as_bytes(), |_| true).map(|i| i + 1);
            if before != Some(0) && after != before {
                kept_member_moved += 1;
            }
        }
        // About half of the remaining URLs move; a per-member URL hash
        // (the draft) would move none.
        assert!(
            kept_member_moved > total / 4,
            "only {kept_member_moved} of {total} moved"
        );
    }

    #[test]
    fn shares_follow_the_weights() {
        let list = members(&[("w1", 1), ("w2", 2), ("w3", 3), ("w4", 4)]);
        let carp = Carp::new(&list);
        let total = 40_000;
        let mut counts = [0_usize; 4];
        for i in 0..total {
            let url = format!("http://s{}.example.test/o/{i}?v={}", i % 97, i % 13);
            if let Some(m) = carp.choose(url.as_bytes(), |_| true) {
                counts[m] += 1;
            }
        }
        for (m, &count) in counts.iter().enumerate() {
            let share = count as f64 / total as f64;
            let want = (m + 1) as f64 / 10.0;
            assert!(
                (share - want).abs() < 0.03,
                "member {m}: {share} vs {want} ({counts:?})"
            );
        }
    }

    #[test]
    fn carp_key_selects_parts() {
        let url = UrlParts {
            full: b"http://www.example.test:8080/a/b?x=1",
            scheme: b"http",
            host: b"www.example.test",
            port: 8080,
            path_and_query: b"/a/b?x=1",
        };
        let all = CarpKeyParts {
            scheme: true,
            host: true,
            port: true,
            path: true,
            params: true,
        };
        assert_eq!(
            &*carp_key(all, &url),
            b"http://www.example.test:8080/a/b?x=1"
        );
        let host_path = CarpKeyParts {
            host: true,
            path: true,
            ..CarpKeyParts::default()
        };
        assert_eq!(&*carp_key(host_path, &url), b"www.example.test/a/b");
        let params = CarpKeyParts {
            params: true,
            ..CarpKeyParts::default()
        };
        assert_eq!(&*carp_key(params, &url), b"?x=1");
        let port = CarpKeyParts {
            port: true,
            ..CarpKeyParts::default()
        };
        let default_port = UrlParts {
            port: 80,
            full: b"http://h/",
            ..url
        };
        assert_eq!(&*carp_key(port, &default_port), b":80");
        // Nothing selected, or only an absent query: the full URI.
        assert_eq!(&*carp_key(CarpKeyParts::default(), &url), url.full);
        let no_query = UrlParts {
            path_and_query: b"/a",
            full: b"http://h/a",
            ..url
        };
        assert_eq!(&*carp_key(params, &no_query), b"http://h/a");
    }

    #[test]
    fn keyed_choice_with_the_full_uri_equals_plain_choice() {
        let list = members(&WEIGHTED);
        let carp = Carp::new(&list);
        for i in 0..300 {
            let url = format!("http://k{i}.example.test/{i}");
            assert_eq!(
                carp.choose_keyed(|_| url.as_bytes(), |_| true),
                carp.choose(url.as_bytes(), |_| true)
            );
        }
        // A per-member key changes the running hash for later members.
        let differs = (0..300).any(|i| {
            let url = format!("http://k{i}.example.test/{i}");
            let host = format!("k{i}.example.test");
            carp.choose_keyed(|_| host.as_bytes(), |_| true)
                != carp.choose(url.as_bytes(), |_| true)
        });
        assert!(differs);
    }

    #[test]
    fn sourcehash_hashes_the_key_once() {
        let list = members(&WEIGHTED);
        let hash = SourceHash::new(&list);
        let carp = Carp::new(&list);
        assert_eq!(hash.members(), carp.members());
        let mut differs_from_carp = 0;
        for i in 0..256 {
            let ip = format!("10.0.{}.{}", i / 16, i % 16);
            let key_hash = add_bytes(0, ip.as_bytes());
            let mut best = (0.0_f64, None);
            for m in hash.members() {
                let score = f64::from(finish(key_hash ^ m.hash)) * m.multiplier;
                if score > best.0 {
                    best = (score, Some(m.index));
                }
            }
            let got = hash.choose(ip.as_bytes(), |_| true);
            assert_eq!(got, best.1, "{ip}");
            if got != carp.choose(ip.as_bytes(), |_| true) {
                differs_from_carp += 1;
            }
        }
        assert!(differs_from_carp > 0);
    }
}
