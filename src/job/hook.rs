//! Hooks (SPEC §4.1): the commands a job runs around restic, what they are
//! called and how one is started.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::restic::process::Spec;

/// A hook's limit when the job file gives no `HookTimeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Which hook; in records and history by its key (`Before`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookName {
    Before,
    OnSuccess,
    OnFailure,
    After,
}

impl HookName {
    pub const ALL: [HookName; 4] = [
        HookName::Before,
        HookName::OnSuccess,
        HookName::OnFailure,
        HookName::After,
    ];

    /// Its key in a job file, and its name in logs, errors and records.
    pub fn key(self) -> &'static str {
        match self {
            HookName::Before => "Before",
            HookName::OnSuccess => "OnSuccess",
            HookName::OnFailure => "OnFailure",
            HookName::After => "After",
        }
    }

    /// Its name in `RESTIC_CRONNED_HOOK`.
    pub fn env_name(self) -> &'static str {
        match self {
            HookName::Before => "before",
            HookName::OnSuccess => "on-success",
            HookName::OnFailure => "on-failure",
            HookName::After => "after",
        }
    }
}

/// A hook's command: a string runs as `/bin/sh -c STRING`, a list is an
/// argv (no shell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl HookCommand {
    /// The program that runs: `/bin/sh`, or the list's first item (looked
    /// up on `PATH` when it has no `/`).
    pub fn program(&self) -> &str {
        match self {
            HookCommand::Shell(_) => "/bin/sh",
            HookCommand::Argv(argv) => argv.first().map_or("", String::as_str),
        }
    }

    /// How to start it in `cwd` with `env` added to the daemon's.
    pub fn spec(&self, cwd: &Path, env: Vec<(String, String)>, env_remove: Vec<String>) -> Spec {
        let (program, args) = match self {
            HookCommand::Shell(script) => {
                ("/bin/sh".to_string(), vec!["-c".into(), script.clone()])
            }
            HookCommand::Argv(argv) => (
                argv.first().cloned().unwrap_or_default(),
                argv.iter().skip(1).cloned().collect(),
            ),
        };
        Spec {
            program: program.into(),
            args,
            cwd: cwd.to_path_buf(),
            env,
            env_remove,
        }
    }
}

/// A job's hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub before: Option<HookCommand>,
    pub on_success: Option<HookCommand>,
    pub on_failure: Option<HookCommand>,
    pub after: Option<HookCommand>,
}

impl Hooks {
    pub fn get(&self, name: HookName) -> Option<&HookCommand> {
        match name {
            HookName::Before => self.before.as_ref(),
            HookName::OnSuccess => self.on_success.as_ref(),
            HookName::OnFailure => self.on_failure.as_ref(),
            HookName::After => self.after.as_ref(),
        }
    }

    /// Every hook the job has, in the order they can run.
    pub fn iter(&self) -> impl Iterator<Item = (HookName, &HookCommand)> {
        HookName::ALL
            .into_iter()
            .filter_map(|name| self.get(name).map(|command| (name, command)))
    }
}
