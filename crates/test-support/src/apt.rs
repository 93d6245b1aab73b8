//! Debian packages the tests need (servers they start themselves), installed when missing.
//! `.ci/run` installs them beforehand; this keeps a bare `cargo test` working on a fresh machine.

use std::process::Command;

/// Installs Debian's `package` when `binary` is not on the PATH; panics naming the package
/// when apt-get cannot install it.
pub fn ensure(binary: &str, package: &str) {
    // Only "not found" means missing: a spawn that fails for another reason (a busy machine
    // running many tests out of file descriptors) must not send the test to apt-get.
    match Command::new(binary).arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return,
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = ["install", "-y", "-qq", "--no-install-recommends", package];
    assert!(
        apt(&install) || (apt(&["update", "-qq"]) && apt(&install)),
        "`{binary}` is not installed and apt-get could not install it (Debian package `{package}`)"
    );
}
