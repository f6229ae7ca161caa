//! ROCR_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES: which GPUs a ROCm program sees, in its order.

/// The GPUs (positions in `uuids`, ROCm's order) that `list` makes visible, in the list's
/// order, and what is worth telling about the list. Each GPU has two UUIDs (AMD SMI's and the
/// "GPU-..." one HIP shows), either possibly unknown (empty).
///
/// Entries are indices into the GPUs, or UUIDs (a unique prefix will do; the "GPU-" in front
/// and the dashes are ignored). As ROCm and CUDA do, the list ends at the first entry that
/// names no GPU (or one already listed).
pub fn select(list: &str, uuids: &[[String; 2]], var: &str) -> (Vec<usize>, Vec<String>) {
    let mut out: Vec<usize> = Vec::new();
    let mut notes = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            break;
        }
        let found = match entry.parse::<usize>() {
            Ok(i) => (i < uuids.len()).then_some(i),
            Err(_) => by_uuid(entry, uuids),
        };
        match found.filter(|i| !out.contains(i)) {
            Some(i) => out.push(i),
            None => {
                notes.push(format!(
                    "{var} entry {entry:?} names no AMD GPU (or one already listed); as ROCm \
                     does, the entries from there on are ignored"
                ));
                break;
            }
        }
    }
    if out.is_empty() && list.trim().is_empty() {
        notes.push(format!("{var} is empty: no AMD GPU is visible"));
    }
    (out, notes)
}

fn normalise(uuid: &str) -> String {
    let s = uuid.trim();
    let s = s
        .strip_prefix("GPU-")
        .or_else(|| s.strip_prefix("gpu-"))
        .unwrap_or(s);
    s.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn by_uuid(entry: &str, uuids: &[[String; 2]]) -> Option<usize> {
    let want = normalise(entry);
    if want.is_empty() {
        return None;
    }
    let matches: Vec<usize> = (0..uuids.len())
        .filter(|&i| {
            uuids[i]
                .iter()
                .any(|u| !u.is_empty() && normalise(u).starts_with(&want))
        })
        .collect();
    (matches.len() == 1).then(|| matches[0])
}

#[cfg(test)]
mod tests {
    use super::select;

    fn uuids() -> Vec<[String; 2]> {
        vec![
            ["aaaa1111-0000-1000-8000-000000000001".into(), String::new()],
            [
                "bbbb2222-0000-1000-8000-000000000002".into(),
                "GPU-1234abcd".into(),
            ],
            ["bbbb3333-0000-1000-8000-000000000003".into(), String::new()],
        ]
    }

    #[test]
    fn indices_and_uuids_select_in_the_lists_order() {
        let (sel, notes) = select("2,0", &uuids(), "ROCR_VISIBLE_DEVICES");
        assert_eq!((sel, notes.len()), (vec![2, 0], 0));
        let (sel, _) = select("GPU-bbbb3333, aaaa", &uuids(), "ROCR_VISIBLE_DEVICES");
        assert_eq!(sel, vec![2, 0]);
        // HIP's own UUID names the GPU too.
        assert_eq!(select("GPU-1234ABCD", &uuids(), "V").0, vec![1]);
    }

    #[test]
    fn the_list_ends_at_the_first_entry_that_names_no_gpu() {
        let (sel, notes) = select("1,7,0", &uuids(), "HIP_VISIBLE_DEVICES");
        assert_eq!(sel, vec![1]);
        assert!(notes[0].contains("HIP_VISIBLE_DEVICES entry \"7\""));
        // An ambiguous prefix names no one GPU; a repeated index ends the list too.
        assert_eq!(select("bbbb,0", &uuids(), "V").0, Vec::<usize>::new());
        assert_eq!(select("0,0,1", &uuids(), "V").0, vec![0]);
    }

    #[test]
    fn an_empty_list_hides_every_gpu() {
        let (sel, notes) = select("", &uuids(), "ROCR_VISIBLE_DEVICES");
        assert!(sel.is_empty());
        assert!(notes[0].contains("ROCR_VISIBLE_DEVICES is empty"));
    }
}
