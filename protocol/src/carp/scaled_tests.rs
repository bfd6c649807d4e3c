//! Load-scaled CARP ([`Carp::scaled`]): unscaled it is Squid's CARP to the
//! last bit, and a scale moves only the URLs that must move.

use super::*;

fn members<'a>(list: &[(&'a str, u32)]) -> Vec<CarpMember<'a>> {
    list.iter()
        .map(|&(name, weight)| CarpMember { name, weight })
        .collect()
}

const WEIGHTED: [(&str, u32); 3] = [("alpha", 1), ("Beta", 2), ("gamma-3", 3)];
const EQUAL: [(&str, u32); 3] = [("p1", 1), ("p2", 1), ("p3", 1)];
const URLS: usize = 100_000;

fn url(n: usize) -> String {
    format!("http://site{}.example.test/object/{n}?v={}", n % 97, n * 7)
}

fn owners(carp: &Carp) -> Vec<Option<usize>> {
    (0..URLS)
        .map(|n| carp.choose(url(n).as_bytes(), |_| true))
        .collect()
}

fn shares(owners: &[Option<usize>], count: usize) -> Vec<f64> {
    let mut per = vec![0_usize; count];
    owners.iter().flatten().for_each(|&m| per[m] += 1);
    per.iter()
        .map(|&n| n as f64 / owners.len() as f64)
        .collect()
}

#[test]
fn unscaled_is_squids_carp_exactly() {
    for list in [&WEIGHTED[..], &EQUAL[..]] {
        let m = members(list);
        assert_eq!(Carp::scaled(&m, |_| 1.0), Carp::new(&m), "{list:?}");
    }
}

#[test]
fn scaling_one_member_moves_only_its_urls_and_about_the_share_it_sheds() {
    let m = members(&EQUAL);
    let before = owners(&Carp::new(&m));
    // p2 at half its weight: its factor goes from 1/3 to 0.5/2.5 = 0.2.
    let after = owners(&Carp::scaled(&m, |i| if i == 1 { 0.5 } else { 1.0 }));
    let moved: Vec<usize> = (0..URLS).filter(|&n| before[n] != after[n]).collect();
    assert!(
        moved.iter().all(|&n| before[n] == Some(1)),
        "only p2's URLs move"
    );
    let fraction = moved.len() as f64 / URLS as f64;
    let least = 1.0 / 3.0 - 0.2;
    let (s_before, s_after) = (shares(&before, 3), shares(&after, 3));
    println!(
        "p2 at scale 0.5: {:.4} of {URLS} URLs moved (least possible {least:.4}); \
         shares before {s_before:.3?}, after {s_after:.3?}; plain CARP moves 0, \
         round-robin keeps no owner at all",
        fraction
    );
    assert!(
        (fraction - least).abs() < 0.01,
        "moved {fraction}, expected about {least}"
    );
    assert!((s_after[1] - 0.2).abs() < 0.01, "{s_after:?}");
}

#[test]
fn scaled_weights_keep_squids_hash_order() {
    // Scaling the heaviest member below the others' factors changes the
    // order multipliers are computed in, not the order keys are hashed in:
    // most URLs that move are gamma-3's.
    let m = members(&WEIGHTED);
    let before = owners(&Carp::new(&m));
    let after = owners(&Carp::scaled(&m, |i| if i == 2 { 0.25 } else { 1.0 }));
    let moved_away_from_others = (0..URLS)
        .filter(|&n| before[n] != after[n] && before[n] != Some(2))
        .count();
    let s_after = shares(&after, 3);
    // gamma-3: 3 * 0.25 = 0.75 of a total 3.75: a factor of 0.2.
    assert!((s_after[2] - 0.2).abs() < 0.01, "{s_after:?}");
    // Members with unequal weights swap a few URLs among themselves as
    // their multipliers are recomputed; bounded, not zero.
    let share = moved_away_from_others as f64 / URLS as f64;
    println!("URLs moved between the untouched members: {share:.4}");
    assert!(share < 0.05, "{share}");
}

#[test]
fn a_member_scaled_to_its_trickle_keeps_it_below_squids_floor() {
    // Ten equal members, one at load-aware CARP's least scale (1/128): its
    // factor (1/128)/(9 + 1/128) is under Squid's 1/1000 floor for
    // configured factors, yet it keeps a trickle, to be measured by.
    let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let list: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let m = members(&list);
    let before = owners(&Carp::new(&m));
    let after = owners(&Carp::scaled(
        &m,
        |i| if i == 3 { 1.0 / 128.0 } else { 1.0 },
    ));
    let trickle = shares(&after, 10)[3];
    let factor = (1.0 / 128.0) / (9.0 + 1.0 / 128.0);
    let moved = (0..URLS).filter(|&n| before[n] != after[n]).count();
    println!(
        "p3 of 10 at scale 1/128: share {trickle:.5} (factor {factor:.5}); {:.4} of {URLS} \
         URLs moved (least possible {:.4})",
        moved as f64 / URLS as f64,
        0.1 - factor
    );
    assert!(
        trickle > factor / 2.0 && trickle < factor * 2.0,
        "{trickle}"
    );
    assert!(
        (0..URLS).all(|n| before[n] == after[n] || before[n] == Some(3)),
        "only p3's URLs move"
    );
}

#[test]
fn the_least_scale_moves_only_the_slow_members_urls() {
    let m = members(&EQUAL);
    let before = owners(&Carp::new(&m));
    let after = owners(&Carp::scaled(
        &m,
        |i| if i == 1 { 1.0 / 128.0 } else { 1.0 },
    ));
    let moved: Vec<usize> = (0..URLS).filter(|&n| before[n] != after[n]).collect();
    assert!(
        moved.iter().all(|&n| before[n] == Some(1)),
        "only p2's URLs move"
    );
    let factor = (1.0 / 128.0) / (2.0 + 1.0 / 128.0);
    let fraction = moved.len() as f64 / URLS as f64;
    let s_after = shares(&after, 3);
    println!(
        "p2 at scale 1/128: {fraction:.4} of {URLS} URLs moved (least possible {:.4}); \
         shares after {s_after:.4?}; plain CARP moves 0, round-robin keeps no owner at all",
        1.0 / 3.0 - factor
    );
    assert!((fraction - (1.0 / 3.0 - factor)).abs() < 0.01, "{fraction}");
    assert!(
        s_after[1] > 0.0 && (s_after[1] - factor).abs() < 0.002,
        "{s_after:?}"
    );
}
