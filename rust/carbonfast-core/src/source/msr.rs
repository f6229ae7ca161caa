//! RAPL read straight from the model-specific registers through `/dev/cpu/N/msr`, for Intel and
//! AMD (family 17h and later, and Hygon).
//!
//! The msr driver maps a register number to a file offset: an 8-byte pread at offset R returns
//! register R of CPU N. RAPL energy registers are per package, so one CPU stands for each
//! package. Device files stay open and are read into a stack buffer.

use super::{Source, Unreadable};
use crate::domain::{Domain, DomainKind, Reading};
use crate::error::{Error, Result};
use crate::hostinfo;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/dev/cpu";
pub const DEFAULT_CPU_ROOT: &str = "/sys/devices/system/cpu";

/// Intel register numbers (SDM vol. 4, "MSRs in processors based on Sandy Bridge").
const INTEL_POWER_UNIT: u64 = 0x606;
const INTEL_PKG_ENERGY: u64 = 0x611;
const INTEL_DRAM_ENERGY: u64 = 0x619;
const INTEL_PP0_ENERGY: u64 = 0x639;
const INTEL_PP1_ENERGY: u64 = 0x641;
const INTEL_PSYS_ENERGY: u64 = 0x64D;

/// AMD register numbers (PPR for family 17h).
const AMD_POWER_UNIT: u64 = 0xC001_0299;
const AMD_CORE_ENERGY: u64 = 0xC001_029A;
const AMD_PKG_ENERGY: u64 = 0xC001_029B;

/// Energy counters are 32 bits wide; the upper half of the register is reserved.
const COUNTER_MASK: u64 = u32::MAX as u64;

/// Intel server parts count DRAM energy in a fixed 2^-16 J whatever 0x606 says (Linux
/// intel_rapl_common's `rapl_dram_energy_unit` quirk). Family 6 models.
const INTEL_SERVER_DRAM_MODELS: &[u32] = &[
    0x3F, // Haswell-X
    0x4F, // Broadwell-X
    0x56, // Broadwell-D
    0x55, // Skylake-X, Cascade Lake, Cooper Lake
    0x6A, // Ice Lake-X
    0x6C, // Ice Lake-D
    0x8F, // Sapphire Rapids
    0xCF, // Emerald Rapids
    0xAD, // Granite Rapids-X
    0xAE, // Granite Rapids-D
    0x57, // Xeon Phi (Knights Landing)
    0x85, // Xeon Phi (Knights Mill)
];
const SERVER_DRAM_ESU: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Intel,
    Amd,
}

/// One counter: which open device file and which register in it.
#[derive(Debug, Clone, Copy)]
struct Register {
    file: usize,
    offset: u64,
}

#[derive(Debug)]
pub struct MsrSource {
    root: PathBuf,
    domains: Vec<Domain>,
    files: Vec<File>,
    /// The device path of each open file, for domains and messages.
    file_paths: Vec<PathBuf>,
    registers: Vec<Register>,
    problems: Vec<Error>,
    notes: Vec<String>,
    unreadable: Vec<Unreadable>,
}

impl MsrSource {
    /// Discovers the RAPL registers of every package: `msr_root` holds the `N/msr` devices,
    /// `cpu_root` the CPU topology (`cpuN/topology/physical_package_id`), `proc_root` the
    /// `cpuinfo` that tells Intel from AMD. Never fails: what cannot be used is recorded in
    /// `problems()` with its reason and fix.
    pub fn discover(msr_root: &Path, cpu_root: &Path, proc_root: &Path) -> Self {
        let mut src = MsrSource {
            root: msr_root.to_path_buf(),
            domains: Vec::new(),
            files: Vec::new(),
            file_paths: Vec::new(),
            registers: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
            unreadable: Vec::new(),
        };

        let cpuinfo_path = proc_root.join("cpuinfo");
        let info = match super::read_small(&cpuinfo_path, 8 << 20) {
            Ok(text) => hostinfo::parse_cpuinfo(&text),
            Err(e) => {
                src.problems.push(Error::Missing {
                    path: cpuinfo_path,
                    why: format!(
                        "cannot read it ({e}); the CPU vendor decides which registers hold RAPL"
                    ),
                    fix: "mount procfs on /proc (or point the proc root at a copy of cpuinfo)"
                        .into(),
                });
                return src;
            }
        };
        let vendor = match vendor_of(&info) {
            Ok(v) => v,
            Err(why) => {
                src.problems.push(Error::Missing {
                    path: cpuinfo_path,
                    why,
                    fix: "RAPL model-specific registers exist only on Intel CPUs (Sandy Bridge \
                          and later) and AMD/Hygon CPUs of family 17h (Zen) and later; use \
                          another source or accept estimates"
                        .into(),
                });
                return src;
            }
        };

        match std::fs::metadata(msr_root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                src.problems.push(Error::Missing {
                    path: msr_root.to_path_buf(),
                    why: "the msr driver exposes each CPU's model-specific registers here; it \
                          is not loaded"
                        .into(),
                    fix: modprobe_fix(),
                });
                return src;
            }
            Err(e) => {
                src.problems.push(open_error(msr_root, msr_root, e));
                return src;
            }
        }

        let cpus = match package_cpus(cpu_root) {
            Some(cpus) => cpus,
            None => {
                src.notes.push(format!(
                    "{}: CPU topology unreadable; reading CPU 0 as package 0 only, so other \
                     packages, if any, are not measured",
                    cpu_root.display()
                ));
                vec![0]
            }
        };

        let server_dram = vendor == Vendor::Intel
            && info.family == Some(6)
            && info
                .model
                .is_some_and(|m| INTEL_SERVER_DRAM_MODELS.contains(&m));
        for (package, &cpu) in cpus.iter().enumerate() {
            src.add_package(msr_root, vendor, server_dram, package, cpu);
        }
        src
    }

    fn add_package(
        &mut self,
        msr_root: &Path,
        vendor: Vendor,
        server_dram: bool,
        package: usize,
        cpu: u32,
    ) {
        let path = msr_root.join(cpu.to_string()).join("msr");
        if !self.add_package_at(&path, msr_root, vendor, server_dram, package, cpu) {
            // Beside packages that count, this one would silently drop out of the total.
            Unreadable::note(
                &mut self.unreadable,
                &format!("package-{package}"),
                DomainKind::Package,
            );
            if server_dram {
                let name = format!("{}-{package}", DomainKind::Dram);
                Unreadable::note(&mut self.unreadable, &name, DomainKind::Dram);
            }
        }
    }

    /// `add_package` on the device at `path`; false where the package cannot be read.
    fn add_package_at(
        &mut self,
        path: &Path,
        msr_root: &Path,
        vendor: Vendor,
        server_dram: bool,
        package: usize,
        cpu: u32,
    ) -> bool {
        let path = path.to_path_buf();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                self.problems.push(open_error(msr_root, &path, e));
                return false;
            }
        };
        let (unit_reg, pkg_reg) = match vendor {
            Vendor::Intel => (INTEL_POWER_UNIT, INTEL_PKG_ENERGY),
            Vendor::Amd => (AMD_POWER_UNIT, AMD_PKG_ENERGY),
        };
        let no_rapl = |reg: u64, what: &str| Error::Missing {
            path: path.clone(),
            why: format!(
                "the RAPL {what} register {reg:#X} of CPU {cpu} is absent or reads 0: this CPU \
                 or its hypervisor does not expose RAPL"
            ),
            fix: "measure on bare metal (virtual machines rarely pass RAPL through), or use \
                  the powercap source or estimates"
                .into(),
        };
        // An all-zero unit register is what a hypervisor returns for a register it does not
        // emulate; real parts always have non-zero power and time units.
        let esu = match probe(&file, unit_reg) {
            Ok(Some(unit)) if unit != 0 => energy_status_unit(unit),
            Ok(_) => {
                self.problems.push(no_rapl(unit_reg, "unit"));
                return false;
            }
            Err(e) => {
                self.problems.push(Error::Io { path, source: e });
                return false;
            }
        };
        match probe(&file, pkg_reg) {
            Ok(Some(v)) if v & COUNTER_MASK != 0 => {}
            Ok(_) => {
                self.problems.push(no_rapl(pkg_reg, "package energy"));
                return false;
            }
            Err(e) => {
                self.problems.push(Error::Io { path, source: e });
                return false;
            }
        }

        let file_idx = self.files.len();
        self.files.push(file);
        self.file_paths.push(path);
        self.push(
            file_idx,
            pkg_reg,
            DomainKind::Package,
            format!("package-{package}"),
            esu,
        );
        match vendor {
            Vendor::Intel => {
                let dram_esu = if server_dram { SERVER_DRAM_ESU } else { esu };
                let optional = [
                    (INTEL_PP0_ENERGY, DomainKind::Core, esu),
                    (INTEL_PP1_ENERGY, DomainKind::Uncore, esu),
                    (INTEL_DRAM_ENERGY, DomainKind::Dram, dram_esu),
                ];
                for (reg, kind, unit) in optional {
                    self.push_optional(file_idx, reg, kind, format!("{kind}-{package}"), unit);
                }
                // psys is one platform-wide counter, readable from any CPU.
                if package == 0 {
                    self.push_optional(
                        file_idx,
                        INTEL_PSYS_ENERGY,
                        DomainKind::Psys,
                        "psys".into(),
                        esu,
                    );
                }
            }
            Vendor::Amd => {
                let name = format!("core-{package}");
                let note = format!(
                    "{name}: AMD's core energy register is per core; read on CPU {cpu}, it \
                     covers that CPU's core only, not every core of package {package}"
                );
                if self.push_optional(file_idx, AMD_CORE_ENERGY, DomainKind::Core, name, esu) {
                    self.notes.push(note);
                }
            }
        }
        true
    }

    /// Adds a domain if its register reads non-zero. An absent optional domain is normal (no
    /// DRAM counter on client parts, no psys before Skylake), so only unexpected errors are
    /// problems.
    fn push_optional(
        &mut self,
        file: usize,
        offset: u64,
        kind: DomainKind,
        name: String,
        esu: u32,
    ) -> bool {
        match probe(&self.files[file], offset) {
            Ok(Some(v)) if v & COUNTER_MASK != 0 => {
                self.push(file, offset, kind, name, esu);
                true
            }
            Ok(_) => false,
            Err(source) => {
                self.problems.push(Error::Io {
                    path: self.file_paths[file].clone(),
                    source,
                });
                Unreadable::note(&mut self.unreadable, &name, kind);
                false
            }
        }
    }

    fn push(&mut self, file: usize, offset: u64, kind: DomainKind, name: String, esu: u32) {
        self.domains.push(Domain {
            name,
            kind,
            source: "msr",
            path: self.file_paths[file].clone(),
            units_per_joule: (1u64 << esu) as f64,
            max_raw: COUNTER_MASK,
            reading: Reading::Energy,
            label: String::new(),
            update_period_ns: None,
            max_power_w: None,
            estimate: None,
        });
        self.registers.push(Register { file, offset });
    }
}

impl Source for MsrSource {
    found_getters!("msr");

    #[inline]
    fn read_raw(&self, out: &mut [u64]) -> Result<()> {
        for ((reg, slot), domain) in self.registers.iter().zip(out.iter_mut()).zip(&self.domains) {
            match pread_register(&self.files[reg.file], reg.offset) {
                Ok(Some(v)) => *slot = v & COUNTER_MASK,
                Ok(None) => {
                    return Err(Error::Io {
                        path: domain.path.clone(),
                        source: io::Error::from(io::ErrorKind::UnexpectedEof),
                    })
                }
                Err(source) => {
                    return Err(Error::Io {
                        path: domain.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}

/// One 8-byte pread of register `offset` into a stack buffer. `None` when fewer than 8 bytes
/// come back, which the msr driver never does but a file shorter than the offset does.
#[inline]
fn pread_register(file: &File, offset: u64) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 8];
    let n = file.read_at(&mut buf, offset)?;
    Ok((n == buf.len()).then(|| u64::from_le_bytes(buf)))
}

/// Reads a register at discovery. The msr driver answers EIO for a register the CPU lacks
/// (rdmsr faults), which counts as absent, like a short read.
fn probe(file: &File, offset: u64) -> io::Result<Option<u64>> {
    match pread_register(file, offset) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(None),
        other => other,
    }
}

/// Energy Status Units, bits 12:8 of the unit register: one count is 1/2^ESU joules.
fn energy_status_unit(unit_register: u64) -> u32 {
    ((unit_register >> 8) & 0x1F) as u32
}

fn vendor_of(info: &hostinfo::CpuInfo) -> std::result::Result<Vendor, String> {
    match info.vendor.as_deref() {
        Some("GenuineIntel") => Ok(Vendor::Intel),
        // Hygon Dhyana is a licensed Zen: same registers.
        Some("AuthenticAMD") | Some("HygonGenuine") => match info.family {
            Some(f) if f >= 0x17 => Ok(Vendor::Amd),
            Some(f) => Err(format!(
                "this AMD CPU is family {f:#x}; RAPL registers start with family 17h (Zen)"
            )),
            None => Err("cpuinfo gives no cpu family for this AMD CPU".into()),
        },
        Some(other) => Err(format!(
            "the CPU vendor is {other}: RAPL model-specific registers are Intel and AMD only"
        )),
        None => Err(
            "cpuinfo names no CPU vendor (not x86?): RAPL model-specific registers are \
             Intel and AMD only"
                .into(),
        ),
    }
}

/// The lowest-numbered CPU of each package, packages ordered by that CPU, which is also the
/// order Linux numbers logical packages in, so package-P names the package powercap and perf
/// call P. None when no CPU's topology can be read.
fn package_cpus(cpu_root: &Path) -> Option<Vec<u32>> {
    let mut lowest: BTreeMap<u64, u32> = BTreeMap::new();
    for entry in std::fs::read_dir(cpu_root).ok()?.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(cpu) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cpu"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Offline CPUs have no topology directory; they have no msr device either.
        let Some(package) =
            super::read_small(&entry.path().join("topology/physical_package_id"), 64)
                .ok()
                .and_then(|b| super::parse_u64(b.as_bytes()))
        else {
            continue;
        };
        lowest
            .entry(package)
            .and_modify(|c| *c = (*c).min(cpu))
            .or_insert(cpu);
    }
    if lowest.is_empty() {
        return None;
    }
    let mut cpus: Vec<u32> = lowest.into_values().collect();
    cpus.sort_unstable();
    Some(cpus)
}

fn modprobe_fix() -> String {
    "load the msr driver: sudo modprobe msr (and add msr to /etc/modules-load.d/ to keep it \
     across reboots)"
        .into()
}

/// Maps a failure to open an msr device (or its root) to an error that says what to do.
fn open_error(msr_root: &Path, path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: path.to_path_buf(),
            fix: permission_fix(msr_root),
        },
        io::ErrorKind::NotFound => Error::Missing {
            path: path.to_path_buf(),
            why: "no msr device for this CPU: the msr driver is not loaded".into(),
            fix: modprobe_fix(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// The msr driver wants CAP_SYS_RAWIO on top of read access to the device file. That
/// capability on an interpreter would let every script it runs write any MSR and do raw I/O:
/// carbonfast does not advise it. The same counters are in powercap, which can be opened to
/// one group alone.
fn permission_fix(msr_root: &Path) -> String {
    let devices = msr_root.join("*").join("msr");
    format!(
        "reading {devices} needs CAP_SYS_RAWIO as well as read access to the device files: run \
         as root, or read the same RAPL counters through powercap, which can be opened to one \
         group (see `carbonfast info` for powercap, or choose it with --source powercap)",
        devices = devices.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_status_unit_is_bits_12_to_8() {
        // 0xA0E03: the usual Intel value (ESU 14, time unit 10, power unit 3).
        assert_eq!(energy_status_unit(0xA0E03), 14);
        assert_eq!(energy_status_unit(0x000A1003), 16);
        assert_eq!(energy_status_unit(0xFFFF_FFFF_FFFF_E0FF), 0);
    }

    #[test]
    fn vendors_map_to_register_sets() {
        let info = |vendor: &str, family: u32| hostinfo::CpuInfo {
            vendor: Some(vendor.into()),
            family: Some(family),
            ..Default::default()
        };
        assert_eq!(vendor_of(&info("GenuineIntel", 6)), Ok(Vendor::Intel));
        assert_eq!(vendor_of(&info("AuthenticAMD", 0x19)), Ok(Vendor::Amd));
        assert_eq!(vendor_of(&info("HygonGenuine", 0x18)), Ok(Vendor::Amd));
        assert!(vendor_of(&info("AuthenticAMD", 0x15))
            .unwrap_err()
            .contains("17h"));
        assert!(vendor_of(&info("CentaurHauls", 6))
            .unwrap_err()
            .contains("Intel and AMD only"));
        assert!(vendor_of(&hostinfo::CpuInfo::default()).is_err());
    }

    #[test]
    fn permission_denied_points_to_root_or_powercap_and_no_capability() {
        let e = open_error(
            Path::new(DEFAULT_ROOT),
            Path::new("/dev/cpu/0/msr"),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(e.kind(), "permission");
        let fix = e.fix().unwrap();
        assert!(fix.contains("root") && fix.contains("powercap"));
        assert!(!fix.contains("setcap") && !fix.contains("o+r"));
    }
}
