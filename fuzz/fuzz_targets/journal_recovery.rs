//! Journal crash recovery (`journal/src/writer.rs` `recover`, `reader.rs`): any bytes in the
//! last segment and the ack file reopen without panicking; recovery keeps exactly the whole
//! valid records before the first bad frame, the journal accepts appends afterwards, and a
//! second reopen finds nothing more to truncate.
#![no_main]

use gatehouse_journal::{FsyncPolicy, HEADER_LEN, Journal, JournalOptions, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: ack-file bytes, a NUL, then the segment's bytes.
    let (ack, segment) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let dir = tempfile::tempdir_in(scratch()).expect("temp dir");
    std::fs::write(dir.path().join("00000000000000000000.seg"), segment).expect("write segment");
    if !ack.is_empty() {
        std::fs::write(dir.path().join("acked"), ack).expect("write ack");
    }

    let valid = valid_prefix(segment);
    // `Always`: no background syncer thread per run; recovery is the same under every policy.
    let opts = JournalOptions {
        fsync: FsyncPolicy::Always,
        ..JournalOptions::default()
    };
    let Ok((journal, recovery)) = Journal::open(dir.path(), opts.clone()) else {
        return;
    };
    assert_eq!(
        recovery.end_offset, valid.0 as u64,
        "recovery kept the wrong prefix"
    );
    assert_eq!(recovery.tail_records, valid.1.len() as u64);
    assert_eq!(recovery.truncated_bytes, (segment.len() - valid.0) as u64);
    let appended = journal
        .append(b"after recovery")
        .expect("append after recovery");
    journal.make_durable(appended).expect("durable");
    drop(journal);

    let records = Reader::read_all(dir.path()).expect("read back");
    let mut want: Vec<&[u8]> = valid.1.clone();
    want.push(b"after recovery");
    let got: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(got, want, "records changed across recovery");

    let (_, again) = Journal::open(dir.path(), opts).expect("reopen");
    assert_eq!(
        again.truncated_bytes, 0,
        "a recovered journal is torn again"
    );
});

/// Bytes and payloads of the whole CRC-valid records at the front of `seg`.
fn valid_prefix(seg: &[u8]) -> (usize, Vec<&[u8]>) {
    let mut at = 0;
    let mut out = Vec::new();
    while seg.len() >= at + HEADER_LEN {
        let len = u32::from_le_bytes(seg[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(seg[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = seg.get(at + HEADER_LEN..at + HEADER_LEN + len) else {
            break;
        };
        if crc32c(payload) != crc {
            break;
        }
        out.push(payload);
        at += HEADER_LEN + len;
    }
    (at, out)
}

/// CRC-32C (Castagnoli), bitwise: an independent oracle for the journal's checksum.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// tmpfs when there is one: recovery does real file I/O on every run.
fn scratch() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
