//! Resume and listen tokens of live sessions.
//!
//! A token is `<base64url(JSON claims)>.<base64url(HMAC-SHA256 tag)>`, signed with the edge's
//! secret, so any edge with the same secret accepts it and no session state has to be stored to
//! check one. The claims carry what a resumed or listening connection needs to know about the
//! session (its languages), which is not kept anywhere else once the session's claim is gone.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use voxbridge_shared::SessionId;

type HmacSha256 = Hmac<Sha256>;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Continue the session: send audio and receive its events.
    Speaker,
    /// Receive the session's events only.
    Listener,
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "s")]
    pub session_id: SessionId,
    #[serde(rename = "r")]
    pub role: Role,
    /// Source language as the client gave it (`None` = detect).
    #[serde(rename = "src", default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Target languages (API codes).
    #[serde(rename = "tgt", default)]
    pub targets: Vec<String>,
}

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match (another edge secret, or tampered)")]
    BadSignature,
    #[error("a {0:?} token cannot be used here")]
    WrongRole(Role),
}

impl TokenKey {
    /// A key from a configured secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    /// A random key for this process only.
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        #[allow(clippy::expect_used)]
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// Checks `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }

    /// Checks `token` and that it was issued for `role`.
    pub fn verify_role(&self, token: &str, role: Role) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.role != role {
            return Err(TokenError::WrongRole(claims.role));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role) -> Claims {
        Claims {
            session_id: SessionId::new(),
            role,
            source: Some("en".into()),
            targets: vec!["vi".into(), "fr".into()],
        }
    }

    #[test]
    fn round_trip() {
        let key = TokenKey::new(b"secret");
        let c = claims(Role::Speaker);
        let token = key.sign(&c);
        assert_eq!(key.verify(&token), Ok(c.clone()));
        assert_eq!(key.verify_role(&token, Role::Speaker), Ok(c));
    }

    #[test]
    fn other_secret_or_tampering_is_refused() {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims(Role::Listener));
        assert_eq!(
            TokenKey::new(b"other").verify(&token),
            Err(TokenError::BadSignature)
        );
        // Swap the body for one claiming the speaker role, keep the listener's tag.
        let forged_body = key.sign(&claims(Role::Speaker));
        let forged = format!(
            "{}.{}",
            forged_body.split_once('.').map(|p| p.0).unwrap_or_default(),
            token.split_once('.').map(|p| p.1).unwrap_or_default()
        );
        assert_eq!(key.verify(&forged), Err(TokenError::BadSignature));
        assert_eq!(key.verify("no-dot"), Err(TokenError::Malformed));
        assert_eq!(key.verify("a.b!"), Err(TokenError::Malformed));
    }

    #[test]
    fn role_is_enforced() {
        let key = TokenKey::random();
        let token = key.sign(&claims(Role::Listener));
        assert_eq!(
            key.verify_role(&token, Role::Speaker),
            Err(TokenError::WrongRole(Role::Listener))
        );
    }
}
