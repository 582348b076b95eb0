//! `hookwarden probe`: the receiver security probe from the shell. `--endpoint` asks a running
//! server to probe a registered endpoint (through its API, so the requests leave from the
//! server's egress addresses and the report is stored); `--url` probes a receiver that is not
//! registered yet, from here, through the same guarded client `serve` uses (this machine's
//! `egress` configuration).

use crate::{SecretArgs, StoreArgs};
use anyhow::{Context, Result, bail};
use clap::Args;
use hookwarden_server::probe::report::{Grade, Report, Verdict};
use hookwarden_signatures::Scheme;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["endpoint", "url"])))]
pub(crate) struct ProbeArgs {
    /// Probe this registered endpoint (`ep_…`) through the server's API.
    #[arg(long)]
    endpoint: Option<String>,
    /// The server's base URL, for --endpoint.
    #[arg(
        long,
        env = "HOOKWARDEN_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    api_url: String,
    /// The environment variable holding an admin API key, for --endpoint.
    #[arg(long, default_value = "HOOKWARDEN_API_KEY")]
    api_key_env: String,
    /// Probe this receiver URL from here (not registered yet).
    #[arg(long)]
    url: Option<String>,
    /// With --url: the schemes it verifies (repeatable; standard-webhooks,
    /// standard-webhooks-v1a (give its `whsk_` private key as a secret), github-sha256, hub-sha1,
    /// date-sha1).
    #[arg(long = "scheme", default_value = "standard-webhooks")]
    schemes: Vec<String>,
    /// With --url: the signing secret the receiver holds (--secret-env / --secret-file; with
    /// several, the first signs the forged cases).
    #[command(flatten)]
    secret: SecretArgs,
    /// With --url: a secret the receiver should no longer accept (retired by a rotation), read
    /// from this environment variable.
    #[arg(long)]
    retired_secret_env: Option<String>,
    /// With --url: the configuration whose `[egress]` and `[probe]` settings apply (as `serve`
    /// reads it).
    #[arg(long, env = "HOOKWARDEN_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit codes: 0 grade A, 1 grade B/C/F, 3 inconclusive (2: could not probe).
pub(crate) async fn run(args: ProbeArgs) -> Result<ExitCode> {
    let (report, header) = if let Some(id) = &args.endpoint {
        let v = via_api(&args, id).await?;
        let header = format!(
            "probe {} of endpoint {}",
            v["id"].as_str().unwrap_or("?"),
            v["endpoint_id"].as_str().unwrap_or("?")
        );
        let report: Report =
            serde_json::from_value(v.clone()).context("the server's report is not readable")?;
        if args.json {
            println!("{v}");
        }
        (report, header)
    } else {
        let report = local(&args).await?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        (report, "probe".to_owned())
    };
    if !args.json {
        print_report(&header, &report);
    }
    Ok(match report.grade {
        Grade::A => ExitCode::SUCCESS,
        Grade::Inconclusive => ExitCode::from(3),
        _ => ExitCode::from(1),
    })
}

async fn local(args: &ProbeArgs) -> Result<Report> {
    let Some(url) = &args.url else {
        bail!("--url or --endpoint is required");
    };
    // `whsk_` keys sign standard-webhooks-v1a; the others are the HMAC secrets.
    let (signing_keys, secrets): (Vec<String>, Vec<String>) = args
        .secret
        .collect()?
        .into_iter()
        .partition(|s| s.starts_with("whsk_"));
    let schemes = args
        .schemes
        .iter()
        .map(|s| Scheme::from_str(s).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<Vec<_>>>()?;
    let retired = match &args.retired_secret_env {
        Some(var) => Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        ),
        None => None,
    };
    let (retired_signing_key, retired) = match retired {
        Some(r) if r.starts_with("whsk_") => (Some(r), None),
        r => (None, r),
    };
    if schemes.iter().any(Scheme::is_asymmetric) && signing_keys.is_empty() {
        bail!(
            "standard-webhooks-v1a signs with an ed25519 private key: give a whsk_ key as a secret"
        );
    }
    if schemes.iter().any(|s| !s.is_asymmetric()) && secrets.is_empty() {
        bail!("no HMAC secret given for the HMAC schemes");
    }
    let cfg = StoreArgs {
        config: args.config.clone(),
        data_dir: None,
    }
    .load()?;
    let guard = hookwarden_server::build_guard(&cfg)?;
    let client = hookwarden_server::build_client(&cfg, guard.clone())?;
    // The same URL rules as a registered endpoint's.
    guard
        .check_url(url, &hookwarden_server::url_policy(&cfg))
        .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
    let target = hookwarden_server::probe::Target {
        url: url.clone(),
        schemes,
        secrets,
        retired,
        signing_keys,
        retired_signing_key,
        headers: http::HeaderMap::new(),
        identity: None,
        limiter: None,
    };
    let limits = hookwarden_server::probe::RunLimits {
        request_timeout: Duration::from_secs(cfg.probe.request_timeout_secs),
        deadline: Duration::from_secs(cfg.probe.deadline_secs),
        user_agent: http::HeaderValue::from_str(&cfg.delivery.user_agent)
            .unwrap_or(http::HeaderValue::from_static("Hookwarden")),
    };
    let probe_id = hookwarden_server::crypto::new_id("prb");
    let now = || hookwarden_store::now_millis() / 1000;
    Ok(hookwarden_server::probe::execute(&client, &target, &limits, &probe_id, &now).await)
}

async fn via_api(args: &ProbeArgs, id: &str) -> Result<serde_json::Value> {
    let key = std::env::var(&args.api_key_env).with_context(|| {
        format!(
            "environment variable {} is not set (an admin API key)",
            args.api_key_env
        )
    })?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("{id:?} is not an endpoint id");
    }
    let base = args.api_url.trim_end_matches('/');
    crate::api_client::check_base(base)?;
    let url = format!("{base}/api/v1/endpoints/{id}/probe");
    let (status, body) = crate::api_client::post(&url, &key, Duration::from_secs(60)).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{url} answered {status} with a body that is not JSON"))?;
    if status != 201 {
        bail!(
            "{url} answered {status}: {} ({})",
            v["error"]["message"].as_str().unwrap_or(""),
            v["error"]["code"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

fn print_report(header: &str, r: &Report) {
    println!(
        "{header} ({}, {}): grade {} — {}",
        r.url,
        r.schemes.join(", "),
        grade_str(r.grade),
        r.summary
    );
    for c in &r.cases {
        let v = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "????",
        };
        let scheme = c
            .scheme
            .as_deref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        println!("  {v}  {}{scheme}: {}", c.case.as_str(), c.reason);
        if let Some(a) = &c.advice {
            println!("        fix: {a}");
        }
    }
    for n in &r.not_applicable {
        let scheme = n
            .scheme
            .as_deref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        println!("  n/a   {}{scheme}: {}", n.case.as_str(), n.reason);
    }
    println!("{} requests in {} ms", r.requests_sent, r.duration_ms);
}

fn grade_str(g: Grade) -> &'static str {
    g.as_str()
}
