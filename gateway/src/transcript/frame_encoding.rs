//! The protobuf encoding of a `StreamFrame` event written around its data instead of through it:
//! a burst's payload stays in the buffers it was read into, and the journal gets the encoding's
//! head, those buffers and its tail in one vectored write. The bytes are exactly prost's, which
//! `gatehouse verify` re-encodes to check the hash chain.
use bytes::Bytes;
use gatehouse_proto::v1::{Event, StreamFrame};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// `Event.stream_frame`: the payload oneof has the highest tags of `Event`, so prost writes it
/// last, after every other field.
const EVENT_STREAM_FRAME: u32 = 25;
/// `StreamFrame.data`: fields 1–4 come before it, 6–10 after.
const FRAME_DATA: u32 = 5;

/// A `StreamFrame` event's encoding as `head`, then the data buffers, then `tail`.
#[derive(Debug)]
pub struct SplitEncoding {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Encodes `event` (its payload unset) with `frame` (its `data` empty) as its payload, the frame's
/// data being the concatenation of `data`.
pub fn split(event: &Event, frame: StreamFrame, data: &[Bytes]) -> SplitEncoding {
    debug_assert!(event.payload.is_none() && frame.data.is_empty());
    let data_len: usize = data.iter().map(Bytes::len).sum();
    // prost writes a message's fields in tag order and skips defaults, so the frame's encoding
    // is that of its fields before `data`, then `data` (absent when empty, as in proto3), then
    // that of the fields after it.
    let before = StreamFrame {
        request_event_id: frame.request_event_id,
        offset_nanos: frame.offset_nanos,
        direction: frame.direction,
        channel: frame.channel,
        ..Default::default()
    };
    let after = StreamFrame {
        size: frame.size,
        data_omitted: frame.data_omitted,
        resize: frame.resize,
        port: frame.port,
        connection_id: frame.connection_id,
        ..Default::default()
    };
    let data_field = if data_len > 0 {
        key_len(FRAME_DATA) + encoded_len_varint(data_len as u64) + data_len
    } else {
        0
    };
    let frame_len = before.encoded_len() + data_field + after.encoded_len();
    let mut head = Vec::with_capacity(
        event.encoded_len() + 2 + encoded_len_varint(frame_len as u64) + before.encoded_len() + 8,
    );
    event.encode_raw(&mut head);
    encode_key(EVENT_STREAM_FRAME, WireType::LengthDelimited, &mut head);
    encode_varint(frame_len as u64, &mut head);
    before.encode_raw(&mut head);
    if data_len > 0 {
        encode_key(FRAME_DATA, WireType::LengthDelimited, &mut head);
        encode_varint(data_len as u64, &mut head);
    }
    SplitEncoding {
        head,
        tail: after.encode_to_vec(),
    }
}

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::v1::{Client, Identity, Producer, TerminalSize, event::Payload};

    fn event() -> Event {
        Event {
            event_id: "01a23c11-67b8-733f-ad5f-cc349f0e9dc3".into(),
            session_id: "01a23c11-6344-7558-8e2f-3e411860410f".into(),
            seq: 300,
            time_unix_nano: 1_780_000_000_000_000_000,
            producer: Some(Producer {
                component: "gateway".into(),
                instance: "gw-0".into(),
                version: "0.1.0".into(),
            }),
            identity: Some(Identity {
                username: "agent-ops".into(),
                groups: vec!["agents".into()],
                ..Default::default()
            }),
            client: Some(Client {
                source_ip: "10.0.0.7".into(),
                ..Default::default()
            }),
            command_id: "c".into(),
            prev_hash: Bytes::from(vec![7u8; 32]),
            payload: None,
        }
    }

    /// What prost makes of the same event with the data in place.
    fn whole(frame: &StreamFrame, data: &[Bytes]) -> Vec<u8> {
        let mut e = event();
        let mut f = frame.clone();
        f.data = data.concat().into();
        e.payload = Some(Payload::StreamFrame(f));
        e.encode_to_vec()
    }

    fn joined(s: &SplitEncoding, data: &[Bytes]) -> Vec<u8> {
        let mut out = s.head.clone();
        for d in data {
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&s.tail);
        out
    }

    #[test]
    fn split_encodings_are_byte_for_byte_prosts() {
        let frames = [
            StreamFrame {
                request_event_id: "r".into(),
                offset_nanos: 12_345,
                direction: 2,
                channel: 1,
                size: 0,
                ..Default::default()
            },
            StreamFrame {
                request_event_id: "01a23c11-67b8-733f-ad5f-cc349f0e9dc3".into(),
                offset_nanos: u64::MAX,
                direction: 1,
                channel: 4,
                resize: Some(TerminalSize {
                    width: 80,
                    height: 24,
                }),
                ..Default::default()
            },
            StreamFrame {
                channel: 7,
                data_omitted: true,
                port: 8080,
                connection_id: "3".into(),
                ..Default::default()
            },
            StreamFrame::default(),
        ];
        let big = Bytes::from(vec![b'x'; 300_000]);
        let datas: [Vec<Bytes>; 4] = [
            vec![],
            vec![Bytes::from_static(b"hello")],
            vec![
                Bytes::from_static(b"a"),
                Bytes::new(),
                big.slice(..127),
                big.slice(..128),
            ],
            vec![big.clone(), big.slice(..70_000)],
        ];
        for frame in &frames {
            for data in &datas {
                let mut f = frame.clone();
                f.size = data.iter().map(Bytes::len).sum::<usize>() as u64;
                let s = split(&event(), f.clone(), data);
                assert_eq!(
                    joined(&s, data),
                    whole(&f, data),
                    "{f:?} with {} parts",
                    data.len()
                );
            }
        }
    }
}
