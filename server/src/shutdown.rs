//! Shutdown on SIGTERM or SIGINT (Fly sends SIGINT unless `kill_signal` says otherwise).

use tokio_util::sync::CancellationToken;

/// Register the SIGINT and SIGTERM handlers now, and return a token cancelled by the first of them.
///
/// The handlers are registered before this returns (not lazily inside a task), so a signal that arrives
/// right after the console has announced itself is never missed.
#[cfg(unix)]
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received: shutting down"),
        }
        trigger.cancel();
    });
    Ok(token)
}

#[cfg(not(unix))]
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received: shutting down");
            trigger.cancel();
        }
    });
    Ok(token)
}
