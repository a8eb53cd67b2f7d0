//! Property tests: the route table answers exactly what a brute-force
//! longest-prefix scan answers, and the file and probe parsers never panic
//! on arbitrary input.

use config::SourceFile;
use proptest::collection::vec;
use proptest::prelude::*;
use route::files;
use route::trie::{PrefixKey, PrefixTrie, MAX_PREFIX_DIGITS};

/// Digit strings over the first `alphabet` digits, so that random prefixes
/// share paths (a full alphabet rarely makes one prefix of another).
fn digits(alphabet: u8, max_len: usize) -> impl Strategy<Value = String> {
    vec(0..alphabet, 0..=max_len)
        .prop_map(|ds| ds.into_iter().map(|d| char::from(b'0' + d)).collect())
}

fn table_and_numbers() -> impl Strategy<Value = (Vec<(String, u32)>, Vec<String>)> {
    (1u8..=10, 1usize..=MAX_PREFIX_DIGITS).prop_flat_map(|(alphabet, max_len)| {
        (
            vec((digits(alphabet, max_len), 0u32..5000), 0..300),
            vec(digits(alphabet, max_len + 4), 1..100),
        )
    })
}

fn brute_force(entries: &[(String, u32)], number: &str) -> Option<(u32, usize)> {
    entries
        .iter()
        .filter(|(p, _)| number.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
        .map(|(p, v)| (*v, p.len()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn lookup_equals_a_brute_force_longest_prefix_scan((raw, numbers) in table_and_numbers()) {
        // Keep the first value of each prefix; the builder refuses repeats.
        let mut entries: Vec<(String, u32)> = Vec::new();
        for (p, v) in raw {
            if !entries.iter().any(|(q, _)| *q == p) {
                entries.push((p, v));
            }
        }
        let keyed: Vec<_> = entries
            .iter()
            .map(|(p, v)| (PrefixKey::from_digits(p.as_bytes()).unwrap(), *v))
            .collect();
        let trie = PrefixTrie::build(&keyed).unwrap();
        let refs: Vec<&[u8]> = numbers.iter().map(|n| n.as_bytes()).collect();
        let mut batch = vec![None; refs.len()];
        trie.lookup_batch(&refs, &mut batch);
        for (n, b) in numbers.iter().zip(&batch) {
            let want = brute_force(&entries, n);
            prop_assert_eq!(trie.lookup(n.as_bytes()).map(|m| (m.value, m.len)), want, "number {}", n);
            prop_assert_eq!(b.map(|m| (m.value, m.len)), want, "batch, number {}", n);
        }
    }

    #[test]
    fn repeated_prefixes_are_always_refused(prefixes in vec(digits(3, 6), 1..50)) {
        let keyed: Vec<_> = prefixes
            .iter()
            .map(|p| (PrefixKey::from_digits(p.as_bytes()).unwrap(), 0))
            .collect();
        let distinct = prefixes.iter().collect::<std::collections::HashSet<_>>().len();
        match PrefixTrie::build(&keyed) {
            Ok(t) => prop_assert_eq!(t.len(), prefixes.len()),
            Err(dups) => prop_assert_eq!(dups.len(), prefixes.len() - distinct),
        }
    }

    #[test]
    fn the_prefixes_parser_never_panics(body in ".{0,400}") {
        let groups = SourceFile::from_text("g.toml", "[[group]]\nname = \"a\"\naction = \"reject\"\ncode = 404\n");
        let groups = files::parse_groups(&groups).unwrap();
        let _ = files::parse_prefixes(&SourceFile::from_text("p.csv", body.clone()), Some(&groups));
        let _ = files::parse_prefixes(&SourceFile::from_text("p.csv", body), None);
    }

    #[test]
    fn the_prefixes_parser_never_panics_on_near_csv(
        lines in vec(("[0-9+a#\" ]{0,12}", prop::sample::select(vec![",", ",,", "", ";"]), "[a-z\" ]{0,4}"), 0..40)
    ) {
        let body: String = lines.iter().map(|(p, sep, g)| format!("{p}{sep}{g}\n")).collect();
        let groups = SourceFile::from_text("g.toml", "[[group]]\nname = \"a\"\naction = \"reject\"\ncode = 404\n");
        let groups = files::parse_groups(&groups).unwrap();
        if let Err(e) = files::parse_prefixes(&SourceFile::from_text("p.csv", body), Some(&groups)) {
            prop_assert!(e.errors.iter().all(|e| e.line > 0), "{}", e);
        }
    }

    #[test]
    fn the_groups_parser_never_panics(body in ".{0,400}") {
        let _ = files::parse_groups(&SourceFile::from_text("g.toml", body));
    }

    #[test]
    fn the_groups_parser_never_panics_on_near_toml(
        groups in vec((
            "[a-z!]{0,3}",
            prop::sample::select(vec!["forward", "redirect", "reject", "x", ""]),
            prop::option::of(-5i64..1000),
            prop::option::of(-5i64..100_000),
            vec(("[0-9.:\\[\\]a-f]{0,20}", prop::option::of(-3i64..70_000), prop::option::of(-3i64..70_000)), 0..4),
        ), 0..6)
    ) {
        let mut body = String::from("[health]\ninterval_ms = 50\n");
        for (name, action, code, cap, targets) in &groups {
            body.push_str(&format!("[[group]]\nname = {name:?}\naction = {action:?}\n"));
            if let Some(c) = code { body.push_str(&format!("code = {c}\n")); }
            if let Some(c) = cap { body.push_str(&format!("cps_cap = {c}\n")); }
            body.push_str("targets = [");
            for (addr, prio, weight) in targets {
                body.push_str(&format!("{{ address = {addr:?}"));
                if let Some(p) = prio { body.push_str(&format!(", priority = {p}")); }
                if let Some(w) = weight { body.push_str(&format!(", weight = {w}")); }
                body.push_str(" },");
            }
            body.push_str("]\n");
        }
        match files::parse_groups(&SourceFile::from_text("g.toml", body)) {
            Ok(g) => prop_assert!(g.groups.iter().all(|g| g.targets.iter().all(|t| t.weight >= 1))),
            Err(e) => prop_assert!(e.errors.iter().all(|e| e.line > 0), "{}", e),
        }
    }
}
