//! The `dce-loadgen` command.
fn main() {
    eprintln!("dce-loadgen: no scenarios yet");
    std::process::exit(2);
}
