//! Sequential reading from any record boundary, across segments. At the end of the newest
//! segment a partial frame is a write in progress, not corruption: the reader stops there.
use crate::error::{JournalError, io};
use crate::record::{Decoded, HEADER_LEN, MAX_RECORD_LEN};
use crate::segment;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    /// The offset just after this record: what to acknowledge once it is delivered.
    pub end: u64,
    pub payload: Vec<u8>,
}

pub struct Reader {
    dir: PathBuf,
    /// Offset of the next record to return.
    next: u64,
    current: Option<(u64, PathBuf, File)>,
}

impl Reader {
    /// A reader positioned at `from`; if segments before it were deleted it starts at the oldest
    /// remaining record.
    pub fn open(dir: &Path, from: u64) -> Result<Self, JournalError> {
        let mut reader = Self {
            dir: dir.to_path_buf(),
            next: from,
            current: None,
        };
        if let Some((base, _)) = segment::list(dir)?.first()
            && *base > from
        {
            reader.next = *base;
        }
        Ok(reader)
    }

    /// The offset of the next record this reader will return.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next record, or `None` at the current end of the journal (call again later to see
    /// records appended since).
    pub fn next_record(&mut self) -> Result<Option<Record>, JournalError> {
        loop {
            let segments = match &self.current {
                Some(_) => None,
                None => Some(segment::list(&self.dir)?),
            };
            if let Some(segments) = segments {
                let Some((base, path)) = segments
                    .iter()
                    .rev()
                    .find(|(base, _)| *base <= self.next)
                    .cloned()
                else {
                    return Ok(None);
                };
                let mut file = File::open(&path).map_err(io(&path))?;
                file.seek(SeekFrom::Start(self.next - base))
                    .map_err(io(&path))?;
                self.current = Some((base, path, file));
            }
            let Some((base, path, file)) = self.current.as_mut() else {
                return Ok(None);
            };
            match read_frame(file, path)? {
                Some(payload) => {
                    let offset = self.next;
                    self.next += (HEADER_LEN + payload.len()) as u64;
                    return Ok(Some(Record {
                        offset,
                        end: self.next,
                        payload,
                    }));
                }
                None => {
                    // End of this segment's bytes. If the writer rotated, the next segment
                    // starts exactly here: continue there. A later segment starting anywhere
                    // else means this sealed segment is damaged. No later segment: live tail.
                    let here = self.next;
                    let later = segment::list(&self.dir)?
                        .into_iter()
                        .find(|(b, _)| *b > *base)
                        .map(|(b, _)| b);
                    match later {
                        Some(next_base) if next_base == here => {
                            self.current = None;
                            continue;
                        }
                        Some(_) => {
                            return Err(JournalError::Corrupt {
                                path: path.clone(),
                                offset: here,
                            });
                        }
                        None => {}
                    }
                    // Rewind to the record boundary so a later call re-reads a frame that was
                    // only partly written.
                    file.seek(SeekFrom::Start(here - *base))
                        .map_err(io(&*path))?;
                    return Ok(None);
                }
            }
        }
    }

    /// Reads every remaining record.
    pub fn read_all(dir: &Path) -> Result<Vec<Record>, JournalError> {
        let mut reader = Self::open(dir, 0)?;
        let mut out = Vec::new();
        while let Some(rec) = reader.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }
}

/// Reads one frame at the file's position; `None` if the bytes end (wholly or mid-frame).
fn read_frame(file: &mut File, path: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    let mut header = [0u8; HEADER_LEN];
    if !read_full(file, &mut header, path)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_RECORD_LEN {
        return Ok(None);
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + len);
    frame.extend_from_slice(&header);
    frame.resize(HEADER_LEN + len, 0);
    if !read_full(file, &mut frame[HEADER_LEN..], path)? {
        return Ok(None);
    }
    match crate::record::decode(&frame) {
        Decoded::Record(payload, _) => Ok(Some(payload.to_vec())),
        Decoded::End | Decoded::Bad => Ok(None),
    }
}

/// Fills `buf`; false if the file ended first.
fn read_full(file: &mut File, buf: &mut [u8], path: &Path) -> Result<bool, JournalError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).map_err(io(path))?;
        if n == 0 {
            return Ok(false);
        }
        filled += n;
    }
    Ok(true)
}
