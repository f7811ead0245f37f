//! Property tests over generated wal-g trees (written to real files): restorable windows never include a time
//! inside a WAL gap, and a chosen backup always finished before the target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use walg::plan::{PlanOutcome, Target};
use walg::testkit::{BackupSpec, BucketBuilder};
use walg::{Reader, StorageConfig, Timeline};

const SEG: u64 = 16 * 1024 * 1024;

fn at(k: u64) -> OffsetDateTime {
    datetime!(2026-03-01 00:00 UTC) + Duration::minutes(10 * k as i64)
}

#[derive(Debug, Clone)]
struct Tree {
    last: u64,
    gaps: Vec<(u64, u64)>,
    backups: Vec<u64>,
    switch: Option<u64>,
    targets: Vec<u64>,
}

fn tree() -> impl Strategy<Value = Tree> {
    (20u64..160).prop_flat_map(|last| {
        (
            Just(last),
            proptest::collection::vec((2..last - 2, 1u64..8), 0..4),
            proptest::collection::vec(1..last - 2, 1..6),
            proptest::option::of(5..last - 5),
            proptest::collection::vec(0..last * 10 + 30, 1..8),
        )
            .prop_map(|(last, gaps, backups, switch, targets)| Tree {
                last,
                gaps: gaps
                    .into_iter()
                    .map(|(a, l)| (a, (a + l - 1).min(last - 1)))
                    .collect(),
                backups,
                switch,
                targets,
            })
    })
}

fn missing(t: &Tree, n: u64) -> bool {
    t.gaps.iter().any(|&(a, b)| a <= n && n <= b)
}

fn build(t: &Tree, dir: &std::path::Path) {
    let mut b = BucketBuilder::new();
    for n in 1..=t.last {
        if missing(t, n) {
            continue;
        }
        let tli = match t.switch {
            Some(s) if n >= s => 2,
            _ => 1,
        };
        b.wal(tli, n, n, at(n), Duration::minutes(10));
    }
    if let Some(s) = t.switch {
        b.history(2, &[(1, s * SEG + 0x100)], at(s));
    }
    for &k in &t.backups {
        let tli = match t.switch {
            Some(s) if k >= s => 2,
            _ => 1,
        };
        b.backup(&BackupSpec::at(tli, k, at(k)));
    }
    b.write_dir(dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    #[test]
    fn windows_avoid_gaps_and_plans_are_sound(t in tree()) {
        let dir = tempfile::tempdir().unwrap();
        build(&t, dir.path());
        let cfg = StorageConfig::from_url(&dir.path().display().to_string(), &Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (idx, _) = rt.block_on(Reader::new(&cfg).unwrap().build()).unwrap();
        let tl = Timeline::from_index(&idx, at(t.last + 100));

        // 1. No window contains a time strictly inside a gap of its lineage.
        for w in &tl.windows {
            let lin = tl.lineage(w.timeline).unwrap();
            for g in &lin.gaps {
                let (Some(a), Some(z)) = (g.after, g.before) else { continue };
                prop_assert!(w.to <= a || w.from >= z, "window {:?} overlaps gap {:?}", w, g);
            }
        }
        // Independently of the model: every window lies within one unbroken stretch of generated segments.
        for w in &tl.windows {
            let first = (1..=t.last).find(|&n| at(n) >= w.from).unwrap_or(t.last);
            let last = (1..=t.last).rev().find(|&n| at(n) <= w.to).unwrap_or(1);
            for n in first..=last {
                prop_assert!(!missing(&t, n), "window {:?} spans missing segment {}", w, n);
            }
        }

        // 2. Plans: the backup finished before the target, the target is inside that backup's window, and a
        //    target inside any window always gets a plan.
        for &m in &t.targets {
            let target = datetime!(2026-03-01 00:00 UTC) + Duration::minutes(m as i64);
            let inside = tl.windows.iter().any(|w| w.timeline == tl.main_lineage.unwrap_or(0) && w.from <= target && target <= w.to);
            match tl.choose_backup(&Target::Time(target), None) {
                PlanOutcome::Plan(p) => {
                    let b = tl.backups.iter().find(|b| b.name == p.backup).unwrap();
                    prop_assert!(b.finish_time.unwrap() <= target);
                    prop_assert!(b.restorable);
                    let w = b.windows.iter().find(|w| w.lineage.to_string() == p.recovery_target_timeline).unwrap();
                    prop_assert!(target <= w.end_time);
                    prop_assert!(inside, "plan for {} outside every window", target);
                }
                PlanOutcome::Refusal(r) => {
                    prop_assert!(!inside, "refused {} inside a window: {}", target, r.reason);
                    prop_assert!(!r.reason.is_empty());
                }
            }
        }
    }
}
