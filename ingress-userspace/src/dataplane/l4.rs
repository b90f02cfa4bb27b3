//! The L4 dataplane as the daemon runs it: load the object with its maps pinned under
//! `--bpf-pin-root` (mounting bpffs there if needed; recreating, with a log line, any pinned
//! map whose layout changed), attach XDP on the NIC and tc on pod interfaces, and apply
//! snapshots through [`L4Sync`].

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapType,
    programs::{
        SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId},
        xdp::{XdpLink, XdpLinkId},
    },
};
use ingress_common::{
    DEFAULT_PIN_ROOT, PROG_XDP_INGRESS,
    l4::*,
    stats::{Counter, MAP_STATS, STATS_SLOTS},
    syn_limit::{
        DEFAULT_SYN_SOURCES_SIZE, MAP_SYN_LIMITS, MAP_SYN_LISTEN_PORTS, MAP_SYN_LISTENER_STATS,
        MAP_SYN_LISTENERS, MAP_SYN_SOURCES, SYN_LISTEN_PORT_WORDS, SYN_LISTENERS_SIZE,
        SynLimitConfig, SynListener, SynListenerKey, SynSourceKey, SynSourceState,
    },
};
use tracing::{info, warn};

use super::{
    AttachMode,
    sync::{ApplyReport, L4Options, L4Sync, SyncError},
};
use crate::model::Snapshot;

/// Flags of the L4 path (flattened into `xdp-ingress run`).
#[derive(Clone, Debug, clap::Args)]
pub struct L4Args {
    /// bpffs directory for the pinned maps (mounted if nothing is there).
    #[arg(long, default_value = DEFAULT_PIN_ROOT, env = "XDP_INGRESS_BPF_PIN_ROOT")]
    pub bpf_pin_root: PathBuf,
    /// Maglev table size per service (a prime, at most 65537).
    #[arg(long, default_value_t = DEFAULT_MAGLEV_SIZE, value_parser = parse_maglev_size)]
    pub l4_maglev_size: u32,
    /// L4 service ports served (1 to 32767: two Maglev tables of up to 65537 slots each per
    /// service must stay addressable by a `u32` map index).
    #[arg(long, default_value_t = DEFAULT_MAX_SERVICES,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_L4_SERVICES)))]
    pub l4_max_services: u32,
    /// L4 backends across all services (1 to 16777216).
    #[arg(long, default_value_t = DEFAULT_MAX_BACKENDS,
          value_parser = clap::value_parser!(u32).range(1..=MAX_L4_TABLE))]
    pub l4_max_backends: u32,
    /// Connection table entries, and as many reverse-NAT entries (1 to 16777216). Not an LRU:
    /// when full, new flows are refused (`drop_flow_table_full`) and established ones keep their
    /// entries. Ended local flows' tombstones (an LRU) get as many.
    #[arg(long, default_value_t = DEFAULT_CONNTRACK_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_L4_TABLE))]
    pub l4_conntrack_size: u32,
    /// ClientIP affinity entries (LRU; 1 to 16777216).
    #[arg(long, default_value_t = DEFAULT_AFFINITY_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_L4_TABLE))]
    pub l4_affinity_size: u32,
    /// Sources the per-source SYN rate limits track (`xdp-ingress.dev/syn-rate-limit`,
    /// `--syn-rate-limit-per-source`), one entry per (service, source address or IPv6 /64);
    /// an LRU (1 to 16777216): at the bound the least recently seen source is forgotten,
    /// which hands it a fresh burst, never blocks anyone.
    #[arg(long, default_value_t = DEFAULT_SYN_SOURCES_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_L4_TABLE))]
    pub l4_syn_limit_sources: u32,
    /// Source ports for SNAT toward remote endpoints, `MIN-MAX`.
    #[arg(long, default_value = "61000-65000", value_parser = parse_port_range)]
    pub l4_snat_ports: (u16, u16),
    /// Node IPv4 address used as SNAT source toward remote endpoints.
    #[arg(long)]
    pub l4_node_v4: Option<Ipv4Addr>,
    /// Node IPv6 address used as SNAT source toward remote endpoints.
    #[arg(long)]
    pub l4_node_v6: Option<Ipv6Addr>,
    /// Idle life of an established TCP flow, seconds (1 to 604800; the kernel's conntrack
    /// keeps established flows 5 days).
    #[arg(long, default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=MAX_L4_TIMEOUT_SECS))]
    pub l4_tcp_timeout_secs: u64,
    /// Idle life of a UDP flow, seconds (1 to 604800).
    #[arg(long, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_L4_TIMEOUT_SECS))]
    pub l4_udp_timeout_secs: u64,
    /// Life of a TCP flow after a FIN or RST from either side (conntrack's TIME_WAIT), seconds
    /// (1 to 604800); its SNAT source port is free for a new flow after it.
    #[arg(long, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=MAX_L4_TIMEOUT_SECS))]
    pub l4_tcp_closing_timeout_secs: u64,
    /// How long a removed endpoint keeps its existing TCP connections, seconds (0 to 604800).
    /// Its UDP flows move to a live endpoint at once, as kube-proxy's; a terminating endpoint
    /// that still serves keeps all its flows.
    #[arg(long, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=MAX_L4_TIMEOUT_SECS))]
    pub l4_drain_secs: u64,
    /// This node's name; endpoints with another `nodeName` are remote. Not a flag here: the
    /// run command fills it from `--node-name`.
    #[arg(skip)]
    pub node_name: Option<String>,
    /// Interfaces toward local pods (node side of their veths) to reverse-NAT replies at their
    /// ingress as well; optional: the NIC's egress program already does it.
    #[arg(long, value_delimiter = ',')]
    pub l4_pod_ifaces: Vec<String>,
    /// Pin the XDP/tc links under the pin root and leave them attached at exit: traffic keeps
    /// flowing while the daemon restarts, and the next start swaps its program in atomically.
    #[arg(long)]
    pub l4_keep_attached: bool,
}

/// `--l4-max-services` bound: `max_services * 2 * MAX_MAGLEV_SIZE` fits a `u32` map index.
pub const MAX_L4_SERVICES: u32 = u32::MAX / (2 * MAX_MAGLEV_SIZE);
/// Bound of the other L4 table sizes (entries).
pub const MAX_L4_TABLE: i64 = 1 << 24;
/// Bound of the L4 timeouts, seconds (7 days); the BPF side keeps them as `u32` seconds.
pub const MAX_L4_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

fn parse_maglev_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n > MAX_MAGLEV_SIZE || !super::maglev::is_prime(n) {
        return Err(format!("{n} is not a prime of at most {MAX_MAGLEV_SIZE}"));
    }
    Ok(n)
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected MIN-MAX")?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{e}"))?;
    if a == 0 || b < a {
        return Err(format!("bad port range {s}"));
    }
    Ok((a, b))
}

impl L4Args {
    /// The defaults, with maps pinned under `pin_root` (tests, embedding).
    pub fn with_pin_root(pin_root: impl Into<PathBuf>) -> Self {
        Self {
            bpf_pin_root: pin_root.into(),
            l4_maglev_size: MapSizes::DEFAULT.maglev_size,
            l4_max_services: MapSizes::DEFAULT.max_services,
            l4_max_backends: MapSizes::DEFAULT.max_backends,
            l4_conntrack_size: MapSizes::DEFAULT.conntrack,
            l4_affinity_size: MapSizes::DEFAULT.affinity,
            l4_syn_limit_sources: MapSizes::DEFAULT.syn_sources,
            l4_snat_ports: (61000, 65000),
            l4_node_v4: None,
            l4_node_v6: None,
            l4_tcp_timeout_secs: 3600,
            l4_udp_timeout_secs: 60,
            l4_tcp_closing_timeout_secs: 10,
            l4_drain_secs: 60,
            node_name: None,
            l4_pod_ifaces: Vec::new(),
            l4_keep_attached: false,
        }
    }

    pub fn options(&self) -> L4Options {
        L4Options {
            sizes: self.sizes(),
            snat_ports: self.l4_snat_ports,
            node_v4: self.l4_node_v4,
            node_v6: self.l4_node_v6,
            tcp_timeout: Duration::from_secs(self.l4_tcp_timeout_secs),
            tcp_closing_timeout: Duration::from_secs(self.l4_tcp_closing_timeout_secs),
            udp_timeout: Duration::from_secs(self.l4_udp_timeout_secs),
            drain: Duration::from_secs(self.l4_drain_secs),
            node_name: self.node_name.clone(),
            local_addrs: Vec::new(),
        }
    }

    /// The maps' sizes these flags ask for.
    pub fn sizes(&self) -> MapSizes {
        MapSizes {
            max_services: self.l4_max_services,
            max_backends: self.l4_max_backends,
            maglev_size: self.l4_maglev_size,
            conntrack: self.l4_conntrack_size,
            affinity: self.l4_affinity_size,
            syn_sources: self.l4_syn_limit_sources,
        }
    }

    /// Expected (type, key size, value size, max entries) of every pinned map.
    fn layouts(&self) -> Vec<(&'static str, MapType, u32, u32, u32)> {
        use std::mem::size_of;
        let sz = |n: usize| n as u32;
        let sizes = self.sizes();
        vec![
            (
                MAP_SERVICES,
                MapType::Hash,
                sz(size_of::<ServiceKey>()),
                sz(size_of::<ServiceValue>()),
                sizes.services(),
            ),
            (
                MAP_BACKENDS,
                MapType::Array,
                4,
                sz(size_of::<Backend>()),
                sizes.max_backends,
            ),
            (MAP_MAGLEV, MapType::Array, 4, 4, sizes.maglev()),
            (
                MAP_CONNTRACK,
                MapType::Hash,
                sz(size_of::<FlowKey>()),
                sz(size_of::<CtEntry>()),
                sizes.conntrack,
            ),
            (
                MAP_REVNAT,
                MapType::Hash,
                sz(size_of::<FlowKey>()),
                sz(size_of::<RevNatEntry>()),
                sizes.conntrack,
            ),
            (
                MAP_TOMBSTONES,
                MapType::LruHash,
                sz(size_of::<FlowKey>()),
                sz(size_of::<u64>()),
                sizes.conntrack,
            ),
            (
                MAP_AFFINITY,
                MapType::LruHash,
                sz(size_of::<AffinityKey>()),
                sz(size_of::<AffinityValue>()),
                sizes.affinity,
            ),
            (
                MAP_SOURCE_RANGES,
                MapType::LpmTrie,
                4 + sz(size_of::<SourceRangeData>()),
                4,
                SOURCE_RANGES_SIZE,
            ),
            (
                MAP_SERVICE_STATS,
                MapType::PerCpuArray,
                4,
                sz(size_of::<L4Counter>()),
                sizes.max_services,
            ),
            (
                MAP_BACKEND_STATS,
                MapType::PerCpuArray,
                4,
                sz(size_of::<L4Counter>()),
                sizes.max_backends,
            ),
            (
                MAP_SYN_LIMITS,
                MapType::Array,
                4,
                sz(size_of::<SynLimitConfig>()),
                sizes.max_services,
            ),
            (
                MAP_SYN_SOURCES,
                MapType::LruHash,
                sz(size_of::<SynSourceKey>()),
                sz(size_of::<SynSourceState>()),
                sizes.syn_sources,
            ),
            (
                MAP_SYN_LISTENERS,
                MapType::Hash,
                sz(size_of::<SynListenerKey>()),
                sz(size_of::<SynListener>()),
                SYN_LISTENERS_SIZE,
            ),
            (
                MAP_SYN_LISTENER_STATS,
                MapType::PerCpuArray,
                4,
                sz(size_of::<L4Counter>()),
                SYN_LISTENERS_SIZE,
            ),
            (
                MAP_SYN_LISTEN_PORTS,
                MapType::Array,
                4,
                4,
                SYN_LISTEN_PORT_WORDS,
            ),
            (MAP_CONFIG, MapType::Array, 4, sz(size_of::<L4Config>()), 1),
            (MAP_PORTS, MapType::Array, 4, 4, PORT_WORDS),
            (
                MAP_LOCAL_ADDRS,
                MapType::Array,
                4,
                sz(size_of::<LocalAddrs>()),
                1,
            ),
            (
                MAP_SERVICE_NAMES,
                MapType::Array,
                4,
                sz(size_of::<ServiceName>()),
                sizes.max_services,
            ),
            (
                MAP_STATS,
                MapType::PerCpuArray,
                4,
                sz(size_of::<Counter>()),
                STATS_SLOTS,
            ),
        ]
    }
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(dir: &Path) -> std::io::Result<bool> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(dir: &Path) -> std::io::Result<()> {
    info!(dir = %dir.display(), "mounting bpffs for pinned maps");
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `dir` a directory on bpffs: when its parent is not on bpffs (e.g. an unmounted
/// `/sys/fs/bpf`), bpffs is mounted on the parent if `dir` cannot be created, else on `dir`.
pub fn ensure_bpffs(dir: &Path) -> Result<(), SyncError> {
    let err = |source| SyncError::Pin {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        if !is_bpffs(dir).map_err(err)? {
            mount_bpffs(dir).map_err(err)?;
        }
        return Ok(());
    }
    if std::fs::create_dir_all(dir).is_err() {
        // e.g. /sys/fs/bpf exists (sysfs) but nothing is mounted on it yet.
        let parent = dir.parent().unwrap_or(dir);
        if !is_bpffs(parent).map_err(err)? {
            mount_bpffs(parent).map_err(err)?;
        }
        std::fs::create_dir_all(dir).map_err(err)?;
        return Ok(());
    }
    if !is_bpffs(dir).map_err(err)? {
        mount_bpffs(dir).map_err(err)?;
    }
    Ok(())
}

/// The loaded L4 programs and maps, their attachments, and the map mirror.
pub struct L4Dataplane {
    ebpf: Ebpf,
    sync: L4Sync,
    xdp: Option<(String, XdpLinkId)>,
    tc: Vec<(&'static str, String, SchedClassifierLinkId)>,
    /// Where links are pinned (the pin root), when maps are pinned.
    link_root: Option<PathBuf>,
    /// Links outlive the process (`--l4-keep-attached`); otherwise a link a previous run left
    /// pinned is taken over and unpinned, so it goes away with this process.
    keep_attached: bool,
    pinned: Vec<PinnedLink>,
    /// How often [`L4Dataplane::maintain`] sweeps the flow tables, and when it last did.
    sweep_every: Duration,
    last_sweep: Option<std::time::Instant>,
    /// The flow tables as of the last sweep.
    flow_tables: super::flows::FlowTables,
}

impl L4Dataplane {
    /// Loads `object` with its maps pinned under `args.bpf_pin_root` (reused when their layout
    /// matches, so flows survive a restart) and loads its programs.
    pub fn open(args: &L4Args, object: &[u8]) -> Result<Self, SyncError> {
        let root = &args.bpf_pin_root;
        ensure_bpffs(root)?;
        let layouts = args.layouts();
        for (name, ty, key, value, max) in &layouts {
            let path = root.join(name);
            if !path.exists() {
                continue;
            }
            let ok = aya::maps::MapInfo::from_pin(&path).is_ok_and(|i| {
                i.map_type().is_ok_and(|t| t == *ty)
                    && i.key_size() == *key
                    && i.value_size() == *value
                    && i.max_entries() == *max
            });
            if !ok {
                warn!(map = name, path = %path.display(), "pinned map layout changed: recreating it (its entries are lost)");
                std::fs::remove_file(&path).map_err(|source| SyncError::Pin {
                    path: path.clone(),
                    source,
                })?;
            } else {
                info!(map = name, "reusing pinned map");
            }
        }
        let mut loader = EbpfLoader::new();
        let paths: Vec<(&'static str, PathBuf)> =
            layouts.iter().map(|l| (l.0, root.join(l.0))).collect();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        for (name, _, _, _, max) in &layouts {
            loader.map_max_entries(name, *max);
        }
        let mut ebpf = loader.load(object).map_err(SyncError::Load)?;
        super::loader::start_ebpf_logger(&mut ebpf);
        let mut this = Self::from_ebpf(ebpf, args.options())?;
        this.link_root = Some(root.clone());
        this.keep_attached = args.l4_keep_attached;
        Ok(this)
    }

    /// Wraps an already loaded object (tests load it unpinned) and loads its programs.
    pub fn from_ebpf(mut ebpf: Ebpf, opts: L4Options) -> Result<Self, SyncError> {
        let xdp: &mut Xdp = program(&mut ebpf, PROG_XDP_INGRESS)?;
        super::loader::load_program(|| xdp.load()).map_err(|source| SyncError::Program {
            name: PROG_XDP_INGRESS,
            source,
        })?;
        for name in [PROG_TC_REPLY, PROG_TC_NIC_EGRESS] {
            let tc: &mut SchedClassifier = program(&mut ebpf, name)?;
            super::loader::load_program(|| tc.load())
                .map_err(|source| SyncError::Program { name, source })?;
        }
        // Often enough that a closed flow's room comes back about when its closing timeout
        // ends; at most every 10 s (a sweep reads every entry), at least every second.
        let sweep_every = opts
            .tcp_closing_timeout
            .min(opts.udp_timeout)
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        Ok(Self {
            ebpf,
            sweep_every,
            last_sweep: None,
            flow_tables: Default::default(),
            sync: L4Sync::new(opts),
            xdp: None,
            tc: Vec::new(),
            link_root: None,
            keep_attached: false,
            pinned: Vec::new(),
        })
    }

    /// Diffs `snapshot` into the maps.
    pub fn apply(&mut self, snapshot: &Snapshot) -> Result<ApplyReport, SyncError> {
        self.sync.apply(&mut self.ebpf, snapshot)
    }

    /// Ends finished drains and, when due, sweeps the flow tables; call about once a second.
    pub fn maintain(&mut self) -> Result<ApplyReport, SyncError> {
        let report = self.sync.maintain(&mut self.ebpf)?;
        if self
            .last_sweep
            .is_none_or(|t| t.elapsed() >= self.sweep_every)
        {
            self.sweep_flows()?;
        }
        Ok(report)
    }

    /// Deletes timed-out flows and orphaned reverse entries now (see [`super::flows`]).
    pub fn sweep_flows(&mut self) -> Result<super::flows::SweepReport, SyncError> {
        let r = super::flows::sweep(&mut self.ebpf, super::flows::monotonic_ns())?;
        self.last_sweep = Some(std::time::Instant::now());
        self.flow_tables = r.tables;
        if r.tables.full() {
            warn!(
                flows = r.tables.flows,
                reverse = r.tables.reverse,
                capacity = r.tables.capacity,
                "L4 flow table full: new flows are refused (drop_flow_table_full) until flows end; raise --l4-conntrack-size"
            );
        }
        Ok(r)
    }

    /// The flow tables' occupancy as of the last sweep.
    pub fn flow_tables(&self) -> super::flows::FlowTables {
        self.flow_tables
    }

    /// The node's addresses, where NodePorts answer (empty: any address).
    pub fn set_local_addrs(&mut self, addrs: Vec<std::net::IpAddr>) -> Result<(), SyncError> {
        self.sync.set_local_addrs(&mut self.ebpf, addrs)
    }

    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches the XDP entry point to the NIC (native, else generic for `Auto`). A link a
    /// previous `--l4-keep-attached` run pinned gets this program swapped in atomically
    /// instead, so no packet meets an interface without the program; it stays pinned only if
    /// this run keeps links attached too.
    pub fn attach_xdp(&mut self, iface: &str, mode: AttachMode) -> Result<AttachMode, SyncError> {
        let pin = self
            .link_root
            .as_ref()
            .map(|r| r.join(format!("link_xdp_{iface}")));
        let prog: &mut Xdp = program(&mut self.ebpf, PROG_XDP_INGRESS)?;
        let perr = |source| SyncError::Program {
            name: PROG_XDP_INGRESS,
            source,
        };
        if let Some(p) = &pin
            && let Ok(old) = PinnedLink::from_pin(p)
        {
            let link = XdpLink::try_from(FdLink::from(old)).map_err(SyncError::Link)?;
            let id = prog.attach_to_link(link).map_err(perr)?;
            info!(%iface, "XDP program swapped into the pinned link: established flows kept");
            if !self.keep_attached {
                // Ours now: unpinned, it goes away when this process detaches or exits.
                let _ = std::fs::remove_file(p);
                self.xdp = Some((iface.to_string(), id));
            }
            return Ok(mode);
        }
        let (link, used) = super::loader::attach_xdp(prog, iface, mode).map_err(perr)?;
        info!(%iface, mode = ?used, "XDP L4 program attached");
        match pin {
            Some(p) if self.keep_attached => {
                let link = prog.take_link(link).map_err(perr)?;
                let fd = FdLink::try_from(link).map_err(SyncError::Link)?;
                let pinned = fd.pin(&p).map_err(|e| SyncError::Pin {
                    path: p.clone(),
                    source: std::io::Error::other(e),
                })?;
                self.pinned.push(pinned);
            }
            _ => self.xdp = Some((iface.to_string(), link)),
        }
        Ok(used)
    }

    /// Attaches the reply reverse-NAT program at tc egress of the NIC: replies from local pods
    /// are rewritten after the kernel routed them toward the client.
    pub fn attach_nic_egress(&mut self, iface: &str) -> Result<(), SyncError> {
        self.attach_classifier(PROG_TC_NIC_EGRESS, iface, TcAttachType::Egress, "tc_egress")
    }

    /// Attaches the reply reverse-NAT program at tc ingress of a pod-facing interface (optional:
    /// the NIC egress program covers the same replies).
    pub fn attach_tc(&mut self, iface: &str) -> Result<(), SyncError> {
        self.attach_classifier(PROG_TC_REPLY, iface, TcAttachType::Ingress, "tc_ingress")
    }

    /// Attaches a tc program (pinned and swapped like the XDP link with `--l4-keep-attached`).
    fn attach_classifier(
        &mut self,
        name: &'static str,
        iface: &str,
        at: TcAttachType,
        pin_prefix: &str,
    ) -> Result<(), SyncError> {
        let pin = self
            .link_root
            .as_ref()
            .map(|r| r.join(format!("link_{pin_prefix}_{iface}")));
        // clsact is needed for netlink tc; tcx (6.6+) does without. An existing qdisc is fine.
        let _ = aya::programs::tc::qdisc_add_clsact(iface);
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
        let perr = |source| SyncError::Program { name, source };
        if let Some(p) = &pin
            && let Ok(old) = PinnedLink::from_pin(p)
        {
            let link = SchedClassifierLink::try_from(FdLink::from(old)).map_err(SyncError::Link)?;
            let id = prog.attach_to_link(link).map_err(perr)?;
            info!(%iface, program = name, "tc program swapped into the pinned link");
            if !self.keep_attached {
                let _ = std::fs::remove_file(p);
                self.tc.push((name, iface.to_string(), id));
            }
            return Ok(());
        }
        let link = prog.attach(iface, at).map_err(perr)?;
        info!(%iface, program = name, "tc program attached");
        match pin {
            Some(p) if self.keep_attached => {
                let link = prog.take_link(link).map_err(perr)?;
                let fd = FdLink::try_from(link).map_err(SyncError::Link)?;
                let pinned = fd.pin(&p).map_err(|e| SyncError::Pin {
                    path: p.clone(),
                    source: std::io::Error::other(e),
                })?;
                self.pinned.push(pinned);
            }
            _ => self.tc.push((name, iface.to_string(), link)),
        }
        Ok(())
    }

    /// Detaches everything this process attached (pinned maps stay; pinned links stay
    /// attached for the next run, see [`L4Dataplane::unpin_links`]).
    pub fn detach(&mut self) {
        // Closing our fds of pinned links leaves them attached.
        self.pinned.clear();
        if let Some((iface, link)) = self.xdp.take()
            && let Ok(prog) = program::<Xdp>(&mut self.ebpf, PROG_XDP_INGRESS)
            && let Err(e) = prog.detach(link)
        {
            warn!(%iface, error = %e, "detaching XDP");
        }
        for (name, iface, link) in std::mem::take(&mut self.tc) {
            if let Ok(prog) = program::<SchedClassifier>(&mut self.ebpf, name)
                && let Err(e) = prog.detach(link)
            {
                warn!(%iface, error = %e, "detaching tc");
            }
        }
    }
}

impl L4Dataplane {
    /// Removes the links a keep-attached run pinned, detaching them.
    pub fn unpin_links(&mut self) -> Result<(), SyncError> {
        for link in std::mem::take(&mut self.pinned) {
            link.unpin().map_err(|source| SyncError::Pin {
                path: PathBuf::from("link"),
                source,
            })?;
        }
        Ok(())
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, SyncError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(SyncError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    p.try_into()
        .map_err(|source| SyncError::Program { name, source })
}

/// Every address of every interface of this network namespace, sorted (getifaddrs).
pub fn local_addrs() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: the address family says which sockaddr this is.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    out.push(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)).into());
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    out.push(Ipv6Addr::from(sa.sin6_addr.s6_addr).into());
                }
                _ => {}
            }
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

/// The first IPv4 and the first global IPv6 address of `iface` (getifaddrs).
pub fn iface_addrs(iface: &str) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return (None, None);
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: NUL-terminated name from the kernel.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: the address family says which sockaddr this is.
        unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET if v4.is_none() => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    v4 = Some(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)));
                }
                libc::AF_INET6 if v6.is_none() => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    let a = Ipv6Addr::from(sa.sin6_addr.s6_addr);
                    // Link-local addresses do not route beyond the link.
                    if a.segments()[0] & 0xffc0 != 0xfe80 {
                        v6 = Some(a);
                    }
                }
                _ => {}
            }
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    (v4, v6)
}

/// The L4 dataplane shared between the control loop (which applies snapshots) and the run
/// loop (counters, drain maintenance, shutdown).
#[derive(Clone)]
pub struct L4Handle(std::sync::Arc<std::sync::Mutex<L4Dataplane>>);

impl L4Handle {
    /// Opens the dataplane (pinned maps), attaches XDP to `iface` and tc to the pod interfaces.
    pub fn start(
        args: &L4Args,
        object: &[u8],
        iface: &str,
        mode: AttachMode,
    ) -> Result<Self, SyncError> {
        let mut args = args.clone();
        // SNAT toward other nodes uses the NIC's own addresses unless told otherwise.
        let (v4, v6) = iface_addrs(iface);
        if args.l4_node_v4.is_none() {
            args.l4_node_v4 = v4;
        }
        if args.l4_node_v6.is_none() {
            args.l4_node_v6 = v6;
        }
        info!(%iface, node_v4 = ?args.l4_node_v4, node_v6 = ?args.l4_node_v6, "SNAT addresses for remote endpoints");
        let args = &args;
        let mut dp = L4Dataplane::open(args, object)?;
        // NodePorts answer on this node's addresses only, set before traffic is steered.
        dp.set_local_addrs(local_addrs())?;
        dp.attach_xdp(iface, mode)?;
        dp.attach_nic_egress(iface)?;
        for pod_if in &args.l4_pod_ifaces {
            dp.attach_tc(pod_if)?;
        }
        // Pinned tables from the last run may hold flows that ended meanwhile.
        dp.sweep_flows()?;
        Ok(Self(std::sync::Arc::new(std::sync::Mutex::new(dp))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, L4Dataplane> {
        // A panic while holding the lock leaves maps consistent (each write is atomic).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn apply(&self, snapshot: &Snapshot) -> Result<ApplyReport, SyncError> {
        let report = self.lock().apply(snapshot)?;
        tracing::debug!(?report, "L4 snapshot applied");
        Ok(report)
    }

    /// Ends finished drains and follows the node's addresses; call about once a second.
    pub fn maintain(&self) -> Result<ApplyReport, SyncError> {
        let mut dp = self.lock();
        dp.set_local_addrs(local_addrs())?;
        dp.maintain()
    }

    /// The global per-reason counters, summed over CPUs.
    pub fn stats(&self) -> Result<super::stats::StatsView, SyncError> {
        let dp = self.lock();
        let map = dp
            .ebpf()
            .map(MAP_STATS)
            .ok_or(SyncError::MissingMap(MAP_STATS))?;
        let array = aya::maps::PerCpuArray::try_from(map).map_err(|source| SyncError::Map {
            name: MAP_STATS,
            source,
        })?;
        super::stats::read(&array).map_err(|source| SyncError::Map {
            name: MAP_STATS,
            source,
        })
    }

    /// The flow tables' occupancy as of the last sweep.
    pub fn flow_tables(&self) -> super::flows::FlowTables {
        self.lock().flow_tables()
    }

    /// SYNs dropped by each limited service's per-source SYN rate limit.
    pub fn syn_limited(&self) -> Result<Vec<(String, u64)>, SyncError> {
        super::syn_limit::dropped(self.lock().ebpf())
    }

    /// Puts the proxy's listeners (the sockets it bound) under the node-wide per-source SYN
    /// limit `limit` (`None`: lifts it); see `dataplane::syn_listeners`.
    pub fn limit_proxy_listeners(
        &self,
        listeners: &[std::net::SocketAddr],
        limit: Option<crate::model::SynRateLimit>,
    ) -> Result<(), SyncError> {
        super::syn_listeners::write(self.lock().ebpf_mut(), listeners, limit)
    }

    /// Detaches (pinned maps stay; links stay too with `--l4-keep-attached`).
    pub fn shutdown(&self) {
        self.lock().detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_reject_bad_maglev_sizes_and_port_ranges() {
        assert_eq!(parse_maglev_size("16381"), Ok(16381));
        assert_eq!(parse_maglev_size("65537"), Ok(65537));
        assert!(parse_maglev_size("16380").is_err());
        assert!(
            parse_maglev_size("131071").is_err(),
            "prime but above the maximum"
        );
        assert_eq!(parse_port_range("61000-65000"), Ok((61000, 65000)));
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("20-10").is_err());
        assert!(parse_port_range("1000").is_err());
    }

    #[test]
    fn run_flags_parse_with_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            l4: L4Args,
        }
        let w = W::parse_from(["x", "--l4-snat-ports", "40000-40010", "--l4-keep-attached"]);
        assert_eq!(w.l4.l4_snat_ports, (40000, 40010));
        assert!(w.l4.l4_keep_attached);
        assert_eq!(w.l4.bpf_pin_root, PathBuf::from(DEFAULT_PIN_ROOT));
        let o = w.l4.options();
        assert_eq!(o.sizes, MapSizes::DEFAULT);
        assert_eq!(o.config().snat_port_min, 40000);
    }

    #[test]
    fn out_of_range_l4_flags_are_clap_errors() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct W {
            #[command(flatten)]
            l4: L4Args,
        }
        for (flag, bad, good) in [
            // 32768 services * 2 * 65537 slots overflows the u32 Maglev index.
            ("--l4-max-services", "32768", "32767"),
            ("--l4-max-services", "0", "1"),
            ("--l4-max-backends", "16777217", "16777216"),
            ("--l4-conntrack-size", "0", "1"),
            ("--l4-affinity-size", "4294967295", "65536"),
            // Kept as u32 seconds by the BPF side: 2^32 s would wrap to 0.
            ("--l4-tcp-timeout-secs", "4294967296", "604800"),
            ("--l4-udp-timeout-secs", "604801", "1"),
            ("--l4-tcp-closing-timeout-secs", "0", "10"),
            ("--l4-drain-secs", "18446744073709551615", "0"),
        ] {
            let e = W::try_parse_from(["x", flag, bad]).expect_err(bad);
            assert!(e.to_string().contains(flag), "{e}");
            assert!(
                W::try_parse_from(["x", flag, good]).is_ok(),
                "{flag} {good}"
            );
        }
        let w = W::parse_from([
            "x",
            "--l4-max-services",
            "32767",
            "--l4-maglev-size",
            "65537",
        ]);
        let maglev =
            w.l4.layouts()
                .into_iter()
                .find(|l| l.0 == MAP_MAGLEV)
                .unwrap();
        assert_eq!(u64::from(maglev.4), 32767 * 2 * 65537);
    }
}
