//! Next-hop lookups through the kernel FIB (`bpf_fib_lookup`).

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::generated::bpf_fib_lookup,
    programs::XdpContext,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Where a packet goes next: interface and Ethernet addresses.
pub struct FibResult {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// The neighbour is not resolved yet (the MACs are not set).
    pub no_neigh: bool,
}

#[inline(always)]
fn params(
    p: &mut FibParams,
    v6: bool,
    proto: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: u16,
    ifindex: u32,
) {
    // SAFETY: the struct is plain data; all-zero is its documented "unset" state.
    *p = unsafe { core::mem::zeroed() };
    p.l4_protocol = proto;
    p.ifindex = ifindex;
    p.__bindgen_anon_1.tot_len = tot_len;
    if v6 {
        p.family = AF_INET6;
        let mut s = [0u32; 4];
        let mut d = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            s[i] = u32::from_ne_bytes([src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]]);
            d[i] = u32::from_ne_bytes([dst[4 * i], dst[4 * i + 1], dst[4 * i + 2], dst[4 * i + 3]]);
            i += 1;
        }
        p.__bindgen_anon_3.ipv6_src = s;
        p.__bindgen_anon_4.ipv6_dst = d;
    } else {
        p.family = AF_INET;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    }
}

/// Route from `src` to `dst` for a frame received on the XDP interface; `None` unless the
/// kernel knows the interface; a neighbour not resolved yet is `no_neigh`.
#[inline(always)]
pub fn lookup_xdp(
    p: &mut FibParams,
    ctx: &XdpContext,
    v6: bool,
    proto: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: u16,
) -> Option<FibResult> {
    // SAFETY: ctx.ctx is the program's context pointer.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    params(p, v6, proto, src, dst, tot_len, ifindex);
    ask_kernel(ctx.ctx.cast(), p, true)
}

/// Route for an skb (tc); a missing neighbour is fine there (`bpf_redirect_neigh` resolves it).
#[inline(always)]
pub fn lookup_skb(
    skb: *mut core::ffi::c_void,
    ifindex: u32,
    v6: bool,
    proto: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: u16,
) -> Option<FibResult> {
    // SAFETY: the struct is plain data; all-zero is its documented "unset" state.
    let mut p: FibParams = unsafe { core::mem::zeroed() };
    params(&mut p, v6, proto, src, dst, tot_len, ifindex);
    ask_kernel(skb, &mut p, true)
}

/// Route from `src` to `dst` for the program context `ctx` (XDP or tc) received on `ifindex`,
/// with the parameter block in `p` (scratch space, off the stack); a missing neighbour is
/// returned as `no_neigh` for the caller to decide.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn lookup_in(
    p: &mut FibParams,
    ctx: *mut core::ffi::c_void,
    ifindex: u32,
    v6: bool,
    proto: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    tot_len: u16,
) -> Option<FibResult> {
    params(p, v6, proto, src, dst, tot_len, ifindex);
    ask_kernel(ctx, p, true)
}

/// Runs the lookup `p` describes for the program context `ctx`. A route without a resolved
/// neighbour counts only when `neigh_optional` (the caller can have the kernel resolve it).
#[inline(always)]
fn ask_kernel(
    ctx: *mut core::ffi::c_void,
    p: &mut FibParams,
    neigh_optional: bool,
) -> Option<FibResult> {
    // SAFETY: p is a valid, fully initialised parameter block of the size passed.
    let rc = unsafe { bpf_fib_lookup(ctx, p, core::mem::size_of::<FibParams>() as i32, 0) };
    let no_neigh = neigh_optional && rc == i64::from(BPF_FIB_LKUP_RET_NO_NEIGH);
    if rc != i64::from(BPF_FIB_LKUP_RET_SUCCESS) && !no_neigh {
        return None;
    }
    Some(FibResult {
        ifindex: p.ifindex,
        smac: p.smac,
        dmac: p.dmac,
        no_neigh,
    })
}
