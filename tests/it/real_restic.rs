//! The real restic (Debian's 0.14 in CI) against real repositories in temp
//! directories: a backup that triggers a forget, and a stop in the middle of
//! a backup that must leave no lock behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::TestEnv;

/// A repository with its password file, and a little data to back up.
struct Repo {
    path: PathBuf,
    password_file: PathBuf,
    data: PathBuf,
}

impl Repo {
    fn init(env: &TestEnv) -> Repo {
        let root = env.dir.path();
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
    // A sparse file of 64 GiB: nothing on disk, but restic reads and hashes
    // zeros long enough for the stop to land in the middle of the backup.
    let big = fs::File::create(repo.data.join("sparse")).unwrap();
    big.set_len(64 << 30).unwrap();
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
    assert_eq!(
        repo.locks().trim(),
        "",
        "restic left its lock behind\n{}",
        daemon.stderr()
    );
    assert!(repo.snapshots().is_empty());
}
