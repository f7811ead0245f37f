//! Names: LSNs, WAL file names, backup names and the classification of keys in `wal_005/`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// PostgreSQL's default WAL segment size (16 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// Folder of base backups under the storage root.
pub const BASEBACKUPS: &str = "basebackups_005";
/// Folder of WAL under the storage root.
pub const WAL: &str = "wal_005";
/// Suffix of a backup's completion marker.
pub const SENTINEL_SUFFIX: &str = "_backup_stop_sentinel.json";

/// A log sequence number. Displayed the way PostgreSQL prints it (`X/Y`, hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Lsn {
    /// Parses `X/Y` (hex, any zero padding) or a plain decimal number.
    pub fn parse(s: &str) -> Option<Lsn> {
        let s = s.trim();
        if let Some((hi, lo)) = s.split_once('/') {
            if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
                return None;
            }
            let hi = u64::from_str_radix(hi, 16).ok()?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            Some(Lsn((hi << 32) | lo))
        } else {
            s.parse::<u64>().ok().map(Lsn)
        }
    }
}

/// Segments per "xlog id" (the middle 8 hex digits of a WAL name).
pub fn segments_per_xlog_id(segsize: u64) -> u64 {
    0x1_0000_0000 / segsize.max(1)
}

/// Whether `segsize` is a size PostgreSQL allows (a power of two from 1 MiB to 1 GiB).
pub fn valid_segment_size(segsize: u64) -> bool {
    segsize.is_power_of_two() && (1 << 20..=1 << 30).contains(&segsize)
}

/// The 24-hex WAL file name of segment `segno` on timeline `tli`.
pub fn wal_file_name(tli: u32, segno: u64, segsize: u64) -> String {
    let per = segments_per_xlog_id(segsize);
    format!("{:08X}{:08X}{:08X}", tli, segno / per, segno % per)
}

/// Segment number holding `lsn`.
pub fn segment_of(lsn: u64, segsize: u64) -> u64 {
    lsn / segsize.max(1)
}

fn is_upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The value of up to 8 upper-case hex digits (as PostgreSQL writes WAL names); `None` for any other byte.
fn upper_hex_u32(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(v << 4 | u32::from(d))
    })
}

/// Parses a 24-hex WAL file name (upper case, as PostgreSQL writes it) into (timeline, segment number).
/// Returns `None` for anything else, including a low part that is out of range for `segsize`.
/// One pass over the name: a loaded index classifies every stored name, and a check then three
/// `from_str_radix` were a third of loading 300,000 objects.
pub fn parse_wal_file_name(s: &str, segsize: u64) -> Option<(u32, u64)> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let tli = upper_hex_u32(&b[0..8])?;
    let log = u64::from(upper_hex_u32(&b[8..16])?);
    let seg = u64::from(upper_hex_u32(&b[16..24])?);
    let per = segments_per_xlog_id(segsize);
    if seg >= per {
        return None;
    }
    Some((tli, log * per + seg))
}

/// A parsed backup name (`base_<24hex>[_D_<24hex>][_<8hex>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupName {
    /// Timeline the backup started on.
    pub timeline: u32,
    /// The 24-hex WAL file name of the start segment.
    pub start_wal: String,
    /// For a delta backup: the start segment name of its parent (`_D_<24hex>`).
    pub delta_parent_wal: Option<String>,
    /// WAL-E names only: the byte offset suffix.
    pub wale_offset: Option<u32>,
}

impl BackupName {
    /// Parses a backup name with wal-g's grammar. Returns `None` when it does not match exactly.
    pub fn parse(name: &str) -> Option<BackupName> {
        let rest = name.strip_prefix("base_")?;
        if rest.len() < 24 || !rest.is_char_boundary(24) {
            return None;
        }
        let (start, mut rest) = rest.split_at(24);
        if !is_upper_hex(start) {
            return None;
        }
        let mut delta = None;
        if let Some(r) = rest.strip_prefix("_D_") {
            if r.len() < 24 || !r.is_char_boundary(24) || !is_upper_hex(&r[..24]) {
                return None;
            }
            delta = Some(r[..24].to_string());
            rest = &r[24..];
        }
        let mut wale_offset = None;
        if !rest.is_empty() {
            let r = rest.strip_prefix('_')?;
            if r.len() != 8 || !is_upper_hex(r) {
                return None;
            }
            wale_offset = u32::from_str_radix(r, 16).ok();
        }
        if !rest.is_empty() && wale_offset.is_none() {
            return None;
        }
        let timeline = u32::from_str_radix(&start[0..8], 16).ok()?;
        Some(BackupName {
            timeline,
            start_wal: start.to_string(),
            delta_parent_wal: delta,
            wale_offset,
        })
    }

    /// Start segment number encoded in the name (needs the segment size).
    pub fn start_segment(&self, segsize: u64) -> Option<u64> {
        parse_wal_file_name(&self.start_wal, segsize).map(|(_, s)| s)
    }
}

/// How an object was compressed, from its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Lz4,
    Lzma,
    Zstd,
    Brotli,
    Gzip,
    /// WAL-E legacy; recognised but not decompressed by this crate.
    Lzo,
    /// No extension (`none` compression, current wal-g).
    None,
    /// A single trailing `.` (`none` compression, wal-g before 2026-05).
    LegacyDot,
}

impl Compression {
    /// File extension (without the dot); `""` for none.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Lzma => "lzma",
            Compression::Zstd => "zst",
            Compression::Brotli => "br",
            Compression::Gzip => "gz",
            Compression::Lzo => "lzo",
            Compression::None | Compression::LegacyDot => "",
        }
    }

    /// Appends this compression's extension to `base` the way wal-g does.
    pub fn key_for(self, base: &str) -> String {
        match self {
            Compression::None => base.to_string(),
            Compression::LegacyDot => format!("{base}."),
            c => format!("{base}.{}", c.extension()),
        }
    }

    /// Splits a file name into (base name, compression).
    pub fn split(file: &str) -> (&str, Compression) {
        const EXTS: [(&str, Compression); 6] = [
            (".lz4", Compression::Lz4),
            (".lzma", Compression::Lzma),
            (".zst", Compression::Zstd),
            (".br", Compression::Brotli),
            (".gz", Compression::Gzip),
            (".lzo", Compression::Lzo),
        ];
        for (ext, c) in EXTS {
            if let Some(base) = file.strip_suffix(ext) {
                return (base, c);
            }
        }
        if let Some(base) = file.strip_suffix('.') {
            return (base, Compression::LegacyDot);
        }
        (file, Compression::None)
    }
}

/// What kind of object a key in `wal_005/` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalKind {
    /// A WAL segment (`<24hex>`).
    Segment,
    /// A timeline history file (`<8hex>.history`).
    History,
    /// The last, incomplete segment of an old timeline (`<24hex>.partial`).
    Partial,
    /// A PostgreSQL backup history file (`<24hex>.<8hex>.backup`).
    BackupHistory,
    /// A wal-g WAL-delta map (`<24hex>_delta`).
    Delta,
    /// WAL metadata (`<23|24hex>.json`): not a segment, though wal-g's own tools count the 24-hex ones.
    Metadata,
    /// Anything else (including names that look almost right).
    Other,
}

/// A classified `wal_005/` file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalKey {
    pub kind: WalKind,
    /// Timeline (0 when unknown).
    pub tli: u32,
    /// Segment number (0 when not applicable).
    pub segno: u64,
    pub compression: Compression,
}

/// Classifies a file name found directly under `wal_005/`.
pub fn classify_wal_file(file: &str, segsize: u64) -> WalKey {
    let other = |c| WalKey {
        kind: WalKind::Other,
        tli: 0,
        segno: 0,
        compression: c,
    };
    // Sidecar metadata is never compressed.
    if let Some(base) = file.strip_suffix(".json") {
        if (base.len() == 24 || base.len() == 23) && is_upper_hex(base) {
            let tli = u32::from_str_radix(&base[..8], 16).unwrap_or(0);
            let segno = parse_wal_file_name(base, segsize).map(|x| x.1).unwrap_or(0);
            return WalKey {
                kind: WalKind::Metadata,
                tli,
                segno,
                compression: Compression::None,
            };
        }
        return other(Compression::None);
    }
    let (base, compression) = Compression::split(file);
    if let Some((tli, segno)) = parse_wal_file_name(base, segsize) {
        return WalKey {
            kind: WalKind::Segment,
            tli,
            segno,
            compression,
        };
    }
    if let Some(t) = base.strip_suffix(".history") {
        if t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(tli) = u32::from_str_radix(t, 16) {
                return WalKey {
                    kind: WalKind::History,
                    tli,
                    segno: 0,
                    compression,
                };
            }
        }
        return other(compression);
    }
    if let Some(p) = base.strip_suffix(".partial") {
        // `<24hex>.partial`, or the proposed `<24hex>-<8hex>.partial` (accepted leniently).
        let seg = match p.split_once('-') {
            Some((s, t)) if t.len() == 8 && is_upper_hex(t) => s,
            Some(_) => return other(compression),
            None => p,
        };
        if let Some((tli, segno)) = parse_wal_file_name(seg, segsize) {
            return WalKey {
                kind: WalKind::Partial,
                tli,
                segno,
                compression,
            };
        }
        return other(compression);
    }
    if let Some(p) = base.strip_suffix(".backup") {
        if p.len() == 33 && p.as_bytes()[24] == b'.' && is_upper_hex(&p[25..]) {
            if let Some((tli, segno)) = parse_wal_file_name(&p[..24], segsize) {
                return WalKey {
                    kind: WalKind::BackupHistory,
                    tli,
                    segno,
                    compression,
                };
            }
        }
        return other(compression);
    }
    if let Some(p) = base.strip_suffix("_delta") {
        if let Some((tli, segno)) = parse_wal_file_name(p, segsize) {
            return WalKey {
                kind: WalKind::Delta,
                tli,
                segno,
                compression,
            };
        }
    }
    other(compression)
}

#[cfg(test)]
mod tests {
    use super::*;
    const SEG: u64 = DEFAULT_SEGMENT_SIZE;

    #[test]
    fn lsn_display_and_parse() {
        assert_eq!(Lsn(3325915299880).to_string(), "306/60000028");
        assert_eq!(Lsn::parse("306/60000028"), Some(Lsn(3325915299880)));
        assert_eq!(Lsn::parse("0/090400000").map(|l| l.0), None); // 9 digits
        assert_eq!(Lsn::parse("0/90400000"), Some(Lsn(0x9040_0000)));
        assert_eq!(Lsn::parse("A/3F1C0000"), Some(Lsn(0xA_3F1C_0000)));
        assert_eq!(Lsn::parse("123"), Some(Lsn(123)));
        assert_eq!(Lsn::parse("x/1"), None);
        assert_eq!(Lsn::parse(""), None);
    }

    #[test]
    fn wal_names_round_trip() {
        let segno = 0x306 * 256 + 0x60;
        assert_eq!(wal_file_name(0x43, segno, SEG), "000000430000030600000060");
        assert_eq!(
            parse_wal_file_name("000000430000030600000060", SEG),
            Some((0x43, segno))
        );
        assert_eq!(segment_of(3325915299880, SEG), segno);
        // low part out of range for 16 MiB segments
        assert_eq!(parse_wal_file_name("000000010000000000000100", SEG), None);
        // but fine for 1 MiB segments
        assert!(parse_wal_file_name("000000010000000000000100", 1 << 20).is_some());
        assert_eq!(parse_wal_file_name("00000001000000000000001g", SEG), None);
        assert_eq!(parse_wal_file_name("00000001000000000000001a", SEG), None);
        assert_eq!(parse_wal_file_name("0000000100000000000001", SEG), None);
        // 24 bytes, not 24 hex digits.
        assert_eq!(parse_wal_file_name("é0000001000000000000001", SEG), None);
    }

    #[test]
    fn backup_names() {
        let b = BackupName::parse("base_000000010000000A00000025").unwrap();
        assert_eq!(b.timeline, 1);
        assert_eq!(b.start_segment(SEG), Some(0xA * 256 + 0x25));
        assert!(b.delta_parent_wal.is_none());
        let d =
            BackupName::parse("base_000000010000000A00000040_D_000000010000000A00000025").unwrap();
        assert_eq!(
            d.delta_parent_wal.as_deref(),
            Some("000000010000000A00000025")
        );
        let w = BackupName::parse("base_000000010000DD170000000C_00743784").unwrap();
        assert_eq!(w.wale_offset, Some(0x743784));
        for bad in [
            "base_000000010000000A0000002",
            "base_000000010000000a00000025",
            "base_000000010000000A00000025_D_",
            "base_000000010000000A00000025_D_000000010000000A0000002",
            "base_000000010000000A00000025_xyz",
            "base_000000010000000A00000025_0074378",
            "bas_000000010000000A00000025",
            "base_ééééééééééééééééééééééé",
            "",
        ] {
            assert!(BackupName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn classify_every_kind() {
        let c = |s| classify_wal_file(s, SEG);
        let k = c("000000010000000A00000025.lz4");
        assert_eq!(
            (k.kind, k.tli, k.segno, k.compression),
            (WalKind::Segment, 1, 0xA25, Compression::Lz4)
        );
        assert_eq!(
            c("000000010000000A00000025.zst").compression,
            Compression::Zstd
        );
        assert_eq!(
            c("000000010000000A00000025.br").compression,
            Compression::Brotli
        );
        assert_eq!(
            c("000000010000000A00000025.lzma").compression,
            Compression::Lzma
        );
        assert_eq!(
            c("000000010000000A00000025.gz").compression,
            Compression::Gzip
        );
        assert_eq!(c("000000010000000A00000025").compression, Compression::None);
        let d = c("000000010000000A00000025.");
        assert_eq!(
            (d.kind, d.compression),
            (WalKind::Segment, Compression::LegacyDot)
        );
        let h = c("00000002.history.lz4");
        assert_eq!((h.kind, h.tli), (WalKind::History, 2));
        assert_eq!(c("0000000A.history").kind, WalKind::History);
        assert_eq!(
            c("000000010000000A0000003F.partial.lz4").kind,
            WalKind::Partial
        );
        assert_eq!(
            c("000000010000000A0000003F-00000002.partial").kind,
            WalKind::Partial
        );
        assert_eq!(
            c("000000010000000A00000025.00000028.backup.br").kind,
            WalKind::BackupHistory
        );
        assert_eq!(c("000000010000000A00000020_delta.lz4").kind, WalKind::Delta);
        assert_eq!(c("000000010000000A00000025.json").kind, WalKind::Metadata);
        assert_eq!(c("000000010000000A0000002.json").kind, WalKind::Metadata);
        for other in [
            "000000010000000A00000100.lz4",
            "000000010000000a00000025.lz4",
            "00000001000000A00000025.lz4",
            "README",
            "0000002.history",
            "000000010000000A00000025.00000028.backupx",
            "x.json",
            "",
        ] {
            assert_eq!(c(other).kind, WalKind::Other, "{other}");
        }
    }
}
