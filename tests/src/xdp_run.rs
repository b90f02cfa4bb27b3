//! BPF_PROG_TEST_RUN on crafted frames: the program's action, the bytes it leaves, and its
//! in-kernel cost. Maps are not pinned, so tests running side by side share nothing.

use std::time::Duration;

use anyhow::Context;
use aya::programs::{TestRun, TestRunOptions, Xdp};

use crate::bpf_object_path;

/// Room for programs that grow the frame (encapsulation) in the output buffer.
const HEADROOM: usize = 256;

pub struct TestOutput {
    /// `XDP_ABORTED`=0, `XDP_DROP`=1, `XDP_PASS`=2, `XDP_TX`=3, `XDP_REDIRECT`=4.
    pub action: u32,
    pub frame: Vec<u8>,
}

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub struct XdpTestRun {
    pub ebpf: aya::Ebpf,
    program: String,
}

impl XdpTestRun {
    /// Loads the object from [`bpf_object_path`] and the XDP program `program` from it.
    pub fn load(program: &str) -> anyhow::Result<Self> {
        let path = bpf_object_path();
        let ebpf = aya::EbpfLoader::new().load_file(&path).with_context(|| {
            format!("loading {} (run `cargo xtask build-ebpf`)", path.display())
        })?;
        Self::from_ebpf(ebpf, program)
    }

    /// Wraps an object loaded by the caller (e.g. with its own pin directory).
    pub fn from_ebpf(mut ebpf: aya::Ebpf, program: &str) -> anyhow::Result<Self> {
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .with_context(|| format!("no program {program} in the object"))?
            .try_into()?;
        xdp_ingress::dataplane::loader::load_program(|| prog.load())
            .with_context(|| format!("loading {program}"))?;
        Ok(Self {
            ebpf,
            program: program.to_string(),
        })
    }

    fn prog(&self) -> anyhow::Result<&Xdp> {
        Ok(self
            .ebpf
            .program(&self.program)
            .context("program vanished")?
            .try_into()?)
    }

    /// Runs the program once on `frame` (at least 14 bytes: the kernel refuses shorter ones).
    pub fn run(&mut self, frame: &[u8]) -> anyhow::Result<TestOutput> {
        let mut out = vec![0u8; frame.len() + HEADROOM];
        let result = self.prog()?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: 1,
            ..TestRunOptions::new()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestOutput {
            action: result.return_value,
            frame: out,
        })
    }

    /// Average in-kernel time of one run over `repeat` runs of the same frame.
    pub fn time_per_run(&mut self, frame: &[u8], repeat: u32) -> anyhow::Result<Duration> {
        let mut out = vec![0u8; frame.len() + HEADROOM];
        let result = self.prog()?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        })?;
        Ok(result.duration)
    }
}
