//! Debian's `redis-server` for tests: started on a loopback port (of the caller's namespace,
//! or of a test namespace), without persistence, in a temporary directory; killed on drop.
//! It can be killed and started again on the same port (a Redis outage and its return).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{netns::Netns, process::KillOnDrop};

pub struct RedisServer {
    /// `127.0.0.1:port` inside `ns` (or the caller's namespace).
    pub addr: SocketAddr,
    /// The TLS port's address ([`RedisServer::start_tls`]).
    pub tls_addr: Option<SocketAddr>,
    /// Certificate and key files of the TLS port.
    tls_files: Option<(PathBuf, PathBuf)>,
    ns: Option<Netns>,
    dir: tempfile::TempDir,
    process: std::sync::Mutex<Option<KillOnDrop>>,
}

/// Where `redis-server` is, if installed.
pub fn redis_server_bin() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl RedisServer {
    /// Starts Redis on `127.0.0.1:port` inside `ns` (`None`: this namespace; `port` 0: a free
    /// one of this process's choosing) and waits until it answers PING.
    pub fn start(ns: Option<&Netns>, port: u16) -> anyhow::Result<RedisServer> {
        let port = match port {
            0 => crate::ports::reserve(1),
            p => p,
        };
        let r = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tls_addr: None,
            tls_files: None,
            ns: ns.cloned(),
            dir: tempfile::tempdir()?,
            process: std::sync::Mutex::new(None),
        };
        r.restart()?;
        Ok(r)
    }

    /// [`RedisServer::start`] with a TLS port too (a free one), serving `cert_pem` (the chain)
    /// and `key_pem`; clients are not asked for certificates. The plain port stays, for PING.
    pub fn start_tls(
        ns: Option<&Netns>,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<RedisServer> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, cert_pem)?;
        std::fs::write(&key, key_pem)?;
        let r = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], crate::ports::reserve(1))),
            tls_addr: Some(SocketAddr::from(([127, 0, 0, 1], crate::ports::reserve(1)))),
            tls_files: Some((cert, key)),
            ns: ns.cloned(),
            dir,
            process: std::sync::Mutex::new(None),
        };
        r.restart()?;
        Ok(r)
    }

    /// The `rediss://` URL of the TLS port.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("rediss://{a}"))
    }

    /// The URL for `--rate-limit-redis`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server: a Redis that accepts connections and
    /// answers nothing, as one stalled or overloaded.
    pub fn freeze(&self, frozen: bool) {
        let guard = self.process.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = guard.as_ref() {
            let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill has no memory preconditions; the pid is our own unreaped child
            // (`ip netns exec` execs redis-server in place).
            unsafe { libc::kill(p.id() as i32, signal) };
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub fn restart(&self) -> anyhow::Result<()> {
        self.kill();
        let bin = redis_server_bin().ok_or_else(|| {
            anyhow::anyhow!("redis-server is not installed (apt-get install redis-server)")
        })?;
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let (Some(addr), Some((cert, key))) = (self.tls_addr, &self.tls_files) {
            cmd.arg("--tls-port")
                .arg(addr.port().to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(KillOnDrop::spawn(&mut cmd)?);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Whether the server answers PING (from its namespace).
    pub fn pings(&self) -> bool {
        let addr = self.addr;
        let ping = move || -> bool {
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
        };
        match &self.ns {
            Some(ns) => ns.enter(ping),
            None => ping(),
        }
    }
}
