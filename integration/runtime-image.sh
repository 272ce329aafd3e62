#!/usr/bin/env bash
# The Dockerfile's runtime stage, proven without a container engine: debootstrap a minimal Debian bookworm
# root file system, install exactly the Dockerfile's runtime packages, copy in the static release binary
# (swift build -c release --static-swift-stdlib), and run it there in a chroot: every library it loads is
# found, `--version`, `config check`, and `zoneward run --demo-backends` answering a request on loopback.
# Skips (passing) with a message when the static binary has not been built or debootstrap is missing: the
# build takes long, so CI does not make it; run it where you build releases.
source "$(dirname "$0")/lib/common.sh"

STATIC=${ZONEWARD_STATIC_BIN:-/var/tmp/zoneward-release-static/release/zoneward}
RUNTIME_PACKAGES=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' "$ROOT/Dockerfile")
if [ ! -x "$STATIC" ]; then
    echo "  skip no static release binary at $STATIC (swift build -c release --static-swift-stdlib --scratch-path /var/tmp/zoneward-release-static)"
    finish
    exit 0
fi
command -v debootstrap >/dev/null || { echo "  skip debootstrap is not installed"; finish; exit 0; }
check "the Dockerfile names its runtime packages ($RUNTIME_PACKAGES)" test -n "$RUNTIME_PACKAGES"

# The root file system is cached by its package list: debootstrap downloads ~40 MB.
CACHE=/var/tmp/zoneward-rootfs-$(echo "$RUNTIME_PACKAGES" | sha256sum | cut -c1-12)
if [ ! -x "$CACHE/usr/bin/env" ]; then
    rm -rf "$CACHE.partial"
    echo "  debootstrap bookworm with: $RUNTIME_PACKAGES"
    debootstrap --variant=minbase --include="$(echo $RUNTIME_PACKAGES | tr ' ' ',')" bookworm "$CACHE.partial" \
        http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
        { tail -5 "$WORK/debootstrap.log"; fail "debootstrap"; finish; exit 1; }
    mv "$CACHE.partial" "$CACHE"
fi
FS="$WORK/rootfs"
cp -a "$CACHE" "$FS"
install -D "$STATIC" "$FS/usr/local/bin/zoneward"
mount --bind /proc "$FS/proc" && mount --bind /dev "$FS/dev" || { fail "cannot bind /proc and /dev"; finish; exit 1; }
unmount() { umount "$FS/proc" 2>/dev/null; umount "$FS/dev" 2>/dev/null; }
trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done; unmount; cleanup' EXIT

missing=$(chroot "$FS" ldd /usr/local/bin/zoneward | grep "not found")
check "every library the binary loads is in the runtime image${missing:+: $missing}" test -z "$missing"
echo "    $(chroot "$FS" ldd /usr/local/bin/zoneward | awk '{print $1}' | tr '\n' ' ')"
version=$(chroot "$FS" /usr/local/bin/zoneward --version 2>&1)
check "zoneward --version runs in the image ($version)" test -n "$version"
cp "$ROOT/config/zoneward.yaml" "$FS/zoneward.yaml"
check "zoneward config check runs in the image" chroot "$FS" /usr/local/bin/zoneward config check /zoneward.yaml
check "completion scripts are generated" bash -c "chroot '$FS' /usr/local/bin/zoneward --generate-completion-script bash | grep -q zoneward"
chroot "$FS" /usr/local/bin/zoneward run --demo-backends --db /tmp/zoneward.db >"$WORK/run.log" 2>&1 &
PIDS+=($!)
answer=""
for _ in $(seq 1 100); do answer=$(curl -s -m 1 http://127.0.0.1:8080/) && [ -n "$answer" ] && break; sleep 0.1; done
check "zoneward run --demo-backends answers from the image ($answer)" contains "$answer" "service=web"
finish
