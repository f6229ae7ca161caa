//! One hwmon reading: the attribute files it needs, kept open and read with pread at offset 0
//! (sysfs makes a fresh value on each read), parsed from a stack buffer. Nothing here allocates
//! on the read path except an error's path, on the way out.

use crate::domain::Reading;
use crate::error::{Error, Result};
use crate::source::{open_regular, parse_u64};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a sensor reads, by file. Paths are absolute (under the hwmon root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Spec {
    /// energyN_input: a free-running counter in microjoules.
    Energy(PathBuf),
    /// powerN_input or powerN_average: microwatts.
    Power(PathBuf),
    /// A supply rail (ina3221): bus voltage inN_input in mV and current currN_input in mA.
    Rail { volts: PathBuf, amps: PathBuf },
}

impl Spec {
    /// The file a domain names as its path (for a rail, its current).
    pub(crate) fn path(&self) -> &Path {
        match self {
            Spec::Energy(p) | Spec::Power(p) => p,
            Spec::Rail { amps, .. } => amps,
        }
    }

    pub(crate) fn reading(&self) -> Reading {
        match self {
            Spec::Energy(_) => Reading::Energy,
            Spec::Power(_) | Spec::Rail { .. } => Reading::PowerMilliwatts,
        }
    }

    /// Opens the files and reads them once, to prove they work. `driver` is the hwmon device's
    /// name, for the permission fix.
    pub(crate) fn open(&self, driver: &str) -> Result<Sensor> {
        let sensor = match self {
            Spec::Energy(p) => Sensor::Energy(Attr::open(p, driver, false)?),
            Spec::Power(p) => Sensor::Power {
                attr: Attr::open(p, driver, false)?,
                eperm_is_asleep: driver == "amdgpu",
            },
            Spec::Rail { volts, amps } => Sensor::Rail {
                volts: Attr::open(volts, driver, true)?,
                amps: Attr::open(amps, driver, true)?,
            },
        };
        sensor.read()?;
        Ok(sensor)
    }
}

/// An open sensor, ready for the hot path.
#[derive(Debug)]
pub(crate) enum Sensor {
    Energy(Attr),
    Power {
        attr: Attr,
        /// amdgpu answers EPERM while its GPU is runtime-suspended (or resetting), rather than
        /// waking it: the GPU then draws next to nothing, so the reading is 0 mW, not a failed
        /// read that would stop every other domain being measured.
        eperm_is_asleep: bool,
    },
    Rail {
        volts: Attr,
        amps: Attr,
    },
}

impl Sensor {
    /// The raw value the domain declares: microjoules for a counter, milliwatts for power.
    #[inline]
    pub(crate) fn read(&self) -> Result<u64> {
        match self {
            Sensor::Energy(a) => a.read(),
            // µW to mW, rounded to nearest.
            Sensor::Power {
                attr,
                eperm_is_asleep,
            } => power_mw(attr.read(), *eperm_is_asleep),
            // mV x mA = µW.
            Sensor::Rail { volts, amps } => {
                let uw = volts.read()?.saturating_mul(amps.read()?);
                Ok(uw / 1000 + u64::from(uw % 1000 >= 500))
            }
        }
    }
}

/// The most a signed reading (mV, mA) may fall below zero and still be taken for a shunt's
/// noise on an idle rail (read as 0): further below is no valid reading at all.
const NOISE_BELOW_ZERO: u64 = 50;

/// One attribute file, open.
#[derive(Debug)]
pub(crate) struct Attr {
    file: File,
    path: PathBuf,
    /// A rail's voltage and current are signed: a current a little below zero (the shunt's
    /// noise on an idle rail) reads as 0 rather than failing every read.
    signed: bool,
}

impl Attr {
    fn open(path: &Path, driver: &str, signed: bool) -> Result<Attr> {
        let file = open_regular(path).map_err(|e| io_error(path, driver, e))?;
        Ok(Attr {
            file,
            path: path.to_path_buf(),
            signed,
        })
    }

    #[inline]
    fn read(&self) -> Result<u64> {
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0).map_err(|e| Error::Io {
            path: self.path.clone(),
            source: e,
        })?;
        if n == buf.len() {
            return Err(self.malformed("longer than any 64-bit value".into()));
        }
        let text = &buf[..n];
        let value = match text.strip_prefix(b"-") {
            Some(rest) if self.signed => match parse_u64(rest) {
                Some(v) if v > NOISE_BELOW_ZERO => {
                    return Err(self.malformed(format!(
                        "a reading of -{v}, far below zero: no valid reading (a faulty sensor \
                         or driver)"
                    )))
                }
                v => v.map(|_| 0),
            },
            _ => parse_u64(text),
        };
        value.ok_or_else(|| {
            self.malformed(format!(
                "expected a decimal number, found {:?}",
                String::from_utf8_lossy(text)
            ))
        })
    }

    #[cold]
    fn malformed(&self, detail: String) -> Error {
        Error::Malformed {
            path: self.path.clone(),
            detail,
        }
    }
}

/// A power reading in mW from a read of µW, rounded to nearest; 0 where the driver says the
/// device sleeps.
#[inline]
fn power_mw(read: Result<u64>, eperm_is_asleep: bool) -> Result<u64> {
    match read {
        Ok(uw) => Ok(uw / 1000 + u64::from(uw % 1000 >= 500)),
        Err(e) if eperm_is_asleep && is_eperm(&e) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Whether a read failed with EPERM (not EACCES, which is the file's permission bits).
fn is_eperm(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EPERM))
}

/// Maps an I/O error on a hwmon file to an error that says what to do.
pub(crate) fn io_error(path: &Path, driver: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: path.to_path_buf(),
            fix: permission_fix(path, driver),
        },
        io::ErrorKind::NotFound => Error::Missing {
            path: path.to_path_buf(),
            why: "the sensor lacks this file".into(),
            fix: format!("the {driver} driver should create it; check `dmesg | grep -i {driver}`"),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Energy and power readings can reveal what runs (the PLATYPUS side channel, CVE-2020-8694;
/// amd_energy's CVE-2020-12912), so drivers make some of them readable by root only. The fix
/// opens them to one group, never to every user, and never grants a capability to an
/// interpreter (which would let every script it runs read any file). hwmonN numbers change
/// from boot to boot: the lasting fix is a udev rule that matches the driver's name.
fn permission_fix(path: &Path, driver: &str) -> String {
    // The file as seen from its hwmonN directory ("energy1_input", "device/power1_average"),
    // which is what /sys%p names in a udev rule on the hwmon device.
    let rel = hwmon_relative(path);
    format!(
        "{file} is readable by root only. Give one group read access to it, and nothing else: \
         sudo groupadd -f power && sudo usermod -aG power \"$USER\" (then log in again); until \
         reboot, sudo chgrp power {file} && sudo chmod g+r {file}; for good, a udev rule in \
         /etc/udev/rules.d/99-carbonfast-hwmon.rules: SUBSYSTEM==\"hwmon\", \
         ATTR{{name}}==\"{driver}\", RUN+=\"/bin/chgrp power /sys%p/{rel}\", \
         RUN+=\"/bin/chmod 0440 /sys%p/{rel}\" (then sudo udevadm control --reload && sudo \
         udevadm trigger --subsystem-match=hwmon). Do not make it readable by all users",
        file = path.display(),
    )
}

/// `path` from its hwmonN directory on: ".../hwmon3/device/power1_average" gives
/// "device/power1_average".
fn hwmon_relative(path: &Path) -> String {
    let parts: Vec<_> = path.components().collect();
    let at = parts.iter().rposition(|c| {
        c.as_os_str()
            .to_str()
            .and_then(|s| s.strip_prefix("hwmon"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    match at {
        Some(i) => parts[i + 1..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        None => path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_opens_the_sensor_to_a_group_only() {
        let path = Path::new("/sys/class/hwmon/hwmon4/energy3_input");
        let e = io_error(
            path,
            "amd_energy",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), "permission");
        let fix = e.fix().unwrap();
        let file = "/sys/class/hwmon/hwmon4/energy3_input";
        assert!(fix.contains(&format!("sudo chgrp power {file} && sudo chmod g+r {file}")));
        assert!(fix.contains("ATTR{name}==\"amd_energy\""));
        assert!(fix.contains("RUN+=\"/bin/chmod 0440 /sys%p/energy3_input\""));
        assert!(!fix.contains("setcap") && !fix.contains("a+r") && !fix.contains("o+r"));
        assert!(!fix.contains("0444") && !fix.contains("0644"));
    }

    fn failing(errno: i32) -> Result<u64> {
        Err(Error::Io {
            path: PathBuf::from("/sys/class/hwmon/hwmon1/power1_average"),
            source: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn a_sleeping_amd_gpu_reads_zero_and_other_failures_still_fail() {
        assert_eq!(power_mw(Ok(150_000_499), true).unwrap(), 150_000);
        assert_eq!(power_mw(Ok(150_000_500), false).unwrap(), 150_001);
        // amdgpu's EPERM: runtime-suspended or resetting.
        assert_eq!(power_mw(failing(libc::EPERM), true).unwrap(), 0);
        // Any other driver's EPERM, and every other failure, is a failed read.
        assert!(power_mw(failing(libc::EPERM), false).is_err());
        assert!(power_mw(failing(libc::EACCES), true).is_err());
        assert!(power_mw(failing(libc::EIO), true).is_err());
    }

    #[test]
    fn udev_rules_name_the_file_from_the_hwmon_device() {
        assert_eq!(
            hwmon_relative(Path::new("/sys/class/hwmon/hwmon12/device/power1_average")),
            "device/power1_average"
        );
        assert_eq!(
            hwmon_relative(Path::new(
                "/x/devices/pci0000:00/0000:03:00.0/hwmon/hwmon2/energy1_input"
            )),
            "energy1_input"
        );
        assert_eq!(hwmon_relative(Path::new("/elsewhere/f")), "f");
    }
}
