//! Signing and verification of webhook signature schemes. **Pure**: no I/O, no clock,
//! no randomness, no global state — callers pass secrets, timestamps and `now`.
//!
//! * Outbound (what Hookwarden sends): [`sign`] / [`verify`] for the [`Scheme`]s
//!   `standard-webhooks`, `github-sha256`, `hub-sha1`, `date-sha1`.
//! * Inbound (what providers send us): [`inbound::verify_inbound`] with a
//!   [`inbound::Preset`] (Standard Webhooks/Svix, GitHub, Stripe, Slack, Shopify,
//!   Twilio, Paddle, Zoom, Twitch, Discord, SendGrid, Glassix, generic HMAC, …).
//!
//! Every secret and signature comparison is constant-time; every header is length
//! limited; at most [`MAX_SIGNATURES`] signatures are read from one header; no input
//! can make these functions panic.
//!
//! ```
//! use hookwarden_signatures::{sign, verify, Outbound, Scheme};
//! let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
//! let msg = Outbound { msg_id: "msg_1", timestamp: 1_700_000_000, body: b"{}" };
//! let mut headers = http::HeaderMap::new();
//! for (name, value) in sign(Scheme::StandardWebhooks, &secrets, &msg).unwrap() {
//!     headers.insert(name, value.parse().unwrap());
//! }
//! verify(Scheme::StandardWebhooks, &secrets, &headers, b"{}", 1_700_000_010, 300).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod error;
pub mod inbound;
mod outbound;
mod standard;
mod util;

pub use error::{SignError, UnknownScheme, VerifyError};
pub use outbound::{DEFAULT_TOLERANCE_SECS, Outbound, Scheme, headers, sign, verify};
pub use standard::{MAX_MSG_ID_LEN, ed25519_private_key, ed25519_public_key};
pub use util::{MAX_SHORT_HEADER_LEN, MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURES};

#[cfg(test)]
mod tests_outbound;
