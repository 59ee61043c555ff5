#!/usr/bin/env bash
# Builds the container image islab:local (or $ISLAB_IMAGE) FROM scratch: the release `islab`
# binary plus the shared libraries it loads, staged into target/islab-image/ and built with
# deploy/Dockerfile. Needs cargo, ldd and a Docker engine; pulls nothing.
#
#   deploy/build-image.sh                 # then: docker compose up -d  (or docker-compose)
#   ISLAB_IMAGE=islab:dev deploy/build-image.sh
#   ISLAB_IMAGE_PROFILE=debug deploy/build-image.sh   # the debug binary the tests build anyway
#                                                     # (CI: saves a release build of it all)
#
# The previous image of the same tag is removed once it is no longer tagged (dangling images
# carrying this project's label are pruned), so repeated builds do not pile up.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${ISLAB_IMAGE:-islab:local}"
target_dir="${CARGO_TARGET_DIR:-target}"
profile="${ISLAB_IMAGE_PROFILE:-release}"
context="$target_dir/islab-image"
case "$profile" in
    release)
        echo "--- cargo build --release -p islab-cli --bin islab --locked"
        cargo build --release -p islab-cli --bin islab --locked
        ;;
    debug)
        # The same command the cluster tests run (cluster-tests/src/binary.rs), so they share
        # this build.
        echo "--- cargo build -p islab-cli --bin islab --locked"
        cargo build -p islab-cli --bin islab --locked
        ;;
    *)
        echo "ISLAB_IMAGE_PROFILE must be release or debug, got $profile" >&2
        exit 1
        ;;
esac
binary="$target_dir/$profile/islab"

echo "--- staging $context"
rm -rf "$context"
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc" "$context/data"
if command -v strip >/dev/null; then
    # Debug info is most of the file; the symbol table stays, so backtraces keep their names.
    strip --strip-debug -o "$context/rootfs/usr/local/bin/islab" "$binary"
else
    cp "$binary" "$context/rootfs/usr/local/bin/islab"
fi

# Every library `ldd` resolves, and the loader, at the paths the binary names them by.
copy() {
    local path="$1"
    mkdir -p "$context/rootfs$(dirname "$path")"
    cp -L "$path" "$context/rootfs$path"
}
if ! libs=$(ldd "$binary" 2>&1); then
    echo "ldd $binary failed: $libs" >&2
    exit 1
fi
if grep -q "not found" <<<"$libs"; then
    echo "missing shared libraries:" >&2
    grep "not found" <<<"$libs" >&2
    exit 1
fi
libc=""
for path in $(grep -o '/[^ ]*' <<<"$libs"); do
    copy "$path"
    case "$(basename "$path")" in libc.so.*) libc="$path" ;; esac
done
# getaddrinfo loads NSS modules by name at run time, so ldd does not list them. glibc 2.34+
# has files and dns inside libc.so.6 (these files are then empty stubs); older glibc needs
# them, and the dns module needs libresolv.
if [ -n "$libc" ]; then
    for name in libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        lib="$(dirname "$libc")/$name"
        if [ -e "$lib" ]; then copy "$lib"; fi
    done
fi
printf 'hosts: files dns\n' >"$context/rootfs/etc/nsswitch.conf"
(cd "$context/rootfs" && find . -type f -printf '%10s  %p\n' | sort -k2)

echo "--- docker build -t $image"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then revision="$revision-dirty"; fi
docker build \
    --label io.islabdb.image=islab \
    --label "org.opencontainers.image.revision=$revision" \
    --label "io.islabdb.profile=$profile" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$image" -f deploy/Dockerfile "$context"

# The image this build replaced is now untagged: remove it (and any other leftovers of ours).
docker image prune -f --filter label=io.islabdb.image=islab >/dev/null

echo "--- smoke test: the image runs"
docker run --rm --network none "$image" --version
echo "built $image ($revision)"
