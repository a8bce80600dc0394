//! The `trails` command: parse arguments, run, map the outcome to an exit status.

fn main() -> std::process::ExitCode {
    trails::cli::main()
}
