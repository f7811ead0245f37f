use std::process::ExitCode;

use anyhow::Context;

use crate::config::ServeArgs;
use crate::shutdown;
use crate::startup::Application;

/// `walden serve`: run the console until SIGTERM or SIGINT.
pub async fn run(mut args: ServeArgs) -> anyhow::Result<ExitCode> {
    // The key is read here, from the environment or a file, never from a flag (see ServeArgs::master_key).
    use crate::config::{ALERT_WEBHOOK, MASTER_KEY, RETIRED_MASTER_KEYS, SETUP_TOKEN, SIGNING_KEY};
    let env = |setting: crate::config::SecretSetting| std::env::var(setting.env).ok();
    args.load_master_key(env(MASTER_KEY))?;
    args.load_retired_keys(env(RETIRED_MASTER_KEYS))?;
    args.load_setup_token(env(SETUP_TOKEN))?;
    args.load_alert_webhook(env(ALERT_WEBHOOK))?;
    args.checkpoints.load_signing_key(env(SIGNING_KEY))?;
    let demo = args.demo_mode();
    let data_dir = args.data.data_dir.clone();
    let app = Application::build(args).await?;
    let addr = app.local_addr()?;
    // Before announcing readiness: a signal sent as soon as the address is printed must be honoured.
    let shutdown = shutdown::on_signal().context("cannot install the signal handlers")?;
    tracing::info!(
        %addr,
        data_dir = %data_dir.display(),
        mode = if demo { "demo (built-in Fly emulator)" } else { "Fly" },
        "Walden is listening on http://{addr}"
    );
    app.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
