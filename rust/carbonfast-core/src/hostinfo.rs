//! What the machine says about itself in /proc: CPU model, thread and socket counts, whether it
//! runs under a hypervisor, installed memory.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuInfo {
    /// The first "model name" line, if any (ARM kernels print none).
    pub model_name: Option<String>,
    /// Logical CPUs ("processor" entries).
    pub threads: u32,
    /// Distinct "physical id" values; 1 where the kernel prints none.
    pub sockets: u32,
    /// The "hypervisor" CPU flag: a virtual machine, which sees only a slice of a host.
    pub virtualized: bool,
    /// "GenuineIntel", "AuthenticAMD", ...
    pub vendor: Option<String>,
    /// "cpu family" and "model", which decide register quirks (Intel server DRAM units).
    pub family: Option<u32>,
    pub model: Option<u32>,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut sockets = HashSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "processor" => info.threads += 1,
            "model name" if info.model_name.is_none() && !value.is_empty() => {
                info.model_name = Some(value.to_string());
            }
            "vendor_id" if info.vendor.is_none() => info.vendor = Some(value.to_string()),
            "cpu family" if info.family.is_none() => info.family = value.parse().ok(),
            "model" if info.model.is_none() => info.model = value.parse().ok(),
            "physical id" => {
                sockets.insert(value.to_string());
            }
            "flags" if value.split_whitespace().any(|f| f == "hypervisor") => {
                info.virtualized = true;
            }
            _ => {}
        }
    }
    info.sockets = (sockets.len() as u32).max(1);
    info
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SOCKETS: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
physical id\t: 0
flags\t\t: fpu vme sse2

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
physical id\t: 1
flags\t\t: fpu vme sse2
";

    #[test]
    fn counts_threads_and_sockets() {
        let info = parse_cpuinfo(TWO_SOCKETS);
        assert_eq!(info.threads, 2);
        assert_eq!(info.sockets, 2);
        assert!(!info.virtualized);
        assert_eq!(info.vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!((info.family, info.model), (Some(6), Some(85)));
        assert_eq!(
            info.model_name.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
        );
    }

    #[test]
    fn a_hypervisor_flag_marks_a_vm() {
        let info = parse_cpuinfo("processor : 0\nmodel name : AMD EPYC\nflags : fpu hypervisor\n");
        assert!(info.virtualized);
        assert_eq!(info.sockets, 1);
    }

    #[test]
    fn memtotal_in_bytes() {
        let text = "MemTotal:       24684092 kB\nMemFree:        22726236 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24_684_092 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }
}
