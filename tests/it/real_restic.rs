//! The real restic (Debian's 0.14 in CI) against real repositories in temp
//! directories: a backup that triggers a forget, and a stop in the middle of
//! a backup that must leave no lock behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{TestEnv, rfc3339_ms};

/// A repository with its password file, and a little data to back up.
struct Repo {
    path: PathBuf,
    password_file: PathBuf,
    data: PathBuf,
}

impl Repo {
    fn init(env: &TestEnv) -> Repo {
        Self::init_named(env, "repo")
    }

    fn init_named(env: &TestEnv, name: &str) -> Repo {
        let root = env.dir.path().join(name);
        fs::create_dir(&root).unwrap();
        let repo = Repo {
            path: root.join("repo"),
            password_file: root.join("password"),
            data: root.join("data"),
        };
        fs::write(&repo.password_file, "correct horse battery staple\n").unwrap();
        fs::create_dir(&repo.data).unwrap();
        for i in 0..5 {
            fs::write(
                repo.data.join(format!("file{i}.txt")),
                format!("content {i}\n"),
            )
            .unwrap();
        }
        repo.restic(&["init"]);
        repo
    }

    fn restic(&self, args: &[&str]) -> String {
        let output = Command::new("restic")
            .arg("-r")
            .arg(&self.path)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(args)
            .output()
            .expect("restic is installed (scripts/test installs it)");
        assert!(
            output.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A job running restic on this repository.
    fn job(&self, name: &str, command: &[&str], extra: Value) -> Value {
        let mut args = vec!["-r".to_string(), self.path.display().to_string()];
        args.extend(command.iter().map(|s| s.to_string()));
        let mut job = json!({
            "JobName": name,
            "ResticArguments": args,
            "Env": {"RESTIC_PASSWORD_FILE": self.password_file},
        });
        for (k, v) in extra.as_object().unwrap() {
            job[k] = v.clone();
        }
        job
    }

    fn snapshots(&self) -> Vec<Value> {
        serde_json::from_str(&self.restic(&["snapshots", "--json"])).unwrap()
    }

    /// Adds a sparse file of `size` bytes: nothing on disk, but restic reads
    /// and hashes every zero, so the backup takes a while.
    fn add_sparse(&self, size: u64) {
        fs::File::create(self.data.join("sparse"))
            .unwrap()
            .set_len(size)
            .unwrap();
    }

    /// Starts a backup outside the daemon.
    fn spawn_backup(&self) -> std::process::Child {
        Command::new("restic")
            .arg("-r")
            .arg(&self.path)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(["backup", "-q"])
            .arg(&self.data)
            .spawn()
            .unwrap()
    }

    fn locks(&self) -> String {
        self.restic(&["list", "locks", "--no-lock"])
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_backup_triggers_a_forget_on_a_real_repository() {
    let env = TestEnv::new();
    let repo = Repo::init(&env);
    env.write_job(
        "backup",
        &repo.job(
            "backup",
            &["backup", path_str(&repo.data)],
            json!({"regularTimer": "1h", "NextJob": "forget"}),
        ),
    );
    env.write_job(
        "forget",
        &repo.job(
            "forget",
            &["forget", "--keep-last", "1"],
            json!({"regularTimer": -1}),
        ),
    );
    let daemon = env.start();
    daemon.wait_outcome("backup", "success");
    let forget = daemon.wait_outcome("forget", "success");
    assert_eq!(forget["lastRun"]["exitCode"], 0);
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0]["paths"][0], path_str(&repo.data));
    // A second backup and its forget keep one snapshot.
    daemon.get("/trigger?name=backup");
    daemon.wait_for("a second forget", |d| {
        let job = d.job("forget");
        (job["lastRun"]["start"] != forget["lastRun"]["start"]
            && job["status"] == "waiting"
            && job["lastRun"]["outcome"] == "success")
            .then_some(())
    });
    assert_eq!(repo.snapshots().len(), 1);
    assert!(repo.locks().trim().is_empty());
}

#[test]
fn stopping_a_real_backup_leaves_no_lock() {
    // restic needs a moment after SIGINT to remove its lock; the default
    // grace is what users get.
    let env = TestEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&env);
    // Long enough for the stop to land in the middle of the backup.
    repo.add_sparse(64 << 30);
    env.write_job(
        "big",
        &repo.job("big", &["backup", path_str(&repo.data)], json!({})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=big");
    daemon.wait_status("big", "working");
    // Wait for restic's lock, so the stop really interrupts a locked backup.
    daemon.wait_for("restic to lock the repository", |_| {
        (!repo.locks().trim().is_empty()).then_some(())
    });
    assert_eq!(daemon.get("/stop?name=big").0, 200);
    let job = daemon.wait_status("big", "stopped");
    assert_eq!(job["lastRun"]["outcome"], "stopped", "{job}");
    // restic ended on the first step of the ladder: SIGINT, after which it
    // cleans up and exits 130 (not SIGTERM or SIGKILL, exit code null).
    assert_eq!(job["lastRun"]["exitCode"], 130, "{job}");
    assert_eq!(
        repo.locks().trim(),
        "",
        "restic left its lock behind\n{}",
        daemon.stderr()
    );
    assert!(repo.snapshots().is_empty());
}

/// `(start, end)` of a job's last run in Unix ms.
fn last_span(job: &Value) -> (i64, i64) {
    (
        rfc3339_ms(&job["lastRun"]["start"]),
        rfc3339_ms(&job["lastRun"]["end"]),
    )
}

#[test]
fn a_backup_and_a_forget_on_one_repository_never_overlap() {
    let env = TestEnv::new();
    let repo = Repo::init(&env);
    repo.add_sparse(512 << 20);
    let data = path_str(&repo.data);
    env.write_job("backup", &repo.job("backup", &["backup", data], json!({})));
    env.write_job(
        "forget",
        &repo.job("forget", &["forget", "--keep-last", "1"], json!({})),
    );
    let other = Repo::init_named(&env, "other");
    other.add_sparse(512 << 20);
    env.write_job(
        "elsewhere",
        &other.job("elsewhere", &["backup", path_str(&other.data)], json!({})),
    );
    let daemon = env.start();
    for name in ["backup", "forget", "elsewhere"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    }
    let backup = last_span(&daemon.wait_outcome("backup", "success"));
    let forget = last_span(&daemon.wait_outcome("forget", "success"));
    let elsewhere = last_span(&daemon.wait_outcome("elsewhere", "success"));
    assert!(
        backup.1 <= forget.0 || forget.1 <= backup.0,
        "backup {backup:?} and forget {forget:?} overlap"
    );
    // The backup on the other repository ran at the same time as the first
    // of the two, since it did not have to wait.
    let first = if backup.0 < forget.0 { backup } else { forget };
    assert!(
        elsewhere.0 < first.1 && first.0 < elsewhere.1,
        "{elsewhere:?} did not run beside {first:?}"
    );
    assert!(repo.locks().trim().is_empty());
}

#[test]
fn a_timeout_and_a_daemon_shutdown_during_a_real_backup_leave_no_lock() {
    let env = TestEnv::with_config(json!({"StopGrace": "30s"}));
    let repo = Repo::init(&env);
    repo.add_sparse(64 << 30);
    let data = path_str(&repo.data);
    env.write_job(
        "slow",
        &repo.job("slow", &["backup", data], json!({"Timeout": "1500ms"})),
    );
    env.write_job("long", &repo.job("long", &["backup", data], json!({})));
    let daemon = env.start();
    daemon.get("/trigger?name=slow");
    let job = daemon.wait_outcome("slow", "timeout");
    assert!(
        job["lastRun"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{job}"
    );
    assert_eq!(
        repo.locks().trim(),
        "",
        "the timeout left a lock\n{}",
        daemon.stderr()
    );
    daemon.get("/trigger?name=long");
    daemon.wait_for("restic to lock the repository", |_| {
        (!repo.locks().trim().is_empty()).then_some(())
    });
    let stderr = daemon.stderr();
    assert_eq!(daemon.terminate().code(), Some(0), "{stderr}");
    assert_eq!(repo.locks().trim(), "", "the shutdown left a lock");
}

#[test]
fn a_stale_lock_from_a_killed_restic_is_locked_and_unlock_stale_recovers() {
    let env = TestEnv::new();
    let repo = Repo::init(&env);
    repo.add_sparse(64 << 30);
    let mut outside = repo.spawn_backup();
    while repo.locks().trim().is_empty() {
        assert!(
            outside.try_wait().unwrap().is_none(),
            "the outside backup ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    outside.kill().unwrap(); // SIGKILL: restic leaves its lock behind
    outside.wait().unwrap();
    assert!(!repo.locks().trim().is_empty());
    // forget takes an exclusive lock, so the stale lock is in its way.
    let forget = ["forget", "--keep-last", "1"];
    env.write_job("plain", &repo.job("plain", &forget, json!({})));
    env.write_job(
        "unlocking",
        &repo.job("unlocking", &forget, json!({"UnlockStale": true})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=plain");
    let plain = daemon.wait_outcome("plain", "locked");
    assert_eq!(plain["lastRun"]["exitCode"], 1, "{plain}");
    assert!(
        !repo.locks().trim().is_empty(),
        "without UnlockStale the lock stays"
    );
    daemon.get("/trigger?name=unlocking");
    daemon.wait_outcome("unlocking", "success");
    assert_eq!(repo.locks().trim(), "");
}

#[test]
fn a_json_backup_shows_its_progress_and_keeps_its_summary() {
    let env = TestEnv::new();
    let repo = Repo::init(&env);
    repo.add_sparse(2 << 30);
    let mut job = repo.job(
        "progress",
        &["backup", "--json", path_str(&repo.data)],
        json!({}),
    );
    job["Env"]["RESTIC_PROGRESS_FPS"] = json!("10");
    env.write_job("progress", &job);
    let daemon = env.start();
    daemon.get("/trigger?name=progress");
    // Seen moving: strictly between 0 and 1, with the bytes restic reports.
    let moving = daemon.wait_for("progress between 0 and 1", |d| {
        let job = d.job("progress");
        let p = job["progress"].as_f64().unwrap();
        (p > 0.0 && p < 1.0).then_some(job)
    });
    let detail = &moving["progressDetail"];
    // The sparse file and the five small ones.
    assert!(
        detail["total_bytes"].as_u64().unwrap() > 1 << 30,
        "{moving}"
    );
    assert!(detail["bytes_done"].as_u64().unwrap() > 0, "{moving}");
    let done = daemon.wait_outcome("progress", "success");
    assert_eq!(done["progress"], 0.0, "progress is reset after the run");
    assert!(done["progressDetail"].is_null());
    let (_, body) = daemon.get("/job?name=progress");
    let detail: Value = serde_json::from_str(&body).unwrap();
    let summary = &detail["runs"][0]["summary"];
    let snapshots = repo.snapshots();
    assert_eq!(
        summary["snapshot_id"].as_str(),
        snapshots[0]["short_id"].as_str(),
        "{summary}"
    );
    assert_eq!(summary["files_new"], 6, "{summary}");
    // Status lines feed the progress, not the log or the output tail.
    let tail = detail["runs"][0]["outputTail"].as_str().unwrap();
    assert!(!tail.contains("\"message_type\":\"status\""), "{tail}");
    // The summary is logged in words; by then every status line came by.
    daemon.wait_stderr("snapshot ");
    assert!(!daemon.stderr().contains("\"message_type\":\"status\""));
}
