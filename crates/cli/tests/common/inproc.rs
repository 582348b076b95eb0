//! The server in this process, on a [`ManualClock`]: a test crosses a grace period, a retry
//! delay or an alert window by advancing the clock instead of sleeping. Same configuration
//! (`test_config`), same real HTTP on 127.0.0.1 as a [`super::Server`].

use super::Api;
use hookwarden_server::clock::{ManualClock, SharedClock};
use hookwarden_server::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits (real time) for the server to notice that the clock moved: a few of
/// `test_config`'s claim intervals (100 ms), which is how often the dispatcher looks for due
/// work.
pub(crate) const NOTICE: Duration = Duration::from_millis(400);

pub(crate) struct InProcess {
    pub addr: SocketAddr,
    pub key: String,
    pub clock: Arc<ManualClock>,
    running: Option<hookwarden_server::Running>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts the server with `config_toml` (a `test_config`), its data in a new temporary
    /// directory, listening on 127.0.0.1, its clock stopped at the current wall time.
    pub(crate) async fn start(config_toml: &str) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookwarden.toml");
        std::fs::write(&path, config_toml).unwrap();
        let mut cfg = Config::load(Some(&path)).unwrap();
        cfg.server.data_dir = dir.path().join("data");
        cfg.server.listen = "127.0.0.1:0".into();
        let clock = ManualClock::starting_now();
        let shared: SharedClock = clock.clone();
        let running = hookwarden_server::start_with_clock(cfg, shared)
            .await
            .unwrap();
        InProcess {
            addr: running.local_addr,
            key: running
                .first_start_key
                .clone()
                .expect("a first start prints a key"),
            clock,
            running: Some(running),
            _dir: dir,
        }
    }

    pub(crate) fn api(&self) -> Api {
        Api::new(self.addr, &self.key)
    }

    /// Moves the server's clock forward by `ms` milliseconds.
    pub(crate) fn advance_ms(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    /// Stops the server (drains deliveries, closes storage).
    pub(crate) async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}
