//! Journal behaviour on a real filesystem: append/read, rotation, torn-tail recovery, acks,
//! the unacknowledged-bytes bound, and corruption in sealed segments.
#![allow(clippy::unwrap_used)]
use gatehouse_journal::{FsyncPolicy, HEADER_LEN, Journal, JournalError, JournalOptions, Reader};
use std::io::Write;

fn opts(seg: u64) -> JournalOptions {
    JournalOptions {
        max_segment_bytes: seg,
        max_unacked_bytes: 1 << 20,
        fsync: FsyncPolicy::Always,
    }
}

fn payloads(dir: &std::path::Path) -> Vec<Vec<u8>> {
    Reader::read_all(dir)
        .expect("read")
        .into_iter()
        .map(|r| r.payload)
        .collect()
}

#[test]
fn appends_read_back_in_order_across_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, rec) = Journal::open(tmp.path(), opts(100)).unwrap();
    assert_eq!(rec.end_offset, 0);
    let mut expect = Vec::new();
    for i in 0..50u32 {
        let p = format!("record-{i}").into_bytes();
        let a = j.append(&p).unwrap();
        assert_eq!(a.end - a.offset, (HEADER_LEN + p.len()) as u64);
        expect.push(p);
    }
    let segs = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segs > 5, "expected rotation into many segments, got {segs}");
    assert_eq!(payloads(tmp.path()), expect);
    drop(j);
    let (j, rec) = Journal::open(tmp.path(), opts(100)).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    j.append(b"after-reopen").unwrap();
    expect.push(b"after-reopen".to_vec());
    assert_eq!(payloads(tmp.path()), expect);
}

#[test]
fn torn_tail_is_truncated_and_everything_before_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    j.append(b"one").unwrap();
    let two = j.append(b"two").unwrap();
    drop(j);
    // Simulate a crash mid-write: half a frame at the end of the segment.
    let seg = tmp.path().join(format!("{:020}.seg", 0));
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[42, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(f);
    // A live reader stops before the partial frame instead of failing.
    assert_eq!(payloads(tmp.path()), vec![b"one".to_vec(), b"two".to_vec()]);
    let (j, rec) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.truncated_bytes, 9);
    assert_eq!(rec.tail_records, 2);
    assert_eq!(rec.end_offset, two.end);
    j.append(b"three").unwrap();
    assert_eq!(
        payloads(tmp.path()),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

#[test]
fn flipped_bit_in_the_tail_drops_that_record_and_later_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    j.append(b"keep").unwrap();
    let bad = j.append(b"damaged").unwrap();
    j.append(b"after").unwrap();
    drop(j);
    let seg = tmp.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[bad.offset as usize + HEADER_LEN] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let (_j, rec) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.end_offset, bad.offset);
    assert_eq!(payloads(tmp.path()), vec![b"keep".to_vec()]);
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_not_silence() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(40)).unwrap();
    for i in 0..6u8 {
        j.append(&[i; 20]).unwrap();
    }
    drop(j);
    let seg = tmp.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[HEADER_LEN] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    match Reader::read_all(tmp.path()) {
        Err(JournalError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn ack_persists_deletes_shipped_segments_and_reader_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(64)).unwrap();
    let mut ends = Vec::new();
    for i in 0..20u8 {
        ends.push(j.append(&[i; 30]).unwrap().end);
    }
    let before = std::fs::read_dir(tmp.path()).unwrap().count();
    j.ack(ends[9]).unwrap();
    let after = std::fs::read_dir(tmp.path()).unwrap().count();
    assert!(
        after < before,
        "acked segments should be deleted ({before} -> {after})"
    );
    assert!(matches!(
        j.ack(j.end_offset() + 1),
        Err(JournalError::AckBeyondEnd { .. })
    ));
    drop(j);
    let (j, _) = Journal::open(tmp.path(), opts(64)).unwrap();
    assert_eq!(j.acked_offset(), ends[9]);
    let mut r = Reader::open(tmp.path(), j.acked_offset()).unwrap();
    let first = r.next_record().unwrap().unwrap();
    assert_eq!(first.payload, vec![10u8; 30]);
    // Everything acknowledged: an empty journal keeps counting from the acked offset.
    j.ack(j.end_offset()).unwrap();
    let end = j.end_offset();
    drop(j);
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (j, _) = Journal::open(tmp.path(), opts(64)).unwrap();
    assert_eq!(j.append(b"x").unwrap().offset, end);
}

#[test]
fn unacked_bound_fails_closed_until_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let o = JournalOptions {
        max_segment_bytes: 1 << 20,
        max_unacked_bytes: 100,
        fsync: FsyncPolicy::Never,
    };
    let (j, _) = Journal::open(tmp.path(), o).unwrap();
    let a = j.append(&[0; 40]).unwrap();
    j.append(&[0; 40]).unwrap();
    assert!(matches!(j.append(&[0; 40]), Err(JournalError::Full { .. })));
    assert!(j.is_full());
    j.ack(a.end).unwrap();
    assert!(!j.is_full());
    j.append(&[0; 40]).unwrap();
}

#[test]
fn reader_sees_records_appended_after_it_reached_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(50)).unwrap();
    let mut r = Reader::open(tmp.path(), 0).unwrap();
    assert!(r.next_record().unwrap().is_none());
    for i in 0..10u8 {
        j.append(&[i; 10]).unwrap();
        let rec = r.next_record().unwrap().expect("new record visible");
        assert_eq!(rec.payload, vec![i; 10]);
        assert!(r.next_record().unwrap().is_none());
    }
}

#[test]
fn a_record_appended_in_parts_reads_back_as_their_concatenation() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    let whole = b"one record".to_vec();
    j.append(&whole).unwrap();
    // A few parts, some empty; then more parts than one writev takes.
    let few: Vec<&[u8]> = vec![b"head|", b"", b"middle|", b"tail"];
    let a = j.append_parts_unsynced(&few).unwrap();
    assert_eq!(a.end - a.offset, (HEADER_LEN + few.concat().len()) as u64);
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let many: Vec<&[u8]> = bytes.chunks(2).collect();
    assert!(many.len() > 1024);
    j.append_parts_unsynced(&many).unwrap();
    j.sync().unwrap();
    assert_eq!(
        payloads(tmp.path()),
        vec![whole, few.concat(), bytes.clone()]
    );
    // The checksum covers the concatenation: a reopen finds nothing torn.
    drop(j);
    let (_, rec) = Journal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
}
