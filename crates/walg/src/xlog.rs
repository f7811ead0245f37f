//! A small PostgreSQL WAL reader: walks the pages and records of archived segments the way PostgreSQL's
//! `xlogreader.c` does and returns the transaction-end records (commit and abort, with their `xact_time`).
//!
//! Why: PostgreSQL recovery to a `recovery_target_time` stops *before the first commit or abort whose time is
//! after the target* (`recoveryStopsBefore` in `src/backend/access/transam/xlogrecovery.c`, with
//! `recovery_target_inclusive = on`). When no such record follows the target, recovery runs out of WAL and fails
//! ("recovery ended before configured recovery target was reached"). The last commit time is therefore the true
//! end of the restorable window, and only the WAL itself knows it.
//!
//! Hand-written rather than a crate: the crates that name PostgreSQL WAL either speak the logical replication
//! protocol (`pg_walstream`), bind the server's C functions through `unsafe` FFI inside an extension (`pgrx`), or
//! shell out to `pg_waldump`; none decodes archived segment bytes in safe Rust. What is needed here is small:
//! page headers, record headers, the block-reference headers (only to find the main data) and the first field
//! of a commit or abort record.
//!
//! Scope and assumptions, said plainly:
//! - Little-endian WAL (x86-64, arm64: every platform Postgres-on-Fly runs on); WAL is not portable between
//!   endiannesses anyway.
//! - The header checks that depend on the version only compare `xlp_magic` with the magic of PostgreSQL 12 to 18
//!   ([`KNOWN_PAGE_MAGIC`]); a segment with another magic is not read (the caller then knows nothing, which keeps
//!   the older behaviour). Block image headers changed in PostgreSQL 15 (compression flags); the magic says which
//!   layout applies.
//! - `xlp_tli` is not checked (a segment may hold pages written on the parent timeline before a switch; the
//!   caller knows which timeline's file it reads). A record cut by a crash and overwritten
//!   (`XLP_FIRST_IS_OVERWRITE_CONTRECORD`, PostgreSQL 15+) is skipped as PostgreSQL skips it.
//! - Reading stops cleanly, without panicking, at the end of valid WAL: a zeroed or recycled page, a record whose
//!   `xl_prev` does not chain, a CRC-32C mismatch, or a header that does not make sense. Every stop says why.

use crate::names::Lsn;
use time::OffsetDateTime;

// ---- src/include/access/xlog_internal.h -------------------------------------------------------------------

/// `XLOG_PAGE_MAGIC` of PostgreSQL 12 (0xD101), 13 (0xD106), 14 (0xD10D), 15 (0xD110), 16 (0xD113),
/// 17 (0xD116) and 18 (0xD118).
pub const KNOWN_PAGE_MAGIC: [u16; 7] = [0xD101, 0xD106, 0xD10D, 0xD110, 0xD113, 0xD116, 0xD118];
/// First magic whose block image header uses PostgreSQL 15's compression flags (`BKPIMAGE_COMPRESS_*`).
const MAGIC_PG15: u16 = 0xD110;
/// `SizeOfXLogShortPHD`: MAXALIGN(sizeof(XLogPageHeaderData)).
const SHORT_PAGE_HEADER: usize = 24;
/// `SizeOfXLogLongPHD`: MAXALIGN(sizeof(XLogLongPageHeaderData)).
const LONG_PAGE_HEADER: usize = 40;
/// `XLP_FIRST_IS_CONTRECORD`: the page begins with the rest of a record from the previous page.
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: the page has the long header (first page of a segment).
const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD` (PostgreSQL 15+): the record that should continue here was abandoned (a
/// crash cut it) and newer WAL starts on this page instead (`XLOG_OVERWRITE_CONTRECORD`).
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `XLP_ALL_FLAGS`: any other bit in `xlp_info` makes the page invalid (`XLogReaderValidatePageHeader`).
const XLP_ALL_FLAGS: u16 = 0x000F;
/// PostgreSQL aligns every record start to MAXALIGN (8 bytes on every supported 64-bit platform).
const MAXALIGN: u64 = 8;

// ---- src/include/access/xlogrecord.h -----------------------------------------------------------------------

/// `SizeOfXLogRecord`: xl_tot_len u32, xl_xid u32, xl_prev u64, xl_info u8, xl_rmid u8, 2 pad, xl_crc u32.
const RECORD_HEADER: usize = 24;
/// `XLogRecordMaxSize` (PostgreSQL 16; 1020 MB): no valid record is longer.
const MAX_RECORD_SIZE: u32 = 1020 * 1024 * 1024;
/// Offset of `xl_crc`; the CRC covers the record after the header, then the header up to this offset.
const CRC_OFFSET: usize = 20;
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `BKPIMAGE_IS_COMPRESSED` before PostgreSQL 15.
const BKPIMAGE_IS_COMPRESSED_PG12: u8 = 0x02;
/// `BKPIMAGE_COMPRESS_PGLZ | _LZ4 | _ZSTD` from PostgreSQL 15.
const BKPIMAGE_COMPRESSED_PG15: u8 = 0x04 | 0x08 | 0x10;
/// `sizeof(RelFileLocator)` (`RelFileNode` before 16): three u32.
const REL_FILE_LOCATOR: usize = 12;

// ---- src/include/access/rmgrlist.h, xlog.h (pg_control.h), xact.h -----------------------------------------

const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
/// `XLOG_SWITCH` (pg_control.h): the rest of the segment is unused.
const XLOG_SWITCH: u8 = 0x40;
/// `XLR_INFO_MASK`: the low bits of `xl_info` belong to the record machinery, not the resource manager.
const XLR_INFO_MASK: u8 = 0x0F;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC), for `TimestampTz`.
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// Which transaction end a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XactKind {
    Commit,
    CommitPrepared,
    Abort,
    AbortPrepared,
}

impl XactKind {
    pub fn is_commit(self) -> bool {
        matches!(self, XactKind::Commit | XactKind::CommitPrepared)
    }
}

/// A commit or abort record: the records PostgreSQL's time targets stop at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XactRecord {
    /// Where the record starts.
    pub lsn: u64,
    /// Where the next record may start (the record's end, before alignment).
    pub end_lsn: u64,
    pub kind: XactKind,
    /// `xl_xid` of the record: the transaction for COMMIT and ABORT; for the PREPARED forms, the transaction that
    /// ran `COMMIT/ROLLBACK PREPARED` (usually 0; the prepared transaction's id is not decoded).
    pub xid: u32,
    /// `xact_time` (`xl_xact_commit` / `xl_xact_abort`): microseconds since 2000-01-01 00:00:00 UTC.
    pub xact_time_us: i64,
}

impl XactRecord {
    /// `xact_time` as a time (`None` if out of range).
    pub fn time(&self) -> Option<OffsetDateTime> {
        pg_timestamp(self.xact_time_us)
    }
}

/// A PostgreSQL `TimestampTz` (microseconds since 2000-01-01 UTC) as a time.
pub fn pg_timestamp(us: i64) -> Option<OffsetDateTime> {
    let nanos = (PG_EPOCH_UNIX_SECONDS as i128 * 1_000_000 + us as i128) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The bytes ended (at a page boundary, or inside a record that continues in the next segment).
    EndOfInput,
    /// A page that is zeroed, recycled (its address is another segment's) or has an unknown magic or flags.
    InvalidPage(String),
    /// A record header or body that does not make sense (zero length, bad block reference, ...).
    InvalidRecord(String),
    /// `xl_prev` does not point at the previous record.
    BrokenChain,
    /// `xl_crc` does not match the record.
    CrcMismatch,
}

/// Where and why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub lsn: u64,
    pub reason: StopReason,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = Lsn(self.lsn);
        match &self.reason {
            StopReason::EndOfInput => write!(f, "the WAL read ends at {at}"),
            StopReason::InvalidPage(why) => write!(f, "invalid page at {at}: {why}"),
            StopReason::InvalidRecord(why) => write!(f, "invalid record at {at}: {why}"),
            StopReason::BrokenChain => {
                write!(f, "the record at {at} does not follow the one before")
            }
            StopReason::CrcMismatch => write!(f, "the record at {at} fails its CRC check"),
        }
    }
}

/// What one walk over WAL found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Commit and abort records, in LSN order.
    pub xacts: Vec<XactRecord>,
    /// Valid records read (of any kind).
    pub records: u64,
    pub stop: Stop,
}

/// Reads the records in `wal`: one or more consecutive segments of `segment_size` bytes, the first starting at
/// `start_lsn` (a segment boundary). A record that starts in one segment and ends in the next is read whole when
/// both are given.
pub fn scan(wal: &[u8], segment_size: u64, start_lsn: u64) -> Scan {
    let mut walker = Walker {
        wal,
        segment_size,
        start_lsn,
        page_size: 0,
        magic: 0,
    };
    let mut xacts = Vec::new();
    let mut records = 0;
    let stop = walker.walk(|rec| {
        records += 1;
        if let Some(x) = xact_record(&rec) {
            xacts.push(x);
        }
    });
    Scan {
        xacts,
        records,
        stop,
    }
}

/// A record read whole (header and body, reassembled across pages).
struct Record {
    lsn: u64,
    end_lsn: u64,
    bytes: Vec<u8>,
    page_magic: u16,
}

impl Record {
    fn xid(&self) -> u32 {
        u32_at(&self.bytes, 4).unwrap_or(0)
    }
    fn info(&self) -> u8 {
        self.bytes.get(16).copied().unwrap_or(0)
    }
    fn rmid(&self) -> u8 {
        self.bytes.get(17).copied().unwrap_or(0)
    }
}

/// What reading at a record position gave.
enum Read {
    Record(Record),
    /// The record was cut by a crash and overwritten from the page at `resume` on (PostgreSQL 15+).
    Abandoned {
        resume: u64,
    },
}

/// A valid page header.
struct Page {
    info: u16,
    rem_len: u32,
    /// Bytes of header: where the page's data starts.
    header: usize,
}

struct Walker<'a> {
    wal: &'a [u8],
    segment_size: u64,
    start_lsn: u64,
    /// `XLOG_BLCKSZ`, from the first page's long header.
    page_size: u64,
    /// The first page's `xlp_magic`; every page must carry the same.
    magic: u16,
}

type Step<T> = Result<T, Stop>;

fn stop<T>(lsn: u64, reason: StopReason) -> Step<T> {
    Err(Stop { lsn, reason })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn align(x: u64) -> u64 {
    x.div_ceil(MAXALIGN) * MAXALIGN
}

/// CRC-32C as PostgreSQL's `pg_crc32c` (Castagnoli; `INIT_CRC32C`/`FIN_CRC32C` are the standard init and xor).
static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

impl Walker<'_> {
    fn end_lsn(&self) -> u64 {
        self.start_lsn + self.wal.len() as u64
    }

    /// Step 1: the first page of the input must be a valid long header; it gives the page size and magic.
    fn first_page(&mut self) -> Step<Page> {
        let lsn = self.start_lsn;
        let b = self.wal;
        if !crate::names::valid_segment_size(self.segment_size)
            || !lsn.is_multiple_of(self.segment_size)
        {
            return stop(lsn, StopReason::InvalidPage("not a segment start".into()));
        }
        let (Some(magic), Some(info), Some(seg), Some(blck)) =
            (u16_at(b, 0), u16_at(b, 2), u32_at(b, 32), u32_at(b, 36))
        else {
            return stop(lsn, StopReason::EndOfInput);
        };
        if !KNOWN_PAGE_MAGIC.contains(&magic) {
            return stop(
                lsn,
                StopReason::InvalidPage(format!("unknown page magic {magic:#06X}")),
            );
        }
        if info & XLP_LONG_HEADER == 0
            || u64::from(seg) != self.segment_size
            || !(1024..=65536).contains(&blck)
            || !blck.is_power_of_two()
        {
            return stop(
                lsn,
                StopReason::InvalidPage("no valid long header at the segment start".into()),
            );
        }
        self.magic = magic;
        self.page_size = u64::from(blck);
        self.page(lsn)
    }

    /// Step 2: the header of the page at `lsn` (`XLogReaderValidatePageHeader`).
    fn page(&self, lsn: u64) -> Step<Page> {
        let off = (lsn - self.start_lsn) as usize;
        let b = self.wal.get(off..).unwrap_or_default();
        if b.is_empty() {
            return stop(lsn, StopReason::EndOfInput);
        }
        let (Some(magic), Some(info), Some(addr), Some(rem_len)) =
            (u16_at(b, 0), u16_at(b, 2), u64_at(b, 8), u32_at(b, 16))
        else {
            return stop(lsn, StopReason::EndOfInput);
        };
        if magic != self.magic {
            let why = if magic == 0 {
                "zeroed page".to_string()
            } else {
                format!("page magic {magic:#06X}")
            };
            return stop(lsn, StopReason::InvalidPage(why));
        }
        if info & !XLP_ALL_FLAGS != 0 {
            return stop(lsn, StopReason::InvalidPage("invalid info bits".into()));
        }
        if addr != lsn {
            return stop(
                lsn,
                StopReason::InvalidPage(format!("page address {} (recycled)", Lsn(addr))),
            );
        }
        let segment_start = lsn.is_multiple_of(self.segment_size);
        if segment_start != (info & XLP_LONG_HEADER != 0) {
            return stop(
                lsn,
                StopReason::InvalidPage("unexpected header size".into()),
            );
        }
        let header = if segment_start {
            LONG_PAGE_HEADER
        } else {
            SHORT_PAGE_HEADER
        };
        if b.len() < header {
            return stop(lsn, StopReason::EndOfInput);
        }
        Ok(Page {
            info,
            rem_len,
            header,
        })
    }

    /// The start of the page holding `lsn`.
    fn page_start(&self, lsn: u64) -> u64 {
        lsn - lsn % self.page_size
    }

    /// Step 3: where the first record starts, past the rest of a record continued from before the input
    /// (`XLogFindNextRecord`: follow `xlp_rem_len` over as many pages as it covers).
    fn first_record(&self, first: Page) -> Step<u64> {
        let mut page_lsn = self.start_lsn;
        let mut page = first;
        loop {
            let data = page_lsn + page.header as u64;
            if page.info & XLP_FIRST_IS_CONTRECORD == 0 {
                return Ok(data);
            }
            let room = self.page_size - page.header as u64;
            if u64::from(page.rem_len) < room {
                return Ok(align(data + u64::from(page.rem_len)));
            }
            page_lsn += self.page_size;
            page = self.page(page_lsn)?;
        }
    }

    /// Steps 3 to 5 for every record until the end of valid WAL; returns why it stopped.
    fn walk(&mut self, mut found: impl FnMut(Record)) -> Stop {
        let result = (|| -> Step<()> {
            let first = self.first_page()?;
            let mut lsn = self.first_record(first)?;
            let mut prev: Option<u64> = None;
            loop {
                lsn = self.skip_page_header(lsn)?;
                let rec = match self.read_record(lsn, prev)? {
                    Read::Record(rec) => rec,
                    Read::Abandoned { resume } => {
                        // xlogreader.c (abortedRecPtr / missingContrecPtr): skip the cut record, read on; the
                        // next record's xl_prev points at the last complete one.
                        lsn = resume;
                        continue;
                    }
                };
                prev = Some(rec.lsn);
                let next = if rec.rmid() == RM_XLOG_ID && rec.info() & !XLR_INFO_MASK == XLOG_SWITCH
                {
                    // xlogreader.c: "Pretend it extends to end of segment".
                    let end = rec.end_lsn;
                    end.div_ceil(self.segment_size) * self.segment_size
                } else {
                    align(rec.end_lsn)
                };
                found(rec);
                lsn = next;
            }
        })();
        match result {
            Ok(()) => Stop {
                lsn: self.end_lsn(),
                reason: StopReason::EndOfInput,
            },
            Err(s) => s,
        }
    }

    /// A record position at a page boundary means "after that page's header".
    fn skip_page_header(&self, lsn: u64) -> Step<u64> {
        if !lsn.is_multiple_of(self.page_size) {
            return Ok(lsn);
        }
        if lsn >= self.end_lsn() {
            return stop(lsn, StopReason::EndOfInput);
        }
        let page = self.page(lsn)?;
        if page.info & XLP_FIRST_IS_CONTRECORD != 0 {
            return stop(
                lsn,
                StopReason::InvalidPage("a record was expected, not a continuation".into()),
            );
        }
        Ok(lsn + page.header as u64)
    }

    /// Step 4: one record, reassembled across pages (`XLogDecodeNextRecord`), then validated.
    fn read_record(&self, lsn: u64, prev: Option<u64>) -> Step<Read> {
        // The page header of this record's first page was checked when the walk entered the page.
        let page_magic = self.magic;
        let off = (lsn - self.start_lsn) as usize;
        // Records start MAXALIGNed, so xl_tot_len is always on this page.
        let Some(tot_len) = u32_at(self.wal, off) else {
            return stop(lsn, StopReason::EndOfInput);
        };
        if (tot_len as usize) < RECORD_HEADER {
            let why = if tot_len == 0 {
                "zero length (end of WAL)".to_string()
            } else {
                format!("length {tot_len}")
            };
            return stop(lsn, StopReason::InvalidRecord(why));
        }
        if tot_len > MAX_RECORD_SIZE {
            return stop(lsn, StopReason::InvalidRecord(format!("length {tot_len}")));
        }
        let total = tot_len as usize;
        let mut header_checked = false;
        let mut bytes = Vec::with_capacity(total.min(1 << 20));
        let mut pos = lsn;
        loop {
            let page_end = self.page_start(pos) + self.page_size;
            let want = (total - bytes.len()) as u64;
            let take = want.min(page_end - pos) as usize;
            let from = (pos - self.start_lsn) as usize;
            let Some(chunk) = self.wal.get(from..from + take) else {
                return stop(lsn, StopReason::EndOfInput);
            };
            bytes.extend_from_slice(chunk);
            pos += take as u64;
            if !header_checked && bytes.len() >= RECORD_HEADER {
                // As soon as the whole header is in, check it before reading further (ValidXLogRecordHeader).
                self.check_header(lsn, &bytes, prev)?;
                header_checked = true;
            }
            if bytes.len() == total {
                break;
            }
            // The record continues on the next page, which must say so with the right remaining length.
            let page = self.page(page_end)?;
            let rem = (total - bytes.len()) as u64;
            if page.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
                && page.info & XLP_FIRST_IS_CONTRECORD == 0
            {
                return Ok(Read::Abandoned { resume: page_end });
            }
            if page.info & XLP_FIRST_IS_CONTRECORD == 0 || u64::from(page.rem_len) != rem {
                return stop(
                    page_end,
                    StopReason::InvalidRecord("invalid continuation of the record before".into()),
                );
            }
            pos = page_end + page.header as u64;
        }
        self.check_crc(lsn, &bytes)?;
        Ok(Read::Record(Record {
            lsn,
            end_lsn: pos,
            bytes,
            page_magic,
        }))
    }

    /// `ValidXLogRecordHeader`: the header's length and back link.
    fn check_header(&self, lsn: u64, bytes: &[u8], prev: Option<u64>) -> Step<()> {
        let Some(xl_prev) = u64_at(bytes, 8) else {
            return Ok(());
        };
        let chained = match prev {
            Some(p) => xl_prev == p,
            // The first record read: PostgreSQL's random-access rule, the back link points backwards.
            None => xl_prev < lsn,
        };
        if chained {
            Ok(())
        } else {
            stop(lsn, StopReason::BrokenChain)
        }
    }

    /// `ValidXLogRecord`: CRC-32C over the body, then the header up to `xl_crc`.
    fn check_crc(&self, lsn: u64, bytes: &[u8]) -> Step<()> {
        let want = u32_at(bytes, CRC_OFFSET).unwrap_or(0);
        let mut digest = CRC32C.digest();
        digest.update(bytes.get(RECORD_HEADER..).unwrap_or_default());
        digest.update(bytes.get(..CRC_OFFSET).unwrap_or_default());
        if digest.finalize() == want {
            Ok(())
        } else {
            stop(lsn, StopReason::CrcMismatch)
        }
    }
}

/// Step 5: a commit or abort record's kind and `xact_time`, from its main data.
fn xact_record(rec: &Record) -> Option<XactRecord> {
    if rec.rmid() != RM_XACT_ID {
        return None;
    }
    let kind = match rec.info() & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => XactKind::Commit,
        XLOG_XACT_COMMIT_PREPARED => XactKind::CommitPrepared,
        XLOG_XACT_ABORT => XactKind::Abort,
        XLOG_XACT_ABORT_PREPARED => XactKind::AbortPrepared,
        _ => return None,
    };
    let main = main_data(&rec.bytes, rec.page_magic)?;
    // xl_xact_commit and xl_xact_abort both begin with `TimestampTz xact_time`.
    let xact_time_us = u64_at(main, 0)? as i64;
    Some(XactRecord {
        lsn: rec.lsn,
        end_lsn: rec.end_lsn,
        kind,
        xid: rec.xid(),
        xact_time_us,
    })
}

/// The main data of a record: past the block references (`DecodeXLogRecord` in xlogreader.c). The headers come
/// first, then each block's image and data, then the main data, so its length is all that is needed; the sum is
/// checked against `xl_tot_len` like PostgreSQL does.
fn main_data(bytes: &[u8], magic: u16) -> Option<&[u8]> {
    let compressed_mask = if magic >= MAGIC_PG15 {
        BKPIMAGE_COMPRESSED_PG15
    } else {
        BKPIMAGE_IS_COMPRESSED_PG12
    };
    let mut at = RECORD_HEADER;
    let mut payload: usize = 0;
    let mut main_len: usize = 0;
    let take = |at: &mut usize, n: usize| -> Option<usize> {
        let here = *at;
        *at = here.checked_add(n).filter(|&e| e <= bytes.len())?;
        Some(here)
    };
    while bytes.len() - at > payload {
        let id = bytes[take(&mut at, 1)?];
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(bytes[take(&mut at, 1)?]);
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = u32_at(bytes, take(&mut at, 4)?)? as usize;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                take(&mut at, 2)?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                take(&mut at, 4)?;
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                // XLogRecordBlockHeader: id, fork_flags u8, data_length u16.
                let flags = bytes[take(&mut at, 1)?];
                let data_len = usize::from(u16_at(bytes, take(&mut at, 2)?)?);
                if (flags & BKPBLOCK_HAS_DATA != 0) != (data_len != 0) {
                    return None;
                }
                payload = payload.checked_add(data_len)?;
                if flags & BKPBLOCK_HAS_IMAGE != 0 {
                    // XLogRecordBlockImageHeader: length u16, hole_offset u16, bimg_info u8.
                    let image_len = usize::from(u16_at(bytes, take(&mut at, 2)?)?);
                    take(&mut at, 2)?;
                    let bimg_info = bytes[take(&mut at, 1)?];
                    if bimg_info & BKPIMAGE_HAS_HOLE != 0 && bimg_info & compressed_mask != 0 {
                        // XLogRecordBlockCompressHeader: hole_length u16.
                        take(&mut at, 2)?;
                    }
                    payload = payload.checked_add(image_len)?;
                }
                if flags & BKPBLOCK_SAME_REL == 0 {
                    take(&mut at, REL_FILE_LOCATOR)?;
                }
                // BlockNumber.
                take(&mut at, 4)?;
            }
            _ => return None,
        }
    }
    let end = at.checked_add(payload)?.checked_add(main_len)?;
    if end != bytes.len() {
        return None;
    }
    bytes.get(end - main_len..)
}

#[cfg(test)]
mod tests;
