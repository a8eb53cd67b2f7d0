//! The `dce-loadgen` command; everything it does lives in the library.
fn main() -> std::process::ExitCode {
    loadgen::cli::main()
}
