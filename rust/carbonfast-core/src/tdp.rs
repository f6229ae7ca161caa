//! CPU model name -> TDP, from the table scripts/build_tables.py builds.
//!
//! /proc/cpuinfo names carry trademarks, clock speeds, core counts and generation prefixes
//! ("11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz") that the vendor tables do not. Both sides
//! are reduced to the same tokens; a table entry matches when all its tokens appear in the
//! cpuinfo name and it names a model number, the entry with most tokens winning. A name with no
//! model number ("AMD EPYC" in many VMs) never matches: guessing a part would be worse than the
//! stated fallback.

const TABLE: &str = include_str!("../data/cpu_tdp.tsv");

/// A table entry that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct TdpMatch {
    /// The table's name for the model.
    pub name: String,
    /// Watts per socket.
    pub tdp_w: f64,
}

/// The tokens a model name is compared by: lowercase, without trademarks, clock speed,
/// core counts, generation prefixes and filler words.
pub fn tokens(name: &str) -> Vec<String> {
    let mut s = name.to_lowercase();
    for mark in ["(r)", "(tm)", "®", "™"] {
        s = s.replace(mark, " ");
    }
    if let Some(at) = s.find('@') {
        s.truncate(at);
    }
    // Parenthesised remarks: "(Cascadelake)", "(9M Cache, up to 4.00 GHz)".
    let mut clean = String::with_capacity(s.len());
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    clean
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .filter(|t| !matches!(*t, "cpu" | "processor" | "gen" | "with" | "w/"))
        .filter(|t| !is_core_count(t) && !is_ordinal(t))
        .map(str::to_string)
        .collect()
}

/// "64-core", "8-core".
fn is_core_count(t: &str) -> bool {
    t.strip_suffix("-core")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// "11th", "3rd": generation prefixes.
fn is_ordinal(t: &str) -> bool {
    ["st", "nd", "rd", "th"].iter().any(|suffix| {
        t.strip_suffix(suffix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn has_model_number(tokens: &[String]) -> bool {
    tokens.iter().any(|t| t.bytes().any(|b| b.is_ascii_digit()))
}

/// The TDP of the CPU model named `cpuinfo_name`, if the table knows it.
pub fn lookup(cpuinfo_name: &str) -> Option<TdpMatch> {
    lookup_in(TABLE, cpuinfo_name)
}

fn lookup_in(table: &str, cpuinfo_name: &str) -> Option<TdpMatch> {
    let wanted = tokens(cpuinfo_name);
    if !has_model_number(&wanted) {
        return None;
    }
    let mut best: Option<(usize, TdpMatch)> = None;
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, tdp)) = line.split_once('\t') else {
            continue;
        };
        let Ok(tdp_w) = tdp.trim().parse::<f64>() else {
            continue;
        };
        let entry = tokens(name);
        if entry.is_empty() || !has_model_number(&entry) {
            continue;
        }
        let m = TdpMatch {
            name: name.to_string(),
            tdp_w,
        };
        if entry == wanted {
            return Some(m);
        }
        let all_present = entry.iter().all(|t| wanted.contains(t));
        if all_present && best.as_ref().is_none_or(|(n, _)| entry.len() > *n) {
            best = Some((entry.len(), m));
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Model names as /proc/cpuinfo prints them on real machines, and what they should match.
    const REAL_NAMES: &[(&str, Option<(&str, f64)>)] = &[
        (
            "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            Some(("Intel Xeon Platinum 8375C", 300.0)),
        ),
        (
            "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",
            Some(("Intel Xeon E5-2686 v4", 145.0)),
        ),
        (
            "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
            Some(("Intel Xeon Gold 6248R", 205.0)),
        ),
        (
            "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
            Some(("Intel Xeon Gold 6248", 150.0)),
        ),
        (
            "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
            Some(("Intel Core i7-8700", 65.0)),
        ),
        (
            "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
            Some(("Intel Core i7-1185G7", 28.0)),
        ),
        (
            "13th Gen Intel(R) Core(TM) i9-13900K",
            Some(("Intel Core i9-13900K", 125.0)),
        ),
        (
            "AMD EPYC 7763 64-Core Processor",
            Some(("AMD EPYC 7763", 280.0)),
        ),
        ("AMD EPYC 7R13 Processor", Some(("AMD EPYC 7R13", 225.0))),
        (
            "AMD Ryzen 9 5950X 16-Core Processor",
            Some(("AMD Ryzen 9 5950X", 105.0)),
        ),
        // Virtual CPUs that hide the model: no guess.
        ("AMD EPYC", None),
        ("AMD EPYC Processor", None),
        ("Intel Xeon Processor (Cascadelake)", None),
        ("Common KVM processor", None),
    ];

    #[test]
    fn real_cpuinfo_names_match_the_right_model() {
        for (cpuinfo, expected) in REAL_NAMES {
            let got = lookup(cpuinfo).map(|m| (m.name, m.tdp_w));
            let expected = expected.map(|(n, w)| (n.to_string(), w));
            assert_eq!(got, expected, "for {cpuinfo:?}");
        }
    }

    #[test]
    fn tokens_drop_decoration_but_keep_the_model() {
        assert_eq!(
            tokens("11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"),
            vec!["intel", "core", "i7-1185g7"]
        );
        assert_eq!(
            tokens("AMD EPYC 7763 64-Core Processor"),
            vec!["amd", "epyc", "7763"]
        );
    }

    #[test]
    fn the_most_specific_entry_wins_over_a_shorter_one() {
        let table = "Intel Xeon E5-2686\t100\nIntel Xeon E5-2686 v4\t145\n";
        let m = lookup_in(table, "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz").unwrap();
        assert_eq!(m.tdp_w, 145.0);
    }

    #[test]
    fn the_shipped_table_is_large_and_parses() {
        let rows = TABLE
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split_once('\t')
                    .is_some_and(|(_, w)| w.parse::<f64>().is_ok())
            })
            .count();
        assert!(rows > 4000, "{rows} rows");
        assert!(TABLE.contains("Licence: MIT"));
    }
}
