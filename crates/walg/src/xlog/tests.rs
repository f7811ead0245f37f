//! The page and record walker on hand-built WAL (see `xlog_writer`).

use super::*;
use crate::xlog_writer::{Block, WalWriter};

const SEG: u64 = 1024 * 1024;
/// Segment 3 of timeline 1: an LSN that is not zero, so page addresses are checked for real.
const START: u64 = 3 * SEG;

fn times(scan: &Scan) -> Vec<i64> {
    scan.xacts.iter().map(|x| x.xact_time_us).collect()
}

#[test]
fn commits_and_aborts_are_found_with_their_lsn_time_and_xid() {
    let mut w = WalWriter::new(SEG, START);
    w.heap(700, b"row");
    let c1 = w.commit(700, 1_000_000, &[]);
    w.heap(701, b"row");
    let a = w.abort(701, 2_000_000);
    let c2 = w.commit(702, 3_000_123, &[1, 0, 0, 0]);
    w.finish_segment();
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [1_000_000, 2_000_000, 3_000_123]);
    assert_eq!(
        scan.xacts.iter().map(|x| x.lsn).collect::<Vec<_>>(),
        [c1, a, c2]
    );
    assert_eq!(
        scan.xacts
            .iter()
            .map(|x| (x.kind, x.xid))
            .collect::<Vec<_>>(),
        [
            (XactKind::Commit, 700),
            (XactKind::Abort, 701),
            (XactKind::Commit, 702)
        ]
    );
    assert_eq!(scan.records, 5);
    // The zeroed tail of the segment ends the WAL.
    assert!(
        matches!(scan.stop.reason, StopReason::InvalidRecord(ref why) if why.contains("zero length")),
        "{:?}",
        scan.stop
    );
}

#[test]
fn pg_timestamps_count_from_2000() {
    assert_eq!(
        pg_timestamp(0),
        Some(time::macros::datetime!(2000-01-01 00:00 UTC))
    );
    assert_eq!(
        pg_timestamp(1),
        Some(time::macros::datetime!(2000-01-01 00:00:00.000001 UTC))
    );
    assert_eq!(
        pg_timestamp(-1_000_000),
        Some(time::macros::datetime!(1999-12-31 23:59:59 UTC))
    );
}

#[test]
fn a_commit_spanning_pages_is_reassembled() {
    let mut w = WalWriter::new(SEG, START);
    // Fill to a few bytes before a page end, so the header itself is split too.
    while w.lsn() % w.page_size < w.page_size - 16 {
        w.heap(1, &[7; 40]);
        if w.lsn() % w.page_size > w.page_size - 200 {
            break;
        }
    }
    let big = vec![9u8; 3 * 8192 + 100]; // like 6000 subtransaction ids: crosses three page boundaries
    let c = w.commit(2, 42, &big);
    let after = w.commit(3, 43, &[]);
    w.finish_segment();
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [42, 43]);
    assert_eq!(scan.xacts[0].lsn, c);
    assert!(scan.xacts[0].end_lsn > c + 3 * 8192, "{:?}", scan.xacts[0]);
    assert_eq!(scan.xacts[1].lsn, after);
}

#[test]
fn a_record_header_split_across_pages_is_read() {
    // Each heap record below is 24 + 4 + 12 + 4 + 2 + 3 + data bytes; walk until a record starts 8 bytes before
    // a page end, then commit: its 24-byte header is split.
    for data_len in 0..64usize {
        let mut w = WalWriter::new(SEG, START);
        while w.lsn() < START + w.page_size - 128 {
            w.heap(1, &vec![1; data_len + 1]);
        }
        while (w.lsn().div_ceil(8) * 8) % w.page_size != w.page_size - 8 {
            w.heap(1, &[1; 1]);
            if w.lsn() > START + 3 * w.page_size {
                break;
            }
        }
        let c = w.commit(5, 55, &[]);
        w.finish_segment();
        let scan = scan(&w.buf, SEG, START);
        assert_eq!(scan.xacts.last().map(|x| x.lsn), Some(c), "{data_len}");
    }
}

#[test]
fn block_references_with_images_and_origins_are_skipped_to_the_main_data() {
    let mut w = WalWriter::new(SEG, START);
    let blocks = [
        Block {
            data: vec![1; 10],
            image: Some((vec![2; 300], true)),
            same_rel: false,
        },
        Block {
            data: Vec::new(),
            image: Some((vec![3; 8192], false)),
            same_rel: true,
        },
    ];
    // A commit record carrying block references (as no real commit does) is still decoded by its layout.
    let main = 77i64.to_le_bytes();
    w.record(1, 0x00, 9, &blocks, &main);
    // ORIGIN and TOPLEVEL_XID headers before the main data: hand-made body.
    let mut rec = w.record_bytes(1, 0x30, 0, &[], &88i64.to_le_bytes());
    // Insert the two optional headers after the fixed header and fix the length and CRC.
    let mut body = vec![253, 1, 0, 252, 4, 0, 0, 0];
    body.extend_from_slice(&rec[24..]);
    rec.truncate(24);
    rec.extend_from_slice(&body);
    let tot = rec.len() as u32;
    rec[0..4].copy_from_slice(&tot.to_le_bytes());
    let crc = {
        let c = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);
        let mut d = c.digest();
        d.update(&rec[24..]);
        d.update(&rec[..20]);
        d.finalize()
    };
    rec[20..24].copy_from_slice(&crc.to_le_bytes());
    while !w.lsn().is_multiple_of(8) {
        w.buf.push(0);
    }
    let lsn = w.lsn();
    w.buf.extend_from_slice(&rec);
    w.prev = lsn;
    w.finish_segment();
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [77, 88]);
    assert_eq!(scan.xacts[1].kind, XactKind::CommitPrepared);
}

#[test]
fn a_record_continued_from_the_previous_segment_is_skipped_and_read_whole_across_segments() {
    let mut w = WalWriter::new(SEG, START);
    while w.lsn() < START + SEG - 3000 {
        w.heap(1, &[5; 200]);
    }
    let spanning = w.commit(10, 100, &[0; 6000]);
    let next = w.commit(11, 101, &[]);
    assert!(spanning < START + SEG && next > START + SEG);
    w.finish_segment();
    // The second segment alone: the first page continues the commit, which is skipped; the next one is read.
    let second = &w.buf[SEG as usize..];
    let alone = scan(second, SEG, START + SEG);
    assert_eq!(times(&alone), [101]);
    // Both segments: the commit spanning them is read whole.
    let both = scan(&w.buf, SEG, START);
    assert_eq!(
        both.xacts.iter().map(|x| x.lsn).collect::<Vec<_>>(),
        [spanning, next]
    );
    // The first segment alone: the commit that continues past it is not invented.
    let first = scan(&w.buf[..SEG as usize], SEG, START);
    assert!(first.xacts.is_empty());
    assert_eq!(first.stop.reason, StopReason::EndOfInput);
}

#[test]
fn a_segment_switch_skips_to_the_next_segment() {
    let mut w = WalWriter::new(SEG, START);
    w.commit(1, 1, &[]);
    w.record(0, 0x40, 0, &[], &[]); // XLOG_SWITCH
    w.finish_segment();
    let c = w.commit(2, 2, &[]);
    w.finish_segment();
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [1, 2]);
    assert_eq!(scan.xacts[1].lsn, c);
    assert_eq!(c, START + SEG + 40);
}

#[test]
fn a_crc_mismatch_ends_the_wal_at_that_record() {
    let mut w = WalWriter::new(SEG, START);
    w.commit(1, 1, &[]);
    let bad = w.commit(2, 2, &[]);
    w.commit(3, 3, &[]);
    let at = (bad - START) as usize + 26; // a byte of the body
    w.buf[at] ^= 0xFF;
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [1]);
    assert_eq!(
        scan.stop,
        Stop {
            lsn: bad,
            reason: StopReason::CrcMismatch
        }
    );
}

#[test]
fn a_record_that_does_not_chain_ends_the_wal() {
    let mut w = WalWriter::new(SEG, START);
    w.commit(1, 1, &[]);
    w.prev = START + 8; // not the record before
    let stray = w.commit(2, 2, &[]);
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(times(&scan), [1]);
    assert_eq!(scan.stop.lsn, stray);
    assert_eq!(scan.stop.reason, StopReason::BrokenChain);
}

#[test]
fn a_recycled_page_ends_the_wal() {
    let mut w = WalWriter::new(SEG, START);
    while w.lsn() < START + 8192 + 100 {
        w.commit(1, 1, &[]);
    }
    let n = w.buf.len();
    w.finish_segment();
    // The second page says it belongs to an older segment (a recycled file's leftover).
    w.buf[8192 + 8..8192 + 16].copy_from_slice(&(START - SEG + 8192).to_le_bytes());
    let scan = scan(&w.buf, SEG, START);
    assert!(
        matches!(scan.stop.reason, StopReason::InvalidPage(ref why) if why.contains("recycled"))
    );
    assert_eq!(scan.stop.lsn, START + 8192);
    assert!(n > 8192);
}

#[test]
fn other_page_magics_and_non_segment_starts_are_not_read() {
    let mut w = WalWriter::new(SEG, START);
    w.commit(1, 1, &[]);
    w.finish_segment();
    for magic in [0xD101u16, 0xD106, 0xD10D, 0xD113, 0xD116] {
        let mut b = w.buf.clone();
        // Every page carries the magic; only the first page has records here, later pages are zero.
        b[0..2].copy_from_slice(&magic.to_le_bytes());
        let s = scan(&b, SEG, START);
        assert_eq!(times(&s), [1], "{magic:#X}");
    }
    let mut b = w.buf.clone();
    b[0..2].copy_from_slice(&0xD0FFu16.to_le_bytes());
    assert!(scan(&b, SEG, START).xacts.is_empty());
    assert!(scan(&w.buf, SEG, START + 8192).xacts.is_empty());
    assert!(scan(&w.buf, 12345, START).xacts.is_empty());
}

#[test]
fn a_record_cut_by_a_crash_and_overwritten_is_skipped() {
    let mut w = WalWriter::new(SEG, START);
    let before = w.commit(1, 1, &[]);
    while w.lsn() < START + w.page_size - 200 {
        w.heap(1, &[3; 50]);
    }
    let last_complete = w.prev;
    // A record whose first part reached the disk, cut at the page end by a crash.
    while !w.lsn().is_multiple_of(8) {
        w.buf.push(0);
    }
    let cut = w.record_bytes(10, 0, 2, &[], &[4; 500]);
    let room = (w.page_size - w.lsn() % w.page_size) as usize;
    w.buf.extend_from_slice(&cut[..room]);
    // After recovery, new WAL starts on the next page with XLP_FIRST_IS_OVERWRITE_CONTRECORD, its first record
    // (XLOG_OVERWRITE_CONTRECORD) pointing back at the last complete record.
    let page = w.buf.len();
    w.prev = last_complete;
    w.record(0, 0xD0, 0, &[], &[0; 16]);
    w.buf[page + 2] |= 0x08;
    let after = w.commit(3, 3, &[]);
    w.finish_segment();
    let scan = scan(&w.buf, SEG, START);
    assert_eq!(
        scan.xacts.iter().map(|x| x.lsn).collect::<Vec<_>>(),
        [before, after]
    );
    // Without the flag the cut record ends the WAL.
    w.buf[page + 2] &= !0x08;
    let plain = super::scan(&w.buf, SEG, START);
    assert_eq!(plain.xacts.len(), 1);
}

/// A tiny deterministic generator (xorshift64*), so the garbage tests are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn sample_wal() -> Vec<u8> {
    let mut w = WalWriter::new(SEG, START);
    let mut i = 0;
    while w.lsn() < START + 5 * 8192 {
        i += 1;
        w.heap(i, &vec![i as u8; (i as usize * 37) % 700]);
        if i.is_multiple_of(3) {
            w.commit(i, i as i64, &vec![0; (i as usize * 911) % 9000]);
        }
    }
    w.buf
}

#[test]
fn truncated_input_never_panics_and_keeps_what_was_complete() {
    let wal = sample_wal();
    let whole = scan(&wal, SEG, START);
    assert!(whole.xacts.len() > 5);
    for cut in (0..wal.len()).step_by(97).chain([1, 2, 23, 24, 39, 40, 41]) {
        let s = scan(&wal[..cut], SEG, START);
        // A prefix finds a prefix of the commits.
        assert!(s.xacts.len() <= whole.xacts.len());
        assert_eq!(s.xacts[..], whole.xacts[..s.xacts.len()], "cut {cut}");
    }
}

#[test]
fn random_bytes_and_flipped_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let wal = sample_wal();
    let whole = scan(&wal, SEG, START).xacts.len();
    for _ in 0..300 {
        let mut b = wal.clone();
        for _ in 0..(rng.next() % 8 + 1) {
            let at = (rng.next() % b.len() as u64) as usize;
            b[at] = rng.next() as u8;
        }
        let s = scan(&b, SEG, START);
        assert!(s.xacts.len() <= whole + 1);
    }
    for len in [0usize, 1, 8, 40, 100, 8192, 20000] {
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = scan(&b, SEG, START);
        // A valid-looking long header in front of garbage.
        if b.len() >= 40 {
            b[..40].copy_from_slice(&sample_wal()[..40]);
            let _ = scan(&b, SEG, START);
        }
    }
}
