#![forbid(unsafe_code)]
//! `hookwarden`: the one binary. Thin: parsing arguments and wiring the library crates.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use hookwarden_server::config::Config;
use hookwarden_signatures::{Outbound, Scheme};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

mod api_client;
mod probe;

/// mimalloc: the dispatcher and the SQLite writer allocate and free many small buffers per
/// delivery; glibc malloc spent ~15 % of the CPU there in the delivery benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookwarden",
    version,
    about = "A self-hosted webhook gateway with security in both directions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, dispatcher) in the foreground. SIGTERM drains in-flight work.
    Serve(ServeArgs),
    /// Apply pending database schema migrations and exit (`serve` also migrates at start
    /// unless `storage.migrate_on_start = false`).
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage admin API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Secrets at rest: the master key that seals them, its rotation.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Sign a payload the way Hookwarden signs deliveries (for testing receivers).
    Sign(SignArgs),
    /// Verify a payload and its signature headers; exits 0 when valid, 1 when not.
    Verify(VerifyArgs),
    /// Run the egress forward proxy (HTTP CONNECT and absolute-form HTTP) in the foreground.
    EgressProxy(EgressProxyArgs),
    /// Test that a receiver really refuses forged, stale and replayed webhooks: sends a short
    /// series of `hookwarden.probe` requests and reports which ones it refused. Exits 0 for
    /// grade A, 1 for B, C or F, 3 when inconclusive.
    Probe(probe::ProbeArgs),
}

#[derive(Args)]
struct EgressProxyArgs {
    /// Proxy configuration file (TOML, or YAML when named .yaml/.yml): listeners, users, policy,
    /// egress addresses, limits.
    #[arg(
        long,
        env = "HOOKWARDEN_EGRESS_PROXY_CONFIG",
        required_unless_present = "hash_password"
    )]
    config: Option<PathBuf>,
    /// Listen address (overrides `listen` in the file), e.g. 0.0.0.0:4750.
    #[arg(long)]
    listen: Option<String>,
    /// Print a `password_hash` for `[[users]]`: of the password read from stdin, or of a new
    /// random password (printed too) when stdin is empty.
    #[arg(long)]
    hash_password: bool,
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Configuration file (TOML).
    #[arg(long, env = "HOOKWARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the embedded database (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn load(&self) -> Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = d.clone();
        }
        Ok(cfg)
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Listen address (overrides server.listen), e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print one new admin API key, alone on one line of stdout.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A label for the key (shown by `keys list` and the API).
        #[arg(long, default_value = "")]
        name: String,
        /// What the key is for.
        #[arg(long, default_value = "created with hookwarden keys create")]
        description: String,
        /// The key stops working after this long: seconds, or a number with s, m, h or d
        /// (`90d`). Default: never.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<u64>,
    },
    /// List the admin API keys (never the keys themselves): id, prefix, status, name, times.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin API key by id (`key_…`): refused by every instance within a second.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new master key (base64 of 32 random bytes), alone on one line of stdout: for
    /// HOOKWARDEN_SECURITY__MASTER_KEY or a `security.master_key_file`.
    NewKey,
    /// Show which master key seals the secrets, and how many are sealed with it, with an earlier
    /// key, or not at all.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-seal every secret with the current master key. With the embedded database's
    /// `master.key` file, first make a new key (stop `serve` first). With configured keys, set
    /// the new key as `security.master_key` and the old one in `security.previous_master_keys`
    /// on every instance, then run this; when it is done, drop the old key. Interrupted, run it
    /// again: it goes on where it stopped.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `90d`, `12h`, `30m`, `45s` or plain seconds, as seconds (1 s to ten years).
fn parse_lifetime(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90d, 12h, 30m, 3600)"))?;
    let mul = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(mul) {
        Some(secs) if (1..=10 * 366 * 86_400).contains(&secs) => Ok(secs),
        _ => Err(format!("{s:?} must be between 1 s and ten years")),
    }
}

#[derive(Args)]
struct SecretArgs {
    /// Signing secret (repeat for several during rotation). Prefer --secret-env or --secret-file:
    /// command lines are visible to other users.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Read the secret from this environment variable.
    #[arg(long)]
    secret_env: Option<String>,
    /// Read the secret from this file (one secret per line).
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn collect(&self) -> Result<Vec<String>> {
        let mut out = self.secrets.clone();
        if let Some(var) = &self.secret_env {
            out.push(
                std::env::var(var)
                    .with_context(|| format!("environment variable {var} is not set"))?,
            );
        }
        if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
        if out.is_empty() {
            bail!("no secret given (use --secret, --secret-env or --secret-file)");
        }
        Ok(out)
    }
}

#[derive(Args)]
struct SignArgs {
    /// standard-webhooks, standard-webhooks-v1a (with a `whsk_` private key), github-sha256,
    /// hub-sha1 or date-sha1 (repeatable).
    #[arg(long = "scheme", default_value = "standard-webhooks")]
    schemes: Vec<String>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Message id (webhook-id); default: a new evt_ id.
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp in seconds; default: now.
    #[arg(long)]
    timestamp: Option<i64>,
    /// Output: `headers` (one `Name: value` per line); `curl` (`-H name:value` arguments on
    /// one line, unquoted, so they work pasted into a command and inside `curl $(…)`); or
    /// `curl-config` (`header = "…"` lines for `curl -K`).
    #[arg(long, default_value = "headers", value_parser = ["headers", "curl", "curl-config"])]
    format: String,
    /// The payload file (`-` for stdin).
    payload: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// The scheme the sender used (for standard-webhooks-v1a the secret is the `whpk_` public
    /// key).
    #[arg(long, default_value = "standard-webhooks")]
    scheme: String,
    #[command(flatten)]
    secret: SecretArgs,
    /// A received header as `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// A file of received headers, one `Name: value` per line.
    #[arg(long)]
    headers_file: Option<PathBuf>,
    /// Largest allowed difference between the signed time and now, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: i64,
    /// The payload file (`-` for stdin).
    payload: PathBuf,
}

fn read_payload(path: &PathBuf) -> Result<Vec<u8>> {
    const MAX: u64 = 64 * 1024 * 1024;
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().take(MAX + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX {
            bail!("payload larger than 64 MiB");
        }
        return Ok(buf);
    }
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX {
        bail!("payload larger than 64 MiB");
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("HOOKWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let store_args = args.store.clone();
    let mut cfg = args.store.load()?;
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    let running = hookwarden_server::start(cfg.clone()).await?;
    let addr = running.local_addr;
    if cfg.server.tls.is_none()
        && !addr.ip().is_loopback()
        && !cfg.server.listen.starts_with("127.")
    {
        tracing::warn!(
            "the API is served over plain HTTP on a non-loopback address; put a TLS-terminating proxy in front"
        );
    }
    let scheme = if cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("hookwarden: listening on {scheme}://{addr}");
    if let Some(m) = running.metrics_addr {
        println!("hookwarden: metrics on http://{m}/metrics");
    }
    if let hookwarden_server::secrets::KeySource::DataDir {
        path,
        created: true,
    } = &running.key_source
    {
        println!(
            "hookwarden: made the master key that seals secrets at rest: {} (back it up apart from the database)",
            path.display()
        );
    }
    if running.no_usable_key {
        println!(
            "hookwarden: no usable admin API key exists; make one with `hookwarden keys create{}`",
            args_hint(&store_args)
        );
    }
    println!("hookwarden: data in {}", cfg.sqlite_path().display());
    if let Some(key) = &running.first_start_key {
        println!(
            "hookwarden: admin API key (shown once; `hookwarden keys create` makes more): {key}"
        );
    }
    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight deliveries");
    running.shutdown().await;
    Ok(())
}

/// The `--config` / `--data-dir` a `keys create` needs to reach the same store as `serve`.
fn args_hint(args: &StoreArgs) -> String {
    let mut out = String::new();
    if let Some(c) = &args.config {
        out.push_str(&format!(" --config {}", c.display()));
    }
    if let Some(d) = &args.data_dir {
        out.push_str(&format!(" --data-dir {}", d.display()));
    }
    out
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn migrate(store: StoreArgs) -> Result<()> {
    let cfg = store.load()?;
    let report = hookwarden_server::storage::migrate(&cfg).await?;
    println!("hookwarden: {report}");
    Ok(())
}

async fn keys_create(
    store: StoreArgs,
    name: String,
    description: String,
    expires_in: Option<u64>,
) -> Result<()> {
    use hookwarden_server::keys;
    let cfg = store.load()?;
    let db = hookwarden_server::storage::open(&cfg).await?;
    let expires_at = expires_in.map(|secs| {
        hookwarden_store::now_millis()
            .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000))
    });
    let spec = keys::KeySpec {
        name,
        description,
        expires_at,
    };
    let made = keys::create(&*db.keys, spec, hookwarden_store::now_millis()).await;
    db.close().await;
    let (key, _) = made?;
    println!("{key}");
    Ok(())
}

async fn secrets_status(store: StoreArgs) -> Result<()> {
    let cfg = store.load()?;
    let db = hookwarden_server::storage::open(&cfg).await?;
    let r = hookwarden_server::secrets::status(&cfg, &*db.sealed).await;
    db.close().await;
    let (sb, source, c) = r?;
    println!("master key: {} (from {source})", sb.key_id());
    let previous = sb.previous_ids();
    if !previous.is_empty() {
        println!("previous keys: {}", previous.join(", "));
    }
    println!(
        "secrets: {} sealed with the master key, {} with an earlier key, {} in clear, {} unreadable",
        c.current, c.stale, c.plain, c.unreadable
    );
    if c.stale > 0 || c.plain > 0 {
        println!("run `hookwarden secrets rotate` to seal them all with the master key");
    }
    Ok(())
}

async fn secrets_rotate(store: StoreArgs) -> Result<()> {
    use hookwarden_server::config::Backend;
    let cfg = store.load()?;
    // An embedded database belongs to one process: `serve` must be stopped.
    let _lock = match cfg.backend() {
        Backend::Sqlite(_) => Some(hookwarden_server::lock_data_dir(&cfg)?),
        Backend::Postgres(_) => None,
    };
    let db = hookwarden_server::storage::open(&cfg).await?;
    let r = hookwarden_server::secrets::rotate(&cfg, &*db.sealed, |column, c| {
        eprintln!(
            "hookwarden: {}: {} secrets seen, {} re-sealed",
            column.name(),
            c.seen,
            c.sealed
        );
    })
    .await;
    db.close().await;
    let r = r?;
    if r.generated {
        println!(
            "hookwarden: made a new master key {} in {}",
            r.key_id, r.source
        );
    }
    println!(
        "hookwarden: {} secrets sealed with master key {} ({} re-sealed now)",
        r.counts.current + r.counts.sealed,
        r.key_id,
        r.counts.sealed
    );
    if r.counts.raced > 0 {
        println!(
            "hookwarden: {} secrets changed while this ran; run it again to finish",
            r.counts.raced
        );
    } else if !r.retired.is_empty() {
        println!(
            "hookwarden: nothing is sealed with {} any more: remove it from the configuration",
            r.retired.join(", ")
        );
    } else if !r.generated {
        println!(
            "hookwarden: to change the key, set the new one as security.master_key and the old one in security.previous_master_keys, then run this again"
        );
    }
    Ok(())
}

async fn keys_list(store: StoreArgs, json: bool) -> Result<()> {
    let cfg = store.load()?;
    let db = hookwarden_server::storage::open(&cfg).await?;
    let mut all = Vec::new();
    let mut before = None;
    let listed = loop {
        let page = hookwarden_store::Page::new(before.take(), 500);
        match db.keys.list_api_keys(page).await {
            Ok(rows) => {
                let done = !rows.more;
                before = rows.last().map(|k| k.id.clone());
                all.extend(rows);
                if done || all.len() >= 100_000 {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    db.close().await;
    listed?;
    let now = hookwarden_store::now_millis();
    let time =
        |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), hookwarden_server::times::rfc3339);
    if !json {
        println!(
            "{:<32} {:<9} {:<8} {:<24} {:<24} {:<24} NAME",
            "ID", "PREFIX", "STATUS", "CREATED", "EXPIRES", "LAST USED"
        );
    }
    for k in all {
        let status = if !k.usable_at(now) {
            if k.revoked_at.is_some_and(|r| r <= now) {
                "revoked"
            } else {
                "expired"
            }
        } else {
            "active"
        };
        if json {
            let mut v = serde_json::to_value(&k)?;
            v["status"] = serde_json::Value::from(status);
            println!("{v}");
        } else {
            println!(
                "{:<32} {:<9} {:<8} {:<24} {:<24} {:<24} {}",
                k.id,
                k.prefix,
                status,
                time(Some(k.created_at)),
                time(k.expires_at),
                time(k.last_used_at),
                k.name
            );
        }
    }
    Ok(())
}

async fn keys_revoke(store: StoreArgs, id: String) -> Result<()> {
    let cfg = store.load()?;
    let db = hookwarden_server::storage::open(&cfg).await?;
    let done = db
        .keys
        .revoke_api_key(&id, hookwarden_store::now_millis())
        .await;
    db.close().await;
    if !done? {
        bail!("no API key {id:?} (see `hookwarden keys list`)");
    }
    println!("hookwarden: revoked {id}");
    Ok(())
}

fn sign(args: SignArgs) -> Result<()> {
    let body = read_payload(&args.payload)?;
    let secrets = args.secret.collect()?;
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let id = args
        .id
        .unwrap_or_else(|| hookwarden_server::crypto::new_id("evt"));
    let msg = Outbound {
        msg_id: &id,
        timestamp: args.timestamp.unwrap_or_else(unix_now),
        body: &body,
    };
    let mut lines = Vec::new();
    for s in &args.schemes {
        let scheme = Scheme::from_str(s).map_err(|_| anyhow::anyhow!("unknown scheme {s:?}"))?;
        for (name, value) in hookwarden_signatures::sign(scheme, &refs, &msg)? {
            if !lines.iter().any(|(n, _): &(&str, String)| *n == name) {
                lines.push((name, value));
            }
        }
    }
    match args.format.as_str() {
        "curl" => println!("{}", curl_args(&lines)?),
        "curl-config" => {
            for (name, value) in &lines {
                println!("header = \"{name}: {}\"", curl_config_escape(value));
            }
        }
        _ => {
            for (name, value) in &lines {
                println!("{name}: {value}");
            }
        }
    }
    Ok(())
}

/// `-H name:value` words: no quotes to be re-read, so the line works pasted and inside
/// `$(…)` alike. A value a shell would split or expand cannot be written that way: refused, with
/// the format that can carry it.
fn curl_args(lines: &[(&str, String)]) -> Result<String> {
    let mut words = Vec::with_capacity(lines.len() * 2);
    for (name, value) in lines {
        let word = format!("{name}:{value}");
        if word.chars().any(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    '\'' | '"'
                        | '\\'
                        | '$'
                        | '`'
                        | '*'
                        | '?'
                        | '['
                        | ']'
                        | '{'
                        | '}'
                        | '('
                        | ')'
                        | '|'
                        | '&'
                        | ';'
                        | '<'
                        | '>'
                        | '!'
                        | '#'
                        | '~'
                )
        }) {
            bail!(
                "the {name} value holds characters a shell would split or expand (several secrets \
                 sign with space-separated signatures): use --format curl-config with `curl -K`"
            );
        }
        words.push("-H".to_owned());
        words.push(word);
    }
    Ok(words.join(" "))
}

/// A value inside a double-quoted curl config string.
fn curl_config_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let body = read_payload(&args.payload)?;
    let secrets = args.secret.collect()?;
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let scheme = Scheme::from_str(&args.scheme)
        .map_err(|_| anyhow::anyhow!("unknown scheme {:?}", args.scheme))?;
    let mut raw = args.headers.clone();
    if let Some(path) = &args.headers_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        raw.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    let mut headers = http::HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {h:?} is not `Name: value`"))?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("bad header name {name:?}"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("bad header value for {name}"))?,
        );
    }
    match hookwarden_signatures::verify(scheme, &refs, &headers, &body, unix_now(), args.tolerance)
    {
        Ok(()) => {
            println!("valid");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {} ({e})", e.code());
            Ok(ExitCode::from(1))
        }
    }
}

async fn egress_proxy(args: EgressProxyArgs) -> Result<()> {
    use hookwarden_egress::proxy;
    let path = args.config.context("--config is required")?;
    let mut cfg = proxy::ProxyConfig::load(&path)?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let running = proxy::start(cfg, None).await?;
    println!(
        "hookwarden egress-proxy: listening on http://{}",
        running.listen_addr
    );
    if let Some(a) = running.tls_addr {
        println!("hookwarden egress-proxy: TLS listener on https://{a}");
    }
    if let Some(a) = running.metrics_addr {
        println!("hookwarden egress-proxy: metrics on http://{a}/metrics");
    }
    wait_for_signal().await;
    tracing::info!("shutting down the egress proxy");
    running.shutdown().await;
    Ok(())
}

fn hash_password() -> Result<()> {
    use base64::Engine;
    let mut input = String::new();
    std::io::stdin().take(4096).read_to_string(&mut input)?;
    let typed = input.trim_end_matches(['\r', '\n']);
    let password = if typed.is_empty() {
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(hookwarden_server::crypto::random_bytes::<24>());
        println!("# new password (give it to the client; it is not stored): {p}");
        p
    } else {
        typed.to_owned()
    };
    println!(
        "password_hash = \"{}\"",
        hookwarden_egress::proxy::hash_password(&password)
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logging();
            runtime()
                .and_then(|rt| rt.block_on(serve(args)))
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Migrate { store } => runtime()
            .and_then(|rt| rt.block_on(migrate(store)))
            .map(|()| ExitCode::SUCCESS),
        Command::Keys {
            command:
                KeysCommand::Create {
                    store,
                    name,
                    description,
                    expires_in,
                },
        } => runtime()
            .and_then(|rt| rt.block_on(keys_create(store, name, description, expires_in)))
            .map(|()| ExitCode::SUCCESS),
        Command::Keys {
            command: KeysCommand::List { store, json },
        } => runtime()
            .and_then(|rt| rt.block_on(keys_list(store, json)))
            .map(|()| ExitCode::SUCCESS),
        Command::Keys {
            command: KeysCommand::Revoke { store, id },
        } => runtime()
            .and_then(|rt| rt.block_on(keys_revoke(store, id)))
            .map(|()| ExitCode::SUCCESS),
        Command::Secrets {
            command: SecretsCommand::NewKey,
        } => {
            println!("{}", hookwarden_server::crypto::new_master_key());
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets {
            command: SecretsCommand::Status { store },
        } => runtime()
            .and_then(|rt| rt.block_on(secrets_status(store)))
            .map(|()| ExitCode::SUCCESS),
        Command::Secrets {
            command: SecretsCommand::Rotate { store },
        } => {
            init_logging();
            runtime()
                .and_then(|rt| rt.block_on(secrets_rotate(store)))
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Sign(args) => sign(args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => verify(args),
        Command::Probe(args) => runtime().and_then(|rt| rt.block_on(probe::run(args))),
        Command::EgressProxy(args) if args.hash_password => {
            hash_password().map(|()| ExitCode::SUCCESS)
        }
        Command::EgressProxy(args) => {
            init_logging();
            runtime()
                .and_then(|rt| rt.block_on(egress_proxy(args)))
                .map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookwarden: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
