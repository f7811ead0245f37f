//! Logging: `tracing` to standard error, human-readable or JSON (WALDEN_LOG_FORMAT), filtered by RUST_LOG.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Install the global subscriber. Logs go to standard error so that `--json` output on stdout stays clean.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,leptos_axum=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // When standard error is gone (the log reader died), the default reports the failed write with
        // `eprintln!`, which panics on the same broken pipe: inside a request that request hangs, inside the
        // signal handler shutdown never happens. Losing log lines is the lesser harm.
        .log_internal_errors(false);
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
