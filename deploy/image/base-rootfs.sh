#!/usr/bin/env bash
# Builds the runtime root filesystem of the xdp-ingress image from Debian packages alone (no
# registry base image: mmdebstrap talks only to the Debian archive), distroless-style: glibc,
# libgcc_s, the CA bundle, /etc/passwd for the non-root user, /tmp. Nothing else: no shell, no
# package manager.
#
#   deploy/image/base-rootfs.sh OUT.tar [SUITE]
#
# The daemon links only libc, libm and libgcc_s (`ldd`); libc6 and libgcc-s1 are unpacked without
# running maintainer scripts (`--variant=extract`), the docs, man pages, locales and gconv modules
# dropped. ca-certificates' bundle is assembled from the certificates it ships (what its
# update-ca-certificates would write) since its maintainer script needs a shell.
set -euo pipefail
out=${1:?usage: base-rootfs.sh OUT.tar [SUITE]}
suite=${2:-bookworm}
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: apt-get install mmdebstrap" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
excludes=()
for p in /usr/share/doc /usr/share/man /usr/share/locale /usr/share/lintian /usr/share/info \
         /usr/lib/x86_64-linux-gnu/gconv /usr/lib/aarch64-linux-gnu/gconv; do
  excludes+=(--dpkgopt="path-exclude=$p/*")
done
root="$work/root"
mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,base-files,netbase \
  "${excludes[@]}" --format=directory "$suite" "$root"
# ca-certificates depends on openssl (and that on perl): unpacked apart, only its certificates
# are taken.
mmdebstrap --quiet --variant=extract --include=ca-certificates "${excludes[@]}" \
  --format=directory "$suite" "$work/ca"
rm -rf "$root/var/cache/apt" "$root/var/lib/apt" "$root/var/log"/* "$root/etc/apt"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
find "$work/ca/usr/share/ca-certificates/mozilla" -name '*.crt' | sort | xargs cat \
  > "$root/etc/ssl/certs/ca-certificates.crt"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || { echo "empty CA bundle" >&2; exit 1; }
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
mkdir -p "$root/home/nonroot" && chown 65532:65532 "$root/home/nonroot"
# Reproducible tar: sorted names, fixed owner and times.
tar --sort=name --mtime='@0' --numeric-owner -C "$root" -cf "$out" .
echo "base rootfs: $out ($(du -h "$out" | cut -f1))"
