//! RAPL through Linux powercap (`/sys/class/powercap`), for Intel and AMD.
//!
//! Every zone (`intel-rapl:N`) and subzone (`intel-rapl:N:M`) with an `energy_uj` file becomes a
//! domain. `energy_uj` files stay open and are read with pread at offset 0, which makes sysfs
//! produce a fresh value on each read; parsing uses a stack buffer.

use super::{parse_u64, Source, Unreadable};
use crate::domain::{Domain, DomainKind, Reading};
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/sys/class/powercap";

/// The two powercap control types that expose RAPL. MMIO zones repeat the package counter on
/// some Intel client parts, so they are used only for domains intel-rapl does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ControlType {
    Msr,
    Mmio,
}

/// A zone directory name parsed: `intel-rapl:0:1` is (Msr, [0, 1]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ZoneId {
    control: ControlType,
    path: Vec<u32>,
}

impl ZoneId {
    fn parse(dir_name: &str) -> Option<Self> {
        let (control, rest) = if let Some(rest) = dir_name.strip_prefix("intel-rapl-mmio:") {
            (ControlType::Mmio, rest)
        } else if let Some(rest) = dir_name.strip_prefix("intel-rapl:") {
            (ControlType::Msr, rest)
        } else {
            return None;
        };
        let path = rest
            .split(':')
            .map(|p| p.parse::<u32>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(ZoneId { control, path })
    }

    fn parent(&self) -> Option<ZoneId> {
        (self.path.len() > 1).then(|| ZoneId {
            control: self.control,
            path: self.path[..self.path.len() - 1].to_vec(),
        })
    }
}

#[derive(Debug)]
pub struct PowercapSource {
    root: PathBuf,
    domains: Vec<Domain>,
    files: Vec<File>,
    problems: Vec<Error>,
    notes: Vec<String>,
    unreadable: Vec<Unreadable>,
}

impl PowercapSource {
    /// Discovers every readable RAPL zone under `root`. Never fails: what cannot be used is
    /// recorded in `problems()` with its reason and fix.
    pub fn discover(root: &Path) -> Self {
        let mut src = PowercapSource {
            root: root.to_path_buf(),
            domains: Vec::new(),
            files: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            unreadable: Vec::new(),
        };
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                src.problems.push(Error::Missing {
                    path: root.to_path_buf(),
                    why: "the kernel exposes RAPL energy counters here; this machine has none"
                        .into(),
                    fix: "on bare-metal Linux load the RAPL driver: sudo modprobe intel_rapl_msr \
                          (Intel and AMD); virtual machines and containers usually hide RAPL, \
                          so measure on the host or accept estimates"
                        .into(),
                });
                return src;
            }
            Err(e) => {
                src.problems.push(io_error(root, e));
                return src;
            }
        };

        let mut zones: Vec<(ZoneId, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                ZoneId::parse(name.to_str()?).map(|id| (id, e.path()))
            })
            .collect();
        // Parents sort before their children, and intel-rapl before intel-rapl-mmio.
        zones.sort();
        if zones.is_empty() {
            src.problems.push(Error::Missing {
                path: root.join("intel-rapl:0"),
                why: format!("{} has no RAPL zones", root.display()),
                fix: "load the RAPL driver: sudo modprobe intel_rapl_msr; if it is loaded, this \
                      CPU or hypervisor does not expose RAPL"
                    .into(),
            });
            return src;
        }

        // Zone id -> its package number, from the `name` file, even where energy_uj is unreadable,
        // so that subzones are named after their package.
        let mut package_of: HashMap<ZoneId, u32> = HashMap::new();
        // Domain names intel-rapl has, readable or not: an MMIO zone of the same name repeats it.
        let mut msr_names: HashSet<String> = HashSet::new();
        for (id, dir) in &zones {
            let name = match read_trimmed(&dir.join("name")) {
                Ok(n) => n,
                Err(e) => {
                    src.problems.push(e);
                    continue;
                }
            };
            let Some(kind) = DomainKind::from_rapl_name(&name) else {
                src.notes.push(format!(
                    "{}: zone '{name}' is not a RAPL domain carbonfast knows; skipped",
                    dir.display()
                ));
                continue;
            };
            let domain_name = match (kind, id.parent()) {
                (DomainKind::Package, _) => {
                    let n = name
                        .strip_prefix("package-")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(id.path[0]);
                    package_of.insert(id.clone(), n);
                    format!("package-{n}")
                }
                (_, Some(parent)) => {
                    let pkg = package_of.get(&parent).copied().unwrap_or(parent.path[0]);
                    format!("{}-{pkg}", kind.as_str())
                }
                (_, None) => name.clone(),
            };
            let seen = match id.control {
                ControlType::Msr => !msr_names.insert(domain_name.clone()),
                ControlType::Mmio => msr_names.contains(&domain_name),
            };
            if seen {
                src.notes.push(format!(
                    "{}: the same counter as {domain_name} under intel-rapl; counted once",
                    dir.display()
                ));
                continue;
            }
            match open_zone(dir) {
                Ok((file, max_raw)) => {
                    src.domains.push(Domain {
                        name: domain_name,
                        kind,
                        source: "powercap",
                        path: dir.join("energy_uj"),
                        units_per_joule: 1e6,
                        max_raw,
                        reading: Reading::Energy,
                        label: String::new(),
                        update_period_ns: None,
                        max_power_w: None,
                        estimate: None,
                    });
                    src.files.push(file);
                }
                Err(e) => {
                    src.problems.push(e);
                    Unreadable::note(&mut src.unreadable, &domain_name, kind);
                }
            }
        }
        src
    }
}

impl Source for PowercapSource {
    found_getters!("powercap");

    #[inline]
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        super::first_failure(|failed| self.read_each(out, failed))
    }

    fn read_each(&self, out: &mut [u64], failed: &mut dyn FnMut(usize, Error)) -> Result<()> {
        let zones = self.files.iter().zip(out.iter_mut()).zip(&self.domains);
        for (i, ((file, slot), domain)) in zones.enumerate() {
            match pread_counter(file) {
                Ok(v) => *slot = v,
                Err(ReadError::Io(source)) => failed(
                    i,
                    Error::Io {
                        path: domain.path.clone(),
                        source,
                    },
                ),
                Err(ReadError::Malformed(detail)) => failed(
                    i,
                    Error::Malformed {
                        path: domain.path.clone(),
                        detail,
                    },
                ),
            }
        }
        Ok(())
    }

    fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}

enum ReadError {
    Io(io::Error),
    Malformed(String),
}

/// One pread of a counter file into a stack buffer, parsed in place.
#[inline]
fn pread_counter(file: &File) -> std::result::Result<u64, ReadError> {
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0).map_err(ReadError::Io)?;
    if n == buf.len() {
        return Err(ReadError::Malformed(
            "longer than any 64-bit counter".into(),
        ));
    }
    parse_u64(&buf[..n]).ok_or_else(|| {
        ReadError::Malformed(format!(
            "expected a decimal counter, found {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))
    })
}

/// Opens a zone's energy_uj, reads it once to prove it works, and reads its range.
fn open_zone(dir: &Path) -> Result<(File, u64)> {
    let range_path = dir.join("max_energy_range_uj");
    let max_raw =
        parse_u64(read_trimmed(&range_path)?.as_bytes()).ok_or_else(|| Error::Malformed {
            path: range_path.clone(),
            detail: "expected the counter's range in microjoules".into(),
        })?;
    if max_raw == 0 {
        return Err(Error::Malformed {
            path: range_path,
            detail: "a counter range of 0 cannot be right".into(),
        });
    }
    let energy_path = dir.join("energy_uj");
    let file = super::open_regular(&energy_path).map_err(|e| io_error(&energy_path, e))?;
    match pread_counter(&file) {
        Ok(v) if v > max_raw => Err(Error::Malformed {
            path: energy_path,
            detail: format!("reads {v}, above max_energy_range_uj {max_raw}"),
        }),
        Ok(_) => Ok((file, max_raw)),
        Err(ReadError::Io(e)) => Err(io_error(&energy_path, e)),
        Err(ReadError::Malformed(detail)) => Err(Error::Malformed {
            path: energy_path,
            detail,
        }),
    }
}

/// A sysfs attribute holds a line; 4 KiB (a page) is all sysfs ever gives.
fn read_trimmed(path: &Path) -> Result<String> {
    super::read_small(path, 4096)
        .map(|s| s.trim().to_string())
        .map_err(|e| io_error(path, e))
}

/// Maps an I/O error on a powercap path to an error that says what to do.
fn io_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: path.to_path_buf(),
            fix: permission_fix(path),
        },
        io::ErrorKind::NotFound => Error::Missing {
            path: path.to_path_buf(),
            why: "the zone lacks this file".into(),
            fix: "the kernel's RAPL driver should create it; check `dmesg | grep -i rapl`".into(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Since Linux 5.10 (CVE-2020-8694) energy_uj is readable by root only: other users could
/// watch the power of what runs (the PLATYPUS side channel). The fix opens the counters to one
/// group, never to everyone, and never grants a capability to an interpreter (which would let
/// every script it runs read any file).
fn permission_fix(path: &Path) -> String {
    let zones_glob = path
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("intel-rapl*:*").join("energy_uj"))
        .unwrap_or_else(|| path.to_path_buf());
    format!(
        "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694). Give one group \
         read access to the counters, and nothing else: sudo groupadd -f power && sudo \
         usermod -aG power \"$USER\" (then log in again); until reboot, sudo chgrp power \
         {glob} && sudo chmod g+r {glob}; for good, a tmpfiles.d line in \
         /etc/tmpfiles.d/carbonfast.conf: z {glob} 0440 root power - (or a udev rule: \
         SUBSYSTEM==\"powercap\", ACTION==\"add\", RUN+=\"/bin/chgrp power /sys%p/energy_uj\", \
         RUN+=\"/bin/chmod g+r /sys%p/energy_uj\"). Do not make them readable by all users",
        glob = zones_glob.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_parse_and_order_parents_first() {
        let mut ids: Vec<ZoneId> = [
            "intel-rapl-mmio:0",
            "intel-rapl:1",
            "intel-rapl:0:1",
            "intel-rapl:0",
        ]
        .iter()
        .map(|s| ZoneId::parse(s).unwrap())
        .collect();
        ids.sort();
        let control_paths: Vec<_> = ids.iter().map(|i| (i.control, i.path.clone())).collect();
        assert_eq!(
            control_paths,
            vec![
                (ControlType::Msr, vec![0]),
                (ControlType::Msr, vec![0, 1]),
                (ControlType::Msr, vec![1]),
                (ControlType::Mmio, vec![0]),
            ]
        );
        assert_eq!(ZoneId::parse("intel-rapl"), None);
        assert_eq!(ZoneId::parse("intel-rapl:x"), None);
        assert_eq!(ZoneId::parse("dtpm"), None);
    }

    #[test]
    fn permission_denied_opens_the_counters_to_a_group_only() {
        let path = Path::new("/sys/class/powercap/intel-rapl:0/energy_uj");
        let e = io_error(path, io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.kind(), "permission");
        let fix = e.fix().unwrap();
        let glob = "/sys/class/powercap/intel-rapl*:*/energy_uj";
        assert!(fix.contains(&format!("sudo chgrp power {glob} && sudo chmod g+r {glob}")));
        assert!(fix.contains(&format!("z {glob} 0440 root power -")));
        assert!(fix.contains("SUBSYSTEM==\"powercap\""));
        assert!(!fix.contains("setcap") && !fix.contains("a+r") && !fix.contains("o+r"));
    }
}
