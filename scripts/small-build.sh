# Sourced by scripts/cross-build, scripts/install.sh and scripts/test: runs a
# command with the C compiler and archiver that the vendored libdbus needs
# for each musl target of the small-machine build (see
# scripts/small-build.toml), and x86_64's linker (scripts/link-small).
# shellcheck shell=bash
small_build_env() {
    local scripts zig
    scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
    zig=$scripts/zig
    CC_x86_64_unknown_linux_musl=musl-gcc \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=$scripts/link-small \
        CC_aarch64_unknown_linux_musl=$zig/aarch64-linux-musl-cc \
        CC_armv7_unknown_linux_musleabihf=$zig/arm-linux-musleabihf-cc \
        AR_aarch64_unknown_linux_musl=$zig/ar \
        AR_armv7_unknown_linux_musleabihf=$zig/ar \
        "$@"
}
