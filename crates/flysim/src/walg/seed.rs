//! A demo history written as the archiver and backup-push would have written it.

use std::path::Path;

use super::archive::{db_size, push_segments};
use super::push::write_backup;
use super::{wal_name, SEG_SIZE};
use crate::model::*;

/// A demo history: `days` of WAL and a base backup every `backup_every_h` hours, written as the archiver and
/// backup-push would have, ending at `now_ms`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seed_history(
    root: &Path,
    pg: &mut PgCluster,
    now_ms: i64,
    hours: i64,
    backup_every_h: i64,
    segment_every_min: i64,
    hostname: &str,
) -> std::io::Result<()> {
    let start = now_ms - hours * 3600 * 1000;
    let step = segment_every_min * 60 * 1000;
    let mut t = start;
    let mut next_backup = start + 3600 * 1000;
    while t < now_ms {
        let seg = pg.lsn / SEG_SIZE;
        push_segments(root, pg.timeline, (seg, seg + 1), "lz4", t, Some(t))
            .map_err(std::io::Error::other)?;
        pg.lsn = (seg + 1) * SEG_SIZE + 40;
        *pg.databases
            .entry("app".into())
            .or_default()
            .entry("events".into())
            .or_default() += 250;
        if t >= next_backup {
            let seg = pg.lsn / SEG_SIZE;
            let start_lsn = (seg + 1) * SEG_SIZE + 0x28;
            let finish_lsn = start_lsn + 0x1B8;
            let job = PushJob {
                root: root.to_path_buf(),
                name: format!("base_{}", wal_name(pg.timeline, start_lsn / SEG_SIZE)),
                start_ms: t,
                finish_ms: t + 90_000,
                start_lsn,
                finish_lsn,
                pg_version: pg.pg_version,
                system_identifier: pg.system_identifier,
                timeline: pg.timeline,
                hostname: hostname.to_string(),
                data_dir: "/data/postgres".into(),
                pg_parameters: crate::stolon::pg_parameters(pg),
                roles: pg.roles.clone(),
                databases: pg.databases.clone(),
                compression: "lz4".into(),
                permanent: false,
                uncompressed_size: db_size(pg),
                log_path: None,
                delta: None,
                data_catalog_size: None,
            };
            push_segments(
                root,
                pg.timeline,
                (seg, finish_lsn / SEG_SIZE + 1),
                "lz4",
                t + 90_000,
                None,
            )
            .map_err(std::io::Error::other)?;
            write_backup(&job)?;
            pg.lsn = (finish_lsn / SEG_SIZE + 1) * SEG_SIZE + 40;
            next_backup += backup_every_h * 3600 * 1000;
        }
        t += step;
    }
    Ok(())
}
