//! Per-CPU counters: cheap, never contended, summed by userspace.
use gatehouse_agent_common::Counter;

use crate::maps::COUNTERS;

#[inline(always)]
pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the slot belongs to this CPU and migration is disabled while a program runs.
        unsafe { *slot += 1 };
    }
}
