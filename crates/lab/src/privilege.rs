//! The rule for tests that need root: run when privileged, otherwise skip
//! with a printed reason, unless `DCE_REQUIRE_PRIVILEGED=1` asks for a failure
//! instead (CI sets it, so a privileged test can never be skipped silently).

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "DCE_REQUIRE_PRIVILEGED";

/// True when this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// True when `DCE_REQUIRE_PRIVILEGED` is set to `1`.
pub fn privileged_required() -> bool {
    std::env::var(REQUIRE_VAR)
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Decides whether a privileged test named `test` may run here.
///
/// Returns `true` when the process is root. Otherwise it panics when
/// `DCE_REQUIRE_PRIVILEGED=1` (CI), or prints why the test is skipped and
/// returns `false`.
pub fn privileged_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let reason = "needs root (network namespaces, XDP, BPF maps, AF_XDP)";
    if privileged_required() {
        panic!("{test}: {reason}, and {REQUIRE_VAR}=1 forbids skipping it");
    }
    eprintln!(
        "skipping {test}: {reason}; run as root, or set {REQUIRE_VAR}=1 to make this a failure"
    );
    false
}

/// Like [`privileged_or_skip`], but for a missing tool or kernel feature the
/// test needs besides root (`what` says which, `how` how to get it).
pub fn feature_or_skip(test: &str, available: bool, what: &str, how: &str) -> bool {
    if available {
        return true;
    }
    if privileged_required() {
        panic!("{test}: {what} is missing ({how}), and {REQUIRE_VAR}=1 forbids skipping");
    }
    eprintln!("skipping {test}: {what} is missing ({how})");
    false
}

/// True when `program` is found on `PATH` (or is an existing path).
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
