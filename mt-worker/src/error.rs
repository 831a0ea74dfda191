//! What a failure means for a request: one function, [`MtError::disposition`], decides whether
//! the request is answered with an error, retried later, or dead-lettered.

use std::time::Duration;

use crate::translator::TranslatorError;

/// Failures while handling one request.
#[derive(Debug, thiserror::Error)]
pub enum MtError {
    #[error(transparent)]
    Translator(#[from] TranslatorError),
    #[error("request deadline passed before it could be translated")]
    DeadlineExceeded,
    #[error("request has no texts")]
    Empty,
    #[error("could not publish the result: {0}")]
    Publish(String),
    #[error("the inference thread failed: {0}")]
    Join(String),
}

/// What to do with the request message after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Tell the requester (an error result), then ack: retrying cannot help.
    Answer(&'static str),
    /// Not the requester's fault and maybe not permanent: redeliver after a backoff
    /// (`MaxDeliver` bounds it; then the request is dead-lettered).
    Retry,
}

/// First delay before a transient failure is retried (doubled per delivery).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

impl MtError {
    /// The one place that maps failures to actions.
    pub fn disposition(&self) -> Disposition {
        match self {
            MtError::Translator(TranslatorError::UnsupportedLanguage(_)) => {
                Disposition::Answer("unsupported_language")
            }
            MtError::Translator(TranslatorError::Tokenize(_)) => {
                Disposition::Answer("invalid_input")
            }
            MtError::DeadlineExceeded => Disposition::Answer("deadline_exceeded"),
            MtError::Empty => Disposition::Answer("invalid_input"),
            MtError::Translator(_) | MtError::Publish(_) | MtError::Join(_) => Disposition::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_answered_and_faults_retried() {
        assert_eq!(
            MtError::Translator(TranslatorError::UnsupportedLanguage("xx".into())).disposition(),
            Disposition::Answer("unsupported_language")
        );
        assert_eq!(
            MtError::DeadlineExceeded.disposition(),
            Disposition::Answer("deadline_exceeded")
        );
        assert_eq!(
            MtError::Publish("x".into()).disposition(),
            Disposition::Retry
        );
        assert_eq!(
            MtError::Translator(TranslatorError::Inference("oom".into())).disposition(),
            Disposition::Retry
        );
    }
}
