//! `hookwarden-bench bare-relay`: the least a `CONNECT` proxy can do — read the request head,
//! connect, answer 200, copy bytes both ways — with no policy, authentication, resolution,
//! logging, limits or metrics. Started as a child process by the `egress` scenario as a
//! reference: what any user-space TCP relay costs on this machine, against which both
//! Hookwarden's proxy and tinyproxy can be read. Not a proxy to deploy: it has no limits.

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the bare relay listens on loopback only");
    }
    let listener = TcpListener::bind(args.listen).await?;
    println!("bare-relay: listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = tunnel(client).await;
        });
    }
}

async fn tunnel(mut client: TcpStream) -> Result<()> {
    client.set_nodelay(true)?;
    // The bench's clients send the CONNECT head and wait for the answer: nothing follows it.
    let head = crate::egress::read_head(&mut client).await?;
    let line = std::str::from_utf8(&head)?
        .lines()
        .next()
        .context("no request line")?;
    let target = match line.split(' ').collect::<Vec<_>>()[..] {
        ["CONNECT", authority, _] => authority.to_owned(),
        _ => {
            client
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    // The bench connects to loopback addresses only; refuse anything else.
    let addr: std::net::SocketAddr = target.parse().context("CONNECT target is not ip:port")?;
    if !addr.ip().is_loopback() {
        bail!("not a loopback target");
    }
    let mut upstream = TcpStream::connect(addr).await?;
    upstream.set_nodelay(true)?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
