//! The protobuf decoders (`gatehouse-proto`): every message the collector, shipper and CLI
//! decode from the network or the journal decodes any bytes without panicking, and a decoded
//! message re-encodes to bytes that decode back to the same message.
#![no_main]

use gatehouse_proto::v1::{
    Event, GetSessionRequest, JournalRecord, ListSessionsRequest, ListSessionsResponse, ShipAck,
    ShipBatch,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => round_trip::<Event>(bytes),
        1 => round_trip::<ShipBatch>(bytes),
        2 => round_trip::<JournalRecord>(bytes),
        3 => round_trip::<ShipAck>(bytes),
        4 => round_trip::<ListSessionsRequest>(bytes),
        5 => round_trip::<ListSessionsResponse>(bytes),
        _ => round_trip::<GetSessionRequest>(bytes),
    }
});

fn round_trip<M: Message + Default + PartialEq>(bytes: &[u8]) {
    let Ok(msg) = M::decode(bytes) else {
        return;
    };
    let again = M::decode(msg.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert!(again == msg, "message does not round-trip");
    assert_eq!(msg.encoded_len(), msg.encode_to_vec().len());
}
