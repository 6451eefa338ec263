//! `cgroup_skb/egress`: the destination a flagged socket's packets really leave with. It runs
//! in `ip_finish_output`, after netfilter's OUTPUT and POSTROUTING hooks, so a kube-proxy
//! (iptables/nftables) DNAT of a ClusterIP is already applied, as is any socket-level rewrite
//! (a socket load balancer's connect4). There is no sock_ops program: it would run on several
//! callbacks of every TCP connect in the cgroup to learn nothing this does not. Sockets that
//! connect4/6 did not flag miss the map at once and pass untouched.
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie, macros::cgroup_skb, programs::SkBuffContext,
};
use gatehouse_agent_common::{AF_INET, AF_INET6, FinalDest};

use crate::maps::FINAL_DEST;

const PASS: i32 = 1;
const IPPROTO_TCP: u8 = 6;

#[cgroup_skb(egress)]
pub fn gh_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_egress(&ctx);
    // Observation only: never drop a packet.
    PASS
}

fn try_egress(ctx: &SkBuffContext) -> Result<(), i64> {
    // SAFETY: the skb pointer is the kernel's for this call; the helper accepts it.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let Some(slot) = FINAL_DEST.get_ptr_mut(&cookie) else {
        return Ok(());
    };
    // cgroup_skb data starts at the network header.
    let first: u8 = ctx.load(0)?;
    let mut addr = [0u8; 16];
    let (family, port_be) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ctx.load::<u8>(9)? != IPPROTO_TCP || ihl < 20 || ihl > 60 {
                return Ok(());
            }
            let daddr: [u8; 4] = ctx.load(16)?;
            addr[..4].copy_from_slice(&daddr);
            (AF_INET, ctx.load::<u16>(ihl + 2)?)
        }
        6 => {
            if ctx.load::<u8>(6)? != IPPROTO_TCP {
                return Ok(());
            }
            addr = ctx.load(24)?;
            (AF_INET6, ctx.load::<u16>(42)?)
        }
        _ => return Ok(()),
    };
    // SAFETY: slot points at a live LRU value owned by this socket's cookie.
    unsafe {
        *slot = FinalDest {
            family,
            // Loaded as memory order from the header: already network order.
            port_be,
            _pad: [0; 4],
            addr,
        }
    };
    Ok(())
}
