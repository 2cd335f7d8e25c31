//! A value that `Debug` never shows: job environments (S3 keys) and API
//! tokens stay out of any debug output or panic message.

use std::fmt;
use std::ops::Deref;

/// Wraps a secret-bearing value; use it through `Deref`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> Deref for Redacted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let secret = Redacted("s3cr3t".to_string());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.len(), 6);
    }
}
