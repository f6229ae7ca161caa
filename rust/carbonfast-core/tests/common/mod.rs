//! A fake powercap tree with the kernel's layout: zone directories under
//! devices/virtual/powercap, reached through symlinks in class/powercap.

#![allow(dead_code)]

pub mod deadline;
pub mod library;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub struct FakePowercap {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    devices: PathBuf,
}

impl FakePowercap {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("class/powercap");
        let devices = dir.path().join("devices/virtual/powercap");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&devices).unwrap();
        FakePowercap {
            _dir: dir,
            root,
            devices,
        }
    }

    /// Adds zone `id` ("intel-rapl:0", "intel-rapl:0:1", "intel-rapl-mmio:0") named `name`.
    pub fn zone(&self, id: &str, name: &str, energy_uj: u64, max_uj: u64) -> PathBuf {
        let control = id.split(':').next().unwrap();
        let control_dir = self.devices.join(control);
        if !control_dir.exists() {
            fs::create_dir_all(&control_dir).unwrap();
            symlink("../../../../class/powercap", control_dir.join("subsystem")).unwrap();
            fs::write(control_dir.join("enabled"), "1\n").unwrap();
            symlink(
                format!("../../devices/virtual/powercap/{control}"),
                self.root.join(control),
            )
            .unwrap();
        }
        // intel-rapl:0:1 lives inside intel-rapl:0.
        let parts: Vec<&str> = id.split(':').collect();
        let mut rel = PathBuf::from(control);
        for i in 2..=parts.len() {
            rel.push(parts[..i].join(":"));
        }
        let dir = self.devices.join(&rel);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
        fs::write(dir.join("enabled"), "1\n").unwrap();
        symlink(
            Path::new("../../devices/virtual/powercap").join(&rel),
            self.root.join(id),
        )
        .unwrap();
        self.set(id, energy_uj);
        dir
    }

    /// Sets a zone's counter, in place, as the kernel would: same inode, new content.
    pub fn set(&self, id: &str, energy_uj: u64) {
        self.write(id, "energy_uj", &format!("{energy_uj}\n"));
    }

    pub fn write(&self, id: &str, file: &str, content: &str) {
        fs::write(self.root.join(id).join(file), content).unwrap();
    }
}
