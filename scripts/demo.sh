#!/usr/bin/env bash
# Runs restic-cronned once, end to end, on the shipped example jobs against a
# throwaway restic repository: builds the daemon, sets up a temp directory,
# waits until ExampleBackup and the ExampleForget it triggers have succeeded,
# shows the queue and the snapshots, and stops the daemon with SIGTERM.
#
# Usage: scripts/demo.sh      (Debian 12; run as root or with sudo available)
#
# The temp directory is kept afterwards so you can read the logs.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

# --- what the demo needs -----------------------------------------------------

# shellcheck source=scripts/setup
. "$repo_root/scripts/setup"

say "building restic-cronned (cargo build --release)"
(cd "$repo_root" && cargo build --release)
daemon="$repo_root/target/release/restic-cronned"
[[ -x $daemon ]] || die "$daemon was not built"

# --- a throwaway setup ---------------------------------------------------------

tmp=$(mktemp -d -t restic-cronned-demo.XXXXXX)
daemon_pid=""
daemon_out="$tmp/daemon.stderr"

alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    read -r _ _ state _ <"/proc/$1/stat" || return 1
    [[ $state != Z ]]
}

on_exit() {
    local rc=$?
    if [[ -n $daemon_pid ]] && alive "$daemon_pid"; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 150); do
            alive "$daemon_pid" || break
            sleep 0.1
        done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if ((rc != 0)); then
        if [[ -s $daemon_out ]]; then
            printf '\n---- daemon output (%s) ----\n' "$daemon_out" >&2
            cat "$daemon_out" >&2
            printf -- '---- end of daemon output ----\n' >&2
        fi
        printf '\ndemo FAILED (exit %s); files kept in %s\n' "$rc" "$tmp" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "setting up $tmp"
# Keep restic's cache with the rest of the demo, not in ~/.cache.
export RESTIC_CACHE_DIR="$tmp/restic-cache"

mkdir "$tmp/data"
echo "Hello from the restic-cronned demo" >"$tmp/data/index.html"
date >"$tmp/data/created-at.txt"
mkdir "$tmp/data/assets"
head -c 65536 /dev/urandom >"$tmp/data/assets/random.bin"

(umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' >"$tmp/password")
chmod 600 "$tmp/password"

restic init --repo "$tmp/repo" --password-file "$tmp/password"

mkdir -m 700 "$tmp/jobs"
for example in "$repo_root"/jobs.example/*.json; do
    target="$tmp/jobs/$(basename "$example")"
    # Replace the example paths in every string of the job; the longer
    # /tmp/backup-password goes first since /tmp/backup is a prefix of it.
    python3 - "$example" "$target" "$tmp" <<'EOF'
import json, sys
source, target, tmp = sys.argv[1:]
swaps = [
    ("/tmp/backup-password", tmp + "/password"),
    ("/tmp/backup", tmp + "/repo"),
    ("/var/www/my-site", tmp + "/data"),
]
def fix(value):
    if isinstance(value, str):
        for old, new in swaps:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [fix(v) for v in value]
    if isinstance(value, dict):
        return {k: fix(v) for k, v in value.items()}
    return value
with open(source) as f:
    job = json.load(f)
with open(target, "w") as f:
    json.dump(fix(job), f, indent=4)
    f.write("\n")
EOF
    chmod 644 "$target"
done
ls "$tmp/jobs"/*.json >/dev/null 2>&1 || die "no example jobs in $repo_root/jobs.example"

python3 - "$tmp" >"$tmp/config.json" <<'EOF'
import json, sys
tmp = sys.argv[1]
print(json.dumps({"StateDir": tmp + "/state", "LogConf": {"LogDir": tmp + "/log"}, "StopGrace": "5s"}, indent=4))
EOF

say "checking the job files (restic-cronned --check)"
"$daemon" --config "$tmp/config.json" --check "$tmp/jobs"

# --- run the daemon ------------------------------------------------------------

say "starting: restic-cronned --config $tmp/config.json $tmp/jobs 127.0.0.1:0"
"$daemon" --config "$tmp/config.json" "$tmp/jobs" 127.0.0.1:0 >"$daemon_out" 2>&1 &
daemon_pid=$!

port=""
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$daemon_out" | head -n 1)
    [[ -n $port ]] && break
    alive "$daemon_pid" || die "the daemon exited before it listened"
    sleep 0.1
done
[[ -n $port ]] || die "no 'listening on 127.0.0.1:PORT' line within 10 s"
api="http://127.0.0.1:$port"
echo "control API at $api"

# Waits until ExampleForget has succeeded. Exit codes of the check: 0 done,
# 1 not yet, 2 a job failed or is invalid (no point waiting for its retry).
say "waiting for ExampleBackup and then ExampleForget to succeed (at most 120 s)"
check_queue() {
    python3 -c '
import json, sys
queue = json.load(sys.stdin)
for job in queue["Jobs"]:
    last = job.get("lastRun") or {}
    if job["status"] == "invalid":
        print("job %s is invalid: %s" % (job["JobName"], job.get("error")))
        sys.exit(2)
    if last.get("outcome") not in (None, "success", "warning"):
        print("job %s: %s: %s" % (job["JobName"], last.get("outcome"), last.get("error")))
        sys.exit(2)
forget = [j for j in queue["Jobs"] if j["JobName"] == "ExampleForget"]
sys.exit(0 if forget and (forget[0].get("lastRun") or {}).get("outcome") == "success" else 1)
'
}
done_at=$((SECONDS + 120))
while :; do
    alive "$daemon_pid" || die "the daemon exited unexpectedly"
    if queue=$(curl -sf "$api/queue"); then
        rc=0
        message=$(printf '%s' "$queue" | check_queue) || rc=$?
        ((rc == 0)) && break
        ((rc == 2)) && die "$message"
    fi
    ((SECONDS < done_at)) || die "ExampleForget did not succeed within 120 s"
    sleep 0.5
done

say "the queue (curl -s $api/queue)"
printf '%s' "$queue" | python3 -c '
import json, sys
queue = json.load(sys.stdin)
row = "%-15s %-9s %-13s %s"
print(row % ("JOB", "STATUS", "LAST OUTCOME", "NEXT RUN"))
for job in queue["Jobs"]:
    last = (job.get("lastRun") or {}).get("outcome") or "-"
    next_run = job.get("nextRun") or "only when triggered"
    print(row % (job["JobName"], job["status"], last, next_run))
print("job directory:", queue["Directory"])
'

say "restic snapshots"
restic --repo "$tmp/repo" --password-file "$tmp/password" snapshots

say "stopping the daemon with SIGTERM"
kill -TERM "$daemon_pid"
# Bounded, so a daemon that does not stop cannot hang the demo (the exit
# trap then kills it).
for _ in $(seq 200); do
    alive "$daemon_pid" || break
    sleep 0.1
done
alive "$daemon_pid" && die "the daemon did not stop within 20 s of SIGTERM"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=""
((status == 0)) || die "the daemon exited with $status after SIGTERM (expected 0)"
echo "the daemon stopped cleanly (exit 0)"

cat <<EOF

Demo finished. Everything is kept in $tmp:
  jobs/           the job files the daemon ran
  config.json     the daemon's config
  repo/           the restic repository (password in password)
  state/          the state files (next trigger of each job) and history/ (their runs)
  log/            the daemon's log file, restic-cronned.log
  daemon.stderr   what the daemon printed
Remove it with: rm -rf $tmp
EOF
