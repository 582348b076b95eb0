//! Shared pieces: finding and running the `hookwarden` binary, a minimal receiver, an HTTP
//! client, percentiles and peak RSS.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `hookwarden` binary: `--bin`, else next to this executable (built if missing).
pub(crate) fn hookwarden_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no parent directory")?;
    let candidate = dir.join("hookwarden");
    if !candidate.exists() {
        let profile_release = dir.ends_with("release");
        eprintln!("hookwarden-bench: building the hookwarden binary first");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "hookwarden"]);
        if profile_release {
            cmd.arg("--release");
        }
        let status = cmd.status()?;
        if !status.success() || !candidate.exists() {
            bail!("could not build hookwarden; pass --bin PATH");
        }
    }
    Ok(candidate)
}

/// A child process, killed and reaped when dropped (also when its start fails half-way).
pub(crate) struct Reaped(pub(crate) Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `hookwarden serve` child process.
pub(crate) struct Serve {
    pub child: Reaped,
    pub addr: SocketAddr,
    pub key: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub(crate) fn start(bin: &Path, config: &str, log_level: &str) -> Result<Serve> {
        Self::start_with_key(bin, config, log_level, None)
    }

    /// Starts `serve`; `key` is the admin key when the database already has one (another
    /// instance on the same PostgreSQL database printed it on the first start).
    pub(crate) fn start_with_key(
        bin: &Path,
        config: &str,
        log_level: &str,
        known_key: Option<String>,
    ) -> Result<Serve> {
        Self::launch(Command::new(bin), config, log_level, known_key)
    }

    /// Starts `serve` under callgrind (`--instructions`).
    pub(crate) fn start_under(
        cg: &crate::instructions::Callgrind,
        bin: &Path,
        config: &str,
        log_level: &str,
    ) -> Result<Serve> {
        Self::launch(cg.command(bin), config, log_level, None)
    }

    fn launch(
        mut command: Command,
        config: &str,
        log_level: &str,
        known_key: Option<String>,
    ) -> Result<Serve> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("bench.toml");
        std::fs::write(&cfg, config)?;
        let child = command
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .env("HOOKWARDEN_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting hookwarden serve")?;
        let mut child = Reaped(child);
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        let mut key = known_key;
        // Generous: under valgrind the start takes many times longer.
        let deadline = Instant::now() + Duration::from_secs(180);
        while (addr.is_none() || key.is_none()) && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(a) = line
                .strip_prefix("hookwarden: listening on http://")
                .or_else(|| line.strip_prefix("hookwarden: listening on https://"))
            {
                addr = Some(a.trim().parse()?);
            }
            if let Some(i) = line.find("hwk_") {
                key = Some(line[i..].trim().to_owned());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        match (addr, key) {
            (Some(addr), Some(key)) => Ok(Serve {
                child,
                addr,
                key,
                _dir: dir,
            }),
            _ => bail!("hookwarden serve did not start"),
        }
    }

    /// Peak resident set size in MiB (VmHWM).
    pub(crate) fn peak_rss_mb(&self) -> f64 {
        peak_rss_mb(self.child.id())
    }
}

/// The admin API of one `serve`, one keep-alive connection.
pub(crate) struct Api {
    client: HttpClient,
    base: String,
    auth: String,
}

impl Api {
    pub(crate) fn new(serve: &Serve) -> Api {
        Api {
            client: http_client(1),
            base: format!("http://{}", serve.addr),
            auth: format!("Bearer {}", serve.key),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn call(
        &self,
        req: hyper::http::request::Builder,
        body: String,
    ) -> Result<(u16, Bytes)> {
        let req = req
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        send(&self.client, req).await
    }

    /// POSTs `body` (JSON) to `path`, failing unless the answer is `status`; the answer's body.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: String,
        status: u16,
        what: &str,
    ) -> Result<Bytes> {
        self.expect(Request::post(self.url(path)), body, status, what)
            .await
    }

    /// GETs `path`, failing unless the answer is `status`; the answer's body.
    pub(crate) async fn get(&self, path: &str, status: u16, what: &str) -> Result<Bytes> {
        self.expect(Request::get(self.url(path)), String::new(), status, what)
            .await
    }

    async fn expect(
        &self,
        req: hyper::http::request::Builder,
        body: String,
        status: u16,
        what: &str,
    ) -> Result<Bytes> {
        let (got, answer) = self.call(req, body).await?;
        if got != status {
            bail!("{what} failed: {got} {}", String::from_utf8_lossy(&answer));
        }
        Ok(answer)
    }
}

/// CPU time (user + system, every thread, live or exited) process `pid` has used so far, in
/// seconds; `None` if it cannot be read.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields count from its end.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// CPU microseconds per request of process `pid` over a phase that began at `before`.
pub(crate) fn cpu_us_per_request(pid: u32, before: Option<f64>, requests: usize) -> Option<f64> {
    let spent = cpu_seconds(pid)? - before?;
    (requests > 0).then(|| round2(spent * 1e6 / requests as f64))
}

pub(crate) fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A minimal receiver: answers 200 to everything, counts requests, and when a body carries
/// `"sent_at_us":N` records the latency from that moment (µs since `epoch`).
#[derive(Clone)]
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    pub count: Arc<AtomicU64>,
    pub latencies_us: Arc<Mutex<Vec<u64>>>,
    pub epoch: Instant,
}

pub(crate) fn extract_sent_at(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_at_us\":";
    let pos = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[pos..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

impl Receiver {
    pub(crate) async fn start(epoch: Instant) -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let r = Receiver {
            addr: listener.local_addr()?,
            count: Arc::default(),
            latencies_us: Arc::default(),
            epoch,
        };
        let r2 = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let r3 = r2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let r4 = r3.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if let Some(sent) = extract_sent_at(&body) {
                                let now = r4.epoch.elapsed().as_micros() as u64;
                                if let Ok(mut l) = r4.latencies_us.lock() {
                                    l.push(now.saturating_sub(sent));
                                }
                            }
                            r4.count.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(Response::new(
                                Full::new(Bytes::new()),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(r)
    }

    pub(crate) fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        if let Ok(mut l) = self.latencies_us.lock() {
            l.clear();
        }
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn http_client(max_idle: usize) -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .build(conn)
}

pub(crate) async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Result<(u16, Bytes)> {
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `workers` tasks run `job(i)` for every `i` in `0..total`, each taking the next index when it
/// is done with the last; the first error fails the run.
pub(crate) async fn run_indexed<F, Fut>(workers: usize, total: usize, job: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                job(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// A comma-separated list of counts given to `option`, each in `1..=max`.
pub(crate) fn parse_counts(s: &str, option: &str, example: &str, max: usize) -> Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{option} takes a list like {example}"))?;
    if v.is_empty() || v.iter().any(|&n| n == 0 || n > max) {
        bail!("{option}: each count must be 1..={max}");
    }
    Ok(v)
}

/// The p-th percentile (0..=100) of `v` in milliseconds from microseconds.
pub(crate) fn percentile_ms(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)] as f64 / 1000.0
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A hidden subcommand of this same binary (`bare-relay`, `bare-ingest`), run as a child
/// process: a reference server with a process of its own, like `serve`. It prints
/// `<subcommand>: listening on <address>` once it listens.
pub(crate) struct ChildServer {
    pub child: Reaped,
    pub addr: SocketAddr,
}

impl ChildServer {
    pub(crate) fn start(subcommand: &str) -> Result<ChildServer> {
        let exe = std::env::current_exe().context("locating hookwarden-bench")?;
        Self::launch(Command::new(exe), subcommand, &[])
    }

    /// Starts the subcommand under callgrind (`--instructions`), with `args`.
    pub(crate) fn start_under(
        cg: &crate::instructions::Callgrind,
        subcommand: &str,
        args: &[&str],
    ) -> Result<ChildServer> {
        let exe = std::env::current_exe().context("locating hookwarden-bench")?;
        Self::launch(cg.command(&exe), subcommand, args)
    }

    fn launch(mut command: Command, subcommand: &str, args: &[&str]) -> Result<ChildServer> {
        let child = command
            .arg(subcommand)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {subcommand}"))?;
        let mut child = Reaped(child);
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        // One line, or EOF if it exits.
        let _ = BufReader::new(stdout).read_line(&mut line);
        let prefix = format!("{subcommand}: listening on ");
        match line.trim().strip_prefix(prefix.as_str()).map(str::parse) {
            Some(Ok(addr)) => Ok(ChildServer { child, addr }),
            _ => {
                bail!("{subcommand} did not start")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_at_is_found_anywhere() {
        assert_eq!(
            extract_sent_at(br#"{"data":{"sent_at_us":12345,"x":1}}"#),
            Some(12345)
        );
        assert_eq!(extract_sent_at(br#"{"data":{}}"#), None);
        assert_eq!(extract_sent_at(br#""sent_at_us":"#), None);
    }

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let spent = cpu_seconds(pid).unwrap() - before;
        assert!((0.1..5.0).contains(&spent), "{spent}");
        assert_eq!(cpu_us_per_request(pid, None, 10), None);
        assert!(cpu_us_per_request(pid, Some(before), 1000).unwrap() > 100.0);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&mut v, 50.0), 51.0);
        assert_eq!(percentile_ms(&mut v, 99.0), 99.0);
        assert_eq!(percentile_ms(&mut [], 50.0), 0.0);
    }
}
