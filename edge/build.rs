//! Builds the XDP program (C, in ../ebpf) with clang and embeds the object.
//! The XDP issue fills this in; until the program exists there is nothing to build.
fn main() {
    println!("cargo:rerun-if-changed=../ebpf");
}
