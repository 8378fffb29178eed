//! The `scalepipe` binary: all logic lives in the library.

fn main() {
    std::process::exit(scalepipe::cli::main());
}
