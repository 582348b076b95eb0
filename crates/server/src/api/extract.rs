//! Extractors whose rejections are JSON errors with stable codes.

use crate::error::ApiError;
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

/// `axum::Json` with `ApiError` rejections (400 INVALID_JSON, 413, 415, 422).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path` with `ApiError` rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with `ApiError` rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The raw body with `ApiError` rejections (413 `PAYLOAD_TOO_LARGE` as JSON), for routes whose
/// JSON body is optional.
pub struct ApiBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiBytes(bytes::Bytes::from_request(req, state).await?))
    }
}

impl ApiBytes {
    /// The body as an optional JSON `T`: empty (or only whitespace) and `null` mean
    /// `T::default()`; a body that is not a `T` is refused with the error `refuse` makes.
    pub fn json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
        refuse: impl FnOnce(serde_json::Error) -> ApiError,
    ) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        Ok(serde_json::from_slice::<Option<T>>(&self.0)
            .map_err(refuse)?
            .unwrap_or_default())
    }
}

/// A resource id (`ep_…`, `evt_…`, `dlv_…`) in a path or query: 1 to 64 ASCII letters, digits,
/// `_` or `-`. Anything else cannot name a resource and is refused (400) before storage sees it
/// (PostgreSQL text cannot even hold a NUL byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(serde::de::Error::custom("not a valid id"));
        }
        Ok(Id(s))
    }
}

/// For `PATCH`-like bodies: distinguishes an absent field (`None`, with `#[serde(default)]`) from
/// an explicit `null` (`Some(None)`).
pub(crate) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::{ApiBytes, Id};
    use crate::error::ApiError;

    #[test]
    fn optional_json_bodies_default_when_empty_or_null() {
        #[derive(serde::Deserialize, Default, Debug, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Req {
            n: Option<u32>,
        }
        let read = |body: &'static str| {
            ApiBytes(bytes::Bytes::from(body)).json_or_default::<Req>(|e| {
                ApiError::bad_request("INVALID_JSON", format!("Malformed JSON: {e}"))
            })
        };
        for empty in ["", " \r\n\t", "null", " null "] {
            assert_eq!(read(empty).unwrap(), Req::default(), "{empty:?}");
        }
        assert_eq!(read(r#"{"n": 3}"#).unwrap(), Req { n: Some(3) });
        for bad in ["{", r#"{"m": 1}"#, "[]", "x"] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.code, "INVALID_JSON", "{bad:?}");
            assert!(e.message.starts_with("Malformed JSON: "), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn ids_are_short_and_plain() {
        let ok: Id = serde_json::from_str("\"ep_01m84dzrry195hyg400h0asrqs\"").unwrap();
        assert_eq!(ok.0, "ep_01m84dzrry195hyg400h0asrqs");
        for bad in ["\"\"", "\"a\\u0000b\"", "\"a b\"", "\"é\"", "\"a/b\""] {
            assert!(serde_json::from_str::<Id>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "a".repeat(65));
        assert!(serde_json::from_str::<Id>(&long).is_err());
    }
}
