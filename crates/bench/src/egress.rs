//! Scenario `egress`: keep-alive HTTP requests through a `CONNECT` tunnel of a real
//! `hookwarden egress-proxy` child process, against the same requests sent directly to the same
//! local server (the baseline), in one run. When `tinyproxy` is installed the same load also goes
//! through it, as a reference point for what a forward proxy costs on this machine; and always
//! through a bare relay (`hookwarden-bench bare-relay`: read `CONNECT`, connect, copy bytes, no
//! policy at all), the floor any user-space TCP relay pays for the extra hop.
//!
//! Each worker opens one connection (for a proxy: one `CONNECT` tunnel), then sends its requests
//! one after another on it; latency is measured per request, tunnel setup excluded (reported
//! apart). Modes run interleaved for several rounds, so a noisy neighbour hurts all of them alike.

use crate::harness::*;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The name the hookwarden proxy is asked to `CONNECT` to; its config pins it to 127.0.0.1 and
/// allows it, so host policy, resolution and the address policy all run as in production.
const HOST: &str = "bench.example";

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Concurrent keep-alive connections (tunnels), one measurement per level (e.g. `1,16`).
    #[arg(long, default_value = "1,16")]
    concurrency: String,
    /// Requests per mode and concurrency level, spread over the rounds and the workers.
    #[arg(long, default_value_t = 60_000)]
    requests: usize,
    /// Interleaved rounds (direct, hookwarden, tinyproxy, direct, …).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Small run that finishes in well under 30 seconds.
    #[arg(long)]
    quick: bool,
    /// Log level of the proxy (its log goes nowhere; one line per tunnel).
    #[arg(long, default_value = "info")]
    log: String,
    /// Path to the hookwarden binary (default: next to this one).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// The tinyproxy binary; the comparison is skipped when it cannot be found.
    #[arg(long, default_value = "tinyproxy")]
    tinyproxy: String,
    /// Skip the tinyproxy comparison even when it is installed.
    #[arg(long)]
    no_tinyproxy: bool,
    #[command(flatten)]
    counts: crate::instructions::Options,
    /// Time the local server takes per request (0: answers at once, the proxy's worst case;
    /// a real webhook receiver takes milliseconds).
    #[arg(long, default_value_t = 0)]
    server_delay_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Hookwarden,
    Tinyproxy,
    BareRelay,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Hookwarden => "hookwarden-egress-proxy",
            Via::Tinyproxy => "tinyproxy",
            Via::BareRelay => "bare-relay",
        }
    }
}

/// Where a worker connects and what it asks a proxy for.
#[derive(Clone)]
struct Route {
    via: Via,
    /// The proxy's address; `None` for direct.
    proxy: Option<SocketAddr>,
    /// The `CONNECT` authority.
    authority: String,
}

/// What one mode measured over all rounds at one concurrency level.
#[derive(Default)]
struct Tally {
    requests: usize,
    secs: f64,
    latencies_us: Vec<u64>,
    setup_us: Vec<u64>,
}

impl Tally {
    fn per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.requests as f64 / self.secs
        } else {
            0.0
        }
    }
}

pub(crate) async fn run(mut args: Args) -> Result<()> {
    if args.counts.instructions {
        return instructions(&args).await;
    }
    if args.quick {
        args.requests = args.requests.min(6_000);
        args.rounds = args.rounds.min(2);
    }
    let levels = parse_levels(&args.concurrency)?;
    if args.rounds == 0 || args.rounds > 20 {
        bail!("--rounds must be 1..=20");
    }
    let bin = hookwarden_bin(args.bin.as_deref())?;
    let server = Server::start(Duration::from_millis(args.server_delay_ms)).await?;
    let proxy = ProxyChild::start(&bin, server.addr.port(), &args.log)?;

    let tiny = if args.no_tinyproxy {
        eprintln!("hookwarden-bench: tinyproxy comparison skipped (--no-tinyproxy)");
        None
    } else {
        match find_program(&args.tinyproxy) {
            Some(path) => Some(Tinyproxy::start(&path)?),
            None => {
                eprintln!(
                    "hookwarden-bench: tinyproxy not found ({}), its comparison is skipped \
                     (apt-get install tinyproxy)",
                    args.tinyproxy
                );
                None
            }
        }
    };

    let bare = ChildServer::start("bare-relay")?;
    let mut routes = vec![
        Route {
            via: Via::Direct,
            proxy: None,
            authority: server.addr.to_string(),
        },
        Route {
            via: Via::Hookwarden,
            proxy: Some(proxy.addr),
            authority: format!("{HOST}:{}", server.addr.port()),
        },
    ];
    if let Some(t) = &tiny {
        routes.push(Route {
            via: Via::Tinyproxy,
            proxy: Some(t.addr),
            authority: server.addr.to_string(),
        });
    }
    routes.push(Route {
        via: Via::BareRelay,
        proxy: Some(bare.addr),
        authority: server.addr.to_string(),
    });

    for &concurrency in &levels {
        let per_worker = (args.requests / args.rounds / concurrency).max(1);
        // Warm-up, not counted: every route once, a short run each.
        for r in &routes {
            load(r, concurrency, (per_worker / 10).clamp(10, 500)).await?;
        }
        let mut tallies: Vec<Tally> = routes.iter().map(|_| Tally::default()).collect();
        for _ in 0..args.rounds {
            for (r, t) in routes.iter().zip(tallies.iter_mut()) {
                let (secs, mut lat, mut setup) = load(r, concurrency, per_worker).await?;
                t.requests += lat.len();
                t.secs += secs;
                t.latencies_us.append(&mut lat);
                t.setup_us.append(&mut setup);
            }
        }
        let (base, rest) = tallies.split_first_mut().context("no baseline")?;
        let base_per_s = base.per_s();
        let base_p50 = percentile_ms(&mut base.latencies_us, 50.0);
        let base_p99 = percentile_ms(&mut base.latencies_us, 99.0);
        let hookwarden_per_s = rest[0].per_s();
        let bare_per_s = routes[1..]
            .iter()
            .zip(rest.iter())
            .find(|(r, _)| r.via == Via::BareRelay)
            .map_or(0.0, |(_, t)| t.per_s());
        for (r, t) in routes[1..].iter().zip(rest.iter_mut()) {
            let p50 = percentile_ms(&mut t.latencies_us, 50.0);
            let p99 = percentile_ms(&mut t.latencies_us, 99.0);
            let ratio = t.per_s() / base_per_s;
            let added_p99 = p99 - base_p99;
            let rss = match r.via {
                Via::Tinyproxy => tiny.as_ref().map_or(0.0, |t| peak_rss_mb(t.child.id())),
                Via::BareRelay => peak_rss_mb(bare.child.id()),
                _ => peak_rss_mb(proxy.child.id()),
            };
            let mut out = json!({
                "scenario": "egress",
                "via": r.via.name(),
                "baseline": Via::Direct.name(),
                "throughput_per_s": round2(t.per_s()),
                "baseline_per_s": round2(base_per_s),
                "ratio": round2(ratio),
                "p50_ms": round3(p50),
                "p99_ms": round3(p99),
                "baseline_p50_ms": round3(base_p50),
                "baseline_p99_ms": round3(base_p99),
                "added_p99_ms": round3(added_p99),
                "tunnel_setup_p50_ms": round3(percentile_ms(&mut t.setup_us, 50.0)),
                "peak_rss_mb": round2(rss),
                "concurrency": concurrency,
                "requests": t.requests,
                "rounds": args.rounds,
                "server_delay_ms": args.server_delay_ms,
                "keep_alive": true,
            });
            if r.via == Via::Hookwarden {
                out["target"] = json!({"ratio_min": 0.8, "added_p99_ms_max": 1.0});
                out["meets_target"] = json!(ratio >= 0.8 && added_p99 < 1.0);
                // What the extra hop alone costs: the floor for any relay here.
                out["bare_relay_ratio"] = json!(round2(bare_per_s / base_per_s));
            } else {
                out["hookwarden_vs_this_ratio"] = json!(round2(hookwarden_per_s / t.per_s()));
            }
            println!("{out}");
        }
    }
    drop(tiny);
    drop(bare);
    drop(proxy);
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn parse_levels(s: &str) -> Result<Vec<usize>> {
    parse_counts(s, "--concurrency", "1,16", 1024)
}

/// The local server every mode talks to: answers `200 ok` to everything, after `delay`.
struct Server {
    addr: SocketAddr,
}

impl Server {
    async fn start(delay: Duration) -> Result<Server> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Server { addr })
    }
}

/// `concurrency` workers, each on its own keep-alive connection (or tunnel), `per_worker`
/// requests each. Returns the wall time, the per-request latencies and the setup times (µs).
async fn load(
    route: &Route,
    concurrency: usize,
    per_worker: usize,
) -> Result<(f64, Vec<u64>, Vec<u64>)> {
    // Connections (and tunnels) are opened before the clock starts.
    let mut senders = Vec::with_capacity(concurrency);
    let mut setup = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let t = Instant::now();
        let (sender, _) = http1(route).await?;
        setup.push(t.elapsed().as_micros() as u64);
        senders.push(sender);
    }
    let uri = format!("http://{}/egress-bench", route.authority);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for mut sender in senders {
        let (uri, authority) = (uri.clone(), route.authority.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            requests(&mut sender, &uri, &authority, per_worker, Some(&mut lat)).await?;
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(concurrency * per_worker);
    for t in tasks {
        all.append(&mut t.await??);
    }
    Ok((started.elapsed().as_secs_f64(), all, setup))
}

/// `--instructions`: callgrind counts for `egress-proxy` and the bare relay, each in a process of
/// its own: per request through one keep-alive `CONNECT` tunnel, and per tunnel (`CONNECT`, the
/// policy decision and its log line, one request, close).
async fn instructions(args: &Args) -> Result<()> {
    use crate::instructions::{Callgrind, Sizes, report};
    let opts = &args.counts;
    let cg = Callgrind::new(opts, "egress", args.quick)?;
    let sizes = Sizes::new(args.quick);
    let bin = hookwarden_bin(args.bin.as_deref())?;
    let server = Server::start(Duration::from_millis(args.server_delay_ms)).await?;
    let mut counts = Vec::new();
    let tunnels = Sizes {
        warmup: sizes.warmup / 4,
        measured: sizes.measured / 4,
    };

    let bare = ChildServer::start_under(&cg, "bare-relay", &[])?;
    let route = Route {
        via: Via::BareRelay,
        proxy: Some(bare.addr),
        authority: server.addr.to_string(),
    };
    let pid = bare.child.id();
    counts.push(through(&cg, pid, "relay_request", &route, sizes, false).await?);
    counts.push(through(&cg, pid, "relay_tunnel", &route, tunnels, true).await?);
    drop(bare);

    let proxy = ProxyChild::start_under(&cg, &bin, server.addr.port(), &args.log)?;
    let route = Route {
        via: Via::Hookwarden,
        proxy: Some(proxy.addr),
        authority: format!("{HOST}:{}", server.addr.port()),
    };
    let pid = proxy.child.id();
    counts.push(through(&cg, pid, "proxy_request", &route, sizes, false).await?);
    counts.push(through(&cg, pid, "proxy_tunnel", &route, tunnels, true).await?);
    drop(proxy);

    let extra = json!({
        "proxy_request_to_relay": crate::instructions::ratio(&counts, 2, 0),
        "proxy_tunnel_to_relay": crate::instructions::ratio(&counts, 3, 1),
        "log": args.log,
    });
    report("egress", args.quick, opts, &counts, extra)
}

/// Warm-up, then one count: with `per_tunnel`, over `sizes.measured` tunnels opened one after
/// another, each carrying one request and closed by the client; else over `sizes.measured`
/// requests sent one after another through one tunnel.
async fn through(
    cg: &crate::instructions::Callgrind,
    pid: u32,
    name: &'static str,
    route: &Route,
    sizes: crate::instructions::Sizes,
    per_tunnel: bool,
) -> Result<crate::instructions::Count> {
    if per_tunnel {
        tunnel_each(route, sizes.warmup).await?;
        return cg
            .count(pid, (name, "tunnel"), sizes.measured, || {
                tunnel_each(route, sizes.measured)
            })
            .await;
    }
    let (mut sender, _) = http1(route).await?;
    let uri = format!("http://{}/egress-bench", route.authority);
    requests(&mut sender, &uri, &route.authority, sizes.warmup, None).await?;
    cg.count(pid, (name, "request"), sizes.measured, || {
        requests(&mut sender, &uri, &route.authority, sizes.measured, None)
    })
    .await
}

/// `n` GET requests one after another on `sender`, each answered 200; their latencies (µs)
/// pushed to `lat` when given.
async fn requests(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: &str,
    authority: &str,
    n: usize,
    mut lat: Option<&mut Vec<u64>>,
) -> Result<()> {
    for _ in 0..n {
        let req = Request::get(uri)
            .header("host", authority)
            .body(Empty::<Bytes>::new())?;
        let t = Instant::now();
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        if status != 200 {
            bail!("the server answered {status}");
        }
        if let Some(lat) = lat.as_deref_mut() {
            lat.push(t.elapsed().as_micros() as u64);
        }
    }
    Ok(())
}

async fn tunnel_each(route: &Route, n: usize) -> Result<()> {
    let uri = format!("http://{}/egress-bench", route.authority);
    for _ in 0..n {
        let (mut sender, conn) = http1(route).await?;
        requests(&mut sender, &uri, &route.authority, 1, None).await?;
        drop(sender);
        // The connection task ends once the client side is closed.
        let _ = conn.await;
    }
    // Let the proxy see the last close before the count is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// An HTTP/1 client on a new connection (or tunnel) of `route`; the connection runs on a task
/// of its own, which ends once the client side is dropped and the peer has closed.
async fn http1(
    route: &Route,
) -> Result<(
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)> {
    let stream = open(route).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    Ok((sender, tokio::spawn(conn)))
}

/// A TCP connection to the server, directly or through a proxy's `CONNECT` tunnel.
async fn open(route: &Route) -> Result<TcpStream> {
    let Some(proxy) = route.proxy else {
        let s = TcpStream::connect(&route.authority).await?;
        s.set_nodelay(true)?;
        return Ok(s);
    };
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let a = &route.authority;
    s.write_all(format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
        .await?;
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s))
        .await
        .context("the proxy did not answer CONNECT in time")??;
    match connect_status(&head) {
        Some(200) => Ok(s),
        _ => bail!(
            "{} refused CONNECT {a}: {}",
            route.via.name(),
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        ),
    }
}

/// Reads a message head up to and including the blank line, and not a byte further (the peer
/// speaks only when answered, so nothing can follow the head yet).
pub(crate) async fn read_head(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            bail!("message head too large");
        }
        if s.read(&mut byte).await? == 0 {
            bail!("the peer closed the connection during CONNECT");
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// The status code of a response head (`HTTP/1.x NNN reason`).
fn connect_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A `hookwarden egress-proxy` child process, configured as in production: enforce mode, one
/// allowed host pinned to the loopback server, loopback let through by an explicit allow range.
struct ProxyChild {
    child: Reaped,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ProxyChild {
    fn start(bin: &Path, port: u16, log: &str) -> Result<ProxyChild> {
        Self::launch(Command::new(bin), port, log)
    }

    /// Starts the proxy under callgrind (`--instructions`).
    fn start_under(
        cg: &crate::instructions::Callgrind,
        bin: &Path,
        port: u16,
        log: &str,
    ) -> Result<ProxyChild> {
        Self::launch(cg.command(bin), port, log)
    }

    fn launch(mut command: Command, port: u16, log: &str) -> Result<ProxyChild> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("egress-proxy.toml");
        std::fs::write(&cfg, proxy_config(port))?;
        let child = command
            .args(["egress-proxy", "--config"])
            .arg(&cfg)
            .args(["--listen", "127.0.0.1:0"])
            .env("HOOKWARDEN_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting hookwarden egress-proxy")?;
        let mut child = Reaped(child);
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        // Bounded: the proxy prints a handful of lines at start, or exits (closing stdout).
        for _ in 0..100 {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(a) = line.strip_prefix("hookwarden egress-proxy: listening on http://") {
                addr = Some(a.trim().parse()?);
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let Some(addr) = addr else {
            bail!("hookwarden egress-proxy did not start");
        };
        Ok(ProxyChild {
            child,
            addr,
            _dir: dir,
        })
    }
}

fn proxy_config(port: u16) -> String {
    format!(
        r#"[egress]
allow_ranges = ["127.0.0.0/8"]
resolve_overrides = {{ "{HOST}" = ["127.0.0.1"] }}

[policy]
action = "enforce"
allow = ["{HOST}"]
allowed_ports = [{port}]
"#
    )
}

/// `name` as given when it contains a slash, else the first match on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A `tinyproxy -d` child process on a free loopback port.
struct Tinyproxy {
    child: Reaped,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(bin: &Path) -> Result<Tinyproxy> {
        let dir = tempfile::tempdir()?;
        // tinyproxy needs a fixed port: take a free one, retry if someone else grabs it first.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let cfg = dir.path().join("tinyproxy.conf");
            std::fs::write(&cfg, tinyproxy_config(port))?;
            let child = Command::new(bin)
                .arg("-d")
                .arg("-c")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting tinyproxy")?;
            let mut child = Reaped(child);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Ok(Tinyproxy {
                        child,
                        addr,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("tinyproxy did not start")
    }
}

fn tinyproxy_config(port: u16) -> String {
    // No ConnectPort line: CONNECT to any port. Runs as an unprivileged user when started as
    // root (tinyproxy refuses to keep root).
    let user = if is_root() {
        "User nobody\nGroup nogroup\n"
    } else {
        ""
    };
    format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 2048\nLogLevel Critical\n\
         Allow 127.0.0.1\nDisableViaHeader Yes\n{user}"
    )
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_levels("1, 16").unwrap(), vec![1, 16]);
        assert!(parse_levels("0").is_err());
        assert!(parse_levels("x").is_err());
        assert!(parse_levels("").is_err());
    }

    #[test]
    fn status_of_connect_replies() {
        assert_eq!(
            connect_status(b"HTTP/1.0 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            connect_status(b"HTTP/1.1 403 Forbidden\r\nx: y\r\n\r\n"),
            Some(403)
        );
        assert_eq!(connect_status(b"SSH-2.0-x\r\n\r\n"), None);
    }
}
