//! The maps, shared with userspace by name (`gatehouse_agent_common::maps`). All are pinned by
//! name under the agent's bpffs dir, so a restarted agent keeps endpoints, dedup state and counts.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use gatehouse_agent_common::{
    COUNTER_SLOTS, Config, DedupKey, DedupValue, Endpoint4, Endpoint6, EndpointValue, FinalDest,
    PORT_WORDS, Reasons,
};

#[map(name = "GH_ENDPOINTS4")]
pub static ENDPOINTS4: LpmTrie<Endpoint4, EndpointValue> = LpmTrie::pinned(4096, 0);

#[map(name = "GH_ENDPOINTS6")]
pub static ENDPOINTS6: LpmTrie<Endpoint6, EndpointValue> = LpmTrie::pinned(4096, 0);

// The ports the endpoint sets use, one bit each. Nearly every connect on a node goes elsewhere:
// an array lookup the verifier inlines turns those away before the trie walk.
#[map(name = "GH_PORTS")]
pub static PORTS: Array<u64> = Array::pinned(PORT_WORDS, 0);

#[map(name = "GH_EXEMPT")]
pub static EXEMPT: HashMap<u64, u8> = HashMap::pinned(4096, 0);

#[map(name = "GH_MODES")]
pub static MODES: HashMap<u64, u8> = HashMap::pinned(16384, 0);

#[map(name = "GH_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "GH_DEDUP")]
pub static DEDUP: LruHashMap<DedupKey, DedupValue> = LruHashMap::pinned(65536, 0);

#[map(name = "GH_FINAL_DEST")]
pub static FINAL_DEST: LruHashMap<u64, FinalDest> = LruHashMap::pinned(16384, 0);

#[map(name = "GH_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);

// Only windows that open send an event, so 1 MiB holds ~7000 distinct new keys between polls.
#[map(name = "GH_EVENTS")]
pub static EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);

#[map(name = "GH_REASONS")]
pub static REASONS: LruHashMap<u32, Reasons> = LruHashMap::pinned(16384, 0);
