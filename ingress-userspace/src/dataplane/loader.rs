//! Loads the eBPF object and attaches the XDP program to one interface.

use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use ingress_common::{PROG_XDP_INGRESS, stats::MAP_STATS};
use tracing::{info, warn};

use super::stats::{self, StatsView};

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching XDP to {iface} ({mode:?})")]
    Attach {
        iface: String,
        mode: AttachMode,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// How many times [`load_program`] tries a program load the verifier gave up on with EAGAIN.
const LOAD_ATTEMPTS: usize = 5;

/// Loads a program with `load` (e.g. `|| xdp.load()`), trying again when the kernel answers
/// EAGAIN: the verifier stops with EAGAIN when the loading thread has a signal pending, which
/// says nothing about the program. libbpf retries the same way (`PROG_LOAD_ATTEMPTS`, 5).
///
/// # Errors
/// The last load error: any error other than EAGAIN at once, EAGAIN after five attempts.
pub fn load_program(
    mut load: impl FnMut() -> Result<(), aya::programs::ProgramError>,
) -> Result<(), aya::programs::ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                warn!(
                    attempt,
                    "the verifier was interrupted (EAGAIN); loading again"
                );
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// How to attach: native (driver) XDP, generic (skb) XDP, or native with a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum AttachMode {
    /// Native, falling back to generic with a warning.
    Auto,
    Native,
    Generic,
}

/// A loaded object whose XDP program is attached to an interface; detached on drop.
pub struct XdpAttachment {
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    iface: String,
    mode: AttachMode,
}

impl XdpAttachment {
    /// Loads `object` and attaches its XDP entry point to `iface`.
    pub fn attach(object: &[u8], iface: &str, mode: AttachMode) -> Result<Self, LoaderError> {
        let ebpf = EbpfLoader::new().load(object).map_err(LoaderError::Load)?;
        let mut this = Self {
            ebpf,
            link: None,
            iface: iface.to_string(),
            mode,
        };
        start_ebpf_logger(&mut this.ebpf);
        let prog = this.xdp_program()?;
        load_program(|| prog.load()).map_err(|source| LoaderError::Program {
            name: PROG_XDP_INGRESS,
            source,
        })?;
        let (link, used) = attach_xdp(prog, iface, mode).map_err(|source| LoaderError::Attach {
            iface: iface.to_string(),
            mode,
            source,
        })?;
        info!(%iface, mode = ?used, "XDP program attached");
        this.link = Some(link);
        this.mode = used;
        Ok(this)
    }

    fn xdp_program(&mut self) -> Result<&mut Xdp, LoaderError> {
        self.ebpf
            .program_mut(PROG_XDP_INGRESS)
            .ok_or(LoaderError::MissingProgram(PROG_XDP_INGRESS))?
            .try_into()
            .map_err(|source| LoaderError::Program {
                name: PROG_XDP_INGRESS,
                source,
            })
    }

    /// The mode actually in use (never `Auto`).
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Counters summed over CPUs.
    pub fn stats(&self) -> Result<StatsView, LoaderError> {
        let map = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(LoaderError::MissingMap(MAP_STATS))?;
        let array = PerCpuArray::try_from(map).map_err(|source| LoaderError::Map {
            name: MAP_STATS,
            source,
        })?;
        stats::read(&array).map_err(|source| LoaderError::Map {
            name: MAP_STATS,
            source,
        })
    }

    /// Detaches the program now (it is also detached on drop).
    pub fn detach(mut self) -> Result<(), LoaderError> {
        if let Some(link) = self.link.take() {
            let iface = self.iface.clone();
            let mode = self.mode;
            self.xdp_program()?
                .detach(link)
                .map_err(|source| LoaderError::Attach {
                    iface: iface.clone(),
                    mode,
                    source,
                })?;
            info!(%iface, "XDP program detached");
        }
        Ok(())
    }
}

/// Attaches `prog` to `iface` in `mode`; `Auto` tries native XDP and falls back to generic
/// (skb) XDP with a warning. Returns the link and the mode in use (never `Auto`).
pub fn attach_xdp(
    prog: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> Result<(XdpLinkId, AttachMode), aya::programs::ProgramError> {
    match mode {
        AttachMode::Native => Ok((prog.attach(iface, XdpMode::Driver)?, mode)),
        AttachMode::Generic => Ok((prog.attach(iface, XdpMode::Skb)?, mode)),
        AttachMode::Auto => match prog.attach(iface, XdpMode::Driver) {
            Ok(link) => Ok((link, AttachMode::Native)),
            Err(e) => {
                warn!(%iface, error = %e, "native XDP unavailable, falling back to generic (skb) mode");
                Ok((prog.attach(iface, XdpMode::Skb)?, AttachMode::Generic))
            }
        },
    }
}

/// Sends the program's own aya-log records to `tracing`. The logger takes the log ring buffer
/// out of `ebpf` and keeps it alive; without it the program still works, only its log lines
/// are lost.
pub fn start_ebpf_logger(ebpf: &mut Ebpf) {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => spawn_log_pump(logger),
        Err(e) => warn!(error = %e, "eBPF logger unavailable"),
    }
}

/// Forwards the program's aya-log records to `tracing` while a tokio runtime is around.
fn spawn_log_pump(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        // Without a runtime nobody drains the ring; keep the map alive by leaking nothing else.
        std::mem::forget(logger);
        return;
    };
    handle.spawn(async move {
        // SAFETY: the logger owns the ring buffer fd and neither closes nor replaces it while
        // registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        };
        let mut fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                warn!(error = %e, "cannot poll the eBPF log ring");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
