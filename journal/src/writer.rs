//! The journal writer. Appends are one `writev` of a whole frame into the active segment (so a
//! killed process loses nothing it acknowledged); fsync follows the configured policy, with
//! group commit so concurrent `Always` appenders share one `fdatasync`.
use crate::error::{JournalError, io};
use crate::record::{self, Decoded, MAX_RECORD_LEN};
use crate::{ack, segment};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// When appended records are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append returns only after its record is synced (group commit).
    Always,
    /// A background thread syncs at this interval; a process crash loses nothing, a power
    /// loss at most one interval.
    Interval(Duration),
    /// Leave it to the kernel.
    Never,
}

#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Rotate to a new segment once the active one reaches this size.
    pub max_segment_bytes: u64,
    /// Refuse appends (fail closed) once this many bytes are unacknowledged.
    pub max_unacked_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            max_segment_bytes: 64 << 20,
            max_unacked_bytes: 10 << 30,
            fsync: FsyncPolicy::Interval(Duration::from_millis(200)),
        }
    }
}

/// What opening the journal found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the last segment because they were not a whole valid record.
    pub truncated_bytes: u64,
    /// Whole records found in the last segment.
    pub tail_records: u64,
    /// The end offset after recovery: where the next record goes.
    pub end_offset: u64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub offset: u64,
    /// The offset just after the record.
    pub end: u64,
}

struct Active {
    file: File,
    path: PathBuf,
    base: u64,
    len: u64,
}

/// Free space `is_disk_full` wants before it reports the disk usable again.
const SPACE_PROBE_BYTES: usize = 64 << 10;

pub struct Journal {
    dir: PathBuf,
    opts: JournalOptions,
    active: Mutex<Active>,
    end: AtomicU64,
    synced: AtomicU64,
    sync_lock: Mutex<()>,
    acked: AtomicU64,
    poisoned: AtomicBool,
    /// The last append was refused for the unacknowledged-bytes bound.
    full: AtomicBool,
    /// The last append failed for lack of space on the journal's filesystem.
    disk_full: AtomicBool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("end", &self.end_offset())
            .field("acked", &self.acked_offset())
            .finish()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovering a torn tail.
    pub fn open(dir: &Path, opts: JournalOptions) -> Result<(Arc<Self>, Recovery), JournalError> {
        {
            use std::os::unix::fs::DirBuilderExt;
            // Owner-only when the journal creates its directory (an existing one is kept).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        let acked = ack::load(dir)?;
        let segments = segment::list(dir)?;
        let (active, recovery) = match segments.last() {
            Some((base, path)) => recover(path, *base)?,
            None => {
                // An empty journal starts where the acknowledged offset says, so offsets never
                // go backwards for a shipper that deleted everything it shipped.
                let path = segment::path(dir, acked);
                let file = create_segment(&path)?;
                let active = Active {
                    file,
                    path,
                    base: acked,
                    len: 0,
                };
                let rec = Recovery {
                    truncated_bytes: 0,
                    tail_records: 0,
                    end_offset: acked,
                };
                (active, rec)
            }
        };
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                truncated_bytes = recovery.truncated_bytes,
                "journal recovered a torn tail"
            );
        }
        let end = active.base + active.len;
        let journal = Arc::new(Self {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            active: Mutex::new(active),
            end: AtomicU64::new(end),
            synced: AtomicU64::new(end),
            sync_lock: Mutex::new(()),
            acked: AtomicU64::new(acked.min(end)),
            poisoned: AtomicBool::new(false),
            full: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
        });
        if let FsyncPolicy::Interval(every) = opts.fsync {
            spawn_syncer(Arc::downgrade(&journal), every);
        }
        Ok((journal, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offset the next record will get.
    pub fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Everything before this offset has been acknowledged by the consumer.
    pub fn acked_offset(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    pub fn unacked_bytes(&self) -> u64 {
        self.end_offset().saturating_sub(self.acked_offset())
    }

    /// True while appends are refused for the unacknowledged-bytes bound (until an append fits
    /// again, which an acknowledgement makes possible).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// True while the journal's filesystem has no room for records: set when an append fails
    /// with ENOSPC; while set, each call checks whether space came back (a probe file the size
    /// of a large record), so readiness recovers even when no request arrives to retry.
    pub fn is_disk_full(&self) -> bool {
        if !self.disk_full.load(Ordering::Acquire) {
            return false;
        }
        let probe = self.dir.join(".space-probe");
        let fits = std::fs::write(&probe, vec![0u8; SPACE_PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&probe);
        if fits {
            self.disk_full.store(false, Ordering::Release);
        }
        !fits
    }

    /// True once a write failed in a way that could not be undone; every append then fails.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Appends one record. It is in the file (safe from a process crash) when this returns, and
    /// on stable storage too under `FsyncPolicy::Always`.
    pub fn append(&self, payload: &[u8]) -> Result<Appended, JournalError> {
        let appended = self.append_unsynced(payload)?;
        self.make_durable(appended)?;
        Ok(appended)
    }

    /// Applies the fsync policy to an appended record: under `Always` this waits for (or joins)
    /// an `fdatasync` covering it. Split from the write so callers can order writes under
    /// their own lock and sync outside it.
    pub fn make_durable(&self, appended: Appended) -> Result<(), JournalError> {
        if self.opts.fsync == FsyncPolicy::Always {
            self.sync_to(appended.end)?;
        }
        Ok(())
    }

    /// Whether `make_durable` blocks on the disk (so async callers can move it off the reactor).
    pub fn syncs_on_append(&self) -> bool {
        self.opts.fsync == FsyncPolicy::Always
    }

    /// Writes one record without applying the fsync policy; see `make_durable`.
    pub fn append_unsynced(&self, payload: &[u8]) -> Result<Appended, JournalError> {
        self.append_parts_unsynced(&[payload])
    }

    /// Like `append_unsynced`, for a record whose payload is the concatenation of `parts`
    /// (an event encoding around payload bytes that stay where they were read).
    pub fn append_parts_unsynced(&self, parts: &[&[u8]]) -> Result<Appended, JournalError> {
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        if payload_len > MAX_RECORD_LEN {
            return Err(JournalError::RecordTooLarge {
                len: payload_len,
                max: MAX_RECORD_LEN,
            });
        }
        let header = record::header(parts);
        let frame_len = (header.len() + payload_len) as u64;
        let appended = {
            let mut active = self.active.lock();
            if self.is_poisoned() {
                return Err(JournalError::Poisoned);
            }
            let offset = active.base + active.len;
            let unacked = offset.saturating_sub(self.acked_offset());
            if unacked + frame_len > self.opts.max_unacked_bytes {
                self.full.store(true, Ordering::Release);
                return Err(JournalError::Full {
                    unacked,
                    bound: self.opts.max_unacked_bytes,
                });
            }
            if active.len > 0 && active.len + frame_len > self.opts.max_segment_bytes {
                self.rotate(&mut active, offset)?;
            }
            if let Err(e) = write_frame(&mut active.file, &header, parts) {
                if e.kind() == std::io::ErrorKind::StorageFull {
                    self.disk_full.store(true, Ordering::Release);
                }
                // Undo a partial write so the next record does not follow garbage. If even
                // that fails, refuse everything until a restart recovers the tail.
                let len = active.len;
                if active.file.set_len(len).is_err()
                    || active.file.seek(SeekFrom::Start(len)).is_err()
                {
                    self.poisoned.store(true, Ordering::Release);
                }
                return Err(io(&active.path)(e));
            }
            active.len += frame_len;
            self.full.store(false, Ordering::Release);
            self.disk_full.store(false, Ordering::Release);
            let end = offset + frame_len;
            self.end.store(end, Ordering::Release);
            Appended { offset, end }
        };
        Ok(appended)
    }

    /// Forces everything appended so far to stable storage.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.sync_to(self.end_offset())
    }

    fn sync_to(&self, end: u64) -> Result<(), JournalError> {
        if self.synced.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let _one_syncer = self.sync_lock.lock();
        // Another appender's sync may have covered us while we waited: group commit.
        if self.synced.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let (file, path, upto) = {
            let active = self.active.lock();
            let file = active.file.try_clone().map_err(io(&active.path))?;
            (file, active.path.clone(), active.base + active.len)
        };
        file.sync_data().map_err(io(path))?;
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    fn rotate(&self, active: &mut Active, offset: u64) -> Result<(), JournalError> {
        // Seal the old segment durably before any record lands in the next one, so a sealed
        // segment is always whole.
        active.file.sync_data().map_err(io(&active.path))?;
        self.synced.fetch_max(offset, Ordering::AcqRel);
        let path = segment::path(&self.dir, offset);
        let file = create_segment(&path)?;
        sync_dir(&self.dir)?;
        *active = Active {
            file,
            path,
            base: offset,
            len: 0,
        };
        Ok(())
    }

    /// Records that everything before `offset` was delivered, and deletes segments that hold
    /// nothing after it. `offset` must be a record boundary the consumer saw.
    pub fn ack(&self, offset: u64) -> Result<(), JournalError> {
        let end = self.end_offset();
        if offset > end {
            return Err(JournalError::AckBeyondEnd { ack: offset, end });
        }
        if offset <= self.acked_offset() {
            return Ok(());
        }
        ack::store(&self.dir, offset)?;
        self.acked.fetch_max(offset, Ordering::AcqRel);
        self.full.store(false, Ordering::Release);
        let active_base = self.active.lock().base;
        let segments = segment::list(&self.dir)?;
        for pair in segments.windows(2) {
            let ((base, path), (next_base, _)) = (&pair[0], &pair[1]);
            if *base < active_base && *next_base <= offset {
                std::fs::remove_file(path).map_err(io(path))?;
            }
        }
        Ok(())
    }

    /// Bytes the journal's segments take on disk.
    pub fn disk_bytes(&self) -> u64 {
        segment::list(&self.dir)
            .map(|segs| {
                segs.iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn spawn_syncer(journal: Weak<Journal>, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("journal-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(journal) = journal.upgrade() else {
                    return;
                };
                if let Err(e) = journal.sync() {
                    tracing::error!(error = %e, "journal background fsync failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the journal fsync thread");
    }
}

/// Writes a record's header and payload with as few `writev` calls as the kernel allows (one,
/// for a regular file), resuming after a short write like `write_all`.
/// At most this many slices go to one `writev` (Linux takes 1024); a record in more parts is
/// gathered into one buffer first.
const MAX_WRITE_PARTS: usize = 512;

fn write_frame(file: &mut File, header: &[u8], parts: &[&[u8]]) -> std::io::Result<()> {
    let gathered;
    let mut slices: Vec<std::io::IoSlice<'_>> =
        Vec::with_capacity(parts.len().min(MAX_WRITE_PARTS) + 1);
    slices.push(std::io::IoSlice::new(header));
    if parts.len() < MAX_WRITE_PARTS {
        slices.extend(parts.iter().map(|p| std::io::IoSlice::new(p)));
    } else {
        gathered = parts.concat();
        slices.push(std::io::IoSlice::new(&gathered));
    }
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_segment(path: &Path) -> Result<File, JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    // Transcripts hold request bodies and exec sessions: owner-only, whatever the umask.
    OpenOptions::new()
        .mode(0o600)
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Scans the last segment and truncates anything after its last whole, valid record.
fn recover(path: &Path, base: u64) -> Result<(Active, Recovery), JournalError> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(io(path))?;
    let mut pos = 0usize;
    let mut records = 0u64;
    while let Decoded::Record(_, used) = record::decode(&buf[pos..]) {
        pos += used;
        records += 1;
    }
    let truncated = (buf.len() - pos) as u64;
    if truncated > 0 {
        file.set_len(pos as u64).map_err(io(path))?;
        file.sync_data().map_err(io(path))?;
    }
    let active = Active {
        file,
        path: path.to_path_buf(),
        base,
        len: pos as u64,
    };
    let rec = Recovery {
        truncated_bytes: truncated,
        tail_records: records,
        end_offset: base + pos as u64,
    };
    Ok((active, rec))
}
