#!/usr/bin/env bash
# Builds the xdp-ingress image (deploy/Containerfile) from an already built daemon with buildah,
# and with --smoke starts it and checks that it serves /healthz. `cargo xtask image` builds the
# release daemon and calls this.
#
#   deploy/image/build.sh [--binary PATH] [--tag TAG] [--smoke]
#
# PATH defaults to target/release/xdp-ingress, else target/debug/xdp-ingress (what CI has
# built; its debug info is stripped here, so the image holds the same code CI tested). The base
# root filesystem (base-rootfs.sh) is cached in target/image/ and rebuilt when that script
# changes. Needs root, buildah and mmdebstrap (Debian packages).
#
# --smoke: podman cannot run containers on every host (no cgroup v2, rlimits it may not raise),
# so the image's own root filesystem (`buildah mount`) is run with chroot as its USER, inside a
# network namespace made for the purpose (loopback only), the way the entrypoint would; then
# /healthz and /readyz must answer 200 within 30 s. Namespace, process and mount are removed
# on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=""
tag="localhost/xdp-ingress:dev"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  for b in target/release/xdp-ingress target/debug/xdp-ingress; do
    [ -x "$b" ] && { binary=$b; break; }
  done
fi
[ -x "${binary:-}" ] || { echo "no daemon binary: cargo build -p ingress-userspace --bins" >&2; exit 1; }
bah=(buildah --storage-driver vfs)
t0=$(date +%s)

ctx=target/image/context
mkdir -p "$ctx"
key=$(sha256sum deploy/image/base-rootfs.sh | cut -c1-16)
base=target/image/rootfs-$key.tar
if [ ! -s "$base" ]; then
  rm -f target/image/rootfs-*.tar
  bash deploy/image/base-rootfs.sh "$base.tmp" && mv "$base.tmp" "$base"
fi
cp "$base" "$ctx/rootfs.tar"
objcopy --strip-debug "$binary" "$ctx/xdp-ingress"
# The previous build of this tag goes first, so repeated runs do not pile up vfs layers.
"${bah[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
"${bah[@]}" bud --quiet --isolation chroot --layers=false -f deploy/Containerfile -t "$tag" "$ctx" >/dev/null
size=$("${bah[@]}" images --format '{{.Size}}' "$tag" | head -1)
echo "image $tag: $size (binary $binary, $(du -h "$ctx/xdp-ingress" | cut -f1) stripped), built in $(( $(date +%s) - t0 ))s"
[ "$smoke" = 1 ] || exit 0

ns="xi-image-$$"
ctr=""
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  if [ -n "$ctr" ]; then "${bah[@]}" umount "$ctr" >/dev/null 2>&1; "${bah[@]}" rm "$ctr" >/dev/null 2>&1; fi
  true
}
trap cleanup EXIT
ctr=$("${bah[@]}" from --quiet "$tag")
root=$("${bah[@]}" mount "$ctr")
user=$("${bah[@]}" inspect --format '{{.OCIv1.Config.User}}' "$tag")
entry=$("${bah[@]}" inspect --format '{{index .OCIv1.Config.Entrypoint 0}}' "$tag")
ip netns add "$ns"
ip -n "$ns" link set lo up
log=target/image/smoke.log
ip netns exec "$ns" chroot --userspec="$user" "$root" "$entry" run --no-xdp --default-manifests \
  --metrics-addr 127.0.0.1:10254 --http-port 8080 --https-port 8443 >"$log" 2>&1 &
pid=$!
for path in healthz readyz; do
  ok=0
  for _ in $(seq 1 150); do
    code=$(ip netns exec "$ns" curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:10254/$path" || true)
    [ "$code" = 200 ] && { ok=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  [ "$ok" = 1 ] || { echo "image smoke test: /$path did not answer 200 (last: ${code:-none}); daemon log:" >&2; tail -20 "$log" >&2; exit 1; }
done
echo "image smoke test: $entry from the image, user $user, in netns $ns: /healthz and /readyz 200"
