#!/usr/bin/env bash
# Installs restic-cronned (and rckeyutil and rccommand when they were built)
# with its config and job directories and a systemd unit, as a system service
# with its own user or as a user service. Never overwrites a config or a job
# file; --uninstall removes the programs and the unit and keeps the rest.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install.sh [OPTIONS]

Installs the programs restic-cronned, rckeyutil and rccommand (those that
exist) to PREFIX/bin, creates the config file and the job directory when they
are missing, and installs a systemd unit. It starts nothing and never
overwrites a config or a job file; running it again updates the programs and
the unit.

  --system (default as root)
      user      restic-cronned (created with useradd --system when missing)
      config    /etc/restic-cronned/config               (0600)
      jobs      /etc/restic-cronned/jobs/                (0700)
      state     /var/lib/restic-cronned/                 (0700)
      logs      /var/log/restic-cronned/                 (0700)
      cache     /var/cache/restic-cronned/               (0700)
      unit      /etc/systemd/system/restic-cronned.service
  --user (default as any other user)
      config    ~/.config/restic-cronned/config          (0600)
      jobs      ~/.config/restic-cronned/jobs/           (0700)
      state     ~/.local/share/restic-cronned/           (0700)
      logs      ~/.cache/restic-cronned/                 (0700)
      unit      ~/.config/systemd/user/restic-cronned.service

Options:
  --from DIR      install the programs found in DIR instead of building
                  (default: bin/ beside scripts/ in an unpacked release
                  tarball, else what "cargo build --profile small --target
                  ARCH-unknown-linux-musl" makes, the static build that
                  scripts/cross-build packs; "cargo build --release" when
                  the musl standard library is not installed)
  --prefix DIR    where the programs go, as DIR/bin (default: /usr/local for
                  --system, ~/.local for --user)
  --root DIR      install below DIR instead of / (for packaging and tests):
                  every path above is prefixed with DIR, the unit and config
                  still name the real paths, and no user is created, no owner
                  changed and systemctl is not run
  --uninstall     remove the programs and the unit (stopping and disabling
                  the service first); keep the config, the jobs, the state,
                  the logs and the user
  --dry-run       print what would be done and change nothing
  -h, --help      print this help

After installing:
  system:  write jobs into /etc/restic-cronned/jobs, then
           systemctl enable --now restic-cronned
  user:    write jobs into ~/.config/restic-cronned/jobs, then
           systemctl --user enable --now restic-cronned
           loginctl enable-linger "$USER"   # keep it running after logout
EOF
}

program=install.sh
die() {
    printf '%s: %s\n' "$program" "$*" >&2
    exit 1
}
usage_error() {
    printf '%s: %s; try --help\n' "$program" "$*" >&2
    exit 2
}

mode=""
from=""
prefix=""
root=""
action=install
dry_run=no
while (($#)); do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --system) mode=system ;;
    --user) mode=user ;;
    --uninstall) action=uninstall ;;
    --dry-run) dry_run=yes ;;
    --from | --prefix | --root)
        [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a directory"
        case $1 in
        --from) from=$2 ;;
        --prefix) prefix=$2 ;;
        --root) root=$2 ;;
        esac
        shift
        ;;
    --from=* | --prefix=* | --root=*)
        value=${1#*=}
        [[ -n $value ]] || usage_error "${1%%=*} needs a directory"
        case $1 in
        --from=*) from=$value ;;
        --prefix=*) prefix=$value ;;
        --root=*) root=$value ;;
        esac
        ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
    shift
done

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
bundle_root=$(dirname "$script_dir")
templates=$script_dir/systemd
programs=(restic-cronned rckeyutil rccommand)
service=restic-cronned
service_user=restic-cronned

if [[ -z $mode ]]; then
    if [[ $(id -u) -eq 0 ]]; then mode=system; else mode=user; fi
fi
if [[ -n $root ]]; then
    [[ -d $root ]] || die "--root $root: no such directory"
    root=$(cd "$root" && pwd -P)
    [[ $root == / ]] && root=""
fi
[[ -z $prefix || $prefix == /* ]] || usage_error "--prefix must be an absolute path, not '$prefix'"

# The real paths (what the unit and the config name); files are written at
# $root$path.
if [[ $mode == system ]]; then
    [[ -n $root || $(id -u) -eq 0 || $dry_run == yes ]] ||
        die "--system needs root (run it with sudo), or use --user"
    prefix=${prefix:-/usr/local}
    config_dir=/etc/$service
    config_file=$config_dir/config
    job_dir=$config_dir/jobs
    state_dir=/var/lib/$service
    log_dir=/var/log/$service
    cache_dir=/var/cache/$service
    unit_dir=/etc/systemd/system
    unit_template=$templates/restic-cronned.service.in
else
    [[ -n ${HOME:-} && $HOME == /* ]] || die "--user needs HOME set to an absolute path"
    prefix=${prefix:-$HOME/.local}
    xdg_config=${XDG_CONFIG_HOME:-$HOME/.config}
    # The daemon's own defaults (SPEC 1.2), written out in the config.
    config_dir=$xdg_config/$service
    config_file=$config_dir/config
    job_dir=$config_dir/jobs
    state_dir=$HOME/.local/share/$service
    log_dir=$HOME/.cache/$service
    cache_dir=""
    unit_dir=$xdg_config/systemd/user
    unit_template=$templates/restic-cronned-user.service.in
fi
bin_dir=$prefix/bin
unit_file=$unit_dir/$service.service

# --- doing things, or saying what would be done ------------------------------

# Runs a command, or prints it with --dry-run.
run() {
    if [[ $dry_run == yes ]]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}
note() { printf '%s\n' "$*"; }

# Owner of what the service writes and reads: the service user for --system
# on the real system, else whoever runs this script.
chown_service() {
    [[ $mode == system && -z $root ]] || return 0
    run chown "$service_user:$service_user" "$@"
}

# Creates $root$1 (and its parents) with mode $2 when it is missing; leaves
# an existing one alone (such as /usr/local/bin or ~/.config).
ensure_dir() {
    local dir=$root$1 dir_mode=$2
    [[ -d $dir ]] && return 0
    note "create $dir (mode $dir_mode)"
    [[ -d $(dirname "$dir") ]] || run mkdir -p "$(dirname "$dir")"
    run install -d -m "$dir_mode" "$dir"
}

# Creates one of our own directories, or sets the mode and owner of an
# existing one: a job directory others can write to is not safe (a job
# names a program to run), and the daemon refuses it.
own_dir() {
    local dir=$root$1 dir_mode=$2
    if [[ -d $dir ]]; then
        [[ $(stat -c %a "$dir") == "${dir_mode#0}" ]] || run chmod "$dir_mode" "$dir"
    else
        ensure_dir "$1" "$dir_mode"
    fi
    chown_service "$dir"
}

# Writes stdin to $root$1 (mode $2) unless the file exists already.
write_new_file() {
    local file=$root$1 file_mode=$2 content
    content=$(cat)
    if [[ -e $file ]]; then
        note "keep $file (exists)"
        return 0
    fi
    note "create $file (mode $file_mode)"
    [[ $dry_run == yes ]] && return 0
    local tmp
    tmp=$(mktemp "$file.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$file_mode" "$tmp"
    chown_service "$tmp"
    mv -f "$tmp" "$file"
}

# Replaces $root$1 with stdin (mode $2) when the content differs.
write_file() {
    local file=$root$1 file_mode=$2 content
    content=$(cat)
    if [[ -f $file ]] && [[ $(cat "$file") == "$content" ]]; then
        note "keep $file (unchanged)"
        run chmod "$file_mode" "$file"
        return 0
    fi
    note "write $file (mode $file_mode)"
    [[ $dry_run == yes ]] && return 0
    local tmp
    tmp=$(mktemp "$file.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$file_mode" "$tmp"
    mv -f "$tmp" "$file"
}

# systemctl for the live system only (not with --root, not without systemd).
systemd_running() {
    [[ -z $root && -d /run/systemd/system ]] && command -v systemctl >/dev/null
}
systemctl_mode() {
    if [[ $mode == system ]]; then
        run systemctl "$@"
    else
        run systemctl --user "$@"
    fi
}

json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# --- uninstall -----------------------------------------------------------------

if [[ $action == uninstall ]]; then
    if systemd_running; then
        # Stopping sends SIGTERM: running restics are interrupted cleanly.
        systemctl_mode disable --now "$service.service" 2>/dev/null ||
            note "($service.service was not loaded)"
    fi
    for link in "$root$unit_dir"/*.wants/"$service.service"; do
        [[ -L $link ]] || continue
        note "remove $link"
        run rm -f "$link"
    done
    removed=0
    for name in "${programs[@]}"; do
        if [[ -e $root$bin_dir/$name ]]; then
            note "remove $root$bin_dir/$name"
            run rm -f "$root$bin_dir/$name"
            removed=$((removed + 1))
        fi
    done
    if [[ -e $root$unit_file ]]; then
        note "remove $root$unit_file"
        run rm -f "$root$unit_file"
        removed=$((removed + 1))
    fi
    ((removed)) || note "nothing to remove: no programs in $root$bin_dir, no $root$unit_file"
    if systemd_running; then
        systemctl_mode daemon-reload || note "(systemctl daemon-reload failed; run it yourself)"
    fi
    note "kept: $root$config_file, the jobs in $root$job_dir, the state in $root$state_dir, the logs in $root$log_dir${cache_dir:+ and the cache in $root$cache_dir}"
    [[ $mode == system ]] && note "kept: the user $service_user (it owns the kept files); remove it with: userdel $service_user"
    if [[ $dry_run == yes ]]; then
        note "dry run: nothing was changed"
    else
        note "uninstalled"
    fi
    exit 0
fi

# --- install: the programs -------------------------------------------------------

[[ -f $unit_template ]] || die "missing unit template $unit_template (install.sh needs the scripts/systemd/ directory beside it)"

if [[ -z $from ]]; then
    if [[ -x $bundle_root/bin/restic-cronned ]]; then
        # An unpacked release tarball (scripts/cross-build): bin/ is beside scripts/.
        from=$bundle_root/bin
    elif [[ -f $bundle_root/Cargo.toml ]]; then
        if ! command -v cargo >/dev/null && [[ -f $HOME/.cargo/env ]]; then
            # shellcheck disable=SC1091
            . "$HOME/.cargo/env"
        fi
        # The small-machine build (static musl, as scripts/cross-build makes
        # it) when this machine can build it; else the glibc release build.
        case $(uname -m) in
        x86_64) small_target=x86_64-unknown-linux-musl ;;
        aarch64) small_target=aarch64-unknown-linux-musl ;;
        armv7l) small_target=armv7-unknown-linux-musleabihf ;;
        *) small_target="" ;;
        esac
        if [[ -n $small_target ]] && command -v cargo >/dev/null &&
            [[ -d $(rustc --print sysroot)/lib/rustlib/$small_target/lib ]]; then
            from=$bundle_root/target/$small_target/small
            note "building: cargo build --profile small --locked --target $small_target (in $bundle_root)"
            # shellcheck source=scripts/small-build.sh
            . "$bundle_root/scripts/small-build.sh"
            run small_build_env cargo build --config "$bundle_root/scripts/small-build.toml" \
                --profile small --locked --target "$small_target" --manifest-path "$bundle_root/Cargo.toml"
        else
            from=$bundle_root/target/release
            if command -v cargo >/dev/null; then
                [[ -n $small_target ]] && note "no Rust standard library for $small_target (rustup target add $small_target): building the glibc build instead"
                note "building: cargo build --release --locked (in $bundle_root)"
                run cargo build --release --locked --manifest-path "$bundle_root/Cargo.toml"
            elif [[ -x $from/restic-cronned ]]; then
                note "no cargo here (as under sudo): installing the build in $from of $(date -r "$from/restic-cronned" '+%F %T')"
            else
                die "cargo not found and nothing built in $from; build first (cargo build --release), then run: sudo $0 --from $from"
            fi
        fi
    else
        die "no programs to install: use --from DIR"
    fi
fi
found=()
for name in "${programs[@]}"; do
    [[ -f $from/$name && -x $from/$name ]] && found+=("$name")
done
if [[ ${found[0]:-} != restic-cronned ]]; then
    if [[ $dry_run == yes && ! -e $from/restic-cronned ]]; then
        # Nothing built yet; a real run would build it first.
        found=(restic-cronned)
    else
        die "$from/restic-cronned is missing or not executable"
    fi
fi

if [[ $mode == system && -z $root ]]; then
    if ! getent passwd "$service_user" >/dev/null; then
        note "create the system user $service_user"
        nologin=/usr/sbin/nologin
        [[ -x $nologin ]] || nologin=/bin/false
        group_option=--user-group
        getent group "$service_user" >/dev/null && group_option=--gid=$service_user
        run useradd --system "$group_option" --home-dir "$state_dir" --no-create-home \
            --shell "$nologin" --comment "restic-cronned backup scheduler" "$service_user"
    fi
fi

ensure_dir "$bin_dir" 0755
for name in "${found[@]}"; do
    note "install $from/$name -> $root$bin_dir/$name"
    # Through a temp file and a rename, so a running daemon keeps its binary.
    if [[ $dry_run == no ]]; then
        tmp=$(mktemp "$root$bin_dir/.$name.XXXXXX")
        install -m 0755 "$from/$name" "$tmp"
        mv -f "$tmp" "$root$bin_dir/$name"
    fi
done

# --- install: config, jobs, state ---------------------------------------------------

if [[ $mode == system ]]; then
    ensure_dir "$config_dir" 0755
else
    own_dir "$config_dir" 0700
fi
own_dir "$job_dir" 0700
for dir in "$state_dir" "$log_dir" ${cache_dir:+"$cache_dir"}; do
    own_dir "$dir" 0700
done

write_new_file "$config_file" 0600 <<EOF
{
    "JobPath": $(json_string "$job_dir"),
    "SrvConf": {"Port": ":8080", "Token": "", "TokenFile": ""},
    "LogConf": {"LogDir": $(json_string "$log_dir"), "MaxAge": 30, "MaxSize": 10, "Level": "info"},
    "StateDir": $(json_string "$state_dir"),
    "StopGrace": "30s",
    "Keyring": "auto"
}
EOF

# --- install: the unit ---------------------------------------------------------------

ensure_dir "$unit_dir" 0755
unit=$(<"$unit_template")
unit=${unit//@BINDIR@/$bin_dir}
unit=${unit//@CONFIG_FILE@/$config_file}
unit=${unit//@STATE_DIR@/$state_dir}
unit=${unit//@LOG_DIR@/$log_dir}
unit=${unit//@CACHE_DIR@/$cache_dir}
unit=${unit//@USER@/$service_user}
[[ ! $unit =~ @[A-Z_]+@ ]] || die "unit template $unit_template has a placeholder this script does not know"
printf '%s\n' "$unit" | write_file "$unit_file" 0644

if systemd_running; then
    systemctl_mode daemon-reload || note "(systemctl daemon-reload failed; run it yourself)"
fi

if [[ $dry_run == yes ]]; then
    note "dry run: nothing was changed"
    exit 0
fi
note "installed ${found[*]} in $root$bin_dir"
if [[ $mode == system ]]; then
    cat <<EOF

Next: put job files into $job_dir (see jobs.example/), check them with
  runuser -u $service_user -- $bin_dir/restic-cronned --config $config_file --check
and start the service:
  systemctl enable --now $service
EOF
else
    cat <<EOF

Next: put job files into $job_dir (see jobs.example/), check them with
  $bin_dir/restic-cronned --check
and start the service:
  systemctl --user enable --now $service
  loginctl enable-linger "\$USER"   # keep it running when you are logged out
EOF
fi
