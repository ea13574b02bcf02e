//! `vmailctl`: see the library for what each command does.

use clap::Parser;

fn main() -> std::process::ExitCode {
    vmailctl::main(vmailctl::Cli::parse())
}
