//! Notifications (SPEC §6.5): where a job's events go (`Notify` in a job
//! file or the config), the request each service accepts for an event, and
//! the threads that deliver them.
//!
//! A target's URL and its `Headers` values hold secrets (ntfy and Gotify
//! tokens, the path of a Discord or Slack webhook), so they never appear in
//! `Debug`, in a parse error or in a log line: those show the scheme and the
//! host, and header names only ([`Target::shown`]).
//!
//! Delivery never holds up a job: [`NotifySender::send`] only queues.
//! The threads start with the first message, so a daemon that never
//! notifies has none. Each message gets three attempts (at once, after 1 s,
//! after 5 s) of at most 10 s each; one that fails them all is counted
//! ([`Notifier::failed_total`], the metric
//! `restic_cronned_notifications_failed_total`) and logged with the host
//! only. At shutdown what is still queued gets 10 s more, then is dropped.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use log::{debug, warn};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value, json};

use crate::config::json::{self, Object, describe_type};
use crate::delivery::healthcheck;
use crate::delivery::{Courier, NotQueued, Pool, Queue, Settings};
use crate::job::outcome::{Outcome, RunRecord};
use crate::job::rules::Event;

/// The keys of a target object.
pub const TARGET_KEYS: &[&str] = &["Url", "Format", "On", "Headers"];

/// What a target hears about when it has no `On`: when to act and when it
/// is fixed, not every retry.
pub const DEFAULT_ON: [Event; 3] = [Event::GiveUp, Event::Recovery, Event::Stale];

/// Headers we write ourselves, or that would break the request: a target
/// may not set them.
const RESERVED_HEADERS: &[&str] = &["Host", "Content-Length", "Transfer-Encoding", "Connection"];

/// An example target, for messages.
const EXAMPLE: &str = r#"{"Url": "https://ntfy.sh/…"}"#;

/// The body a target gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Every field of the message as a JSON object.
    #[default]
    Json,
    /// One line, `TITLE: message`, with a `Title` header (ntfy, plain
    /// webhooks).
    Text,
    Gotify,
    Discord,
    Slack,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Text,
        Format::Gotify,
        Format::Discord,
        Format::Slack,
    ];

    /// Its name in `Format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Gotify => "gotify",
            Format::Discord => "discord",
            Format::Slack => "slack",
        }
    }
}

/// Where notifications go. The URL and the header values are secrets:
/// they leave this module only in the [`Request`] for the target.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
    pub format: Format,
    /// The events it hears about, each once.
    pub on: Vec<Event>,
    /// Sent with every request, in this order, after ours (a name given
    /// here replaces ours).
    headers: Vec<(String, String)>,
}

impl Target {
    /// Whether it hears about `event`.
    pub fn wants(&self, event: Event) -> bool {
        self.on.contains(&event)
    }

    /// The URL as logs and API answers show it: the scheme and the host,
    /// `https://ntfy.example.org/…`.
    pub fn url_shown(&self) -> String {
        mask_url(&self.url)
    }

    /// The names of its headers (never their values).
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(name, _)| name.as_str())
    }

    /// The whole target with its secrets masked, for logs and API answers:
    /// `https://ntfy.example.org/… (text; on giveup, recovery, stale;
    /// headers Priority)`.
    pub fn shown(&self) -> String {
        let on: Vec<&str> = self.on.iter().map(|e| e.as_str()).collect();
        let mut shown = format!(
            "{} ({}; on {}",
            self.url_shown(),
            self.format.as_str(),
            on.join(", ")
        );
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.header_names().collect();
            shown.push_str(&format!("; headers {}", names.join(", ")));
        }
        shown.push(')');
        shown
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.header_names().collect();
        f.debug_struct("Target")
            .field("url", &self.url_shown())
            .field("format", &self.format)
            .field("on", &self.on)
            .field("headers", &names)
            .finish()
    }
}

/// The target as an API answer shows it, masked as [`Target::shown`]:
/// `{"Url": "https://ntfy.example.org/…", "Format": "text", "On": [...],
/// "Headers": ["Priority"]}`.
impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let on: Vec<&str> = self.on.iter().map(|e| e.as_str()).collect();
        let names: Vec<&str> = self.header_names().collect();
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("Url", &self.url_shown())?;
        map.serialize_entry("Format", self.format.as_str())?;
        map.serialize_entry("On", &on)?;
        map.serialize_entry("Headers", &names)?;
        map.end()
    }
}

/// `https://user:pw@ntfy.example.org:8443/topic?auth=x` →
/// `https://ntfy.example.org:8443/…`: the scheme and the host with its
/// port, and `/…` when anything else was there.
fn mask_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = if end < rest.len() || host.len() < authority.len() {
        "/…"
    } else {
        ""
    };
    format!("{scheme}://{host}{hidden}")
}

/// One thing wrong with a `Notify` value (or a key it does not know).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Where in the value, as the file spells it (`["0", "Url"]`: the key
    /// `Url` of the first target), to find its position; empty: the value
    /// itself.
    pub path: Vec<String>,
    /// What is wrong, to follow `Notify: `. Never quotes a URL or a header
    /// value.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads a `Notify` value: a target object, a list of them, or `null`
/// (none). `[]` is none as well, which is how a job turns the config's
/// targets off. Keys are matched in any case; unknown keys are pushed on
/// `warnings`. Every problem is returned, and no problem quotes the URL or
/// a header value.
pub fn parse_targets(
    value: &Value,
    warnings: &mut Vec<ParseError>,
) -> Result<Vec<Target>, Vec<ParseError>> {
    let mut reader = TargetReader {
        problems: Vec::new(),
        warnings,
    };
    let mut targets = Vec::new();
    match value {
        Value::Null => {}
        Value::Object(map) => targets.extend(reader.target(map, None)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(map) => targets.extend(reader.target(map, Some(i))),
                    other => reader.problem(
                        Vec::new(),
                        format!(
                            "item {i}: expected a target such as {EXAMPLE}, found {}",
                            describe_type(other)
                        ),
                    ),
                }
            }
        }
        other => reader.problem(
            Vec::new(),
            format!(
                "expected a target such as {EXAMPLE} or a list of them, found {}",
                describe_type(other)
            ),
        ),
    }
    if reader.problems.is_empty() {
        Ok(targets)
    } else {
        Err(reader.problems)
    }
}

struct TargetReader<'w> {
    problems: Vec<ParseError>,
    warnings: &'w mut Vec<ParseError>,
}

impl TargetReader<'_> {
    fn problem(&mut self, path: Vec<String>, message: String) {
        self.problems.push(ParseError { path, message });
    }

    /// One target object; `index` is its place in a list.
    fn target(&mut self, map: &Map<String, Value>, index: Option<usize>) -> Option<Target> {
        let object = Object::new(map, None);
        let prefix = index.map(|i| format!("item {i}: ")).unwrap_or_default();
        let at = |keys: &[&str]| -> Vec<String> {
            let mut path: Vec<String> = index.map(|i| i.to_string()).into_iter().collect();
            path.extend(keys.iter().map(|k| k.to_string()));
            path
        };
        for unknown in object.unknown_keys(TARGET_KEYS) {
            self.warnings.push(ParseError {
                path: at(&[&unknown.key]),
                message: format!("{prefix}{unknown}; ignored"),
            });
        }
        let problems_before = self.problems.len();

        let url = match object.entry("Url") {
            None => {
                self.problem(
                    at(&[]),
                    format!(
                        "{prefix}Url is missing: say where to send, such as \
                         \"https://ntfy.sh/backups\""
                    ),
                );
                None
            }
            Some((spelled, Value::String(url), _)) => match check_url(url) {
                Ok(()) => Some(url.clone()),
                Err(why) => {
                    self.problem(at(&[spelled]), format!("{prefix}Url: {why}"));
                    None
                }
            },
            Some((spelled, other, _)) => {
                self.problem(
                    at(&[spelled]),
                    format!(
                        "{prefix}Url: expected an http:// or https:// URL, found {}",
                        describe_type(other)
                    ),
                );
                None
            }
        };

        let format = match object.entry("Format") {
            None | Some((_, Value::Null, _)) => Format::default(),
            Some((spelled, Value::String(name), _)) => {
                let names = Format::ALL.map(Format::as_str);
                match Format::ALL
                    .into_iter()
                    .find(|f| f.as_str().eq_ignore_ascii_case(name.trim()))
                {
                    Some(format) => format,
                    None => {
                        self.problem(
                            at(&[spelled]),
                            format!(
                                "{prefix}Format: {} is not a format{}; the formats are {}",
                                quoted_if_plain(name),
                                suggestion(name, &names),
                                names.join(", ")
                            ),
                        );
                        Format::default()
                    }
                }
            }
            Some((spelled, other, _)) => {
                self.problem(
                    at(&[spelled]),
                    format!(
                        "{prefix}Format: expected one of {}, found {}",
                        Format::ALL.map(Format::as_str).join(", "),
                        describe_type(other)
                    ),
                );
                Format::default()
            }
        };

        let on = match object.entry("On") {
            None | Some((_, Value::Null, _)) => DEFAULT_ON.to_vec(),
            Some((spelled, value, _)) => self.events(value, &prefix, at(&[spelled])),
        };

        let headers = match object.entry("Headers") {
            None | Some((_, Value::Null, _)) => Vec::new(),
            Some((spelled, Value::Object(map), _)) => {
                let mut headers = Vec::new();
                for (name, value) in map {
                    let path = at(&[spelled, name]);
                    match check_header(name, value) {
                        Ok(value) => headers.push((name.clone(), value)),
                        Err(why) => self.problem(path, format!("{prefix}{why}")),
                    }
                }
                headers
            }
            Some((spelled, other, _)) => {
                self.problem(
                    at(&[spelled]),
                    format!(
                        "{prefix}Headers: expected an object of strings such as \
                         {{\"Priority\": \"high\"}}, found {}",
                        describe_type(other)
                    ),
                );
                Vec::new()
            }
        };

        if self.problems.len() > problems_before {
            return None;
        }
        Some(Target {
            url: url?,
            format,
            on,
            headers,
        })
    }

    /// `On`: a list of event names (or one name), each kept once.
    fn events(&mut self, value: &Value, prefix: &str, path: Vec<String>) -> Vec<Event> {
        let names = Event::ALL.map(Event::as_str);
        let all = names.join(", ");
        let items: Vec<(Option<usize>, &Value)> = match value {
            Value::String(_) => vec![(None, value)],
            Value::Array(items) if items.is_empty() => {
                self.problem(
                    path,
                    format!(
                        "{prefix}On: the list is empty, so this target would never hear \
                         anything; name events such as [\"giveup\", \"recovery\"], or remove \
                         the target"
                    ),
                );
                return Vec::new();
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Some(i), v))
                .collect(),
            other => {
                self.problem(
                    path,
                    format!(
                        "{prefix}On: expected a list of events such as [\"giveup\", \
                         \"recovery\", \"stale\"], found {}",
                        describe_type(other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut events = Vec::new();
        for (i, item) in items {
            let item_prefix = i.map(|i| format!("item {i}: ")).unwrap_or_default();
            let name = match item {
                Value::String(name) => name,
                other => {
                    self.problem(
                        path.clone(),
                        format!(
                            "{prefix}On: {item_prefix}expected an event name, found {}",
                            describe_type(other)
                        ),
                    );
                    continue;
                }
            };
            match Event::ALL
                .into_iter()
                .find(|e| e.as_str().eq_ignore_ascii_case(name.trim()))
            {
                Some(event) if events.contains(&event) => {}
                Some(event) => events.push(event),
                None => self.problem(
                    path.clone(),
                    format!(
                        "{prefix}On: {item_prefix}{} is not an event{}; the events are {all}",
                        quoted_if_plain(name),
                        suggestion(name, &names)
                    ),
                ),
            }
        }
        events
    }
}

/// Checks a target's URL; the error never quotes it (its path or query is
/// the secret of a webhook).
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("the URL is empty".into());
    }
    healthcheck::validate_url(url).map_err(|why| why.replace(&format!("{url:?}"), "the URL"))?;
    // What ureq will parse when it sends: refuse now what it would refuse
    // then. The http crate's messages name the fault, not the URL.
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("the URL is not valid: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// Checks one of `Headers`; the error names the header when its name is a
/// valid one (an invalid name may be a pasted `Authorization: Bearer …`),
/// never its value.
fn check_header(name: &str, value: &Value) -> Result<String, String> {
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(
            "Headers: a header name is not valid: use letters, digits and -, with no spaces \
             or colons, and put the value on the right"
                .into(),
        );
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "Headers.{name}: restic-cronned sets this header itself"
        ));
    }
    match value {
        Value::String(s) if ureq::http::HeaderValue::from_str(s).is_ok() => Ok(s.clone()),
        Value::String(_) => Err(format!(
            "Headers.{name}: the value holds a line break, a control character or a \
             non-ASCII character, which a header cannot carry"
        )),
        other => Err(format!(
            "Headers.{name}: expected a string, found {}",
            describe_type(other)
        )),
    }
}

/// `"giveups"` for a short plain word, else `the value` (a string in the
/// wrong place may be a pasted secret).
fn quoted_if_plain(word: &str) -> String {
    let plain = word.len() <= 20
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if plain {
        format!("{word:?}")
    } else {
        "the value".into()
    }
}

/// ` (did you mean "giveup"?)` when `word` is close to one of `names`.
fn suggestion(word: &str, names: &[&'static str]) -> String {
    json::did_you_mean(word.trim(), names)
        .map(|name| format!(" (did you mean {name:?}?)"))
        .unwrap_or_default()
}

/// What a notification is about: plain values the job fills in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub job: String,
    pub event: Event,
    /// How the run ended; `None` when there was no run (`stale`).
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub duration: Option<Duration>,
    pub snapshot: Option<String>,
    /// This machine's name ([`host_name`]): a person with several hosts
    /// needs to know which one.
    pub host: String,
    /// Failed runs since the last success (SPEC §8).
    pub consecutive_failures: u32,
}

impl Message {
    /// A message that is about no run (`stale`).
    pub fn new(job: &str, event: Event, host: &str, consecutive_failures: u32) -> Message {
        Message {
            job: job.to_string(),
            event,
            outcome: None,
            error: None,
            exit_code: None,
            start: None,
            end: None,
            duration: None,
            snapshot: None,
            host: host.to_string(),
            consecutive_failures,
        }
    }

    /// A message about `run`.
    pub fn of_run(
        job: &str,
        event: Event,
        run: &RunRecord,
        host: &str,
        consecutive_failures: u32,
    ) -> Message {
        Message {
            outcome: Some(run.outcome),
            error: run.error.clone(),
            exit_code: run.exit_code,
            start: Some(run.start),
            end: Some(run.end),
            duration: Some(run.duration()),
            snapshot: run.snapshot.clone(),
            ..Message::new(job, event, host, consecutive_failures)
        }
    }

    /// `restic-cronned: ExampleBackup gave up`.
    pub fn title(&self) -> String {
        let what = match (self.event, self.outcome) {
            (Event::Success, Some(Outcome::Warning)) => "succeeded with warnings",
            (Event::Success, _) => "succeeded",
            (Event::Failure, _) => "failed",
            (Event::GiveUp, _) => "gave up",
            (Event::Recovery, _) => "recovered",
            (Event::Skipped, _) => "was skipped",
            (Event::Stale, _) => "is stale",
        };
        format!("restic-cronned: {} {what}", self.job)
    }

    /// What happened and what it means, in one line: `ExampleBackup on nas
    /// failed (exit code 1): Fatal: wrong password or no key found. 3 failed
    /// runs in a row; no retry is scheduled.`
    pub fn text(&self) -> String {
        let host = if self.host.is_empty() {
            "this host"
        } else {
            &self.host
        };
        let who = format!("{} on {host}", self.job);
        let error = self
            .error
            .as_deref()
            .map(one_line)
            .filter(|e| !e.is_empty());
        let error_after = |lead: &str| {
            error
                .as_ref()
                .map(|e| format!("{lead}{e}"))
                .unwrap_or_default()
        };
        let failures = match self.consecutive_failures {
            0 => None,
            1 => Some("1 failed run in a row".to_string()),
            n => Some(format!("{n} failed runs in a row")),
        };
        let snapshot = self
            .snapshot
            .as_deref()
            .map(|s| format!(", snapshot {}", s.get(..8).unwrap_or(s)))
            .unwrap_or_default();
        let took = self
            .duration
            .filter(|d| d.as_secs() > 0)
            .map(|d| {
                let whole = Duration::from_secs(d.as_secs());
                format!(" in {}", humantime::format_duration(whole))
            })
            .unwrap_or_default();
        match self.event {
            Event::GiveUp => {
                let then = match failures {
                    Some(failures) => format!("{failures}; no retry is scheduled."),
                    None => "No retry is scheduled.".into(),
                };
                format!(
                    "{who} failed{}{}. {then}",
                    self.failure_detail(),
                    error_after(": ")
                )
            }
            Event::Failure => {
                let failures = failures.map(|f| format!(" {f}.")).unwrap_or_default();
                format!(
                    "{who} failed{}{}.{failures}",
                    self.failure_detail(),
                    error_after(": ")
                )
            }
            Event::Recovery => format!("{who} succeeded again{took}{snapshot}."),
            Event::Success if self.outcome == Some(Outcome::Warning) => format!(
                "{who} succeeded with warnings{took}{snapshot}{}.",
                error_after(": ")
            ),
            Event::Success => format!("{who} succeeded{took}{snapshot}."),
            Event::Skipped => format!("{who} was skipped{}.", error_after(": ")),
            Event::Stale => {
                let failures = failures.map(|f| format!("; {f}")).unwrap_or_default();
                format!(
                    "{who} has not succeeded for longer than its StaleAfter{failures}{}.",
                    error_after("; the last error: ")
                )
            }
        }
    }

    /// ` (timeout, exit code 1)`: the outcome when it says more than
    /// "failed", and the exit code when there is one.
    fn failure_detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(outcome) = self.outcome.filter(|o| *o != Outcome::Failure) {
            parts.push(outcome.as_str().to_string());
        }
        if let Some(code) = self.exit_code {
            parts.push(format!("exit code {code}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// The most of an error a one-line message carries: Discord refuses more
/// than 2000 characters, ntfy turns more than 4 KiB into an attachment.
const ERROR_CHARS: usize = 1000;

/// `text` on one line (line breaks and control characters become spaces,
/// runs of spaces one), cut to [`ERROR_CHARS`], without a final period
/// (the sentence adds its own).
fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let joined = words.join(" ");
    let mut line: String = joined.chars().take(ERROR_CHARS).collect();
    if line.len() < joined.len() {
        line.push('…');
    }
    line.trim_end_matches('.').to_string()
}

/// This machine's name, for [`Message::host`]; empty when it has none.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its whole length, which is
    // what gethostname is told.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// One POST to a target. `Debug` masks the URL and the header values.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("url", &mask_url(&self.url))
            .field("headers", &names)
            .field("body", &self.body)
            .finish()
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// The body of [`Format::Json`], in the order SPEC §6.5 lists its keys.
#[derive(Serialize)]
struct JsonBody<'a> {
    job: &'a str,
    event: &'static str,
    outcome: Option<Outcome>,
    error: Option<&'a str>,
    #[serde(rename = "exitCode")]
    exit_code: Option<i32>,
    /// RFC 3339, UTC.
    start: Option<String>,
    end: Option<String>,
    /// Seconds, to the millisecond.
    duration: Option<f64>,
    snapshot: Option<&'a str>,
    host: &'a str,
    #[serde(rename = "consecutiveFailures")]
    consecutive_failures: u32,
}

/// Gotify's priority for an event: 8 (a banner and a sound) for what needs
/// someone to act, 4 (a quiet notification) for news.
pub fn gotify_priority(event: Event) -> u8 {
    match event {
        Event::GiveUp | Event::Failure | Event::Stale => 8,
        Event::Success | Event::Recovery | Event::Skipped => 4,
    }
}

/// The request that tells `target` about `message`: always a POST to its
/// URL, with the content type of its format, then its own headers.
pub fn request(target: &Target, message: &Message) -> Request {
    let title = message.title();
    let line = format!("{title}: {}", message.text());
    let (content_type, body) = match target.format {
        Format::Json => {
            let body = JsonBody {
                job: &message.job,
                event: message.event.as_str(),
                outcome: message.outcome,
                error: message.error.as_deref(),
                exit_code: message.exit_code,
                start: message.start.map(|t| t.to_string()),
                end: message.end.map(|t| t.to_string()),
                duration: message
                    .duration
                    .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
                snapshot: message.snapshot.as_deref(),
                host: &message.host,
                consecutive_failures: message.consecutive_failures,
            };
            let body = serde_json::to_string(&body).expect("a struct of strings and numbers");
            (JSON, body)
        }
        Format::Text => (TEXT, line),
        Format::Gotify => {
            let body = json!({
                "title": title,
                "message": message.text(),
                "priority": gotify_priority(message.event),
            });
            (JSON, body.to_string())
        }
        Format::Discord => (JSON, json!({ "content": line }).to_string()),
        // Slack reads `&`, `<` and `>` as the start of its own markup.
        Format::Slack => (JSON, json!({ "text": slack_escape(&line) }).to_string()),
    };
    let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
    if target.format == Format::Text {
        headers.push(("Title".to_string(), header_safe(&title)));
    }
    for (name, value) in &target.headers {
        headers.retain(|(ours, _)| !ours.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    Request {
        url: target.url.clone(),
        headers,
        body,
    }
}

/// Slack's escaping of text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` with every character a header value cannot hold as `?` (a job
/// name is ASCII already; this is for whatever else a title may hold).
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The most one attempt may take (SPEC §6.5).
const TIMEOUT: Duration = Duration::from_secs(10);

/// How deliveries are attempted. Tests use milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// The wait before each retry; the first attempt is at once, so there
    /// are one more attempts than waits.
    pub backoff: Vec<Duration>,
    /// The most one attempt may take.
    pub timeout: Duration,
    /// How long after the notifier's drop queued messages are still
    /// tried; what is left then is dropped (and counted as failed).
    pub shutdown_grace: Duration,
}

impl Default for Attempts {
    /// At once, after 1 s, after 5 s (SPEC §8); 10 s each; 10 s at
    /// shutdown.
    fn default() -> Attempts {
        Attempts {
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            timeout: TIMEOUT,
            shutdown_grace: TIMEOUT,
        }
    }
}

/// The most threads that deliver. Each target (URL) has a thread of its
/// own, up to this many, so a dead receiver holds up only itself; a
/// target's messages go in order (a `giveup` arrives before the
/// `recovery`). Beyond this many targets, they share threads.
const MAX_THREADS: usize = 8;

/// One message for one target, ready to send.
struct Delivery {
    job: String,
    event: Event,
    /// The target's URL as logs show it.
    host: String,
    request: Request,
}

/// Delivers notifications on its own threads. Dropping it gives what is
/// queued [`Attempts::shutdown_grace`] more, then joins the threads.
pub struct Notifier {
    pool: Pool<Delivery>,
    /// Messages that failed every attempt, or were dropped at shutdown.
    failed: Arc<AtomicU64>,
}

impl Notifier {
    /// A notifier with the attempts of SPEC §8 that counts the messages
    /// that failed every attempt in `failed` (the board's counter, which
    /// `/metrics` shows). It starts no thread until the first message.
    pub fn new(failed: Arc<AtomicU64>) -> Notifier {
        Notifier::with_attempts(Attempts::default(), failed)
    }

    pub fn with_attempts(attempts: Attempts, failed: Arc<AtomicU64>) -> Notifier {
        let settings = Settings {
            thread_name: "notify",
            max_threads: MAX_THREADS,
            timeout: attempts.timeout,
            shutdown_grace: attempts.shutdown_grace,
            agent,
        };
        let counter = failed.clone();
        let pool = Pool::new(settings, move |courier: &Courier, delivery| {
            if !deliver(courier, &delivery, &attempts.backoff) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Notifier { pool, failed }
    }

    /// Where jobs send their messages.
    pub fn sender(&self) -> NotifySender {
        NotifySender {
            queue: self.pool.queue(),
            failed: self.failed.clone(),
        }
    }

    /// At shutdown: what is not delivered by `at` is dropped (the first
    /// deadline set counts; dropping the notifier sets one
    /// [`Attempts::shutdown_grace`] from then).
    pub fn give_up_at(&self, at: Instant) {
        self.pool.give_up_at(at);
    }
}

/// Where jobs queue their notifications (cheap to clone).
#[derive(Clone)]
pub struct NotifySender {
    queue: Queue<Delivery>,
    failed: Arc<AtomicU64>,
}

impl NotifySender {
    /// Queues `message` for each of `targets` that wants its event; never
    /// blocks. Nothing is started when no target wants it.
    pub fn send(&self, targets: &[Target], message: Message) {
        for target in targets.iter().filter(|t| t.wants(message.event)) {
            let job = &message.job;
            let event = message.event.as_str();
            let host = target.url_shown();
            let delivery = Delivery {
                job: job.clone(),
                event: message.event,
                host: host.clone(),
                request: request(target, &message),
            };
            let Err(why) = self.queue.send(&target.url, delivery) else {
                continue;
            };
            match why {
                NotQueued::ShuttingDown => {
                    warn!("[{job}] shutting down: {event} notification to {host} not sent");
                }
                why => warn!("[{job}] {event} notification to {host} not sent: {why}"),
            }
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages that failed every attempt or were dropped at shutdown.
    #[cfg(test)]
    fn failed_total(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        // A status is judged here: anything but 2xx is a failed attempt,
        // and a redirect is one too (it would turn the POST into a GET).
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("restic-cronned/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Sends `delivery`, retrying after each of `backoff`; whether it arrived.
/// Logs name the host only: the rest of the URL is a secret.
fn deliver(courier: &Courier, delivery: &Delivery, backoff: &[Duration]) -> bool {
    let Delivery {
        job, event, host, ..
    } = delivery;
    let event = event.as_str();
    let attempts = backoff.len() + 1;
    let mut last_error = String::new();
    for attempt in 0..attempts {
        if attempt > 0 && !courier.wait_until(Instant::now() + backoff[attempt - 1]) {
            warn!(
                "[{job}] shutting down: {event} notification to {host} not sent after \
                 {attempt} attempt(s): {last_error}"
            );
            return false;
        }
        let Some(timeout) = courier.time_left() else {
            warn!("[{job}] shutting down: {event} notification to {host} not sent");
            return false;
        };
        match post(&courier.agent, &delivery.request, timeout) {
            Ok(()) => {
                debug!("[{job}] {event} notification sent to {host}");
                return true;
            }
            Err(e) => {
                debug!(
                    "[{job}] {event} notification to {host}: attempt {} of {attempts} failed: {e}",
                    attempt + 1
                );
                last_error = e;
            }
        }
    }
    warn!("[{job}] {event} notification to {host} failed {attempts} times; the last: {last_error}");
    false
}

/// One attempt. The error never holds the URL or a header value.
fn post(agent: &ureq::Agent, request: &Request, timeout: Duration) -> Result<(), String> {
    let mut builder = agent
        .post(&request.url)
        .config()
        .timeout_global(Some(timeout))
        .build();
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match builder.send(request.body.as_bytes()) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the answer was {}", response.status())),
        Err(e) => {
            // ureq quotes a URL it cannot use.
            let mut text = e.to_string().replace(&request.url, &mask_url(&request.url));
            for (_, value) in request.headers.iter().filter(|(_, v)| !v.is_empty()) {
                text = text.replace(value.as_str(), "…");
            }
            Err(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, unbounded};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::thread;

    fn parse(value: Value) -> Result<Vec<Target>, Vec<ParseError>> {
        parse_targets(&value, &mut Vec::new())
    }

    fn target(value: Value) -> Target {
        let mut targets = parse(value).unwrap();
        assert_eq!(targets.len(), 1);
        targets.remove(0)
    }

    fn messages(value: Value) -> Vec<String> {
        parse(value)
            .unwrap_err()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    fn giveup() -> Message {
        Message {
            job: "ExampleBackup".into(),
            event: Event::GiveUp,
            outcome: Some(Outcome::Failure),
            error: Some("Fatal: wrong password or no key found\n".into()),
            exit_code: Some(1),
            start: Some("2026-05-01T03:30:00Z".parse().unwrap()),
            end: Some("2026-05-01T03:30:12.5Z".parse().unwrap()),
            duration: Some(Duration::from_millis(12_500)),
            snapshot: None,
            host: "nas".into(),
            consecutive_failures: 3,
        }
    }

    fn body_json(sent: &Request) -> Value {
        serde_json::from_str(&sent.body).unwrap()
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        let mut found = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let value = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} twice: {request:?}");
        value
    }

    const GIVEUP_TITLE: &str = "restic-cronned: ExampleBackup gave up";
    const GIVEUP_TEXT: &str = "ExampleBackup on nas failed (exit code 1): Fatal: wrong password \
                               or no key found. 3 failed runs in a row; no retry is scheduled.";

    #[test]
    fn json_carries_every_field_of_the_message() {
        let t = target(json!({"Url": "https://hooks.example.org/x"}));
        let sent = request(&t, &giveup());
        assert_eq!(sent.url, "https://hooks.example.org/x");
        assert_eq!(header(&sent, "Content-Type"), Some("application/json"));
        assert_eq!(
            sent.body,
            r#"{"job":"ExampleBackup","event":"giveup","outcome":"failure","error":"Fatal: wrong password or no key found\n","exitCode":1,"start":"2026-05-01T03:30:00Z","end":"2026-05-01T03:30:12.5Z","duration":12.5,"snapshot":null,"host":"nas","consecutiveFailures":3}"#
        );
        // Without a run, the run's fields are null.
        let stale = request(&t, &Message::new("ExampleBackup", Event::Stale, "nas", 0));
        assert_eq!(
            body_json(&stale),
            json!({"job": "ExampleBackup", "event": "stale", "outcome": null, "error": null,
                   "exitCode": null, "start": null, "end": null, "duration": null,
                   "snapshot": null, "host": "nas", "consecutiveFailures": 0})
        );
    }

    #[test]
    fn text_is_one_line_with_a_title_header_for_ntfy() {
        let t = target(
            json!({"Url": "https://ntfy.example.org/backups", "Format": "text",
                              "Headers": {"Priority": "high", "Tags": "warning"}}),
        );
        let sent = request(&t, &giveup());
        assert_eq!(sent.body, format!("{GIVEUP_TITLE}: {GIVEUP_TEXT}"));
        assert!(!sent.body.contains('\n'));
        assert_eq!(
            sent.headers,
            [
                ("Content-Type".to_string(), TEXT.to_string()),
                ("Title".to_string(), GIVEUP_TITLE.to_string()),
                ("Priority".to_string(), "high".to_string()),
                ("Tags".to_string(), "warning".to_string()),
            ]
        );
        // A target's own header replaces ours.
        let t = target(
            json!({"Url": "https://ntfy.example.org/b", "Format": "TEXT",
                              "Headers": {"title": "Backups"}}),
        );
        let sent = request(&t, &giveup());
        assert_eq!(header(&sent, "Title"), Some("Backups"));
    }

    #[test]
    fn gotify_discord_and_slack_get_the_json_they_accept() {
        let message = giveup();
        let gotify = request(
            &target(
                json!({"Url": "https://gotify.example.org/message?token=AbC", "Format": "gotify"}),
            ),
            &message,
        );
        assert_eq!(header(&gotify, "Content-Type"), Some("application/json"));
        assert_eq!(
            body_json(&gotify),
            json!({"title": GIVEUP_TITLE, "message": GIVEUP_TEXT, "priority": 8})
        );
        let recovery = Message {
            event: Event::Recovery,
            outcome: Some(Outcome::Success),
            error: None,
            exit_code: Some(0),
            snapshot: Some("1a2b3c4d5e6f".into()),
            consecutive_failures: 0,
            ..giveup()
        };
        assert_eq!(
            body_json(&request(
                &target(json!({"Url": "https://g.example.org/message", "Format": "gotify"})),
                &recovery
            )),
            json!({"title": "restic-cronned: ExampleBackup recovered",
                   "message": "ExampleBackup on nas succeeded again in 12s, snapshot 1a2b3c4d.",
                   "priority": 4})
        );

        let discord = request(
            &target(json!({"Url": "https://discord.com/api/webhooks/1/t", "format": "Discord"})),
            &message,
        );
        assert_eq!(header(&discord, "Content-Type"), Some("application/json"));
        assert_eq!(
            body_json(&discord),
            json!({"content": format!("{GIVEUP_TITLE}: {GIVEUP_TEXT}")})
        );

        let slack = request(
            &target(json!({"Url": "https://hooks.slack.com/services/T/B/x", "Format": "slack"})),
            &Message {
                error: Some("<stdin> & more".into()),
                ..giveup()
            },
        );
        assert_eq!(header(&slack, "Content-Type"), Some("application/json"));
        assert_eq!(
            body_json(&slack),
            json!({"text": "restic-cronned: ExampleBackup gave up: ExampleBackup on nas failed \
                            (exit code 1): &lt;stdin&gt; &amp; more. 3 failed runs in a row; \
                            no retry is scheduled."})
        );
    }

    #[test]
    fn messages_say_what_happened_for_every_event() {
        let text = |m: Message| (m.title(), m.text());
        assert_eq!(
            text(Message {
                event: Event::Failure,
                outcome: Some(Outcome::Timeout),
                exit_code: None,
                error: Some("stopped after the Timeout of 1h".into()),
                consecutive_failures: 1,
                ..giveup()
            }),
            (
                "restic-cronned: ExampleBackup failed".into(),
                "ExampleBackup on nas failed (timeout): stopped after the Timeout of 1h. \
                 1 failed run in a row."
                    .into()
            )
        );
        assert_eq!(
            text(Message {
                event: Event::Success,
                outcome: Some(Outcome::Warning),
                error: Some("some files could not be read".into()),
                exit_code: Some(3),
                consecutive_failures: 0,
                snapshot: Some("abcdef12".into()),
                ..giveup()
            }),
            (
                "restic-cronned: ExampleBackup succeeded with warnings".into(),
                "ExampleBackup on nas succeeded with warnings in 12s, snapshot abcdef12: \
                 some files could not be read."
                    .into()
            )
        );
        assert_eq!(
            text(Message {
                event: Event::Skipped,
                outcome: Some(Outcome::Skipped),
                error: Some("/mnt/usb does not exist".into()),
                exit_code: None,
                consecutive_failures: 0,
                ..giveup()
            })
            .1,
            "ExampleBackup on nas was skipped: /mnt/usb does not exist."
        );
        let mut stale = Message::new("ExampleBackup", Event::Stale, "", 2);
        stale.error = Some("Fatal: unable to open repository".into());
        assert_eq!(
            text(stale),
            (
                "restic-cronned: ExampleBackup is stale".into(),
                "ExampleBackup on this host has not succeeded for longer than its StaleAfter; \
                 2 failed runs in a row; the last error: Fatal: unable to open repository."
                    .into()
            )
        );
        // A long error with many lines stays one line of bounded length.
        let long = Message {
            error: Some("line\r\n\u{1b}[31m".repeat(2000)),
            ..giveup()
        };
        let line = long.text();
        assert!(!line.contains(['\n', '\r', '\u{1b}']), "{line}");
        assert!(line.chars().count() < 1200, "{}", line.len());
    }

    #[test]
    fn message_of_a_run_takes_its_values() {
        let run = RunRecord {
            start: "2026-05-01T03:30:00Z".parse().unwrap(),
            end: "2026-05-01T03:30:12.5Z".parse().unwrap(),
            reason: crate::job::outcome::Reason::Schedule,
            outcome: Outcome::Failure,
            exit_code: Some(1),
            error: Some("Fatal: wrong password or no key found\n".into()),
            output_tail: String::new(),
            summary: None,
            snapshot: None,
            hooks: Vec::new(),
        };
        assert_eq!(
            Message::of_run("ExampleBackup", Event::GiveUp, &run, "nas", 3),
            giveup()
        );
    }

    #[test]
    fn targets_default_and_read_keys_in_any_case() {
        let t = target(json!({"url": "https://ntfy.sh/x"}));
        assert_eq!(t.format, Format::Json);
        assert_eq!(t.on, DEFAULT_ON);
        assert_eq!(t.header_names().count(), 0);
        let t = target(json!({"URL": "http://127.0.0.1:8000/h", "FORMAT": "Slack",
                              "on": ["Failure", "giveup", "failure"], "headers": {"X-A": "1"}}));
        assert_eq!(t.format, Format::Slack);
        assert_eq!(t.on, [Event::Failure, Event::GiveUp]);
        assert_eq!(t.header_names().collect::<Vec<_>>(), ["X-A"]);
        // One name for On; nulls are defaults.
        let t = target(
            json!({"Url": "https://x.org", "On": "success", "Format": null,
                              "Headers": null}),
        );
        assert_eq!((t.on, t.format), (vec![Event::Success], Format::Json));
        // A list, and [] or null for none.
        let list = parse(json!([{"Url": "https://a.org/1"}, {"Url": "https://b.org/2"}])).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(parse(json!([])).unwrap(), []);
        assert_eq!(parse(Value::Null).unwrap(), []);
        // Unknown keys are warnings that point at the key.
        let mut warnings = Vec::new();
        let targets = parse_targets(
            &json!([{"Url": "https://a.org"}, {"Url": "https://a.org", "Formt": "text"}]),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(
            warnings,
            [ParseError {
                path: vec!["1".into(), "Formt".into()],
                message: "item 1: unknown key \"Formt\" (did you mean \"Format\"?); ignored".into()
            }]
        );
    }

    #[test]
    fn every_problem_is_named_without_the_url_or_a_header_value() {
        let secret = "tk_93847561";
        let problems = parse(json!([
            {"Url": format!("ftp://ntfy.sh/{secret}"), "On": ["giveups", 5], "Format": "markdown"},
            {"Format": "text"},
            {"Url": 12345, "Headers": {"Authorization": 7, "X-Bad": format!("a\n{secret}"),
                                       "Authorization: Bearer tk_93847561": "x"}},
            "https://ntfy.sh/tk_93847561",
            {"Url": format!("https://ntfy.sh/{secret} x"), "On": []},
            {"Url": format!("https:///{secret}"), "Headers": ["Priority"], "On": {}},
            {"Url": "https://x.org", "Format": format!("Bearer {secret}!"), "Headers": {"Host": "h"}}
        ]))
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        for message in &text {
            assert!(!message.contains(secret), "{message}");
        }
        assert_eq!(
            text,
            [
                "item 0: Url: the URL is not an http:// or https:// URL",
                "item 0: Format: \"markdown\" is not a format; the formats are json, text, \
                 gotify, discord, slack",
                "item 0: On: item 0: \"giveups\" is not an event (did you mean \"giveup\"?); \
                 the events are success, failure, giveup, recovery, skipped, stale",
                "item 0: On: item 1: expected an event name, found a number",
                "item 1: Url is missing: say where to send, such as \"https://ntfy.sh/backups\"",
                "item 2: Url: expected an http:// or https:// URL, found a number",
                "item 2: Headers.Authorization: expected a string, found a number",
                "item 2: Headers: a header name is not valid: use letters, digits and -, with \
                 no spaces or colons, and put the value on the right",
                "item 2: Headers.X-Bad: the value holds a line break, a control character or a \
                 non-ASCII character, which a header cannot carry",
                "item 3: expected a target such as {\"Url\": \"https://ntfy.sh/…\"}, found a \
                 string",
                "item 4: Url: the URL is not valid: invalid uri character",
                "item 4: On: the list is empty, so this target would never hear anything; name \
                 events such as [\"giveup\", \"recovery\"], or remove the target",
                "item 5: Url: the URL has no host",
                "item 5: On: expected a list of events such as [\"giveup\", \"recovery\", \
                 \"stale\"], found an object",
                "item 5: Headers: expected an object of strings such as {\"Priority\": \
                 \"high\"}, found an array",
                "item 6: Format: the value is not a format; the formats are json, text, gotify, \
                 discord, slack",
                "item 6: Headers.Host: restic-cronned sets this header itself",
            ]
        );
        // Paths lead to the key at fault, as the file spells it.
        assert_eq!(problems[0].path, ["0", "Url"]);
        assert_eq!(problems[4].path, ["1"]);
        assert_eq!(problems[6].path, ["2", "Headers", "Authorization"]);
        assert_eq!(problems[9].path, [""; 0]);
        assert_eq!(
            messages(json!(31415926535u64)),
            [
                "expected a target such as {\"Url\": \"https://ntfy.sh/…\"} or a list of them, \
              found a number"
            ]
        );
        assert_eq!(messages(json!({"Url": ""})), ["Url: the URL is empty"]);
    }

    #[test]
    fn debug_logs_and_api_answers_mask_the_url_and_header_values() {
        let t = target(
            json!({"Url": "https://user:pw@ntfy.example.org:8443/topic_s3cr3t?auth=x",
                              "Format": "text", "Headers": {"Authorization": "Bearer s3cr3t"}}),
        );
        assert_eq!(t.url_shown(), "https://ntfy.example.org:8443/…");
        assert_eq!(
            t.shown(),
            "https://ntfy.example.org:8443/… (text; on giveup, recovery, stale; headers \
             Authorization)"
        );
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("pw"),
            "{debug}"
        );
        let api = serde_json::to_value(&t).unwrap();
        assert_eq!(
            api,
            json!({"Url": "https://ntfy.example.org:8443/…", "Format": "text",
                   "On": ["giveup", "recovery", "stale"], "Headers": ["Authorization"]})
        );
        let debug = format!("{:?}", request(&t, &giveup()));
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(mask_url("https://ntfy.sh"), "https://ntfy.sh");
        assert_eq!(mask_url("http://h:1?token=x"), "http://h:1/…");
        assert_eq!(mask_url("https://u@h"), "https://h/…");
    }

    /// One request as a test receiver got it.
    struct Received {
        request_line: String,
        /// Names in lower case.
        headers: Vec<(String, String)>,
        body: String,
    }

    /// A receiver on a local port that answers each request with the next
    /// of `statuses` (the last one again when they run out), and reports
    /// what it got.
    struct TestReceiver {
        url: String,
        requests: Receiver<Received>,
        _thread: thread::JoinHandle<()>,
    }

    fn receiver(statuses: &[u16]) -> TestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/topic_s3cr3t", listener.local_addr().unwrap());
        let statuses = statuses.to_vec();
        let (sender, requests) = unbounded();
        // Detached: it ends with the test process, blocked in `accept`.
        let thread = thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                // Reported before the answer, so that the request is in
                // the channel by the time the notifier has its answer.
                let body = String::from_utf8(body).unwrap();
                if sender
                    .send(Received {
                        request_line,
                        headers,
                        body,
                    })
                    .is_err()
                {
                    return;
                }
                let status = statuses[n.min(statuses.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        TestReceiver {
            url,
            requests,
            _thread: thread,
        }
    }

    fn fast() -> Attempts {
        Attempts {
            backoff: vec![Duration::from_millis(10), Duration::from_millis(50)],
            timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }

    fn text_target(url: &str) -> Target {
        target(json!({"Url": url, "Format": "text", "Headers": {"Priority": "high"}}))
    }

    #[test]
    fn a_message_is_posted_once_with_its_headers() {
        let receiver = receiver(&[200]);
        let notifier = Notifier::with_attempts(fast(), Arc::default());
        assert_eq!(notifier.pool.threads_started(), 0);
        let sender = notifier.sender();
        // Nothing wants a success: nothing is queued, no thread starts.
        let success = Message {
            event: Event::Success,
            ..giveup()
        };
        sender.send(&[text_target(&receiver.url)], success);
        assert_eq!(notifier.pool.threads_started(), 0);

        sender.send(&[text_target(&receiver.url)], giveup());
        assert_eq!(notifier.pool.threads_started(), 1);
        let Received {
            request_line,
            headers,
            body,
        } = receiver
            .requests
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(request_line.trim_end(), "POST /topic_s3cr3t HTTP/1.1");
        let has = |name: &str, value: &str| headers.contains(&(name.into(), value.into()));
        assert!(has("content-type", TEXT), "{headers:?}");
        assert!(has("title", GIVEUP_TITLE), "{headers:?}");
        assert!(has("priority", "high"), "{headers:?}");
        assert_eq!(body, format!("{GIVEUP_TITLE}: {GIVEUP_TEXT}"));
        drop(notifier);
        assert!(receiver.requests.try_recv().is_err());
        assert_eq!(sender.failed_total(), 0);
    }

    #[test]
    fn a_failing_receiver_gets_three_attempts() {
        let receiver = receiver(&[500, 503, 200]);
        let notifier = Notifier::with_attempts(fast(), Arc::default());
        notifier
            .sender()
            .send(&[text_target(&receiver.url)], giveup());
        for _ in 0..3 {
            receiver
                .requests
                .recv_timeout(Duration::from_secs(10))
                .unwrap();
        }
        let failed = notifier.failed.clone();
        drop(notifier);
        assert!(receiver.requests.try_recv().is_err());
        assert_eq!(failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_receiver_that_always_fails_is_counted_once_after_three_attempts() {
        let receiver = receiver(&[500]);
        let notifier = Notifier::with_attempts(fast(), Arc::default());
        let sender = notifier.sender();
        sender.send(&[text_target(&receiver.url)], giveup());
        // The drop waits for the retries (they come before its deadline).
        drop(notifier);
        assert_eq!(receiver.requests.try_iter().count(), 3);
        assert_eq!(sender.failed_total(), 1);

        // Nobody listens on a port just closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let notifier = Notifier::with_attempts(fast(), Arc::default());
        let url = format!("http://127.0.0.1:{port}/x");
        notifier
            .sender()
            .send(&[text_target(&url), text_target(&url)], giveup());
        let failed = notifier.failed.clone();
        drop(notifier);
        assert_eq!(failed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_receiver_that_never_answers_holds_up_neither_the_job_nor_the_shutdown() {
        // It accepts connections (the kernel does) and never reads.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let notifier = Notifier::with_attempts(
            Attempts {
                backoff: vec![Duration::from_millis(10), Duration::from_millis(10)],
                timeout: Duration::from_millis(300),
                shutdown_grace: Duration::from_millis(300),
            },
            Arc::default(),
        );
        let sender = notifier.sender();
        let started = Instant::now();
        for _ in 0..20 {
            sender.send(&[text_target(&url)], giveup());
        }
        assert!(started.elapsed() < Duration::from_millis(500));
        let dropping = Instant::now();
        drop(notifier);
        // The attempt under way when the drop began ends by its timeout,
        // the rest by the deadline.
        assert!(
            dropping.elapsed() < Duration::from_secs(3),
            "{:?}",
            dropping.elapsed()
        );
        assert_eq!(sender.failed_total(), 20);
        // After the shutdown, a message is counted, not queued.
        sender.send(&[text_target(&url)], giveup());
        assert_eq!(sender.failed_total(), 21);
    }
}
