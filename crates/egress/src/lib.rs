//! Hookwarden's outbound side: the guarded HTTP client that every outbound request goes
//! through ([`client`]), and the egress forward proxy ([`proxy`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
#[doc(hidden)]
pub mod fuzzing;
pub mod proxy;

pub use client::{
    ClientConfig, ClientIdentity, ConnInfo, EgressError, ErrorClass, GuardedClient, MaybeTls,
    OutboundRequest, OutboundResponse, SendError,
};
