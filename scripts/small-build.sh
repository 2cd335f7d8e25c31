# Sourced by scripts/cross-build and scripts/install.sh: runs a command with
# the C compiler and archiver that the vendored libdbus needs for each musl
# target of the small-machine build (see scripts/small-build.toml).
# shellcheck shell=bash
small_build_env() {
    local zig
    zig=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/zig
    CC_x86_64_unknown_linux_musl=musl-gcc \
        CC_aarch64_unknown_linux_musl=$zig/aarch64-linux-musl-cc \
        CC_armv7_unknown_linux_musleabihf=$zig/arm-linux-musleabihf-cc \
        AR_aarch64_unknown_linux_musl=$zig/ar \
        AR_armv7_unknown_linux_musleabihf=$zig/ar \
        "$@"
}
