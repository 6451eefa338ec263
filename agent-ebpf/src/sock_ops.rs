//! `sock_ops`: when TCP dials (`TCP_CONNECT_CB`) a socket that connect4/6 flagged, record the
//! destination it really dials, after any socket-level load-balancer rewrite.
use core::ptr::read_volatile;

use aya_ebpf::{
    bindings::BPF_SOCK_OPS_TCP_CONNECT_CB, helpers::generated::bpf_get_socket_cookie,
    macros::sock_ops, programs::SockOpsContext,
};
use gatehouse_agent_common::{AF_INET, AF_INET6, FinalDest};

use crate::maps::FINAL_DEST;

#[sock_ops]
pub fn gh_sock_ops(ctx: SockOpsContext) -> u32 {
    match try_sock_ops(&ctx) {
        Ok(ret) => ret,
        Err(_) => 1,
    }
}

fn try_sock_ops(ctx: &SockOpsContext) -> Result<u32, i64> {
    if ctx.op() != BPF_SOCK_OPS_TCP_CONNECT_CB {
        return Ok(1);
    }
    // SAFETY: the sock_ops context is a valid pointer for the cookie helper.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    let Some(slot) = FINAL_DEST.get_ptr_mut(&cookie) else {
        return Ok(1);
    };
    // Every context field is read once, up front, with a volatile load at a constant offset:
    // the verifier refuses context loads through a pointer the compiler advanced.
    // SAFETY: ctx.ops is the kernel's bpf_sock_ops for this call.
    let (family, port, ip4, ip6) = unsafe {
        let o = ctx.ops;
        (
            read_volatile(&raw const (*o).family),
            read_volatile(&raw const (*o).remote_port),
            read_volatile(&raw const (*o).remote_ip4),
            [
                read_volatile(&raw const (*o).remote_ip6[0]),
                read_volatile(&raw const (*o).remote_ip6[1]),
                read_volatile(&raw const (*o).remote_ip6[2]),
                read_volatile(&raw const (*o).remote_ip6[3]),
            ],
        )
    };
    let family = family as u16;
    // remote_port is the network-order port shifted into the high half on little endian.
    let port_be = (port >> 16) as u16;
    let mut addr = [0u8; 16];
    if family == AF_INET {
        addr[..4].copy_from_slice(&ip4.to_ne_bytes());
    } else if family == AF_INET6 {
        for (i, w) in ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    } else {
        return Ok(1);
    }
    // SAFETY: slot points at a live LRU value owned by this socket's cookie.
    unsafe {
        *slot = FinalDest {
            family,
            port_be,
            _pad: [0; 4],
            addr,
        }
    };
    Ok(1)
}
