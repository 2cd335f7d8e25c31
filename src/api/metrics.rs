//! `/metrics`: the board in the Prometheus text exposition format (0.0.4),
//! with HELP and TYPE lines and escaped labels. Samples with no value yet
//! (no run since the daemon started, no next run) are left out.

use std::borrow::Cow;
use std::fmt::Write;

use jiff::Timestamp;

use crate::api::board::{JobStatus, Status};
use crate::job::outcome::Outcome;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its name, type, help and a sample per job.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&JobStatus) -> Option<f64>,
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

const FAMILIES: &[Family] = &[
    Family {
        name: "restic_cronned_job_running",
        kind: "gauge",
        help: "Whether the job's restic is running (1) or not (0).",
        value: |s| Some(f64::from(u8::from(s.status == Status::Working))),
    },
    Family {
        name: "restic_cronned_job_last_run_timestamp_seconds",
        kind: "gauge",
        help: "When the job's last run began (restic's start), as a Unix time.",
        value: |s| s.runs.front().map(|r| seconds(r.start)),
    },
    Family {
        name: "restic_cronned_job_last_success_timestamp_seconds",
        kind: "gauge",
        help: "When the job's last successful run ended, as a Unix time.",
        value: |s| s.last_success.map(seconds),
    },
    Family {
        name: "restic_cronned_job_last_duration_seconds",
        kind: "gauge",
        help: "How long the job's last run took.",
        value: |s| {
            s.runs
                .front()
                .map(|r| r.end.duration_since(r.start).as_secs_f64())
        },
    },
    Family {
        name: "restic_cronned_job_last_exit_code",
        kind: "gauge",
        help: "restic's exit code in the job's last run (absent when restic did not exit by itself).",
        value: |s| s.runs.front().and_then(|r| r.exit_code).map(f64::from),
    },
    Family {
        name: "restic_cronned_job_next_run_timestamp_seconds",
        kind: "gauge",
        help: "When the job runs next by itself, as a Unix time.",
        value: |s| s.next_run.map(seconds),
    },
    Family {
        name: "restic_cronned_job_consecutive_failures",
        kind: "gauge",
        help: "Failed runs (retries included) since the job's last success.",
        value: |s| Some(f64::from(s.consecutive_failures)),
    },
    Family {
        name: "restic_cronned_job_progress_ratio",
        kind: "gauge",
        help: "How far a running backup with --json is, from 0 to 1.",
        value: |s| Some(s.progress),
    },
    Family {
        name: "restic_cronned_job_stale",
        kind: "gauge",
        help: "Whether the job's last success is older than its StaleAfter (1) or not (0).",
        value: |s| Some(f64::from(u8::from(s.stale))),
    },
    Family {
        name: "restic_cronned_job_invalid",
        kind: "gauge",
        help: "Whether the job's file is invalid (1) and the job is not scheduled.",
        value: |s| Some(f64::from(u8::from(s.status == Status::Invalid))),
    },
];

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> Cow<'_, str> {
    // Most names need no escape: no copy of a thousand of them per scrape.
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// The body of `/metrics` for `jobs`, with `notifications_failed`
/// notifications that failed every attempt.
pub fn render(jobs: &[&JobStatus], notifications_failed: u64) -> String {
    let mut out = String::with_capacity(256 + jobs.len() * 1024);
    out.push_str("# HELP restic_cronned_up Whether restic-cronned is running.\n");
    out.push_str("# TYPE restic_cronned_up gauge\nrestic_cronned_up 1\n");
    let failed = "restic_cronned_notifications_failed_total";
    let _ = writeln!(
        out,
        "# HELP {failed} Notifications that failed every attempt.\n\
         # TYPE {failed} counter\n{failed} {notifications_failed}"
    );
    // Two files with one JobName are both listed (invalid) on the board; a
    // series may appear only once in an exposition.
    let mut seen = std::collections::HashSet::new();
    let jobs: Vec<(&JobStatus, Cow<'_, str>)> = jobs
        .iter()
        .copied()
        .filter(|job| seen.insert(job.name.as_str()))
        .map(|job| (job, label(&job.name)))
        .collect();
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (job, name) in &jobs {
            let valid = job.status != Status::Invalid || family.name.ends_with("_invalid");
            if let Some(value) = (family.value)(job).filter(|_| valid) {
                let _ = writeln!(out, "{}{{job=\"{name}\"}} {value}", family.name);
            }
        }
    }
    let runs = "restic_cronned_job_runs_total";
    let _ = writeln!(
        out,
        "# HELP {runs} Finished runs since the daemon started, by outcome."
    );
    let _ = writeln!(out, "# TYPE {runs} counter");
    for (job, name) in jobs.iter().filter(|(job, _)| job.status != Status::Invalid) {
        for outcome in Outcome::ALL {
            let _ = writeln!(
                out,
                "{runs}{{job=\"{name}\",outcome=\"{}\"}} {}",
                outcome.as_str(),
                job.runs_total.get(outcome)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::job_file::Entry;
    use crate::job::outcome::{Outcome, RunRecord};

    #[test]
    fn renders_families_with_help_type_and_escaped_labels() {
        let entry = Entry {
            path: "/j/x.json".into(),
            name: "we\"ird\\name\n".into(),
            job: Err(Vec::new()),
            warnings: Vec::new(),
        };
        let invalid = JobStatus::invalid(&entry);
        let mut ran = JobStatus::invalid(&entry);
        ran.name = "nightly".into();
        ran.status = Status::Waiting;
        ran.record(RunRecord {
            start: Timestamp::from_second(100).unwrap(),
            end: Timestamp::from_second(102).unwrap(),
            outcome: Outcome::Warning,
            exit_code: Some(3),
            error: None,
            output_tail: String::new(),
            summary: None,
            reason: crate::job::outcome::Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        });
        let text = render(&[&invalid, &ran, &invalid], 2);
        let invalid_line = "restic_cronned_job_invalid{job=\"we\\\"ird\\\\name\\n\"} 1\n";
        assert_eq!(text.matches(invalid_line).count(), 1, "{text}");
        assert!(!text.contains("runs_total{job=\"we"), "{text}");
        assert!(text.contains("restic_cronned_up 1\n"));
        assert!(
            text.contains("restic_cronned_job_invalid{job=\"we\\\"ird\\\\name\\n\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("restic_cronned_job_last_exit_code{job=\"nightly\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("restic_cronned_job_last_duration_seconds{job=\"nightly\"} 2\n"));
        assert!(
            text.contains("restic_cronned_job_runs_total{job=\"nightly\",outcome=\"warning\"} 1\n")
        );
        assert!(
            !text.contains("restic_cronned_job_running{job=\"we"),
            "invalid jobs have no state"
        );
        for family in FAMILIES {
            assert!(text.contains(&format!("# TYPE {} gauge\n", family.name)));
        }
    }
}
