//! restic-cronned: runs restic jobs on their schedules, one thread per job,
//! controlled over a small HTTP API.

pub mod api;
pub mod board;
pub mod client;
pub mod clock;
pub mod command_line;
pub mod config;
pub mod cron;
pub mod daemon;
pub mod delivery;
pub mod exclusion;
pub mod files;
pub mod healthcheck;
pub mod history;
pub mod hook;
pub mod http;
pub mod job;
pub mod job_file;
pub mod json;
pub mod keyring;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod preconditions;
pub mod probe;
pub mod process;
pub mod progress;
pub mod rckeyutil;
pub mod redacted;
pub mod restic;
pub mod rules;
pub mod run;
pub mod schedule;
pub mod service;
pub mod state;
