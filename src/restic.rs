//! What we know about restic itself: how its exit codes and messages map to
//! outcomes (old 0.14 and new 0.17+), and which of its arguments name the
//! repository and how to reach it, for `restic unlock`.

use crate::board::Outcome;
use crate::keyring::Password;
use crate::process::Spec;

/// Where else restic could take its password from; restic prefers these to
/// `RESTIC_PASSWORD`, so they must not reach a run that has a keyring entry.
const OTHER_PASSWORD_SOURCES: &[&str] = &["RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"];

/// Global options that take a value (`--opt value`, `--opt=value`, and for
/// the short ones `-r value` or `-rvalue`). They say where the repository
/// is and how to open it, so an `unlock` needs them too.
const GLOBAL_WITH_VALUE: &[&str] = &[
    "-r",
    "--repo",
    "--repository-file",
    "-p",
    "--password-file",
    "--password-command",
    "--key-hint",
    "--cacert",
    "--tls-client-cert",
    "--cache-dir",
    "-o",
    "--option",
    "--limit-upload",
    "--limit-download",
    "--pack-size",
    "--compression",
];

/// Global options without a value that change how the repository is reached.
const GLOBAL_FLAGS: &[&str] = &["--no-cache", "--insecure-tls", "--cleanup-cache"];

/// The outcome of a run that ended by itself with `code` (`None`: killed by
/// a signal) and `output` (its last lines).
pub fn classify(code: Option<i32>, output: &str) -> Outcome {
    match code {
        Some(0) => Outcome::Success,
        Some(3) => Outcome::Warning,
        Some(11) => Outcome::Locked,
        Some(1) if output.contains("repository is already locked") => Outcome::Locked,
        _ => Outcome::Failure,
    }
}

/// Whether a failed run failed on the password, which no retry can fix
/// (restic 0.14 says so on stderr with exit 1; 0.17+ exits 12).
pub fn wrong_password(code: Option<i32>, output: &str) -> bool {
    code == Some(12) || output.contains("wrong password or no key found")
}

/// Hands `password` to restic as `RESTIC_PASSWORD` in its environment
/// (never in argv, which every user can read), and removes the other
/// password sources, inherited or from the job's `Env`.
pub fn give_password(spec: &mut Spec, password: &Password) {
    spec.env.retain(|(key, _)| {
        key != "RESTIC_PASSWORD" && !OTHER_PASSWORD_SOURCES.contains(&key.as_str())
    });
    spec.env_remove
        .extend(OTHER_PASSWORD_SOURCES.iter().map(|key| key.to_string()));
    spec.env
        .push(("RESTIC_PASSWORD".into(), password.expose().to_string()));
}

/// The arguments for `restic unlock` on the repository that `args` use:
/// their global options, then `unlock`. Without `--remove-all`, restic
/// removes only stale locks (of dead processes on this host, or old ones), so
/// this never breaks a lock that a live restic holds.
pub fn unlock_arguments(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            break;
        }
        if GLOBAL_FLAGS.contains(&arg.as_str()) {
            kept.push(arg.clone());
        } else if GLOBAL_WITH_VALUE.contains(&arg.as_str()) {
            kept.push(arg.clone());
            if let Some(value) = args.get(i + 1) {
                kept.push(value.clone());
            }
            i += 1;
        } else if GLOBAL_WITH_VALUE.iter().any(|o| {
            let long_with_value = o.starts_with("--") && arg.starts_with(&format!("{o}="));
            let short_joined =
                o.len() == 2 && arg.len() > 2 && arg.starts_with(o) && !arg.starts_with("--");
            long_with_value || short_joined
        }) {
            kept.push(arg.clone());
        }
        i += 1;
    }
    kept.push("unlock".into());
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classifies_exit_codes_of_old_and_new_restic() {
        assert_eq!(classify(Some(0), ""), Outcome::Success);
        assert_eq!(classify(Some(3), ""), Outcome::Warning);
        assert_eq!(classify(Some(11), ""), Outcome::Locked);
        let old = "unable to create lock in backend: repository is already locked by PID 7";
        assert_eq!(classify(Some(1), old), Outcome::Locked);
        assert_eq!(classify(Some(1), "Fatal: wrong password"), Outcome::Failure);
        assert_eq!(classify(None, ""), Outcome::Failure);
        assert!(wrong_password(
            Some(1),
            "Fatal: wrong password or no key found"
        ));
        assert!(wrong_password(Some(12), ""));
        assert!(!wrong_password(
            Some(1),
            "Fatal: unable to open config file"
        ));
    }

    #[test]
    fn unlock_keeps_the_options_that_reach_the_repository() {
        let args = strings(&[
            "-r",
            "/srv/repo",
            "--password-file=/etc/pw",
            "backup",
            "--exclude",
            "*.tmp",
            "-o",
            "s3.storage-class=STANDARD",
            "--no-cache",
            "/home",
            "-v",
        ]);
        assert_eq!(
            unlock_arguments(&args),
            strings(&[
                "-r",
                "/srv/repo",
                "--password-file=/etc/pw",
                "-o",
                "s3.storage-class=STANDARD",
                "--no-cache",
                "unlock"
            ])
        );
        let joined = strings(&[
            "-r/srv/repo",
            "forget",
            "--keep-last",
            "3",
            "--repository-file",
            "f",
        ]);
        assert_eq!(
            unlock_arguments(&joined),
            strings(&["-r/srv/repo", "--repository-file", "f", "unlock"])
        );
        assert_eq!(
            unlock_arguments(&strings(&["snapshots"])),
            strings(&["unlock"])
        );
    }

    #[test]
    fn the_password_goes_to_the_environment_and_other_sources_go_away() {
        let mut spec = Spec {
            program: "restic".into(),
            args: strings(&["-r", "/srv/repo", "backup", "/home"]),
            cwd: "/".into(),
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), "k".into()),
                ("RESTIC_PASSWORD_FILE".into(), "/etc/pw".into()),
                ("RESTIC_PASSWORD".into(), "old".into()),
            ],
            env_remove: Vec::new(),
        };
        give_password(&mut spec, &Password::new("from the keyring".into()));
        assert_eq!(spec.args, strings(&["-r", "/srv/repo", "backup", "/home"]));
        assert_eq!(
            spec.env,
            [
                ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
                (
                    "RESTIC_PASSWORD".to_string(),
                    "from the keyring".to_string()
                )
            ]
        );
        assert_eq!(
            spec.env_remove,
            strings(&["RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"])
        );
        assert!(
            !format!("{spec:?}").contains("from the keyring"),
            "{spec:?}"
        );
    }
}
