//! The stored form of the `wal_005/` listing: blocks of [`BLOCK`] consecutive objects (in name order), each one
//! row of `backup_index_wal_blocks` with a compact binary body. A bucket of 300,000 objects is 293 rows instead
//! of 300,000, so loading it is one pass over a few megabytes instead of 300,000 rows copied through sqlx.
//!
//! Block `k` holds objects `k * BLOCK ..` of the sorted list: appending WAL changes only the last block and
//! adds new ones; a deletion (retention, found by a full build) shifts and rewrites the blocks after it.
//!
//! Body (version [`FORMAT`]): the format byte, the object count, then per object: the length of the prefix it
//! shares with the previous name (in this block), the rest of its name (length, bytes), its size, and its
//! LastModified as the difference from the previous one's (zigzag); every integer a LEB128 varint. WAL names
//! share their first 16 to 22 characters, and uploads are seconds apart, so an object takes about 10 bytes.
//!
//! Invariants: [`decode`] accepts only what [`encode`] writes (format, count, lengths, UTF-8, names strictly
//! increasing across blocks, no trailing bytes) and says what is wrong otherwise.

use walg::index::WalObject;
use walg::names::classify_wal_file;

/// Objects per block.
pub(super) const BLOCK: usize = 1_024;
/// The first byte of every body (the table's CHECK holds it too).
pub(super) const FORMAT: u8 = 1;

/// The body of one block (`objects` sorted by name, 1 to [`BLOCK`] of them).
pub(super) fn encode(objects: &[WalObject]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + objects.len() * 12);
    out.push(FORMAT);
    put(&mut out, objects.len() as u64);
    let (mut prev, mut prev_ms) = ("", 0i64);
    for w in objects {
        let shared = prev
            .bytes()
            .zip(w.name.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let rest = &w.name.as_bytes()[shared..];
        put(&mut out, shared as u64);
        put(&mut out, rest.len() as u64);
        out.extend_from_slice(rest);
        put(&mut out, w.size);
        put(&mut out, zigzag(w.modified_ms.wrapping_sub(prev_ms)));
        (prev, prev_ms) = (&w.name, w.modified_ms);
    }
    out
}

/// Decodes one block into `into`, whose last object (from the previous block) every name must sort after;
/// `expected` is the count its row states.
pub(super) fn decode(
    body: &[u8],
    expected: usize,
    segment_size: u64,
    into: &mut Vec<WalObject>,
) -> Result<(), String> {
    let mut r = Bytes { body, at: 0 };
    match r.byte() {
        Some(FORMAT) => {}
        Some(other) => return Err(format!("format {other}, expected {FORMAT}")),
        None => return Err("empty".to_string()),
    }
    let count = r.int()?;
    if count != expected as u64 || count == 0 || count > BLOCK as u64 {
        return Err(format!(
            "{count} objects where the row says {expected} (1 to {BLOCK})"
        ));
    }
    let mut name = Vec::new();
    let mut prev_ms = 0i64;
    for _ in 0..count {
        let shared = usize::try_from(r.int()?).map_err(|_| "a prefix too long")?;
        let len = usize::try_from(r.int()?).map_err(|_| "a name too long")?;
        if shared > name.len() {
            return Err(format!("a shared prefix of {shared} bytes is too long"));
        }
        name.truncate(shared);
        name.extend_from_slice(r.take(len)?);
        let size = r.int()?;
        let modified_ms = prev_ms.wrapping_add(unzigzag(r.int()?));
        prev_ms = modified_ms;
        let text = std::str::from_utf8(&name).map_err(|_| "a name is not UTF-8".to_string())?;
        if text.is_empty() {
            return Err("an empty name".to_string());
        }
        if into.last().is_some_and(|last| last.name.as_str() >= text) {
            return Err(format!("the WAL object {text} is out of order"));
        }
        into.push(WalObject {
            key: classify_wal_file(text, segment_size),
            name: text.to_string(),
            size,
            modified_ms,
        });
    }
    if r.at != body.len() {
        return Err(format!("{} bytes after the last object", body.len() - r.at));
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Bytes<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.body.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn int(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte().ok_or("cut short")?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("an integer longer than 64 bits".to_string())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.body.len())
            .ok_or("cut short")?;
        let slice = &self.body[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, size: u64, modified_ms: i64) -> WalObject {
        WalObject {
            name: name.to_string(),
            size,
            modified_ms,
            key: classify_wal_file(name, 16 << 20),
        }
    }

    fn sample() -> Vec<WalObject> {
        vec![
            object("00000001.history.lz4", 40, 5),
            object("000000010000000000000001.lz4", 0, 1_700_000_000_000),
            object("000000010000000000000002.lz4", u64::MAX, -3),
            object("000000010000000000000002.lz4.partial", 7, i64::MAX),
            object("garbage-é", 1, i64::MIN),
        ]
    }

    #[test]
    fn blocks_round_trip_with_their_order_across_blocks() {
        let objects = sample();
        let mut out = Vec::new();
        decode(&encode(&objects[..2]), 2, 16 << 20, &mut out).unwrap();
        decode(&encode(&objects[2..]), 3, 16 << 20, &mut out).unwrap();
        assert_eq!(out, objects);
        // The second block again: its names no longer sort after the last one read.
        let err = decode(&encode(&objects[2..]), 3, 16 << 20, &mut out).unwrap_err();
        assert!(err.contains("out of order"), "{err}");
    }

    #[test]
    fn damaged_bodies_are_refused_with_a_reason() {
        let body = encode(&sample());
        let decode_fresh = |b: &[u8], n: usize| decode(b, n, 16 << 20, &mut Vec::new());
        assert!(decode_fresh(&body, 5).is_ok());
        assert!(decode_fresh(&body, 4).unwrap_err().contains("row says 4"));
        assert!(decode_fresh(&body[..body.len() - 1], 5)
            .unwrap_err()
            .contains("cut short"));
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_fresh(&longer, 5)
            .unwrap_err()
            .contains("after the last"));
        let mut other = body.clone();
        other[0] = 2;
        assert!(decode_fresh(&other, 5).unwrap_err().contains("format 2"));
        assert!(decode_fresh(&[], 5).unwrap_err().contains("empty"));
        // The first object claims a prefix shared with nothing.
        let mut prefixed = body;
        prefixed[2] = 3;
        assert!(decode_fresh(&prefixed, 5).unwrap_err().contains("prefix"));
    }
}
