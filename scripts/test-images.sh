#!/usr/bin/env bash
# Builds the local container images berth's tests use. There is no registry to pull from, so the
# images are made from Debian's busybox-static binary with `docker import`.
#
#   berth-test/busybox:latest   static busybox with applet symlinks, CMD ["sh"]
#   busybox:latest              same image, tagged only when no `busybox` image exists yet
#
# Idempotent and fast when the images already exist. Needs docker; installs busybox-static with
# apt-get when no static /bin/busybox is present (root required for that step only).
set -euo pipefail

IMAGE="berth-test/busybox:latest"
APPLETS=(sh ash sleep httpd echo cat wget nc true false ls env id hostname kill ps head tail tr
  grep sed awk printf test "[" mkdir rm cp mv touch date dd yes seq wc sort uniq cut top free
  df du mount umount ip ifconfig ping nslookup ln chmod chown stat uname whoami pwd basename
  dirname readlink realpath timeout xargs find tee watch vi less more nohup usleep md5sum
  sha256sum gzip gunzip tar base64 od hexdump netstat route arp telnet ftpget ftpput udhcpc)

log() { printf 'test-images: %s\n' "$*" >&2; }

# Serialize concurrent runs (parallel test processes may all find the image missing).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/berth-test-images.lock"
  flock 9
fi

if ! command -v docker >/dev/null 2>&1; then
  log "docker CLI not found"; exit 1
fi
if ! docker info >/dev/null 2>&1; then
  log "docker engine unreachable (is /var/run/docker.sock up?)"; exit 1
fi

is_static_busybox() {
  [ -x "$1" ] || return 1
  # A static binary has no program interpreter; ldd says "not a dynamic executable".
  if command -v file >/dev/null 2>&1; then
    file -L "$1" | grep -q 'statically linked' && return 0
  fi
  ! ldd "$1" >/dev/null 2>&1
}

find_busybox() {
  for c in /bin/busybox /usr/bin/busybox; do
    if is_static_busybox "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present"
else
  if ! BB=$(find_busybox); then
    log "installing busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q busybox-static >/dev/null 2>&1; then
      log "apt-get install failed; running apt-get update first"
      apt-get update -q >/dev/null
      apt-get install -y -q busybox-static >/dev/null
    fi
    BB=$(find_busybox) || { log "no static busybox after install"; exit 1; }
  fi
  log "building $IMAGE from $BB"
  ROOT=$(mktemp -d)
  trap 'rm -rf "$ROOT"' EXIT
  mkdir -p "$ROOT"/{bin,etc,tmp,proc,sys,dev,root,var/www,home}
  chmod 1777 "$ROOT/tmp"
  cp "$BB" "$ROOT/bin/busybox"
  for a in "${APPLETS[@]}"; do
    ln -sf busybox "$ROOT/bin/$a"
  done
  ln -s bin "$ROOT/sbin"
  mkdir -p "$ROOT/usr"; ln -s ../bin "$ROOT/usr/bin"; ln -s ../bin "$ROOT/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$ROOT/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
  echo 'berth test image' >"$ROOT/var/www/index.html"
  tar -C "$ROOT" -c . | docker import \
    --change 'CMD ["sh"]' \
    --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
    --change 'LABEL org.berth.test-image=busybox' \
    - "$IMAGE" >/dev/null
  log "built $IMAGE"
fi

if [ -z "$(docker images -q busybox 2>/dev/null)" ]; then
  docker tag "$IMAGE" busybox:latest
  log "tagged busybox:latest"
fi
