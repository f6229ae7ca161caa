//! One hwmon device as the kernel lays it out: /sys/class/hwmon/hwmonN (a symlink into
//! /sys/devices/...) holding `name`, the sensor attributes and `device`, a symlink to the
//! parent device (for a PCI GPU, a directory named after its address). Some drivers
//! (acpi power_meter on most kernels) put their attributes on the parent device instead, so an
//! attribute is looked for in both places.

use super::sensor::io_error;
use crate::error::Result;
use crate::source::read_small;
use std::collections::BTreeSet;
use std::path::PathBuf;

pub(crate) struct Hwmon {
    /// N in hwmonN.
    pub index: u32,
    pub dir: PathBuf,
    /// The driver's name for the device ("amdgpu", "power_meter", ...).
    pub name: String,
    /// The parent's PCI address ("0000:03:00.0"), where the parent is a PCI device.
    pub pci: Option<String>,
}

impl Hwmon {
    /// Reads hwmonN's name and parent.
    pub fn open(index: u32, dir: PathBuf) -> Result<Hwmon> {
        let mut hw = Hwmon {
            index,
            dir,
            name: String::new(),
            pci: None,
        };
        let name_path = hw.attr("name").unwrap_or_else(|| hw.dir.join("name"));
        hw.name = read_small(&name_path, 4096)
            .map_err(|e| io_error(&name_path, "hwmon", e))?
            .trim()
            .to_string();
        hw.pci = std::fs::canonicalize(hw.dir.join("device"))
            .ok()
            .and_then(|p| p.file_name().and_then(|f| f.to_str()).map(str::to_string))
            .filter(|a| is_pci_address(a));
        Ok(hw)
    }

    /// "hwmon3 (amdgpu)", for notes.
    pub fn title(&self) -> String {
        format!("hwmon{} ({})", self.index, self.name)
    }

    /// Where attribute `file` is: in hwmonN, else in its parent device. None where neither has it.
    pub fn attr(&self, file: &str) -> Option<PathBuf> {
        [self.dir.join(file), self.dir.join("device").join(file)]
            .into_iter()
            .find(|p| p.symlink_metadata().is_ok())
    }

    /// The trimmed text of a small attribute (a label, an OEM string); None where there is no
    /// such file, an error where it cannot be read.
    pub fn text(&self, file: &str) -> Option<Result<String>> {
        let path = self.attr(file)?;
        Some(
            read_small(&path, 4096)
                .map(|s| s.trim().to_string())
                .map_err(|e| io_error(&path, &self.name, e)),
        )
    }

    /// As `text`, with an unreadable file taken as absent (labels are a nicety; the reading
    /// itself reports what is wrong with its own file).
    pub fn text_or_none(&self, file: &str) -> Option<String> {
        self.text(file).and_then(|r| r.ok())
    }

    /// The channel numbers N for which `{prefix}N{suffix}` exists ("power", "_average"),
    /// in order.
    pub fn channels(&self, prefix: &str, suffix: &str) -> Vec<u32> {
        let mut found = BTreeSet::new();
        for dir in [self.dir.clone(), self.dir.join("device")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(n) = name
                    .to_str()
                    .and_then(|s| s.strip_prefix(prefix))
                    .and_then(|s| s.strip_suffix(suffix))
                else {
                    continue;
                };
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(n) = n.parse() {
                        found.insert(n);
                    }
                }
            }
        }
        found.into_iter().collect()
    }

    /// Whether the device has any power or energy sensor at all.
    pub fn has_power_sensors(&self) -> bool {
        !self.channels("power", "_input").is_empty()
            || !self.channels("power", "_average").is_empty()
            || !self.channels("energy", "_input").is_empty()
    }
}

/// "0000:03:00.0": domain, bus, device and function, in hex.
pub(crate) fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && hex(11..12)
}

#[cfg(test)]
mod tests {
    use super::is_pci_address;

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("0001:c1:1f.7"));
        assert!(!is_pci_address("ACPI000D:00"));
        assert!(!is_pci_address("1-0040"));
        assert!(!is_pci_address("0000:03:00"));
    }
}
