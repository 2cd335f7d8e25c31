//! Repository passwords in the OS keyring: the D-Bus Secret Service (items
//! found by exactly the attributes `service` and `username`, as the Go tool
//! and `secret-tool` write them) or the Linux kernel keyring, chosen at run
//! time; errors name the backend, the service and the user, never the
//! password.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::time::Duration;

use ::keyring::credential::CredentialApi;
use ::keyring::keyutils::KeyutilsCredential;
use dbus_secret_service::{EncryptionType, Item, SecretService};
use zeroize::Zeroize;

use crate::config::KeyringChoice;

/// The Secret Service item attributes that identify a password. The Go
/// tool searched and wrote exactly these two, so nothing else may be needed
/// to find an entry.
const SERVICE_ATTRIBUTE: &str = "service";
const USERNAME_ATTRIBUTE: &str = "username";

/// How long `rckeyutil` lets the Secret Service's unlock dialog wait for the
/// user. The daemon never waits: a dialog nobody answers would block the job
/// thread, and with it `/stop` and shutdown.
const INTERACTIVE_UNLOCK: Duration = Duration::from_secs(60);

/// A password read from or for the keyring. `Debug` and `Display` never
/// show it, and its memory is zeroed on drop (copies handed to libraries
/// and to the child's environment are outside our reach).
pub struct Password(String);

impl Password {
    pub fn new(text: String) -> Password {
        Password(text)
    }

    /// The password itself, for restic's environment or `rckeyutil get`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn from_bytes(bytes: Vec<u8>) -> Result<Password, ErrorKind> {
        String::from_utf8(bytes).map(Password).map_err(|e| {
            e.into_bytes().zeroize();
            ErrorKind::NotUtf8
        })
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A keyring that holds passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    SecretService,
    Keyutils,
}

impl Backend {
    /// The name `--backend` and the config's `Keyring` use.
    pub fn flag(self) -> &'static str {
        match self {
            Backend::SecretService => "secret-service",
            Backend::Keyutils => "keyutils",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::SecretService => f.write_str("Secret Service (secret-service)"),
            Backend::Keyutils => f.write_str("kernel keyring (keyutils)"),
        }
    }
}

/// What was being done when a keyring failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    Store,
    Delete,
}

/// Why a keyring operation failed. The texts come from D-Bus or the
/// kernel and never hold a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No entry with this service and user.
    NoEntry,
    /// No D-Bus session bus could be reached.
    NoSessionBus(String),
    /// A session bus, but nothing owns `org.freedesktop.secrets`.
    NoSecretService,
    /// The collection or item is locked and we may not (or could not)
    /// have it unlocked.
    Locked,
    /// The Secret Service has no `default` collection to store into.
    NoDefaultCollection,
    /// This many entries match, and their passwords differ.
    Ambiguous(usize),
    NotUtf8,
    /// `store` was given an empty password.
    EmptyPassword,
    /// The entry exists and holds an empty password.
    EmptyEntry,
    /// The keyring refused access.
    Refused(String),
    Failed(String),
}

/// A failed keyring operation, with everything needed to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringError {
    pub operation: Operation,
    pub backend: Backend,
    pub service: String,
    pub username: String,
    /// Why `Keyring: auto` chose this backend, when it fell back to the
    /// kernel keyring.
    pub auto_reason: Option<String>,
    pub kind: ErrorKind,
}

impl KeyringError {
    fn hint(&self) -> String {
        let other_backend = "or use the kernel keyring instead (\"Keyring\": \"keyutils\" in the \
                             config, --backend keyutils for rckeyutil)";
        match &self.kind {
            ErrorKind::NoEntry | ErrorKind::EmptyEntry => {
                let mut hint = format!(
                    "store it with: rckeyutil --backend {} set {} {}",
                    self.backend.flag(),
                    shell_quote(&self.service),
                    shell_quote(&self.username)
                );
                if self.backend == Backend::Keyutils {
                    hint.push_str(" (the kernel keyring forgets everything at reboot)");
                }
                hint
            }
            ErrorKind::NoSessionBus(_) => format!(
                "run it in a D-Bus session with gnome-keyring-daemon started and unlocked (see \
                 the README) so that DBUS_SESSION_BUS_ADDRESS is set, {other_backend}"
            ),
            ErrorKind::NoSecretService => format!(
                "start gnome-keyring-daemon --components=secrets on that bus and unlock it (see \
                 the README), {other_backend}"
            ),
            ErrorKind::Locked => "unlock it: log in to the desktop, or on a headless box pipe \
                                  the keyring password into gnome-keyring-daemon --replace \
                                  --unlock --components=secrets (see the README)"
                .into(),
            ErrorKind::NoDefaultCollection => "create one: pipe a new keyring password into \
                                               gnome-keyring-daemon --replace --unlock \
                                               --components=secrets (see the README)"
                .into(),
            ErrorKind::Ambiguous(_) => format!(
                "remove them with rckeyutil --backend {} del {} {}, then store the password again",
                self.backend.flag(),
                shell_quote(&self.service),
                shell_quote(&self.username)
            ),
            ErrorKind::Refused(_) if self.backend == Backend::Keyutils => {
                "a process needs a session keyring of its own for the kernel keyring; run it \
                 under keyctl session - if it was started outside a login session"
                    .into()
            }
            ErrorKind::NotUtf8
            | ErrorKind::EmptyPassword
            | ErrorKind::Refused(_)
            | ErrorKind::Failed(_) => String::new(),
        }
    }
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (service, username, backend) = (&self.service, &self.username, self.backend);
        if self.kind == ErrorKind::NoEntry {
            write!(
                f,
                "no password for service {service:?}, user {username:?} in the {backend}"
            )?;
        } else if self.kind == ErrorKind::EmptyEntry {
            write!(
                f,
                "the keyring entry for service {service:?}, user {username:?} in the {backend} \
                 is empty, and an empty password is no password"
            )?;
        } else {
            let doing = match self.operation {
                Operation::Read => "cannot read",
                Operation::Store => "cannot store",
                Operation::Delete => "cannot delete",
            };
            let why = match &self.kind {
                ErrorKind::NoEntry | ErrorKind::EmptyEntry => unreachable!("handled above"),
                ErrorKind::NoSessionBus(detail) => format!("no D-Bus session bus ({detail})"),
                ErrorKind::NoSecretService => "no Secret Service on the session bus".into(),
                ErrorKind::Locked => "the keyring is locked".into(),
                ErrorKind::NoDefaultCollection => {
                    "the Secret Service has no default keyring".into()
                }
                ErrorKind::Ambiguous(n) => format!("{n} entries with different passwords match"),
                ErrorKind::NotUtf8 => "the stored password is not valid UTF-8".into(),
                ErrorKind::EmptyPassword => "the password is empty".into(),
                ErrorKind::Refused(detail) => format!("access refused: {detail}"),
                ErrorKind::Failed(detail) => detail.clone(),
            };
            write!(
                f,
                "{doing} the password for service {service:?}, user {username:?} in the \
                 {backend}: {why}"
            )?;
        }
        if let Some(reason) = &self.auto_reason {
            write!(f, " (Keyring \"auto\" chose it because {reason})")?;
        }
        let hint = self.hint();
        if !hint.is_empty() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyringError {}

/// The configured keyring and whether it may ask the user to unlock it.
#[derive(Clone, Copy, Debug)]
pub struct Keyring {
    pub choice: KeyringChoice,
    /// How long an unlock dialog may wait for the user; zero: never show one.
    unlock_prompt: Duration,
}

impl Keyring {
    /// For the daemon: a locked keyring is an error, never a dialog.
    pub fn unattended(choice: KeyringChoice) -> Keyring {
        Keyring {
            choice,
            unlock_prompt: Duration::ZERO,
        }
    }

    /// For `rckeyutil`: the Secret Service may show its unlock dialog.
    pub fn interactive(choice: KeyringChoice) -> Keyring {
        Keyring {
            choice,
            unlock_prompt: INTERACTIVE_UNLOCK,
        }
    }

    /// Reads the password of `service`/`username`. An empty entry is an
    /// error like a missing one: restic must never run with an empty
    /// password (SPEC §9), whoever stored it (`secret-tool` takes one).
    pub fn lookup(&self, service: &str, username: &str) -> Result<Password, KeyringError> {
        self.with_store(Operation::Read, service, username, |store| {
            let password = match store {
                Store::SecretService(ss) => ss_lookup(ss, service, username),
                Store::Keyutils => keyutils_credential(service, username)?
                    .get_secret()
                    .map_err(kernel_error)
                    .and_then(Password::from_bytes),
            }?;
            if password.expose().is_empty() {
                return Err(ErrorKind::EmptyEntry);
            }
            Ok(password)
        })
        .map(|(password, _)| password)
    }

    /// Stores `password` for `service`/`username`, replacing any old one;
    /// returns the backend that holds it now.
    pub fn store(
        &self,
        service: &str,
        username: &str,
        password: &Password,
    ) -> Result<Backend, KeyringError> {
        self.with_store(Operation::Store, service, username, |store| {
            if password.expose().is_empty() {
                return Err(ErrorKind::EmptyPassword);
            }
            match store {
                Store::SecretService(ss) => ss_store(ss, service, username, password),
                // The keyring crate reports a refused link as "no entry".
                Store::Keyutils => keyutils_credential(service, username)?
                    .set_secret(password.expose().as_bytes())
                    .map_err(|e| match kernel_error(e) {
                        ErrorKind::NoEntry => ErrorKind::Refused("permission denied".into()),
                        other => other,
                    }),
            }
        })
        .map(|((), backend)| backend)
    }

    /// Deletes the password of `service`/`username` (on the Secret Service,
    /// every matching entry); returns the backend it was deleted from.
    pub fn delete(&self, service: &str, username: &str) -> Result<Backend, KeyringError> {
        self.with_store(Operation::Delete, service, username, |store| match store {
            Store::SecretService(ss) => ss_delete(ss, service, username),
            Store::Keyutils => keyutils_credential(service, username)?
                .delete_credential()
                .map_err(kernel_error),
        })
        .map(|((), backend)| backend)
    }

    /// Opens the backend and runs `operation` on it, wrapping any failure
    /// with its context.
    fn with_store<T>(
        &self,
        operation: Operation,
        service: &str,
        username: &str,
        run: impl FnOnce(&Store) -> Result<T, ErrorKind>,
    ) -> Result<(T, Backend), KeyringError> {
        let error = |backend, auto_reason, kind| KeyringError {
            operation,
            backend,
            service: service.to_string(),
            username: username.to_string(),
            auto_reason,
            kind,
        };
        let (store, auto_reason) = match self.choice {
            KeyringChoice::Keyutils => (Store::Keyutils, None),
            KeyringChoice::SecretService => match connect(self.unlock_prompt) {
                Ok(ss) => (Store::SecretService(ss), None),
                Err(kind) => return Err(error(Backend::SecretService, None, kind)),
            },
            KeyringChoice::Auto => match connect(self.unlock_prompt) {
                Ok(ss) => (Store::SecretService(ss), None),
                Err(ErrorKind::NoSessionBus(detail)) => (
                    Store::Keyutils,
                    Some(format!("there is no D-Bus session bus ({detail})")),
                ),
                Err(ErrorKind::NoSecretService) => (
                    Store::Keyutils,
                    Some("there is no Secret Service on the session bus".into()),
                ),
                Err(kind) => return Err(error(Backend::SecretService, None, kind)),
            },
        };
        let backend = store.backend();
        match run(&store) {
            Ok(value) => Ok((value, backend)),
            Err(kind) => Err(error(backend, auto_reason, kind)),
        }
    }
}

enum Store {
    SecretService(SecretService),
    Keyutils,
}

impl Store {
    fn backend(&self) -> Backend {
        match self {
            Store::SecretService(_) => Backend::SecretService,
            Store::Keyutils => Backend::Keyutils,
        }
    }
}

/// Connects to the Secret Service on the session bus. The bus is tried on
/// its own first, so "no bus" and "no Secret Service on it" are told apart
/// (the first means `auto` falls back to the kernel keyring).
fn connect(unlock_prompt: Duration) -> Result<SecretService, ErrorKind> {
    dbus::blocking::Connection::new_session().map_err(|e| {
        ErrorKind::NoSessionBus(e.message().unwrap_or("cannot connect").to_string())
    })?;
    // Plain: the secret travels over the user's own bus socket, which is no
    // more exposed than the Secret Service itself (any process of the user
    // may ask it for every secret); the Go tool used plain sessions too.
    SecretService::connect_with_max_prompt_timeout(EncryptionType::Plain, unlock_prompt.as_secs())
        .map_err(|e| match &e {
            dbus_secret_service::Error::Dbus(d)
                if matches!(
                    d.name(),
                    Some(
                        "org.freedesktop.DBus.Error.ServiceUnknown"
                            | "org.freedesktop.DBus.Error.NameHasNoOwner"
                    )
                ) =>
            {
                ErrorKind::NoSecretService
            }
            _ => secret_service_error(e),
        })
}

fn secret_service_error(error: dbus_secret_service::Error) -> ErrorKind {
    use dbus_secret_service::Error;
    match error {
        Error::Locked | Error::Prompt => ErrorKind::Locked,
        Error::Unavailable => ErrorKind::NoSecretService,
        Error::Dbus(e) => ErrorKind::Failed(format!(
            "D-Bus error: {}",
            e.message().or(e.name()).unwrap_or("unknown")
        )),
        other => ErrorKind::Failed(other.to_string()),
    }
}

fn attributes<'a>(service: &'a str, username: &'a str) -> HashMap<&'static str, &'a str> {
    HashMap::from([(SERVICE_ATTRIBUTE, service), (USERNAME_ATTRIBUTE, username)])
}

/// Every item whose `service` and `username` match, in every collection.
/// Locked ones are unlocked first (which fails at once for the daemon);
/// with `unlocked_suffice`, locked ones are left alone when unlocked ones
/// exist.
fn ss_items<'a>(
    ss: &'a SecretService,
    service: &str,
    username: &str,
    unlocked_suffice: bool,
) -> Result<Vec<Item<'a>>, ErrorKind> {
    let found = ss
        .search_items(attributes(service, username))
        .map_err(secret_service_error)?;
    let mut items = found.unlocked;
    let skip_locked = unlocked_suffice && !items.is_empty();
    if !skip_locked && !found.locked.is_empty() {
        let locked: Vec<&Item> = found.locked.iter().collect();
        ss.unlock_all(&locked).map_err(secret_service_error)?;
        items.extend(found.locked);
    }
    Ok(items)
}

fn ss_lookup(ss: &SecretService, service: &str, username: &str) -> Result<Password, ErrorKind> {
    let items = ss_items(ss, service, username, true)?;
    let mut passwords = Vec::new();
    for item in &items {
        let password = Password::from_bytes(item.get_secret().map_err(secret_service_error)?)?;
        if !passwords.iter().any(|p: &Password| p.0 == password.0) {
            passwords.push(password);
        }
    }
    // Copies of one password (two tools stored it) are fine; different
    // ones would make the choice a guess.
    match passwords.len() {
        0 => Err(ErrorKind::NoEntry),
        1 => Ok(passwords.remove(0)),
        _ => Err(ErrorKind::Ambiguous(items.len())),
    }
}

fn ss_store(
    ss: &SecretService,
    service: &str,
    username: &str,
    password: &Password,
) -> Result<(), ErrorKind> {
    let secret = password.expose().as_bytes();
    let items = ss_items(ss, service, username, false)?;
    if items.is_empty() {
        let collection = ss.get_default_collection().map_err(|e| match e {
            dbus_secret_service::Error::NoResult => ErrorKind::NoDefaultCollection,
            other => secret_service_error(other),
        })?;
        collection.ensure_unlocked().map_err(secret_service_error)?;
        // The Go tool's label, attributes and replace flag, so both tools
        // see the same single item.
        let label = format!("Password for '{username}' on '{service}'");
        collection
            .create_item(
                &label,
                attributes(service, username),
                secret,
                true,
                "text/plain",
            )
            .map_err(secret_service_error)?;
    } else {
        // Every match gets the new password, so no stale copy makes a later
        // lookup ambiguous.
        for item in &items {
            item.set_secret(secret, "text/plain")
                .map_err(secret_service_error)?;
        }
    }
    Ok(())
}

fn ss_delete(ss: &SecretService, service: &str, username: &str) -> Result<(), ErrorKind> {
    let items = ss_items(ss, service, username, false)?;
    if items.is_empty() {
        return Err(ErrorKind::NoEntry);
    }
    for item in &items {
        item.delete().map_err(secret_service_error)?;
    }
    Ok(())
}

/// The kernel keyring entry `keyring-rs:USER@SERVICE` (the keyring crate's
/// naming): in this process's session keyring and the user's persistent
/// keyring, which the crate links into the session keyring.
fn keyutils_credential(service: &str, username: &str) -> Result<KeyutilsCredential, ErrorKind> {
    KeyutilsCredential::new_with_target(None, service, username).map_err(kernel_error)
}

fn kernel_error(error: ::keyring::Error) -> ErrorKind {
    match error {
        ::keyring::Error::NoEntry => ErrorKind::NoEntry,
        ::keyring::Error::NoStorageAccess(e) => ErrorKind::Refused(e.to_string()),
        ::keyring::Error::PlatformFailure(e) => ErrorKind::Failed(e.to_string()),
        // Holds the bytes read; never format it.
        ::keyring::Error::BadEncoding(mut bytes) => {
            bytes.zeroize();
            ErrorKind::NotUtf8
        }
        ::keyring::Error::Invalid(what, why) => ErrorKind::Failed(format!("{what} {why}")),
        ::keyring::Error::TooLong(what, limit) => {
            ErrorKind::Failed(format!("{what} is longer than {limit} bytes"))
        }
        _ => ErrorKind::Failed("unexpected keyring error".into()),
    }
}

/// What [`join_session_keyring`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKeyring {
    /// The process already had a session keyring of its own.
    Kept,
    /// It had only the user-default one and joined a new one.
    Joined,
}

// From <linux/keyctl.h>; the libc crate has the syscall number only.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

/// Gives this thread a session keyring of its own when it has only the
/// user-default one (`_uid_ses.UID`, as a process started outside a login or
/// systemd session has). In that keyring the kernel accepts new keys but
/// will not find or read them again, so the kernel-keyring backend fails
/// until the process joins a real session keyring, as `keyctl session -`,
/// PAM and systemd do. Call it before any thread starts: the session keyring
/// belongs to a thread's credentials, which threads started later inherit.
pub fn join_session_keyring() -> io::Result<SessionKeyring> {
    if !session_keyring_description()?.starts_with("_uid_ses.") {
        return Ok(SessionKeyring::Kept);
    }
    // SAFETY: a null name asks for a new anonymous session keyring.
    let joined = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if joined < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SessionKeyring::Joined)
}

/// The description (name) of this thread's session keyring: `_ses` for an
/// anonymous one, `_uid_ses.UID` for the user-default one.
///
/// `linux-keyutils` (keyring's binding, already linked) covers this as
/// `KeyRing::from_special_id(Session, false)?.metadata()`, but its 0.2.5
/// slices its 512-byte buffer with the length the kernel reports, so a
/// session keyring with a longer name (`keyctl session NAME` takes up to
/// 4095 bytes) panics there (`a_long_session_keyring_name_is_no_panic`).
/// The kernel resolves the special id itself, so one call does it.
fn session_keyring_description() -> io::Result<String> {
    let mut buffer = [0u8; 512];
    // SAFETY: the kernel writes at most `buffer.len()` bytes into it.
    let needed = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            KEY_SPEC_SESSION_KEYRING,
            buffer.as_mut_ptr(),
            buffer.len(),
        )
    };
    if needed < 0 {
        return Err(io::Error::last_os_error());
    }
    // "type;uid;gid;perm;description", NUL-terminated. When it does not
    // fit, the kernel copies nothing; such a long name is not `_uid_ses.`.
    let text = CStr::from_bytes_until_nul(&buffer)
        .ok()
        .and_then(|text| text.to_str().ok())
        .unwrap_or("");
    Ok(text.rsplit(';').next().unwrap_or("").to_string())
}

/// `text` as one shell word, for commands in hints.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@+=".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_themselves() {
        let password = Password::new("hunter2".into());
        assert_eq!(format!("{password}"), "<redacted>");
        assert_eq!(format!("{password:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&password)), "Some(<redacted>)");
        assert_eq!(password.expose(), "hunter2");
    }

    fn error(backend: Backend, kind: ErrorKind) -> KeyringError {
        KeyringError {
            operation: Operation::Read,
            backend,
            service: "restic-repo1".into(),
            username: "it's me".into(),
            auto_reason: None,
            kind,
        }
    }

    #[test]
    fn errors_name_backend_service_user_and_a_way_out() {
        let missing = error(Backend::Keyutils, ErrorKind::NoEntry).to_string();
        assert_eq!(
            missing,
            "no password for service \"restic-repo1\", user \"it's me\" in the kernel keyring \
             (keyutils); store it with: rckeyutil --backend keyutils set restic-repo1 \
             'it'\\''s me' (the kernel keyring forgets everything at reboot)"
        );
        let no_bus = error(
            Backend::SecretService,
            ErrorKind::NoSessionBus("no address".into()),
        )
        .to_string();
        assert!(
            no_bus.starts_with(
                "cannot read the password for service \"restic-repo1\", user \"it's me\" in \
                 the Secret Service (secret-service): no D-Bus session bus (no address); "
            ),
            "{no_bus}"
        );
        assert!(no_bus.contains("--backend keyutils"), "{no_bus}");
        let no_service = error(Backend::SecretService, ErrorKind::NoSecretService).to_string();
        assert!(
            no_service.contains("no Secret Service on the session bus; start gnome-keyring-daemon"),
            "{no_service}"
        );
        let mut auto = error(Backend::Keyutils, ErrorKind::NoEntry);
        auto.auto_reason = Some("there is no Secret Service on the session bus".into());
        assert!(
            auto.to_string().contains(
                "(keyutils) (Keyring \"auto\" chose it because there is no Secret Service on \
                 the session bus); store it with"
            ),
            "{auto}"
        );
    }

    #[test]
    fn an_empty_entry_says_so_and_how_to_fill_it() {
        let empty = error(Backend::SecretService, ErrorKind::EmptyEntry).to_string();
        assert_eq!(
            empty,
            "the keyring entry for service \"restic-repo1\", user \"it's me\" in the Secret \
             Service (secret-service) is empty, and an empty password is no password; store it \
             with: rckeyutil --backend secret-service set restic-repo1 'it'\\''s me'"
        );
    }

    #[test]
    fn the_kernel_keyring_works_after_joining_a_session_keyring() {
        // The session keyring is part of a thread's credentials, so this
        // thread can change its own without touching the other tests.
        std::thread::spawn(|| {
            if join_session_keyring().is_err() {
                return; // no keyctl here (a container may forbid it)
            }
            assert!(
                !session_keyring_description()
                    .unwrap()
                    .starts_with("_uid_ses.")
            );
            assert_eq!(join_session_keyring().unwrap(), SessionKeyring::Kept);
            let keyring = Keyring::unattended(KeyringChoice::Keyutils);
            let service = format!("restic-cronned-unit-{}", std::process::id());
            let password = Password::new("unit secret".into());
            assert_eq!(
                keyring.store(&service, "u", &password).unwrap(),
                Backend::Keyutils
            );
            assert_eq!(
                keyring.lookup(&service, "u").unwrap().expose(),
                "unit secret"
            );
            keyring.delete(&service, "u").unwrap();
            let missing = keyring.lookup(&service, "u").unwrap_err();
            assert_eq!(missing.kind, ErrorKind::NoEntry, "{missing}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_long_session_keyring_name_is_no_panic() {
        std::thread::spawn(|| {
            let name = std::ffi::CString::new("x".repeat(600)).unwrap();
            // SAFETY: joins (creates) a session keyring named by a valid C
            // string, for this thread only.
            let joined = unsafe {
                libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr())
            };
            if joined < 0 {
                return; // no keyctl here (a container may forbid it)
            }
            assert_eq!(session_keyring_description().unwrap(), "");
            assert_eq!(join_session_keyring().unwrap(), SessionKeyring::Kept);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("restic-repo1"), "restic-repo1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
    }
}
