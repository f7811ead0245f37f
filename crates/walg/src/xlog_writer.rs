//! Writes WAL segments the way PostgreSQL lays them out (for tests and benchmarks of [`crate::xlog`]): page
//! headers (long at a segment start, `XLP_FIRST_IS_CONTRECORD` and `xlp_rem_len` on continuation pages), records
//! MAXALIGNed, split across pages, chained by `xl_prev`, with their CRC-32C.

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const PG15_MAGIC: u16 = 0xD110;

/// A block reference to put in a record (only its shape matters to the reader).
#[derive(Debug, Clone, Default)]
pub struct Block {
    pub data: Vec<u8>,
    /// A full-page image (its bytes) and whether it is compressed with a hole (adds the compress header).
    pub image: Option<(Vec<u8>, bool)>,
    pub same_rel: bool,
}

/// Builds the bytes of WAL starting at `start_lsn` (a segment boundary).
pub struct WalWriter {
    pub segment_size: u64,
    pub page_size: u64,
    pub start_lsn: u64,
    pub magic: u16,
    pub tli: u32,
    pub buf: Vec<u8>,
    /// Where the previous record starts (`xl_prev` of the next).
    pub prev: u64,
}

static CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

impl WalWriter {
    pub fn new(segment_size: u64, start_lsn: u64) -> WalWriter {
        WalWriter {
            segment_size,
            page_size: 8192,
            start_lsn,
            magic: PG15_MAGIC,
            tli: 1,
            buf: Vec::new(),
            prev: start_lsn.saturating_sub(64),
        }
    }

    /// The LSN the next byte is written at.
    pub fn lsn(&self) -> u64 {
        self.start_lsn + self.buf.len() as u64
    }

    fn page_header(&mut self, rem_len: u32) {
        let lsn = self.lsn();
        let long = lsn.is_multiple_of(self.segment_size);
        let mut info: u16 = if long { 0x0002 } else { 0 };
        if rem_len > 0 {
            info |= 0x0001;
        }
        self.buf.extend_from_slice(&self.magic.to_le_bytes());
        self.buf.extend_from_slice(&info.to_le_bytes());
        self.buf.extend_from_slice(&self.tli.to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        self.buf.extend_from_slice(&rem_len.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        if long {
            self.buf.extend_from_slice(&7u64.to_le_bytes()); // system identifier
            self.buf
                .extend_from_slice(&(self.segment_size as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&(self.page_size as u32).to_le_bytes());
        }
    }

    /// Writes `bytes` that continue a record, starting page headers as pages fill; `rem` is what is left of the
    /// record including `bytes`.
    fn put(&mut self, bytes: &[u8], mut rem: u32) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.lsn().is_multiple_of(self.page_size) {
                self.page_header(rem);
            }
            let room = (self.page_size - self.lsn() % self.page_size) as usize;
            let n = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            rem -= n as u32;
        }
    }

    /// Pads with zeros to the next MAXALIGN boundary.
    fn align(&mut self) {
        while !self.lsn().is_multiple_of(8) {
            self.buf.push(0);
        }
    }

    /// The bytes of one record (header with CRC, block headers, block payloads, main data).
    pub fn record_bytes(
        &self,
        rmid: u8,
        info: u8,
        xid: u32,
        blocks: &[Block],
        main: &[u8],
    ) -> Vec<u8> {
        let mut headers = Vec::new();
        let mut payload = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let mut flags = 0u8;
            if !b.data.is_empty() {
                flags |= 0x20;
            }
            if b.image.is_some() {
                flags |= 0x10;
            }
            if b.same_rel {
                flags |= 0x80;
            }
            headers.push(i as u8);
            headers.push(flags);
            headers.extend_from_slice(&(b.data.len() as u16).to_le_bytes());
            if let Some((img, compressed_hole)) = &b.image {
                headers.extend_from_slice(&(img.len() as u16).to_le_bytes());
                headers.extend_from_slice(&0u16.to_le_bytes());
                let info: u8 = if *compressed_hole { 0x01 | 0x04 } else { 0x02 };
                headers.push(info);
                if *compressed_hole {
                    headers.extend_from_slice(&100u16.to_le_bytes());
                }
                payload.extend_from_slice(img);
            }
            if !b.same_rel {
                headers.extend_from_slice(&[1; 12]);
            }
            headers.extend_from_slice(&(i as u32).to_le_bytes());
            payload.extend_from_slice(&b.data);
        }
        if main.len() <= 255 {
            headers.push(255);
            headers.push(main.len() as u8);
        } else {
            headers.push(254);
            headers.extend_from_slice(&(main.len() as u32).to_le_bytes());
        }
        let tot = 24 + headers.len() + payload.len() + main.len();
        let mut rec = Vec::with_capacity(tot);
        rec.extend_from_slice(&(tot as u32).to_le_bytes());
        rec.extend_from_slice(&xid.to_le_bytes());
        rec.extend_from_slice(&self.prev.to_le_bytes());
        rec.push(info);
        rec.push(rmid);
        rec.extend_from_slice(&[0, 0]);
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&headers);
        rec.extend_from_slice(&payload);
        rec.extend_from_slice(main);
        let mut d = CRC32C.digest();
        d.update(&rec[24..]);
        d.update(&rec[..20]);
        let crc = d.finalize();
        rec[20..24].copy_from_slice(&crc.to_le_bytes());
        rec
    }

    /// Appends a record; returns its LSN.
    pub fn record(&mut self, rmid: u8, info: u8, xid: u32, blocks: &[Block], main: &[u8]) -> u64 {
        self.align();
        if self.lsn().is_multiple_of(self.page_size) {
            self.page_header(0);
        }
        let lsn = self.lsn();
        let rec = self.record_bytes(rmid, info, xid, blocks, main);
        self.put(&rec, rec.len() as u32);
        self.prev = lsn;
        lsn
    }

    /// Appends a commit record (`xl_xact_commit` with `xact_time`, plus `extra` main data); returns its LSN.
    pub fn commit(&mut self, xid: u32, xact_time_us: i64, extra: &[u8]) -> u64 {
        let mut main = xact_time_us.to_le_bytes().to_vec();
        main.extend_from_slice(extra);
        self.record(1, 0x00, xid, &[], &main)
    }

    /// Appends an abort record; returns its LSN.
    pub fn abort(&mut self, xid: u32, xact_time_us: i64) -> u64 {
        self.record(1, 0x20, xid, &[], &xact_time_us.to_le_bytes())
    }

    /// Appends a heap-like record (rmgr 10) with one block reference holding `data`.
    pub fn heap(&mut self, xid: u32, data: &[u8]) -> u64 {
        let block = Block {
            data: data.to_vec(),
            image: None,
            same_rel: false,
        };
        self.record(10, 0x00, xid, &[block], &[0; 3])
    }

    /// Zero-fills to the end of the current segment (what a segment's unused tail looks like after a switch).
    pub fn finish_segment(&mut self) {
        while !self.lsn().is_multiple_of(self.segment_size) {
            self.buf.push(0);
        }
    }
}
