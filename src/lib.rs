//! restic-cronned: runs restic jobs on their schedules, one thread per job,
//! controlled over a small HTTP API.
//!
//! The daemon (`daemon`) reads the config and the job files (`config`),
//! starts one thread per job (`job`, with its runs, rules and files) on its
//! schedule (`schedule`), runs restic and hooks as child processes
//! (`restic`) with passwords from the keyring (`secrets`), sends pings and
//! notifications (`delivery`), and answers the HTTP API from the status
//! board (`api`, which also holds `rccommand`'s client).

pub mod api;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod files;
pub mod job;
pub mod logging;
pub mod probe;
pub mod rckeyutil;
pub mod restic;
pub mod schedule;
pub mod secrets;
pub mod service;
