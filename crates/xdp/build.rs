//! Builds the XDP program (C, in ebpf/) with clang and embeds the object, and
//! generates the Rust side of its ABI from `ebpf/include/dce_filter.h`
//! (`$OUT_DIR/abi.rs`, see build/abi.rs). The object:
//! `$OUT_DIR/dce_filter.bpf.o`, included by `xdp` with
//! `include_bytes!`. PLATFORM.md: Debian's clang, `-target bpf`, plus the
//! multiarch include folder that clang does not search for BPF targets.
use std::path::PathBuf;
use std::process::Command;

#[path = "build/abi.rs"]
mod abi;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ebpf = manifest.join("ebpf");
    let source = ebpf.join("src").join("filter.bpf.c");
    let include = ebpf.join("include");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("dce_filter.bpf.o");
    println!("cargo:rerun-if-changed={}", ebpf.join("src").display());
    println!("cargo:rerun-if-changed={}", ebpf.join("include").display());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=build/abi.rs");

    // The Rust side of the ABI, generated from the one header.
    let header_path = include.join("dce_filter.h");
    let header = std::fs::read_to_string(&header_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", header_path.display()));
    let generated = match abi::generate(&header) {
        Ok(g) => g,
        Err(e) => panic!(
            "{}:{}: {} (the Rust side of the XDP ABI is generated from this header)",
            header_path.display(),
            e.line,
            e.reason
        ),
    };
    let abi_out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("abi.rs");
    std::fs::write(&abi_out, generated)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", abi_out.display()));

    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let multiarch = format!("/usr/include/{}-linux-gnu", host_arch());
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .arg(format!("-I{}", include.display()))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status();
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "{clang} failed ({status}) building the XDP program {}",
            source.display()
        ),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the XDP program needs clang; \
             install it with `apt-get install clang` (scripts/setup.sh does), \
             or point CLANG at a clang binary"
        ),
    }
}

/// The multiarch name of the build machine (`uname -m`): x86_64, aarch64, ...
fn host_arch() -> String {
    // HOST is the build machine's target triple, e.g. x86_64-unknown-linux-gnu.
    std::env::var("HOST")
        .ok()
        .and_then(|h| h.split('-').next().map(str::to_owned))
        .unwrap_or_else(|| "x86_64".into())
}
