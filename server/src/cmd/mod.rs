//! One module per command group. Each exposes an `Args` (clap) and an async `run` returning an exit code.
