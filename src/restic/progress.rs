//! restic's `--json` output: `status` lines become the job's live progress,
//! the `summary` line is kept with the run's record, and everything else
//! (other message types, malformed lines, plain text) is just output.

use serde::{Deserialize, Serialize};

/// How far a running backup is, from restic's latest `status` line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 1.
    #[serde(default)]
    pub percent_done: f64,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub total_bytes: u64,
    #[serde(default)]
    pub files_done: u64,
    #[serde(default)]
    pub total_files: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_remaining: Option<u64>,
}

/// What a backup did, from restic's `summary` line (the fields users look
/// at; restic has more).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub files_new: u64,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub files_unmodified: u64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_files_processed: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub total_duration: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
}

/// One line of restic's stdout, read.
#[derive(Debug, PartialEq)]
pub enum Line {
    Status(Progress),
    Summary(Summary),
    /// Anything else: log it as it is.
    Other,
}

/// A JSON line of restic's, by its `message_type`.
#[derive(Deserialize)]
#[serde(tag = "message_type", rename_all = "lowercase")]
enum Message {
    Status(Progress),
    Summary(Summary),
    #[serde(other)]
    Other,
}

/// Reads a stdout line. Cheap for plain text: only lines that look like a
/// JSON object are parsed, and those once.
pub fn read_line(line: &str) -> Line {
    let line = line.trim();
    if !line.starts_with('{') {
        return Line::Other;
    }
    match serde_json::from_str::<Message>(line) {
        Ok(Message::Status(mut progress)) => {
            progress.percent_done = progress.percent_done.clamp(0.0, 1.0);
            if !progress.percent_done.is_finite() {
                progress.percent_done = 0.0;
            }
            Line::Status(progress)
        }
        Ok(Message::Summary(summary)) => Line::Summary(summary),
        Ok(Message::Other) | Err(_) => Line::Other,
    }
}

impl Summary {
    /// One log line, as a person reads it.
    pub fn describe(&self) -> String {
        format!(
            "snapshot {} saved: {} new, {} changed, {} unchanged files; {} bytes added in {:.1}s",
            self.snapshot_id.as_deref().unwrap_or("(none)"),
            self.files_new,
            self.files_changed,
            self.files_unmodified,
            self.data_added,
            self.total_duration
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_summary_lines_of_restic_0_14() {
        let status = r#"{"message_type":"status","seconds_elapsed":2,"seconds_remaining":3,"percent_done":0.4,"total_files":10,"files_done":4,"total_bytes":1000,"bytes_done":400}"#;
        assert_eq!(
            read_line(status),
            Line::Status(Progress {
                percent_done: 0.4,
                bytes_done: 400,
                total_bytes: 1000,
                files_done: 4,
                total_files: 10,
                seconds_remaining: Some(3),
            })
        );
        let summary = r#"{"message_type":"summary","files_new":5,"files_changed":0,"files_unmodified":0,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":5,"tree_blobs":2,"data_added":1234,"total_files_processed":5,"total_bytes_processed":50,"total_duration":0.5,"snapshot_id":"1eea1f6b"}"#;
        let Line::Summary(s) = read_line(summary) else {
            panic!("not a summary")
        };
        assert_eq!((s.files_new, s.data_added), (5, 1234));
        assert_eq!(s.snapshot_id.as_deref(), Some("1eea1f6b"));
        assert!(s.describe().contains("snapshot 1eea1f6b saved: 5 new"));
    }

    #[test]
    fn tolerates_everything_else() {
        for line in [
            "",
            "Files: 5 new",
            "{",
            "{}",
            r#"{"message_type":"verbose_status","action":"new"}"#,
            r#"{"message_type":"status","percent_done":"lots"}"#,
            r#"{"message_type":7}"#,
        ] {
            assert_eq!(read_line(line), Line::Other, "{line}");
        }
        let over = r#"{"message_type":"status","percent_done":7.5}"#;
        assert!(matches!(read_line(over), Line::Status(p) if p.percent_done == 1.0));
    }
}
