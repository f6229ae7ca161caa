//! The fake C libraries (tests/fakes/*.c) that stand in for NVML and AMD SMI, compiled with the
//! system's C compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles tests/fakes/`source` into `name` in a fresh directory; returns the directory (kept
/// alive by the caller) and the library's path.
pub fn compile(source: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    compile_with(source, name, &[])
}

/// As `compile`, with extra compiler arguments (`-DNAME` to build a variant).
#[allow(dead_code)]
pub fn compile_with(source: &str, name: &str, flags: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fakes")
        .join(source);
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags)
        .args(["-lm", "-pthread"])
        .status()
        .unwrap_or_else(|e| panic!("a C compiler (cc) builds {source}: {e}"));
    assert!(status.success(), "cc failed on {source}");
    (dir, out)
}
