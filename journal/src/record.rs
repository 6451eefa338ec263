//! The record frame: `[len: u32 LE][crc32c(payload): u32 LE][payload]`.

/// Bytes of frame header before each payload.
pub const HEADER_LEN: usize = 8;
/// The largest payload a record may carry; larger lengths in a header mean a torn or corrupt frame.
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// The frame header of a payload given as consecutive `parts`; the writer sends it and the
/// parts in one vectored write, so the payload is never copied into a frame buffer.
pub(crate) fn header(parts: &[&[u8]]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let crc = parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    // The caller checked the length against MAX_RECORD_LEN, which fits in u32.
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes one framed record.
#[cfg(test)]
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut buf = header(&[payload]).to_vec();
    buf.extend_from_slice(payload);
    buf
}

/// What decoding the bytes at some position found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole, valid record and the frame length it occupied.
    Record(&'a [u8], usize),
    /// The bytes end exactly here.
    End,
    /// A partial or invalid frame: a torn write, or corruption.
    Bad,
}

pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.is_empty() {
        return Decoded::End;
    }
    if buf.len() < HEADER_LEN {
        return Decoded::Bad;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_RECORD_LEN || buf.len() < HEADER_LEN + len {
        return Decoded::Bad;
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    if crc32c::crc32c(payload) != crc {
        return Decoded::Bad;
    }
    Decoded::Record(payload, HEADER_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let frame = encode(b"hello");
        assert_eq!(decode(&frame), Decoded::Record(b"hello", frame.len()));
        assert_eq!(decode(&[]), Decoded::End);
        assert_eq!(decode(&frame[..frame.len() - 1]), Decoded::Bad);
        assert_eq!(decode(&frame[..3]), Decoded::Bad);
        let mut flipped = frame.clone();
        flipped[HEADER_LEN] ^= 1;
        assert_eq!(decode(&flipped), Decoded::Bad);
        let empty = encode(b"");
        assert_eq!(decode(&empty), Decoded::Record(b"", HEADER_LEN));
    }
}
