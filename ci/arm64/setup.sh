#!/usr/bin/env bash
# Prepares a Debian 12 (amd64) machine to run arm64 tests in an emulated arm64 Linux VM with
# nested KVM (see ci/arm64/run-in-vm.sh, which ci/test.sh calls for the arm64 part of the suite).
#   - host tools (amd64 apt packages): qemu-system-aarch64, the aarch64 cross C toolchain, cpio;
#   - guest files, cached in target/arm64-vm/: the Debian arm64 kernel Image and a static busybox,
#     fetched as arm64 .debs with a private apt configuration (dpkg's architectures and the
#     machine's apt sources are left alone).
# Idempotent: on a warm machine it installs and downloads nothing.
# Environment: ARM64_DEBIAN_MIRROR (default http://deb.debian.org/debian), ARM64_DEBIAN_SUITE
# (default bookworm).
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=target/arm64-vm
mirror=${ARM64_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${ARM64_DEBIAN_SUITE:-bookworm}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "ci/arm64/setup.sh: $*"; }
die() { echo "ci/arm64/setup.sh: error: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# 1. Host tools.
missing=()
command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || missing+=(libc6-dev-arm64-cross)
command -v cpio >/dev/null || missing+=(cpio)
[ -e "$keyring" ] || missing+=(debian-archive-keyring)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing host packages: ${missing[*]}"
    log=$(mktemp)
    if ! { as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$log"
else
    say "host tools present ($(qemu-system-aarch64 --version | head -n1))"
fi

# 2. Guest kernel and busybox.
if [ -s "$cache/Image" ] && [ -s "$cache/busybox" ] && [ -s "$cache/kernel-version" ]; then
    say "guest kernel $(cat "$cache/kernel-version") and busybox already in $cache"
    exit 0
fi

say "downloading arm64 kernel and busybox-static from $mirror ($suite)"
mkdir -p "$cache"
work=$(mktemp -d "$cache/tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [arch=arm64 signed-by=$keyring] $mirror $suite main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$PWD/$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State::Lists=$PWD/$work/lists" -o "Dir::Cache=$PWD/$work/cache"
    -o Dir::State::Status=/dev/null -o APT::Architectures::=arm64 -o APT::Architecture=arm64
    -o "APT::Sandbox::User=$(id -un)")
apt-get -qq "${apt_opts[@]}" update || die "apt-get update for arm64 failed (mirror $mirror)"
# linux-image-arm64 is a metapackage; it depends on the versioned kernel package.
kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 \
    | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-arm64\)$/\1/p' | head -n1)
[ -n "$kpkg" ] || die "could not resolve linux-image-arm64 to a kernel package"
(cd "$work/debs" && apt-get -qq "${apt_opts[@]}" download "$kpkg" busybox-static) \
    || die "downloading $kpkg and busybox-static failed"

mkdir -p "$work/x"
# Only the kernel Image from the kernel package (its modules are not needed: KVM, the PL011
# console and initramfs support are built in).
dpkg-deb --fsys-tarfile "$work"/debs/linux-image-*.deb \
    | tar -x -C "$work/x" --wildcards './boot/vmlinuz-*'
dpkg-deb -x "$work"/debs/busybox-static_*.deb "$work/x"
kernels=("$work"/x/boot/vmlinuz-*)
[ -s "${kernels[0]}" ] || die "no /boot/vmlinuz-* in $kpkg"
[ -s "$work/x/bin/busybox" ] || die "no /bin/busybox in busybox-static"
# The arm64 Image header has "ARMd" at offset 56; qemu -kernel boots it directly.
[ "$(dd if="${kernels[0]}" bs=1 skip=56 count=4 status=none)" = ARMd ] \
    || die "${kernels[0]##*/} is not a raw arm64 Image"
cp "${kernels[0]}" "$cache/Image"
cp "$work/x/bin/busybox" "$cache/busybox"
chmod 0755 "$cache/busybox"
kver=${kernels[0]##*/vmlinuz-}
echo "$kver" >"$cache/kernel-version"
say "cached kernel $kver ($(du -h "$cache/Image" | cut -f1)) and busybox in $cache"
