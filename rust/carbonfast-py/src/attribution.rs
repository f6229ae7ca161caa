//! Bindings of core::attribution: conversions only.

use crate::to_py;
use carbonfast_core::attribution::{self as core, ScopeKind};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;

/// A scope's CPU time beside the machine's, for its share of the machine's energy.
#[pyclass(module = "carbonfast._native")]
pub struct Attribution {
    inner: core::Attribution,
}

#[pymethods]
impl Attribution {
    #[new]
    #[pyo3(signature = (scope, proc_root=PathBuf::from("/proc"), cgroup_root=PathBuf::from("/sys/fs/cgroup")))]
    fn new(
        py: Python<'_>,
        scope: &str,
        proc_root: PathBuf,
        cgroup_root: PathBuf,
    ) -> PyResult<Self> {
        let kind = ScopeKind::parse(scope).map_err(PyValueError::new_err)?;
        let inner = py
            .detach(|| core::Attribution::open(&kind, &proc_root, &cgroup_root))
            .map_err(to_py)?;
        Ok(Attribution { inner })
    }

    /// The scope in words: "process 4312", "cgroup /slurm/job_1234".
    #[getter]
    fn label(&self) -> String {
        self.inner.label().to_string()
    }

    #[setter]
    fn set_label(&mut self, label: String) {
        self.inner.set_label(label);
    }

    /// How the CPU times are read, in words.
    #[getter]
    fn method(&self) -> String {
        self.inner.method()
    }

    /// (the scope's CPU ns, the machine's busy CPU ns), now.
    fn read(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let r = py.detach(|| self.inner.read()).map_err(to_py)?;
        Ok((r.scope_ns, r.busy_ns))
    }

    /// (share or None, low, high, the scope's CPU s, the machine's busy CPU s) between two
    /// readings.
    fn share(&self, start: (u64, u64), end: (u64, u64)) -> (Option<f64>, f64, f64, f64, f64) {
        let r = |(scope_ns, busy_ns)| core::Reading { scope_ns, busy_ns };
        let s = self.inner.share(&r(start), &r(end));
        (s.share, s.low, s.high, s.scope_s, s.busy_s)
    }
}
