//! Segment files: the append-only unit of storage of one log stream.
//!
//! A segment `<id:016x>.seg` is a sequence of records, each
//!
//! ```text
//! u32 body length (LE) | u32 CRC-32 of the body (LE) | body = i64 timestamp | i64 ingestion time | message (UTF-8)
//! ```
//!
//! appended in timestamp order (the stream rolls to a new segment rather than append an event older
//! than the segment's newest one), so a segment is a sorted run and a sparse in-memory index of
//! `(first timestamp of block, offset)` every [`INDEX_EVERY`] bytes finds the start of any time range
//! with a binary search. When a segment is sealed its summary and index are written to a sidecar
//! `<id:016x>.idx`, so opening the store does not re-read sealed data. A segment without a valid
//! sidecar (the active one at a crash) is scanned on open and truncated after its last intact record.

use crate::error::LogError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Record header: body length + CRC.
pub(crate) const HEADER: usize = 8;
/// Fixed part of a record body: timestamp + ingestion time.
pub(crate) const FIXED: usize = 16;
/// One sparse-index entry per this many bytes of segment data.
pub(crate) const INDEX_EVERY: u64 = 16 * 1024;
/// A segment is sealed once it grows past this size.
pub(crate) const SEGMENT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Largest record body accepted when reading (a corrupt length beyond this ends the scan).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Read granularity of the sequential scanner.
const READ_CHUNK: usize = 64 * 1024;
const IDX_MAGIC: &[u8; 8] = b"BERTHIX1";

/// CRC-32 (IEEE), table-driven.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for b in data {
        c = TABLE[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Appends one encoded record to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, ts: i64, ingest: i64, msg: &[u8]) {
    let body_len = FIXED + msg.len();
    let start = buf.len();
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&ts.to_le_bytes());
    buf.extend_from_slice(&ingest.to_le_bytes());
    buf.extend_from_slice(msg);
    let crc = crc32(&buf[start + HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encoded size of a record with a message of `msg_len` bytes.
pub(crate) fn record_len(msg_len: usize) -> u64 {
    (HEADER + FIXED + msg_len) as u64
}

/// One decoded record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub ts: i64,
    pub ingest: i64,
    pub offset: u64,
    pub message: String,
}

/// What is known about a segment without reading it.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of intact records (readers never look past this).
    pub len: u64,
    pub count: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub max_ingest: i64,
    /// `(timestamp of the first record of the block, block offset)`, ascending in both.
    pub index: Vec<(i64, u64)>,
}

pub(crate) fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

pub(crate) fn idx_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.idx"))
}

/// Parses `<hex>.seg` file names.
pub(crate) fn parse_seg_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Segment {
    /// Creates an empty segment file.
    pub fn create(dir: &Path, id: u64) -> Result<Segment, LogError> {
        let path = seg_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        Ok(Segment {
            id,
            path,
            file: Arc::new(file),
            len: 0,
            count: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            max_ingest: i64::MIN,
            index: Vec::new(),
        })
    }

    /// Opens an existing segment: from its sidecar index if valid, else by scanning (and truncating
    /// a torn tail). Returns the segment and whether it was sealed (had a valid sidecar).
    pub fn open(dir: &Path, id: u64) -> Result<(Segment, bool), LogError> {
        let path = seg_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut seg = Segment {
            id,
            path: path.clone(),
            file: Arc::new(file),
            len: 0,
            count: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            max_ingest: i64::MIN,
            index: Vec::new(),
        };
        if let Some(()) = seg.load_index(&idx_path(dir, id), file_len) {
            return Ok((seg, true));
        }
        // Scan: rebuild summary and index; stop at the first damaged record.
        let mut scanner = Scanner::new(seg.file.clone(), 0, file_len);
        let mut next_index_at = 0u64;
        while let Some(r) = scanner.next_record() {
            let end = scanner.pos;
            if r.offset >= next_index_at {
                seg.index.push((r.ts, r.offset));
                next_index_at = r.offset + INDEX_EVERY;
            }
            seg.count += 1;
            seg.min_ts = seg.min_ts.min(r.ts);
            seg.max_ts = seg.max_ts.max(r.ts);
            seg.max_ingest = seg.max_ingest.max(r.ingest);
            seg.len = end;
        }
        if seg.len < file_len {
            tracing::warn!(segment = %path.display(), intact = seg.len, file_len, "truncating a torn log segment tail");
            seg.file
                .set_len(seg.len)
                .map_err(|e| LogError::io(&path, e))?;
        }
        Ok((seg, false))
    }

    fn load_index(&mut self, idx: &Path, file_len: u64) -> Option<()> {
        let data = std::fs::read(idx).ok()?;
        if data.len() < 8 + 40 + 4 || &data[..8] != IDX_MAGIC {
            return None;
        }
        let (body, crc) = data.split_at(data.len() - 4);
        if crc32(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rd = |i: usize| -> Option<[u8; 8]> { body.get(i..i + 8)?.try_into().ok() };
        let len = u64::from_le_bytes(rd(8)?);
        let count = u64::from_le_bytes(rd(16)?);
        let min_ts = i64::from_le_bytes(rd(24)?);
        let max_ts = i64::from_le_bytes(rd(32)?);
        let max_ingest = i64::from_le_bytes(rd(40)?);
        if len != file_len {
            return None;
        }
        let rest = &body[48..];
        if rest.len() % 16 != 0 {
            return None;
        }
        let index = rest
            .chunks_exact(16)
            .map(|c| {
                let ts = i64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
                let off = u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]));
                (ts, off)
            })
            .collect();
        self.len = len;
        self.count = count;
        self.min_ts = min_ts;
        self.max_ts = max_ts;
        self.max_ingest = max_ingest;
        self.index = index;
        Some(())
    }

    /// Fsyncs the data and writes the sidecar index (atomically: temp file + rename).
    pub fn seal(&self, dir: &Path) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io(&self.path, e))?;
        let mut body = Vec::with_capacity(48 + self.index.len() * 16 + 4);
        body.extend_from_slice(IDX_MAGIC);
        body.extend_from_slice(&self.len.to_le_bytes());
        body.extend_from_slice(&self.count.to_le_bytes());
        body.extend_from_slice(&self.min_ts.to_le_bytes());
        body.extend_from_slice(&self.max_ts.to_le_bytes());
        body.extend_from_slice(&self.max_ingest.to_le_bytes());
        for (ts, off) in &self.index {
            body.extend_from_slice(&ts.to_le_bytes());
            body.extend_from_slice(&off.to_le_bytes());
        }
        let crc = crc32(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let path = idx_path(dir, self.id);
        let tmp = path.with_extension("idx.tmp");
        let mut f = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
        f.write_all(&body).map_err(|e| LogError::io(&tmp, e))?;
        f.sync_data().map_err(|e| LogError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
        Ok(())
    }

    /// Appends already-encoded records (`buf`) whose timestamps/ingestion/offsets are in `entries`
    /// (`(ts, offset within buf)`), ascending. One `pwrite`, no fsync (the store batches those).
    pub fn append(
        &mut self,
        buf: &[u8],
        entries: &[(i64, u64)],
        ingest: i64,
    ) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(buf, self.len)
            .map_err(|e| LogError::io(&self.path, e))?;
        let base = self.len;
        let mut next_index_at = self
            .index
            .last()
            .map(|(_, off)| off + INDEX_EVERY)
            .unwrap_or(0);
        for &(ts, off) in entries {
            let abs = base + off;
            if abs >= next_index_at {
                self.index.push((ts, abs));
                next_index_at = abs + INDEX_EVERY;
            }
            self.min_ts = self.min_ts.min(ts);
            self.max_ts = self.max_ts.max(ts);
        }
        self.count += entries.len() as u64;
        self.max_ingest = self.max_ingest.max(ingest);
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Offset to start a forward scan for records with `ts >= lo`: the start of the last block
    /// whose first timestamp is `< lo` (records before it are all older).
    pub fn seek_forward(&self, lo: i64) -> u64 {
        let i = self.index.partition_point(|(ts, _)| *ts < lo);
        if i == 0 {
            0
        } else {
            self.index[i - 1].1
        }
    }

    /// Block boundaries `[start, end)` of block `i` of the sparse index.
    pub fn block(&self, i: usize) -> (u64, u64) {
        let start = self.index.get(i).map(|e| e.1).unwrap_or(self.len);
        let end = self.index.get(i + 1).map(|e| e.1).unwrap_or(self.len);
        (start, end)
    }

    /// The last block that can hold records with `ts <= hi` (blocks after it start later).
    pub fn last_block_upto(&self, hi: i64) -> Option<usize> {
        let i = self.index.partition_point(|(ts, _)| *ts <= hi);
        i.checked_sub(1)
    }

    /// All records of `[start, end)`.
    pub fn read_range(&self, start: u64, end: u64) -> Vec<Record> {
        let mut s = Scanner::new(self.file.clone(), start, end);
        let mut out = Vec::new();
        while let Some(r) = s.next_record() {
            out.push(r);
        }
        out
    }
}

/// Sequential reader over `[pos, end)` of a segment, buffered in [`READ_CHUNK`]s.
pub(crate) struct Scanner {
    file: Arc<File>,
    pub pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
    /// Bytes read from disk so far (for scan budgets).
    pub bytes_read: u64,
}

impl Scanner {
    pub fn new(file: Arc<File>, pos: u64, end: u64) -> Scanner {
        Scanner {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_start: pos,
            bytes_read: 0,
        }
    }

    /// Makes `[pos, pos+n)` available in the buffer; false at the end or on an I/O error.
    fn fill(&mut self, n: usize) -> bool {
        if self.pos + n as u64 > self.end {
            return false;
        }
        let have_from = self.pos - self.buf_start;
        if self.pos >= self.buf_start && have_from as usize + n <= self.buf.len() {
            return true;
        }
        let want = n.max(READ_CHUNK).min((self.end - self.pos) as usize);
        self.buf.resize(want, 0);
        self.buf_start = self.pos;
        match self.file.read_exact_at(&mut self.buf, self.pos) {
            Ok(()) => {
                self.bytes_read += want as u64;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "log segment read failed");
                self.buf.clear();
                false
            }
        }
    }

    /// The next intact record, or `None` at the end / at the first damaged record.
    pub fn next_record(&mut self) -> Option<Record> {
        if !self.fill(HEADER) {
            return None;
        }
        let at = (self.pos - self.buf_start) as usize;
        let body_len = u32::from_le_bytes(self.buf[at..at + 4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(self.buf[at + 4..at + 8].try_into().ok()?);
        if !(FIXED..=MAX_BODY).contains(&body_len) || !self.fill(HEADER + body_len) {
            return None;
        }
        let at = (self.pos - self.buf_start) as usize;
        let body = &self.buf[at + HEADER..at + HEADER + body_len];
        if crc32(body) != crc {
            return None;
        }
        let ts = i64::from_le_bytes(body[..8].try_into().ok()?);
        let ingest = i64::from_le_bytes(body[8..16].try_into().ok()?);
        let message = String::from_utf8_lossy(&body[16..]).into_owned();
        let offset = self.pos;
        self.pos += (HEADER + body_len) as u64;
        Some(Record {
            ts,
            ingest,
            offset,
            message,
        })
    }
}
