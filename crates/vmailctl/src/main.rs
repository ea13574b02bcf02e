//! `vmailctl`: see the library for what each command does.

use clap::Parser;

fn main() -> std::process::ExitCode {
    match vmailctl::Cli::try_parse() {
        Ok(cli) => vmailctl::main(cli),
        // --help and --version are "errors" that print to stdout and exit 0.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // sysexits EX_USAGE, as doveadm; under --json the usage error is JSON too.
            if std::env::args().any(|a| a == "--json") {
                let msg = e.kind().to_string();
                let detail = e.to_string();
                let first = detail.lines().next().unwrap_or(&msg);
                vmailctl::report_error(
                    true,
                    first.trim_start_matches("error: "),
                    vmailctl::EXIT_USAGE,
                );
            } else {
                let _ = e.print();
            }
            std::process::ExitCode::from(vmailctl::EXIT_USAGE)
        }
    }
}
