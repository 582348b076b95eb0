//! Text the two backends can both store.
//!
//! PostgreSQL `TEXT` cannot hold the NUL character (SQLite can), and a JSON string decodes
//! `\u0000` to one, so a NUL can reach the store from any client-given string. Both backends
//! apply the same rules, so they agree on every input:
//!
//! - What is recorded because it happened (audit entries, delivery attempts) must be written
//!   whatever its bytes: a NUL in its text becomes U+FFFD ([`recorded`]); a logged body is kept
//!   as bytes, never as text.
//! - Everything else (endpoints, events, sources, certificates, keys) is configuration or data
//!   a client chose: a NUL in it is refused with [`StoreError::InvalidText`], which the API
//!   answers with a 422, on both backends; nothing is written.

use crate::{
    Endpoint, NewApiKey, NewAttempt, NewAuditEntry, NewEvent, Outcome, Result, StoreError,
};
use std::borrow::Cow;

/// `s` with every NUL replaced by U+FFFD (borrowed when it has none).
pub fn recorded(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn recorded_in_place(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn recorded_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        recorded_in_place(s);
    }
}

/// Refuses a NUL in `s`, naming the field.
pub fn storable(field: &'static str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(StoreError::InvalidText(field));
    }
    Ok(())
}

pub(crate) fn storable_opt(field: &'static str, s: Option<&str>) -> Result<()> {
    s.map_or(Ok(()), |s| storable(field, s))
}

fn storable_all<'a>(field: &'static str, it: impl IntoIterator<Item = &'a String>) -> Result<()> {
    it.into_iter().try_for_each(|s| storable(field, s))
}

impl NewAuditEntry {
    /// The entry as both backends store it: NUL in its text replaced (the payload is bytes and
    /// kept as it is).
    pub fn recorded(mut self) -> NewAuditEntry {
        recorded_opt(&mut self.source_id);
        recorded_in_place(&mut self.token_prefix);
        recorded_opt(&mut self.client_ip);
        recorded_in_place(&mut self.peer_addr);
        recorded_opt(&mut self.user_agent);
        recorded_in_place(&mut self.outcome);
        recorded_opt(&mut self.reason);
        recorded_opt(&mut self.event_id);
        recorded_opt(&mut self.message_id);
        self
    }
}

impl NewAttempt {
    /// The attempt as both backends store it: what the receiver sent (and errors quoting it)
    /// with NUL replaced.
    pub fn recorded(mut self) -> NewAttempt {
        recorded_opt(&mut self.response_body);
        recorded_opt(&mut self.error_class);
        recorded_opt(&mut self.error_message);
        recorded_opt(&mut self.local_addr);
        recorded_opt(&mut self.remote_addr);
        recorded_opt(&mut self.request_headers);
        self
    }
}

/// Outcomes with their attempts as both backends store them ([`NewAttempt::recorded`]).
pub(crate) fn recorded_outcomes(outcomes: Vec<Outcome>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|mut o| {
            o.attempt = o.attempt.map(NewAttempt::recorded);
            o
        })
        .collect()
}

impl Endpoint {
    /// Refuses an endpoint with a NUL in any text.
    pub fn check_storable(&self) -> Result<()> {
        storable("id", &self.id)?;
        storable("url", &self.url)?;
        storable("description", &self.description)?;
        storable_all("event_types", &self.event_types)?;
        storable_all("headers", self.headers.keys())?;
        storable_all("headers", self.headers.values())?;
        storable_opt("developer_payload", self.developer_payload.as_deref())?;
        storable_all("signature_schemes", &self.signature_schemes)?;
        storable_opt("disabled_reason", self.disabled_reason.as_deref())?;
        storable_opt("filter", self.filter.as_deref())?;
        storable_opt("transformation", self.transformation.as_deref())?;
        storable_opt(
            "client_certificate_id",
            self.client_certificate_id.as_deref(),
        )
    }
}

impl NewEvent {
    /// Refuses an event with a NUL in any text (a JSON payload never has one: JSON escapes it).
    pub fn check_storable(&self) -> Result<()> {
        storable("id", &self.id)?;
        storable("event_type", &self.event_type)?;
        storable("payload", &self.payload)?;
        storable_opt("idempotency_key", self.idempotency_key.as_deref())?;
        storable_opt("source_id", self.source_id.as_deref())?;
        storable_all("only_endpoints", self.only_endpoints.iter().flatten())
    }
}

impl NewApiKey {
    pub fn check_storable(&self) -> Result<()> {
        storable("id", &self.id)?;
        storable("prefix", &self.prefix)?;
        storable("name", &self.name)?;
        storable("description", &self.description)
    }
}

impl crate::Source {
    /// Refuses a source with a NUL in any text.
    pub fn check_storable(&self) -> Result<()> {
        storable("id", &self.id)?;
        storable("name", &self.name)?;
        storable("verification", &self.verification)?;
        storable_all("secrets", &self.secrets)?;
        storable_all("allowed_cidrs", &self.allowed_cidrs)?;
        storable_all("forward_to", &self.forward_to)?;
        storable("event_type", &self.event_type)
    }
}

impl crate::NewSourceToken {
    pub fn check_storable(&self) -> Result<()> {
        storable("prefix", &self.prefix)
    }
}

impl crate::ClientCertificate {
    /// Refuses a certificate with a NUL in any text.
    pub fn check_storable(&self) -> Result<()> {
        for (field, v) in [
            ("id", &self.id),
            ("name", &self.name),
            ("certificate_pem", &self.certificate_pem),
            ("private_key", &self.private_key),
            ("subject", &self.subject),
            ("issuer", &self.issuer),
            ("serial", &self.serial),
            ("sha256", &self.sha256),
            ("sha1", &self.sha1),
        ] {
            storable(field, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_replaces_nul_only() {
        assert!(matches!(recorded("plain é"), Cow::Borrowed("plain é")));
        assert_eq!(recorded("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        let e = NewAuditEntry {
            message_id: Some("m\0".into()),
            user_agent: Some("\0".into()),
            payload: Some(std::sync::Arc::from(&b"\0\xff"[..])),
            ..Default::default()
        }
        .recorded();
        assert_eq!(e.message_id.as_deref(), Some("m\u{FFFD}"));
        assert_eq!(e.user_agent.as_deref(), Some("\u{FFFD}"));
        assert_eq!(e.payload.as_deref(), Some(&b"\0\xff"[..]), "bytes are kept");
    }

    #[test]
    fn nul_is_refused_in_configuration() {
        assert!(storable("f", "ok").is_ok());
        assert!(matches!(
            storable("name", "a\0"),
            Err(StoreError::InvalidText("name"))
        ));
    }
}
