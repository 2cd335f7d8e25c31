//! Secrets: repository passwords in the OS keyring, and the wrapper that
//! keeps a secret out of `Debug` output, logs and error messages.

pub mod keyring;
pub mod redacted;
