//! The daemon's config file: JSON with case-insensitive keys, every key
//! optional, `$VAR` expansion in paths, and errors that name the file, the
//! line and the value at fault.
//!
//! Job files (`job_file`), the JSON reader that names file, line and value
//! (`json`), and the command-line grammar of all three programs
//! (`command_line`).

pub mod command_line;
pub mod job_file;
pub mod json;

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde_json::{Map, Value};

use crate::config::json::{Echo, Object, describe};
use crate::delivery::notify::{self, Target};
use crate::schedule;
use crate::secrets::redacted::Redacted;

const TOP_KEYS: &[&str] = &[
    "JobPath",
    "SrvConf",
    "LogConf",
    "StateDir",
    "StopGrace",
    "Keyring",
    "ServerPort",
    "LogDir",
    "LogMaxAge",
    "LogMaxSize",
    "Notify",
    "HistoryRuns",
];
const SRV_KEYS: &[&str] = &["Port", "Token", "TokenFile"];
const LOG_KEYS: &[&str] = &["LogDir", "MaxAge", "MaxSize", "Level"];
/// The later Go original's flat keys (its viper `config.json`) and the
/// nested keys they stand for, with what they set (SPEC §1.2).
const FLAT_KEYS: &[(&str, &str, &str)] = &[
    ("ServerPort", "SrvConf.Port", "the listen address"),
    ("LogDir", "LogConf.LogDir", "the log directory"),
    ("LogMaxAge", "LogConf.MaxAge", "the age of rotated logs"),
    ("LogMaxSize", "LogConf.MaxSize", "the log size limit"),
];
/// Keys whose values a problem never quotes: the API token, and the
/// notification targets (tokens in their URLs and headers).
const SECRET_KEYS: &[&str] = &["SrvConf.Token", "Notify"];
/// `HistoryRuns` when the file does not set it (SPEC §1.2).
pub const DEFAULT_HISTORY_RUNS: usize = 100;
/// The most `HistoryRuns` may be: a history file holds up to twice as
/// many runs before it is rewritten, and a run there may be 4 KiB of
/// output.
const MAX_HISTORY_RUNS: u64 = 1_000;

/// Which keyring holds repository passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyringChoice {
    Auto,
    SecretService,
    Keyutils,
}

/// The daemon's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub job_path: PathBuf,
    /// The listen address as written (`:8080`, `host:port`); empty: no server.
    pub addr: String,
    pub token: Redacted<String>,
    pub token_file: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub log_max_age_days: u32,
    pub log_max_size_mb: u64,
    pub log_level: LevelFilter,
    pub state_dir: PathBuf,
    pub stop_grace: Duration,
    pub keyring: KeyringChoice,
    /// Where the events of every job without a `Notify` of its own go
    /// (SPEC §6.5); empty: nowhere.
    pub notify: Vec<Target>,
    /// Runs kept per job in its history (SPEC §6.6); at least 1.
    pub history_runs: usize,
}

/// Where the config came from, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// No file at this path: defaults.
    Defaults(PathBuf),
}

/// A config file that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Syntax {
        path: PathBuf,
        error: json::SyntaxError,
    },
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// `-c DIR` (`--config DIR`) names a directory holding neither
    /// `config` nor `config.json`.
    NotInDirectory {
        dir: PathBuf,
    },
    NoHome,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax { path, error } => write!(
                f,
                "config file {}:{}: not valid JSON: {}",
                path.display(),
                error.position,
                error.message
            ),
            ConfigError::Invalid { path, problems } => {
                write!(f, "config file {}: {}", path.display(), problems.join("; "))
            }
            ConfigError::NotInDirectory { dir } => write!(
                f,
                "config directory {} holds neither config nor config.json; \
                 put the config file there, or name the file itself",
                dir.display()
            ),
            ConfigError::NoHome => write!(f, "HOME is not set, so there is no default config"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment, as a function, so tests need not change the process's.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The default config file: `$XDG_CONFIG_HOME/restic-cronned/config`, or
/// `config.json` beside it when `config` does not exist.
pub fn default_path(env: Env) -> Result<PathBuf, ConfigError> {
    let base = match env("XDG_CONFIG_HOME").filter(|s| !s.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME").ok_or(ConfigError::NoHome)?).join(".config"),
    };
    Ok(config_in(&base.join("restic-cronned")))
}

/// The config file of `dir`: `config`, or `config.json` when only that
/// exists (the later Go original's name); `config` when neither does.
fn config_in(dir: &Path) -> PathBuf {
    let plain = dir.join("config");
    let with_extension = plain.with_extension("json");
    if !plain.exists() && with_extension.exists() {
        with_extension
    } else {
        plain
    }
}

/// The file an explicit `--config` (or `-c`) names: the file itself, or for
/// a directory, as the later Go original's `-c DIR` looked in it, its
/// `config` or else `config.json`.
fn explicit_path(path: &Path) -> Result<PathBuf, ConfigError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let file = config_in(path);
    if file.exists() {
        Ok(file)
    } else {
        Err(ConfigError::NotInDirectory {
            dir: path.to_path_buf(),
        })
    }
}

/// Loads the config from `path` (or the default path). A missing default
/// file means defaults; a missing explicit file is an error. Warnings
/// (unknown keys) are returned for the caller to log.
pub fn load(path: Option<&Path>, env: Env) -> Result<(Config, Source, Vec<String>), ConfigError> {
    let (path, explicit) = match path {
        Some(p) => (explicit_path(p)?, true),
        None => (default_path(env)?, false),
    };
    let text = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => None,
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let empty = Map::new();
    let value = match &text {
        Some(text) => json::parse(text).map_err(|error| ConfigError::Syntax {
            path: path.clone(),
            error,
        })?,
        None => Value::Object(empty.clone()),
    };
    let Some(map) = value.as_object() else {
        return Err(ConfigError::Invalid {
            path,
            problems: vec![format!(
                "expected a JSON object, found {}",
                describe(&value)
            )],
        });
    };
    let mut reader = Reader {
        problems: Vec::new(),
        warnings: Vec::new(),
        env,
    };
    let top = Object::new(map, text.as_deref());
    reader.warn_unknown(&top, TOP_KEYS, "");
    let srv = reader.section(&top, "SrvConf", SRV_KEYS);
    let log = reader.section(&top, "LogConf", LOG_KEYS);
    let srv = Object::new(srv.unwrap_or(&empty), None);
    let log = Object::new(log.unwrap_or(&empty), None);
    reader
        .problems
        .extend(flat_key_conflicts(&top, text.as_deref()));
    // Each setting with a flat alias is read where the file has it; with
    // both spellings the nested one is read (the file is refused anyway).
    let (port_in, port_key) = spelled(&top, &srv, "SrvConf.Port", "ServerPort");
    let (log_dir_in, log_dir_key) = spelled(&top, &log, "LogConf.LogDir", "LogDir");
    let (max_age_in, max_age_key) = spelled(&top, &log, "LogConf.MaxAge", "LogMaxAge");
    let (max_size_in, max_size_key) = spelled(&top, &log, "LogConf.MaxSize", "LogMaxSize");

    // Without HOME the defaults cannot be made: a key that needs one then
    // fails (below) instead of becoming a path under `/`. HOME is read from
    // `env`, as `$HOME` in values is, and not with the `home` crate: its
    // fallback to the passwd entry would turn a service started without
    // HOME into one that writes below a directory nobody named.
    let home = env("HOME");
    let home = home.as_deref();
    let config = Config {
        // JOBDIR on the command line may stand in for it: an empty path
        // here is the caller's to refuse.
        job_path: match (top.get("JobPath"), home) {
            (None, None) => PathBuf::new(),
            _ => reader.path(
                &top,
                "JobPath",
                home.map(|h| format!("{h}/.config/restic-cronned/jobs")),
            ),
        },
        addr: reader.addr(port_in, port_key),
        token: Redacted(
            reader
                .string(&srv, "SrvConf.Token", "Token")
                .unwrap_or_default(),
        ),
        token_file: reader
            .string(&srv, "SrvConf.TokenFile", "TokenFile")
            .filter(|s| !s.is_empty())
            .and_then(|s| reader.expand("SrvConf.TokenFile", &s))
            .map(PathBuf::from),
        log_dir: reader.path(
            log_dir_in,
            log_dir_key,
            home.map(|h| format!("{h}/.cache/restic-cronned")),
        ),
        // A century of days; a terabyte.
        log_max_age_days: reader.number(max_age_in, max_age_key, 30, 36_500) as u32,
        log_max_size_mb: reader.number(max_size_in, max_size_key, 10, 1_000_000),
        log_level: reader.level(&log),
        state_dir: reader.path(
            &top,
            "StateDir",
            home.map(|h| format!("{h}/.local/share/restic-cronned")),
        ),
        stop_grace: reader.duration(&top, "StopGrace", Duration::from_secs(30)),
        keyring: reader.keyring(&top),
        notify: reader.notify(&top),
        history_runs: reader.number(
            &top,
            "HistoryRuns",
            DEFAULT_HISTORY_RUNS as u64,
            MAX_HISTORY_RUNS,
        ) as usize,
    };
    if !reader.problems.is_empty() {
        return Err(ConfigError::Invalid {
            path,
            problems: reader.problems,
        });
    }
    let source = if text.is_some() {
        Source::File(path)
    } else {
        Source::Defaults(path)
    };
    Ok((config, source, reader.warnings))
}

/// Where a setting with a flat alias is read: the top level under `flat`
/// when the file has that key, else the section under `nested`. Returns the
/// object and the key as problems name it (its last part is looked up).
fn spelled<'o, 'a>(
    top: &'o Object<'a>,
    section: &'o Object<'a>,
    nested: &'static str,
    flat: &'static str,
) -> (&'o Object<'a>, &'static str) {
    if top.get(flat).is_some() && section.get(leaf(nested)).is_none() {
        (top, flat)
    } else {
        (section, nested)
    }
}

/// One problem for every setting the file gives under both spellings (the
/// later Go original's flat key and ours): which one was meant is not ours
/// to guess. Each names both keys and where they stand.
fn flat_key_conflicts(top: &Object, text: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    for (flat, nested, what) in FLAT_KEYS {
        let Some((_, flat_at)) = top.get(flat) else {
            continue;
        };
        let (section, field) = nested.split_once('.').expect("nested keys have a dot");
        let Some((section_spelled, Value::Object(map), _)) = top.entry(section) else {
            continue;
        };
        let Some((field_spelled, _, _)) = Object::new(map, None).entry(field) else {
            continue;
        };
        let nested_at =
            text.and_then(|text| json::key_position(text, &[section_spelled, field_spelled]));
        let at = |p: Option<json::Position>| p.map(|p| format!(" at {p}")).unwrap_or_default();
        problems.push(format!(
            "{flat}{} and {nested}{} both set {what}; keep one of them \
             ({flat} is the later Go original's spelling)",
            at(flat_at),
            at(nested_at),
        ));
    }
    problems
}

struct Reader<'e> {
    problems: Vec<String>,
    warnings: Vec<String>,
    env: Env<'e>,
}

/// The last part of a dotted key (`LogConf.LogDir` → `LogDir`).
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

impl Reader<'_> {
    fn warn_unknown(&mut self, object: &Object, known: &[&'static str], prefix: &str) {
        for unknown in object.unknown_keys(known) {
            let at = unknown
                .position
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            self.warnings
                .push(format!("{prefix}{unknown}{at}; ignored"));
        }
    }

    fn section<'a>(
        &mut self,
        top: &Object<'a>,
        key: &str,
        known: &[&'static str],
    ) -> Option<&'a Map<String, Value>> {
        match top.get(key)?.0 {
            Value::Object(map) => {
                self.warn_unknown(&Object::new(map, None), known, &format!("{key}: "));
                Some(map)
            }
            other => {
                self.problems.push(format!(
                    "{key}: expected an object, found {}",
                    describe(other)
                ));
                None
            }
        }
    }

    fn string(&mut self, object: &Object, key: &str, field: &str) -> Option<String> {
        match object.get(field)?.0 {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problems.push(format!(
                    "{key}: expected a string, found {}",
                    Echo::for_key(key, SECRET_KEYS).found(other)
                ));
                None
            }
        }
    }

    /// A path setting; `default` is below HOME, and `None` when HOME is not
    /// set.
    fn path(&mut self, object: &Object, key: &str, default: Option<String>) -> PathBuf {
        let raw = match (self.string(object, key, leaf(key)), default) {
            (Some(raw), _) => raw,
            (None, Some(default)) => default,
            (None, None) => {
                self.problems.push(format!(
                    "{key} is not set, and HOME is not set to make its default"
                ));
                return PathBuf::new();
            }
        };
        PathBuf::from(self.expand(key, &raw).unwrap_or_default())
    }

    fn expand(&mut self, key: &str, raw: &str) -> Option<String> {
        match expand_vars(raw, self.env) {
            Ok(s) => Some(s),
            Err(var) => {
                self.problems
                    .push(format!("{key}: ${var} in {raw:?} is not set"));
                None
            }
        }
    }

    fn number(&mut self, object: &Object, key: &str, default: u64, max: u64) -> u64 {
        match object.get(leaf(key)).map(|(v, _)| v) {
            None => default,
            Some(v) => match v.as_u64().filter(|n| *n > 0 && *n <= max) {
                Some(n) => n,
                None => {
                    self.problems.push(format!(
                        "{key}: expected a whole number from 1 to {max}, found {}",
                        describe(v)
                    ));
                    default
                }
            },
        }
    }

    fn duration(&mut self, object: &Object, key: &str, default: Duration) -> Duration {
        match object.get(key) {
            None => default,
            Some((v, _)) => match schedule::parse_duration(v) {
                Ok(Some(d)) => d,
                Ok(None) => default,
                Err(e) => {
                    self.problems.push(format!("{key}: {e}"));
                    default
                }
            },
        }
    }

    /// The listen address from `key` (`SrvConf.Port` or `ServerPort`).
    fn addr(&mut self, object: &Object, key: &str) -> String {
        match object.get(leaf(key)).map(|(v, _)| v) {
            None => ":8080".into(),
            // A bare number is a port, as people write it.
            Some(Value::Number(n)) if n.as_u64().is_some_and(|p| p <= 65535) => format!(":{n}"),
            Some(Value::String(s)) => match parse_addr(s) {
                Ok(_) => s.clone(),
                Err(e) => {
                    self.problems.push(format!("{key}: {e}"));
                    String::new()
                }
            },
            Some(other) => {
                self.problems.push(format!(
                    "{key}: expected a listen address such as \":8080\", found {}",
                    describe(other)
                ));
                String::new()
            }
        }
    }

    fn level(&mut self, log: &Object) -> LevelFilter {
        let Some(level) = self.string(log, "LogConf.Level", "Level") else {
            return LevelFilter::Info;
        };
        match level.to_ascii_lowercase().as_str() {
            "off" => LevelFilter::Off,
            "error" => LevelFilter::Error,
            "warn" | "warning" => LevelFilter::Warn,
            "info" => LevelFilter::Info,
            "debug" => LevelFilter::Debug,
            "trace" => LevelFilter::Trace,
            _ => {
                self.problems.push(format!(
                    "LogConf.Level: {level:?} is not one of off, error, warn, info, debug, trace"
                ));
                LevelFilter::Info
            }
        }
    }

    fn keyring(&mut self, top: &Object) -> KeyringChoice {
        let Some(choice) = self.string(top, "Keyring", "Keyring") else {
            return KeyringChoice::Auto;
        };
        match choice.as_str() {
            "auto" => KeyringChoice::Auto,
            "secret-service" => KeyringChoice::SecretService,
            "keyutils" => KeyringChoice::Keyutils,
            _ => {
                self.problems.push(format!(
                    "Keyring: {choice:?} is not one of auto, secret-service, keyutils"
                ));
                KeyringChoice::Auto
            }
        }
    }

    /// `Notify`: the targets of every job without its own; none when
    /// absent, `null` or `[]`. Problems never quote a URL or a header
    /// value (SPEC §9).
    fn notify(&mut self, top: &Object) -> Vec<Target> {
        let Some((value, _)) = top.get("Notify") else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        let targets = notify::parse_targets(value, &mut warnings);
        self.warnings
            .extend(warnings.iter().map(|w| format!("Notify: {w}")));
        match targets {
            Ok(targets) => targets,
            Err(problems) => {
                self.problems
                    .extend(problems.iter().map(|p| format!("Notify: {p}")));
                Vec::new()
            }
        }
    }
}

impl Config {
    /// The API token: `TokenFile`'s trimmed content, else `Token`; `None`
    /// when neither is set. `Err` names a token file that cannot be read.
    pub fn api_token(&self) -> Result<Option<String>, TokenFileError> {
        let token = match &self.token_file {
            Some(path) => fs::read_to_string(path)
                .map_err(|source| TokenFileError {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_string(),
            None => self.token.trim().to_string(),
        };
        Ok(Some(token).filter(|t| !t.is_empty()))
    }
}

/// `SrvConf.TokenFile` could not be read.
#[derive(Debug)]
pub struct TokenFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read SrvConf.TokenFile {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for TokenFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Expands `$VAR` and `${VAR}`; `Err` names a variable that is not set. A
/// `$` not followed by a name stays as it is.
pub fn expand_vars(raw: &str, env: Env) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&env(name).ok_or_else(|| name.to_string())?);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A listen address that cannot be used, as it was written.
#[derive(Debug)]
pub struct AddrError {
    pub addr: String,
    pub kind: AddrErrorKind,
}

#[derive(Debug)]
pub enum AddrErrorKind {
    /// `8080` rather than `:8080`.
    NoPort,
    /// What follows the last `:` is not a port number.
    NotAPort(String),
    /// The host resolves, but to nothing.
    NoAddress,
    /// The host does not resolve.
    Resolve(io::Error),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = &self.addr;
        match &self.kind {
            AddrErrorKind::NoPort => write!(
                f,
                "listen address {addr:?} has no port; write \":{addr}\" for the loopback address"
            ),
            AddrErrorKind::NotAPort(port) => {
                write!(f, "listen address {addr:?}: {port:?} is not a port number")
            }
            AddrErrorKind::NoAddress => {
                write!(f, "listen address {addr:?} resolves to no address")
            }
            AddrErrorKind::Resolve(e) => write!(f, "listen address {addr:?}: {e}"),
        }
    }
}

impl std::error::Error for AddrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            AddrErrorKind::Resolve(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a listen address: `HOST:PORT`, `[V6]:PORT`, or `:PORT` (loopback
/// only). `Ok(None)`: empty, no server.
pub fn parse_addr(addr: &str) -> Result<Option<SocketAddr>, AddrError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Ok(None);
    }
    let error = |kind| AddrError {
        addr: addr.to_string(),
        kind,
    };
    let full = match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    };
    let Some((_, port)) = full.rsplit_once(':') else {
        return Err(error(AddrErrorKind::NoPort));
    };
    if port.parse::<u16>().is_err() {
        return Err(error(AddrErrorKind::NotAPort(port.to_string())));
    }
    match full.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .map(Some)
            .ok_or_else(|| error(AddrErrorKind::NoAddress)),
        Err(e) => Err(error(AddrErrorKind::Resolve(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "DATA" => Some("/srv".into()),
            _ => None,
        }
    }

    fn load_text(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        fs::write(&path, text).unwrap();
        load(Some(&path), &env).map(|(c, _, w)| (c, w))
    }

    #[test]
    fn a_token_of_the_wrong_type_is_reported_without_its_value() {
        let err = load_text(r#"{"SrvConf": {"Token": 31415926535}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SrvConf.Token: expected a string, found a number"),
            "{err}"
        );
        assert!(!err.contains("31415926535"), "{err}");
    }

    #[test]
    fn defaults_when_the_default_file_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().to_str().unwrap().to_string();
        let env = move |name: &str| match name {
            "XDG_CONFIG_HOME" => Some(xdg.clone()),
            other => env(other),
        };
        let (config, source, warnings) = load(None, &env).unwrap();
        assert!(matches!(source, Source::Defaults(_)));
        assert!(warnings.is_empty());
        assert_eq!(
            config.job_path,
            PathBuf::from("/home/u/.config/restic-cronned/jobs")
        );
        assert_eq!(config.addr, ":8080");
        assert_eq!(config.log_max_age_days, 30);
        assert_eq!(config.stop_grace, Duration::from_secs(30));
        assert_eq!(
            config.state_dir,
            PathBuf::from("/home/u/.local/share/restic-cronned")
        );
    }

    #[test]
    fn reads_the_originals_config_with_any_case() {
        let (config, warnings) = load_text(
            r#"{"jobpath": "$DATA/jobs", "SrvConf": {"port": ":9000"},
                "LogConf": {"LogDir": "${HOME}/logs", "MaxAge": 7, "MaxSize": 1, "Levle": "x"}}"#,
        )
        .unwrap();
        assert_eq!(config.job_path, PathBuf::from("/srv/jobs"));
        assert_eq!(config.addr, ":9000");
        assert_eq!(config.log_dir, PathBuf::from("/home/u/logs"));
        assert_eq!((config.log_max_age_days, config.log_max_size_mb), (7, 1));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("\"Levle\" (did you mean \"Level\"?)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn reads_the_later_originals_flat_keys_in_any_case() {
        // The later Go original's example config.json, as it ships.
        let (config, warnings) = load_text(
            r#"{"JobPath": "$HOME/.config/restic-cronned/jobs/", "ServerPort": ":8080",
                "LogDir": "$HOME/.cache/restic-cronned", "LogMaxAge": 30, "LogMaxSize": 10}"#,
        )
        .unwrap();
        assert_eq!(warnings, [""; 0]);
        assert_eq!(
            config.job_path,
            PathBuf::from("/home/u/.config/restic-cronned/jobs/")
        );
        assert_eq!(config.addr, ":8080");
        assert_eq!(
            config.log_dir,
            PathBuf::from("/home/u/.cache/restic-cronned")
        );
        assert_eq!((config.log_max_age_days, config.log_max_size_mb), (30, 10));

        let (config, warnings) = load_text(
            r#"{"serverport": 9000, "logdir": "${DATA}/log", "LOGMAXAGE": 7, "logMaxSize": 2,
                "SrvConf": {"Token": "t"}, "LogConf": {"Level": "warn"}}"#,
        )
        .unwrap();
        assert_eq!(warnings, [""; 0]);
        // A number is that port on the loopback address.
        assert_eq!(config.addr, ":9000");
        assert_eq!(config.log_dir, PathBuf::from("/srv/log"));
        assert_eq!((config.log_max_age_days, config.log_max_size_mb), (7, 2));
        assert_eq!(config.log_level, LevelFilter::Warn);
    }

    #[test]
    fn both_spellings_of_a_setting_are_an_error_naming_both() {
        let err = load_text(
            "{\n  \"ServerPort\": \":9000\",\n  \"SrvConf\": {\"port\": \":9001\"},\n  \
             \"LogConf\": {\"MaxAge\": 3, \"MaxSize\": 1},\n  \"logmaxage\": 4\n}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "ServerPort at 2:3 and SrvConf.Port at 3:15 both set the listen address; \
                 keep one of them (ServerPort is the later Go original's spelling)"
            ),
            "{err}"
        );
        assert!(
            err.contains("LogMaxAge at 5:3 and LogConf.MaxAge at 4:15 both set"),
            "{err}"
        );
        // Only the settings given twice.
        assert!(!err.contains("LogMaxSize"), "{err}");
        assert!(err.starts_with("config file "), "{err}");
    }

    #[test]
    fn flat_key_values_are_checked_under_their_own_names() {
        let err = load_text(r#"{"ServerPort": "8080", "LogMaxSize": "10", "LogDir": 1}"#)
            .unwrap_err()
            .to_string();
        for want in [
            "ServerPort: listen address \"8080\" has no port; write \":8080\"",
            "LogMaxSize: expected a whole number from 1 to 1000000, found string \"10\"",
            "LogDir: expected a string, found number 1",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }

    #[test]
    fn a_config_directory_holds_config_or_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(Some(dir.path()), &env).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "config directory {} holds neither config nor config.json; \
                 put the config file there, or name the file itself",
                dir.path().display()
            )
        );
        fs::write(dir.path().join("config.json"), r#"{"ServerPort": ":9002"}"#).unwrap();
        let (config, source, _) = load(Some(dir.path()), &env).unwrap();
        assert_eq!(config.addr, ":9002");
        assert_eq!(source, Source::File(dir.path().join("config.json")));
        // `config` comes first, as for the default location.
        fs::write(
            dir.path().join("config"),
            r#"{"SrvConf": {"Port": ":9003"}}"#,
        )
        .unwrap();
        let (config, source, _) = load(Some(dir.path()), &env).unwrap();
        assert_eq!(config.addr, ":9003");
        assert_eq!(source, Source::File(dir.path().join("config")));
    }

    #[test]
    fn errors_name_the_line_and_the_value() {
        let err = load_text("{\n  \"JobPath\": \"x\",\n}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config:3:1: not valid JSON"), "{err}");
        let err = load_text(r#"{"JobPath": "$NOPE/x", "LogConf": {"MaxAge": "30"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JobPath: $NOPE in \"$NOPE/x\" is not set"),
            "{err}"
        );
        assert!(
            err.contains(
                "LogConf.MaxAge: expected a whole number from 1 to 36500, found string \"30\""
            ),
            "{err}"
        );
        let err = load_text(r#"{"SrvConf": {"Port": "8080"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no port"), "{err}");
    }

    #[test]
    fn notify_and_history_runs_have_defaults_and_are_read_in_any_case() {
        let (config, warnings) = load_text("{}").unwrap();
        assert_eq!(warnings, [""; 0]);
        assert_eq!(config.notify, []);
        assert_eq!(config.history_runs, 100);
        let (config, warnings) = load_text(
            r#"{"notify": [{"URL": "https://ntfy.sh/backups", "Format": "text",
                            "On": ["giveup", "stale"], "Colour": "red"}],
                "historyruns": 7}"#,
        )
        .unwrap();
        assert_eq!(
            warnings,
            ["Notify: item 0: unknown key \"Colour\"; ignored"]
        );
        assert_eq!(config.history_runs, 7);
        assert_eq!(config.notify.len(), 1);
        assert_eq!(
            config.notify[0].shown(),
            "https://ntfy.sh/… (text; on giveup, stale)"
        );
        for none in ["null", "[]"] {
            let (config, _) = load_text(&format!(r#"{{"Notify": {none}}}"#)).unwrap();
            assert_eq!(config.notify, [], "{none}");
        }
    }

    #[test]
    fn bad_notify_and_history_runs_are_named_and_a_url_is_never_shown() {
        let secret = "tk_5551234";
        let err = load_text(&format!(
            r#"{{"Notify": {{"Url": "https:///{secret}", "Headers": {{"Authorization": 1}}}},
                "HistoryRuns": 0}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(!err.contains(secret), "{err}");
        for want in [
            "Notify: Url: the URL has no host",
            "Notify: Headers.Authorization: expected a string, found a number",
            "HistoryRuns: expected a whole number from 1 to 1000, found number 0",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
        let err = load_text(&format!(r#"{{"Notify": "https://ntfy.sh/{secret}"}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "Notify: expected a target such as {\"Url\": \"https://ntfy.sh/…\"} or a list \
                 of them, found a string"
            ),
            "{err}"
        );
        assert!(!err.contains(secret), "{err}");
        let err = load_text(r#"{"HistoryRuns": "100"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HistoryRuns: expected a whole number from 1 to 1000, found string"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let (config, _) = load_text(
            r#"{"SrvConf": {"Token": "tok-9876"},
                "Notify": {"Url": "https://ntfy.sh/tok-5432", "Headers": {"X-T": "tok-1098"}}}"#,
        )
        .unwrap();
        assert_eq!(config.api_token().unwrap().as_deref(), Some("tok-9876"));
        let debug = format!("{config:?}");
        for secret in ["tok-9876", "tok-5432", "tok-1098"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn port_only_addresses_bind_loopback() {
        assert_eq!(
            parse_addr(":8080").unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0.0.0.0:1").unwrap(),
            Some("0.0.0.0:1".parse().unwrap())
        );
        assert_eq!(
            parse_addr("[::1]:0").unwrap(),
            Some("[::1]:0".parse().unwrap())
        );
        assert_eq!(parse_addr("").unwrap(), None);
        assert!(parse_addr("8080").is_err());
        assert!(parse_addr(":http").is_err());
    }

    #[test]
    fn expands_variables() {
        assert_eq!(
            expand_vars("$HOME/a/${DATA}b$", &env).unwrap(),
            "/home/u/a//srvb$"
        );
        assert_eq!(expand_vars("$NOPE", &env).unwrap_err(), "NOPE");
    }
}
