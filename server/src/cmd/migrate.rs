use std::process::ExitCode;

use crate::config::DataDirArgs;

/// `walden migrate`: create or upgrade the database, then exit (for a deploy's release step).
pub async fn run(args: DataDirArgs) -> anyhow::Result<ExitCode> {
    let pool = walden_core::db::open(&args.data_dir).await?;
    let applied = walden_core::db::applied_migrations(&pool).await?;
    pool.close().await;
    println!(
        "database {} is up to date ({applied} migrations applied)",
        args.data_dir.join(walden_core::db::DB_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}
