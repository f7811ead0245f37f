//! `walden`: parse the command line, then hand over to the chosen command.
fn main() -> std::process::ExitCode {
    walden::cli::main()
}
