//! Serde model of the inbound verification presets.
//!
//! The JSON is an object tagged by `"type"`. Unknown types and unknown or missing
//! required fields are deserialization errors; [`Preset`](super::Preset) adds semantic
//! validation (key encodings, header names, templates) on top.
//!
//! Secrets are **not** part of the configuration: they are passed separately to
//! [`verify_inbound`](super::verify_inbound) as the list of currently active secrets
//! (rotation: any may match), so they can be stored encrypted and never echoed back.
//! Public keys (Discord, SendGrid, Standard Webhooks `whpk_`) are not secret and live in
//! the configuration.

use serde::{Deserialize, Serialize};

use crate::outbound::Scheme;

/// The default tolerance for signed timestamps: 300 s (5 minutes), either direction.
pub const DEFAULT_INBOUND_TOLERANCE_SECS: u32 = 300;
/// The largest `tolerance_secs` accepted: one day.
pub const MAX_TOLERANCE_SECS: u32 = 86_400;

fn d300() -> u32 {
    DEFAULT_INBOUND_TOLERANCE_SECS
}
fn d600() -> u32 {
    600
}
fn dtrue() -> bool {
    true
}

/// One inbound verification preset, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PresetConfig {
    /// `{"type": "standard-webhooks"}` — see [`StandardWebhooksConfig`].
    #[serde(
        rename = "standard-webhooks",
        alias = "standard_webhooks",
        alias = "svix"
    )]
    StandardWebhooks(StandardWebhooksConfig),
    /// `{"type": "github"}` — see [`GithubConfig`].
    #[serde(rename = "github")]
    Github(GithubConfig),
    /// `{"type": "stripe"}` — see [`StripeConfig`].
    #[serde(rename = "stripe")]
    Stripe(StripeConfig),
    /// `{"type": "slack"}` — see [`SlackConfig`].
    #[serde(rename = "slack")]
    Slack(SlackConfig),
    /// `{"type": "shopify"}` — see [`ShopifyConfig`].
    #[serde(rename = "shopify")]
    Shopify(ShopifyConfig),
    /// `{"type": "twilio"}` — see [`TwilioConfig`].
    #[serde(rename = "twilio")]
    Twilio(TwilioConfig),
    /// `{"type": "paddle"}` — see [`PaddleConfig`].
    #[serde(rename = "paddle")]
    Paddle(PaddleConfig),
    /// `{"type": "zoom"}` — see [`ZoomConfig`].
    #[serde(rename = "zoom")]
    Zoom(ZoomConfig),
    /// `{"type": "twitch"}` — see [`TwitchConfig`].
    #[serde(rename = "twitch")]
    Twitch(TwitchConfig),
    /// `{"type": "discord", "public_key": "…"}` — see [`DiscordConfig`].
    #[serde(rename = "discord")]
    Discord(DiscordConfig),
    /// `{"type": "sendgrid", "public_key": "…"}` — see [`SendgridConfig`].
    #[serde(rename = "sendgrid")]
    Sendgrid(SendgridConfig),
    /// `{"type": "glassix"}` — see [`GlassixConfig`].
    #[serde(rename = "glassix")]
    Glassix(GlassixConfig),
    /// `{"type": "hookwarden", "schemes": [...]}` — see [`HookwardenConfig`].
    #[serde(rename = "hookwarden")]
    Hookwarden(HookwardenConfig),
    /// `{"type": "hmac", "header": "…", "algorithm": "sha256"}` — see [`HmacConfig`].
    #[serde(rename = "hmac")]
    Hmac(HmacConfig),
    /// `{"type": "basic_auth", "username": "…"}` — see [`BasicAuthConfig`].
    #[serde(rename = "basic_auth", alias = "basic-auth")]
    BasicAuth(BasicAuthConfig),
    /// `{"type": "api_key", "header": "…"}` — see [`ApiKeyConfig`].
    #[serde(rename = "api_key", alias = "api-key")]
    ApiKey(ApiKeyConfig),
    /// `{"type": "none"}` — see [`NoneConfig`].
    #[serde(rename = "none")]
    NoVerification(NoneConfig),
}

impl PresetConfig {
    /// The `type` tag, e.g. `"stripe"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            PresetConfig::StandardWebhooks(_) => "standard-webhooks",
            PresetConfig::Github(_) => "github",
            PresetConfig::Stripe(_) => "stripe",
            PresetConfig::Slack(_) => "slack",
            PresetConfig::Shopify(_) => "shopify",
            PresetConfig::Twilio(_) => "twilio",
            PresetConfig::Paddle(_) => "paddle",
            PresetConfig::Zoom(_) => "zoom",
            PresetConfig::Twitch(_) => "twitch",
            PresetConfig::Discord(_) => "discord",
            PresetConfig::Sendgrid(_) => "sendgrid",
            PresetConfig::Glassix(_) => "glassix",
            PresetConfig::Hookwarden(_) => "hookwarden",
            PresetConfig::Hmac(_) => "hmac",
            PresetConfig::BasicAuth(_) => "basic_auth",
            PresetConfig::ApiKey(_) => "api_key",
            PresetConfig::NoVerification(_) => "none",
        }
    }
}

/// **Standard Webhooks / Svix.** Headers `webhook-id`, `webhook-timestamp`,
/// `webhook-signature` (or `svix-id`, `svix-timestamp`, `svix-signature`). Signed
/// content: `"{id}.{timestamp}.{body}"`. `v1,<base64 HMAC-SHA256>` entries are checked
/// against the secrets (`whsec_<base64>` or bare base64); `v1a,<base64 ed25519>` entries
/// against `whpk_<base64>` public keys, given in `public_keys` or among the secrets.
/// Up to 16 space-separated signatures. The id is signed (safe for replay protection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// Allowed distance of `webhook-timestamp` from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
    /// Ed25519 public keys (`whpk_…`) for `v1a` signatures (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
}

/// **GitHub.** `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. The legacy
/// `X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>` is accepted only when
/// `allow_sha1_legacy` is true and the sha256 header is absent. Message id:
/// `X-GitHub-Delivery` (not signed). No timestamp: GitHub signs none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// Accept SHA-1 signatures when no SHA-256 one is sent (default false).
    #[serde(default)]
    pub allow_sha1_legacy: bool,
}

/// **Stripe.** `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each `v1` =
/// hex HMAC-SHA256(secret, `"{t}.{body}"`); the secret (`whsec_…`) is used as-is (UTF-8),
/// not base64-decoded. Other schemes (`v0`) are ignored. Message id: the event's
/// top-level `"id"` from the (signed) JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Allowed distance of `t` from now, seconds (default 300, Stripe's own default).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **Slack.** `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{ts}:{body}")>`
/// with `ts` = `X-Slack-Request-Timestamp`. Message id: `event_id` from a JSON body
/// (Events API), if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Allowed distance of the timestamp from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **Shopify.** `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(app secret, body)>`.
/// Message id: `X-Shopify-Webhook-Id` (not signed). No signed timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {}

/// **Twilio.** `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, url + params)>` where
/// `url` is the full URL Twilio requested (pass the public URL, as Twilio saw it) and,
/// for `application/x-www-form-urlencoded` bodies, `params` is every `key+value`
/// sorted by key then value. For other bodies (JSON) the URL must carry
/// `bodySHA256=<hex SHA-256 of the body>` and the signature covers the URL alone. The
/// URL is tried with and without its default port, as Twilio's libraries do. When
/// `X-Twilio-Webhooks-Signature-Settings` says `algorithm=HMAC_SHA256`, HMAC-SHA256 is
/// used. A non-form body without `bodySHA256` is refused (it would be unsigned).
/// Message id: `I-Twilio-Idempotency-Token` (not signed). No timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {}

/// **Paddle Billing.** `Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256(secret,
/// "{ts}:{body}")>` (several `h1` during secret rotation). Message id: the JSON body's
/// `notification_id` (else `event_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaddleConfig {
    /// Allowed distance of `ts` from now, seconds (default 300; Paddle's SDK uses 5).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **Zoom.** `x-zm-signature: v0=<hex HMAC-SHA256(secret token, "v0:{ts}:{body}")>` with
/// `ts` = `x-zm-request-timestamp`. [`handshake_response`](super::handshake_response)
/// answers `endpoint.url_validation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomConfig {
    /// Allowed distance of the timestamp from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **Twitch EventSub.** `Twitch-Eventsub-Message-Signature: sha256=<hex
/// HMAC-SHA256(secret, id + timestamp + body)>` with `Twitch-Eventsub-Message-Id` and
/// `Twitch-Eventsub-Message-Timestamp` (RFC 3339, as sent). The id is signed.
/// [`handshake_response`](super::handshake_response) answers
/// `webhook_callback_verification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwitchConfig {
    /// Allowed distance of the timestamp from now, seconds (default 600, Twitch's
    /// documented 10 minutes).
    #[serde(default = "d600")]
    pub tolerance_secs: u32,
}

/// **Discord interactions.** `X-Signature-Ed25519: <hex ed25519 signature>` over
/// `timestamp + body`, `X-Signature-Timestamp: <unix>`, verified with the application's
/// hex public key. Needs no secrets. Message id: the interaction `"id"` from the body.
/// [`handshake_response`](super::handshake_response) answers PING with PONG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The application's public key, 64 hex digits.
    pub public_key: String,
    /// Allowed distance of the timestamp from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **SendGrid (Twilio) signed Event Webhook.** `X-Twilio-Email-Event-Webhook-Signature:
/// <base64 DER ECDSA P-256/SHA-256 signature>` over `timestamp + body`, with
/// `X-Twilio-Email-Event-Webhook-Timestamp: <unix>`. `public_key` is the verification
/// key shown by SendGrid (base64 DER SubjectPublicKeyInfo; PEM armour is tolerated).
/// Needs no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    /// The verification key, base64 DER (`MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…`).
    pub public_key: String,
    /// Allowed distance of the timestamp from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// **Glassix.** `X-Hub-Signature: sha1=<hex HMAC-SHA1(API secret, body)>` and
/// `X-Glassix-Auth-Signature: sha1=<hex HMAC-SHA1(API secret, X-Glassix-Auth-Date)>`
/// with the date within ±`tolerance_secs`. Each signature that is present is verified;
/// the `require_*` flags say which must be present (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlassixConfig {
    /// Require `X-Hub-Signature` (body integrity). Default true.
    #[serde(default = "dtrue")]
    pub require_body_signature: bool,
    /// Require `X-Glassix-Auth-Signature` + `X-Glassix-Auth-Date` (freshness). Default true.
    #[serde(default = "dtrue")]
    pub require_date_signature: bool,
    /// Allowed distance of the date from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// How several schemes combine in the `hookwarden` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every listed scheme must verify (default).
    #[default]
    All,
    /// At least one listed scheme must verify.
    Any,
}

/// **Another Hookwarden** (or anything using its outbound schemes): `schemes` lists
/// which of `standard-webhooks`, `github-sha256`, `hub-sha1`, `date-sha1` to check;
/// `mode` `all` (default) requires every one, `any` at least one. A scheme list made
/// only of `date-sha1` is refused (it does not cover the body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookwardenConfig {
    /// Non-empty list of outbound scheme names.
    pub schemes: Vec<Scheme>,
    /// `all` (default) or `any`.
    #[serde(default)]
    pub mode: MatchMode,
    /// Tolerance for standard-webhooks timestamps and date-sha1 dates (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

/// Hash function of the generic `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (20-byte tag).
    Sha1,
    /// HMAC-SHA256 (32-byte tag).
    Sha256,
    /// HMAC-SHA512 (64-byte tag).
    Sha512,
}

/// Signature encoding of the generic `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    /// Hex, either case (default).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Format of the timestamp header of the generic `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampFormat {
    /// Unix seconds (default).
    #[default]
    Unix,
    /// RFC 3339 date-time.
    Rfc3339,
}

/// **Generic HMAC.** `header: [prefix]<hex|base64 HMAC-<algorithm>(secret, content)>`.
/// `signed_content` is `"body"` (default) or a template with the placeholders
/// `{body}` (required, exactly once), `{timestamp}` (the raw `timestamp_header` value;
/// needs `timestamp_header`) and `{id}` (the raw `id_header` value; needs `id_header`),
/// e.g. `"{timestamp}.{body}"`. Any other `{name}` is a configuration error, and so is a
/// `timestamp_header` that the template does not sign. When `timestamp_header` is set the
/// timestamp must be within `tolerance_secs`. `message_id` comes from `id_header` and is
/// reported as signed only when the template contains `{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// Header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// `sha1`, `sha256` or `sha512`.
    pub algorithm: HmacAlgorithm,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Exact text before the signature, e.g. `sha256=` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Header carrying the timestamp (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// `unix` (default) or `rfc3339`.
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Header carrying a message id, reported as `message_id` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_header: Option<String>,
    /// `"body"` (default) or a template such as `"{timestamp}.{body}"`.
    #[serde(default = "default_signed_content")]
    pub signed_content: String,
    /// Allowed distance of the timestamp from now, seconds (default 300).
    #[serde(default = "d300")]
    pub tolerance_secs: u32,
}

fn default_signed_content() -> String {
    "body".to_owned()
}

/// **HTTP Basic authentication.** `Authorization: Basic base64(username:password)`;
/// `username` is configured, the password is any of the active secrets. Both compared in
/// constant time (lengths hidden). Authenticates the sender only: the body is not signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// Expected user name (non-empty, no `:`).
    pub username: String,
}

/// **Static API key in a header**, e.g. `X-Api-Key: <key>` or (with `prefix`
/// `"Bearer "`) `Authorization: Bearer <key>`. The key is any of the active secrets,
/// compared in constant time (length hidden). The body is not signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Header carrying the key.
    pub header: String,
    /// Exact text before the key, e.g. `Bearer ` (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// **No verification.** Every request is accepted; rely on the secret URL and IP
/// allowlists only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneConfig {}
