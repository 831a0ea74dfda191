//! The one place that turns wire types into bytes and back: MessagePack with named fields
//! (`rmp_serde::to_vec_named`), so that fields can be added without breaking older readers.
//!
//! Decoding checks the schema version: a payload written by a newer, incompatible schema
//! (`v` greater than the reader's [`WireMessage::VERSION`]) is rejected with
//! [`CodecError::UnsupportedVersion`] rather than misread.

use crate::messages::WireMessage;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("could not encode {type_name}: {source}")]
    Encode {
        type_name: &'static str,
        #[source]
        source: rmp_serde::encode::Error,
    },
    #[error("malformed {type_name} payload ({len} bytes): {source}")]
    Decode {
        type_name: &'static str,
        len: usize,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("{type_name} schema version {found} is newer than supported version {supported}")]
    UnsupportedVersion {
        type_name: &'static str,
        found: u16,
        supported: u16,
    },
}

impl CodecError {
    /// Stable code for metrics labels, DLQ records and error events.
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::Encode { .. } => "encode_failed",
            CodecError::Decode { .. } => "malformed_payload",
            CodecError::UnsupportedVersion { .. } => "unsupported_version",
        }
    }
}

/// Encodes a wire message.
pub fn encode<T: WireMessage>(message: &T) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(message).map_err(|source| CodecError::Encode {
        type_name: T::TYPE,
        source,
    })
}

/// Decodes a wire message, rejecting payloads of a newer schema version.
pub fn decode<T: WireMessage>(payload: &[u8]) -> Result<T, CodecError> {
    let message: T = rmp_serde::from_slice(payload).map_err(|source| CodecError::Decode {
        type_name: T::TYPE,
        len: payload.len(),
        source,
    })?;
    let found = message.schema_version();
    if found > T::VERSION || found == 0 {
        return Err(CodecError::UnsupportedVersion {
            type_name: T::TYPE,
            found,
            supported: T::VERSION,
        });
    }
    Ok(message)
}
