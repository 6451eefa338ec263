//! The kernel side as userspace sees it: the embedded object, loading with pinned maps,
//! attaching to cgroups, and typed access to every map.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap},
    fs::File,
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, TracePoint},
};
use gatehouse_agent_common::{
    Config, Counter, DedupKey, DedupValue, Endpoint4, Endpoint6, EndpointValue, FinalDest,
    PORT_BITS, PORT_WORDS, Reasons, maps, programs,
};

use crate::{AgentError, endpoints::Entry};

/// The object `build.rs` built from `agent-ebpf` (empty if the toolchain was missing).
static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gatehouse-agent-ebpf"));

/// Whether this binary carries a real eBPF object.
pub fn object_present() -> bool {
    !OBJECT.is_empty()
}

/// The loaded, attached programs and their maps. Dropping it detaches every program; the
/// pinned maps stay for the next agent.
pub struct Kernel {
    // Owns the programs and their links: keep it alive for as long as they must stay attached.
    ebpf: Ebpf,
    pub endpoints4: LpmTrie<MapData, Endpoint4, EndpointValue>,
    pub endpoints6: LpmTrie<MapData, Endpoint6, EndpointValue>,
    /// The ports the endpoint maps use, one bit each: the kernel's first test on every connect.
    pub ports: Array<MapData, u64>,
    pub exempt: HashMap<MapData, u64, u8>,
    pub modes: HashMap<MapData, u64, u8>,
    pub config: Array<MapData, Config>,
    pub dedup: HashMap<MapData, DedupKey, DedupValue>,
    pub final_dest: HashMap<MapData, u64, FinalDest>,
    pub counters: PerCpuArray<MapData, u64>,
    pub events: RingBuf<MapData>,
    pub reasons: HashMap<MapData, u32, Reasons>,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    attached: Vec<PathBuf>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, AgentError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(AgentError::MissingMap(name))?;
    T::try_from(map).map_err(|source| AgentError::Map { name, source })
}

impl Kernel {
    /// Loads the object with its maps pinned in (or re-opened from) `pin_dir`.
    pub fn load(pin_dir: &Path) -> Result<Self, AgentError> {
        if !object_present() {
            return Err(AgentError::NoObject);
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(OBJECT)
            .map_err(AgentError::Load)?;
        // The kernel side logs only on rare paths; a missing log map just means no such logs.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::debug!(error = %e, "no kernel-side logger");
                None
            }
        };
        for name in [programs::CONNECT4, programs::CONNECT6] {
            let prog: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(AgentError::Config(format!(
                    "program {name} missing from the object"
                )))?
                .try_into()
                .map_err(|source| AgentError::Program {
                    name: prog_name(name),
                    source,
                })?;
            prog.load().map_err(|source| AgentError::Program {
                name: prog_name(name),
                source,
            })?;
        }
        let egress: &mut CgroupSkb = ebpf
            .program_mut(programs::EGRESS)
            .ok_or(AgentError::Config(
                "program gh_egress missing from the object".into(),
            ))?
            .try_into()
            .map_err(|source| AgentError::Program {
                name: programs::EGRESS,
                source,
            })?;
        egress.load().map_err(|source| AgentError::Program {
            name: programs::EGRESS,
            source,
        })?;

        Ok(Self {
            endpoints4: take(&mut ebpf, maps::ENDPOINTS4)?,
            endpoints6: take(&mut ebpf, maps::ENDPOINTS6)?,
            ports: take(&mut ebpf, maps::PORTS)?,
            exempt: take(&mut ebpf, maps::EXEMPT)?,
            modes: take(&mut ebpf, maps::MODES)?,
            config: take(&mut ebpf, maps::CONFIG)?,
            dedup: take(&mut ebpf, maps::DEDUP)?,
            final_dest: take(&mut ebpf, maps::FINAL_DEST)?,
            counters: take(&mut ebpf, maps::COUNTERS)?,
            events: take(&mut ebpf, maps::EVENTS)?,
            reasons: take(&mut ebpf, maps::REASONS)?,
            logger,
            ebpf,
            attached: Vec::new(),
        })
    }

    /// Attaches connect4, connect6 and cgroup_skb egress to a cgroup v2 directory, alongside any
    /// programs already there (a CNI's). A child's programs run before its parent's.
    ///
    /// aya attaches through `bpf_link_create` here, and the kernel always gives cgroup links
    /// multi-attach semantics while refusing `BPF_F_ALLOW_MULTI` in the link flags (EINVAL on
    /// 6.18), so `CgroupAttachMode::Single` (flags 0) is what yields an allow-multiple
    /// attachment. The link dies with the agent's fd: a crashed agent leaves nothing attached. An
    /// egress failure is returned as `Ok(Some(_))`: detection still works, without the final
    /// destination.
    pub fn attach(&mut self, cgroup: &Path) -> Result<Option<AgentError>, AgentError> {
        let file = File::open(cgroup).map_err(|e| AgentError::io("opening cgroup", cgroup, e))?;
        for name in [programs::CONNECT4, programs::CONNECT6] {
            let prog: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or(AgentError::Config(format!("program {name} missing")))?
                .try_into()
                .map_err(|source| AgentError::Program {
                    name: prog_name(name),
                    source,
                })?;
            prog.attach(&file, CgroupAttachMode::Single)
                .map_err(|source| AgentError::Program {
                    name: prog_name(name),
                    source,
                })?;
        }
        let egress: &mut CgroupSkb = self
            .ebpf
            .program_mut(programs::EGRESS)
            .ok_or(AgentError::Config("program gh_egress missing".into()))?
            .try_into()
            .map_err(|source| AgentError::Program {
                name: programs::EGRESS,
                source,
            })?;
        let egress_err = egress
            .attach(&file, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
            .err()
            .map(|source| AgentError::Program {
                name: programs::EGRESS,
                source,
            });
        self.attached.push(cgroup.to_path_buf());
        Ok(egress_err)
    }

    /// Loads and attaches the optional-reason tracepoints (token opens, kubectl/curl execs).
    /// They are node-wide and only enrich alerts, so a failure is the caller's to log.
    pub fn attach_reasons(&mut self) -> Result<(), AgentError> {
        for (name, category, event) in [
            (programs::OPENAT, "syscalls", "sys_enter_openat"),
            (programs::EXEC, "sched", "sched_process_exec"),
        ] {
            let prog: &mut TracePoint = self
                .ebpf
                .program_mut(name)
                .ok_or(AgentError::Config(format!("program {name} missing")))?
                .try_into()
                .map_err(|source| AgentError::Program { name, source })?;
            prog.load()
                .map_err(|source| AgentError::Program { name, source })?;
            prog.attach(category, event)
                .map_err(|source| AgentError::Program { name, source })?;
        }
        Ok(())
    }

    pub fn attached(&self) -> &[PathBuf] {
        &self.attached
    }

    /// Makes the endpoint maps hold exactly `want`; returns (added, removed).
    pub fn sync_endpoints(&mut self, want: &BTreeSet<Entry>) -> Result<(usize, usize), AgentError> {
        let mut want4 = StdHashMap::new();
        let mut want6 = StdHashMap::new();
        for e in want {
            let value = EndpointValue {
                matched_by: e.matched_by,
                _pad: [0; 3],
            };
            let port = e.port.to_be_bytes();
            match e.addr {
                IpAddr::V4(a) => {
                    let mut d = [0u8; 6];
                    d[..2].copy_from_slice(&port);
                    d[2..].copy_from_slice(&a.octets());
                    want4.insert((PORT_BITS + u32::from(e.prefix), d), value);
                }
                IpAddr::V6(a) => {
                    let mut d = [0u8; 18];
                    d[..2].copy_from_slice(&port);
                    d[2..].copy_from_slice(&a.octets());
                    want6.insert((PORT_BITS + u32::from(e.prefix), d), value);
                }
            }
        }
        let err = |name| move |source| AgentError::Map { name, source };
        let have4: Vec<Key<Endpoint4>> = self.endpoints4.keys().filter_map(Result::ok).collect();
        let have6: Vec<Key<Endpoint6>> = self.endpoints6.keys().filter_map(Result::ok).collect();
        // connect4/6 look in the tries only when PORTS has the port's bit, so every port the
        // tries hold must stay set at each step: widen to old | new before the tries change and
        // narrow to new after. Per word: (bits of ports held now, bits of ports wanted).
        let mut words: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for e in want {
            let (w, bit) = port_bit(e.port);
            words.entry(w).or_default().1 |= bit;
        }
        let held4 = have4.iter().map(|k| [k.data()[0], k.data()[1]]);
        for port in held4.chain(have6.iter().map(|k| [k.data()[0], k.data()[1]])) {
            let (w, bit) = port_bit(u16::from_be_bytes(port));
            words.entry(w).or_default().0 |= bit;
        }
        for (w, (held, wanted)) in &words {
            self.ports
                .set(*w, held | wanted, 0)
                .map_err(err(maps::PORTS))?;
        }
        let mut removed = 0;
        for k in have4 {
            if !want4.contains_key(&(k.prefix_len(), k.data())) {
                self.endpoints4.remove(&k).map_err(err(maps::ENDPOINTS4))?;
                removed += 1;
            }
        }
        for k in have6 {
            if !want6.contains_key(&(k.prefix_len(), k.data())) {
                self.endpoints6.remove(&k).map_err(err(maps::ENDPOINTS6))?;
                removed += 1;
            }
        }
        let mut added = 0;
        for ((plen, d), v) in want4 {
            let key = Key::new(plen, d);
            if self.endpoints4.get(&key, 0).ok() != Some(v) {
                self.endpoints4
                    .insert(&key, v, 0)
                    .map_err(err(maps::ENDPOINTS4))?;
                added += 1;
            }
        }
        for ((plen, d), v) in want6 {
            let key = Key::new(plen, d);
            if self.endpoints6.get(&key, 0).ok() != Some(v) {
                self.endpoints6
                    .insert(&key, v, 0)
                    .map_err(err(maps::ENDPOINTS6))?;
                added += 1;
            }
        }
        for (w, (_, wanted)) in &words {
            self.ports.set(*w, wanted, 0).map_err(err(maps::PORTS))?;
        }
        Ok((added, removed))
    }

    /// Number of entries in both endpoint maps.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints4.keys().count() + self.endpoints6.keys().count()
    }

    /// Makes a cgroup-id map hold exactly `want`.
    pub fn sync_cgroup_map(
        map: &mut HashMap<MapData, u64, u8>,
        name: &'static str,
        want: &StdHashMap<u64, u8>,
    ) -> Result<(), AgentError> {
        let have: Vec<u64> = map.keys().filter_map(Result::ok).collect();
        for k in have {
            if !want.contains_key(&k) {
                map.remove(&k)
                    .map_err(|source| AgentError::Map { name, source })?;
            }
        }
        for (k, v) in want {
            map.insert(k, v, 0)
                .map_err(|source| AgentError::Map { name, source })?;
        }
        Ok(())
    }

    pub fn set_config(&mut self, config: Config) -> Result<(), AgentError> {
        self.config
            .set(0, config, 0)
            .map_err(|source| AgentError::Map {
                name: maps::CONFIG,
                source,
            })
    }

    /// A kernel counter summed over CPUs.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters
            .get(&(c as u32), 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// The `PORTS` word and bit of a (host-order) port.
fn port_bit(port: u16) -> (u32, u64) {
    let word = u32::from(port >> 6);
    debug_assert!(word < PORT_WORDS);
    (word, 1 << (port & 63))
}

fn prog_name(name: &str) -> &'static str {
    match name {
        n if n == programs::CONNECT4 => programs::CONNECT4,
        _ => programs::CONNECT6,
    }
}
