//! Identifier newtypes. Every id on the wire is a ULID (sortable by creation time), parsed and
//! validated once at the edge of the system so the rest of the code can trust it. On the wire an
//! id is its 26-character Crockford base32 string, which is also safe as a NATS subject token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// An id string that is not a valid ULID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} id {value:?}: expected a 26-character ULID")]
pub struct InvalidId {
    kind: &'static str,
    value: String,
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// A new id for "now".
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// The underlying ULID.
            pub fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($kind, ":{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s).map(Self).map_err(|_| InvalidId {
                    kind: $kind,
                    value: s.chars().take(64).collect(),
                })
            }
        }

        impl From<Ulid> for $name {
            fn from(value: Ulid) -> Self {
                Self(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

ulid_id!(
    /// A live session (one speaker's audio stream and everything derived from it).
    SessionId,
    "session"
);
ulid_id!(
    /// A batch job (a subtitle or audio file).
    JobId,
    "job"
);
ulid_id!(
    /// One translation request; results carry it so duplicates can be dropped.
    RequestId,
    "request"
);
ulid_id!(
    /// One transcript segment of a session (a sentence in the making).
    SegmentId,
    "segment"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = SessionId::new();
        let parsed: SessionId = id.to_string().parse().expect("parse");
        assert_eq!(id, parsed);
    }

    #[test]
    fn rejects_garbage_with_kind_in_message() {
        let err = "not-a-ulid".parse::<JobId>().expect_err("must fail");
        assert!(err.to_string().contains("job id"), "{err}");
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = RequestId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RequestId::new();
        assert!(a < b);
    }
}
