#!/usr/bin/env bash
# Copied from the team's shared reference (shared/v2vm/run-in-v2vm.sh, with its NOTES.md on
# the pitfalls) so that CI, which has only this repository, can run it. Used by
# scripts/test-cgroup2-vm.
#
# run-in-v2vm.sh - run a host-built binary as root inside a throw-away QEMU VM
# whose only cgroup hierarchy is cgroup v2 (cgroup_no_v1=all), with the
# memory/cpu/pids/io/cpuset controllers enabled in the root's subtree_control.
#
# Usage:
#   run-in-v2vm.sh [--prepare] [--] BINARY [ARGS...]
#   # as a cargo runner (each test binary boots its own VM):
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=/path/run-in-v2vm.sh cargo test ...
#
# How it works: the VM (Debian bookworm kernel, busybox initramfs) mounts the
# host's "/" read-only over virtio-9p, puts a tmpfs overlay on top (writes are
# discarded when the VM exits), switch_roots into it, cds to the caller's $PWD and
# execs BINARY. So dynamically linked (glibc) binaries and any helper programs
# they spawn come from the host unchanged. stdout/stderr go to files on a
# second, read-write 9p share and are streamed back; the exit code of BINARY
# is the exit code of this script.
#
# Environment knobs:
#   V2VM_CACHE=/var/tmp/v2vm   kernel + initramfs cache (built on first use)
#   V2VM_KERNEL_PKG=linux-image-amd64   Debian package to take the kernel from
#                                       (e.g. linux-image-6.12-amd64 for 6.12)
#   V2VM_ACCEL=auto|tcg|kvm    auto = kvm only if /dev/kvm and vmx/svm in cpuinfo
#   V2VM_MEM=2048 (MiB)  V2VM_SMP=2  V2VM_TIMEOUT=900 (s, whole VM)
#   V2VM_SUBTREE="+cpu +cpuset +io +memory +pids"  written to the root
#                              cgroup.subtree_control before BINARY runs ("" = none)
#   V2VM_RW="/dir1:/dir2"      host dirs shared read-write (writes reach the host)
#   V2VM_PASS_ENV="A B"        extra env vars to pass; RUST_*, CARGO_* and a few
#                              common ones are always passed
#   V2VM_TMP=auto|tmpfs|host  /tmp in the VM: auto = tmpfs unless BINARY/$PWD
#                              is under /tmp (then the host's /tmp via the overlay)
#   V2VM_VERBOSE=1             show the VM console (kernel log) on stderr
#   V2VM_CONSOLE_LOG=path      keep the console log there
# Exit codes: BINARY's exit code; 128+N if it died from signal N;
#   124 VM timed out; 125 VM/setup failure (console tail printed to stderr).
set -euo pipefail

die() { echo "run-in-v2vm: $*" >&2; exit 125; }
log() { [ "${V2VM_VERBOSE:-0}" = 1 ] && echo "run-in-v2vm: $*" >&2 || true; }

CACHE=${V2VM_CACHE:-/var/tmp/v2vm}
KPKG=${V2VM_KERNEL_PKG:-linux-image-amd64}
MEM=${V2VM_MEM:-2048}
SMP=${V2VM_SMP:-2}
TMO=${V2VM_TIMEOUT:-900}
SUBTREE=${V2VM_SUBTREE-+cpu +cpuset +io +memory +pids}
MODS="virtio_pci 9pnet_virtio 9p overlay"

PREPARE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) PREPARE_ONLY=1; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $PREPARE_ONLY = 1 ] || [ $# -ge 1 ] || die "usage: $0 [--prepare] [--] BINARY [ARGS...]"

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install -y --no-install-recommends qemu-system-x86)"

# ---------------------------------------------------------------- cache ----
# $CACHE/v<format>/$KPKG/{vmlinux|vmlinuz, initramfs.cpio, kver, config}
CACHE_FORMAT=2   # bump when the initramfs/init below changes
KDIR=$CACHE/v$CACHE_FORMAT/$KPKG
build_cache() {
  command -v busybox >/dev/null || die "busybox missing (apt-get install -y busybox-static)"
  if command -v file >/dev/null && ! file -L "$(command -v busybox)" | grep -q 'statically linked'; then
    die "$(command -v busybox) is not static (apt-get install -y busybox-static)"
  fi
  mkdir -p "$(dirname "$KDIR")"
  local T; T=$(mktemp -d "$CACHE/build.XXXXXX")
  ( cd "$T"
    apt-get download "$KPKG" >/dev/null 2>&1 || die "apt-get download $KPKG failed"
    local deb; deb=$(ls ./*.deb | head -1)
    dpkg-deb -x "$deb" x
    if ! ls x/boot/vmlinuz-* >/dev/null 2>&1; then   # meta package -> real one
      local real
      real=$(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | sed 's/ *(.*//; s/^ *//' \
             | grep -E '^linux-image-[0-9]' | head -1)
      [ -n "$real" ] || die "cannot find the real kernel package behind $KPKG"
      apt-get download "$real" >/dev/null 2>&1 || die "apt-get download $real failed"
      rm -rf x; dpkg-deb -x "$(ls ./"$real"_*.deb | head -1)" x
    fi
    local vmlinuz kver
    vmlinuz=$(ls x/boot/vmlinuz-* | head -1); kver=${vmlinuz##*/vmlinuz-}
    mkdir -p out; cp "$vmlinuz" out/vmlinuz; cp "x/boot/config-$kver" out/config
    echo "$kver" > out/kver
    # Uncompressed ELF vmlinux boots via the PVH entry point and skips the
    # in-guest decompression (~5 s under TCG). Needs CONFIG_PVH=y.
    if grep -q '^CONFIG_PVH=y' out/config; then
      local off magic tool
      for magic in '\xfd7zXZ\x00:xz' '\x28\xb5\x2f\xfd:zstd' '\x1f\x8b\x08:gzip'; do
        tool=${magic##*:}; magic=${magic%:*}
        command -v "$tool" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "$magic" out/vmlinuz | cut -d: -f1); do
          tail -c +$((off + 1)) out/vmlinuz | "$tool" -dc 2>/dev/null > out/vmlinux || true
          if [ "$(head -c 4 out/vmlinux | od -An -c | tr -d ' ')" = '177ELF' ]; then break 2; fi
          rm -f out/vmlinux
        done
      done
      [ -f out/vmlinux ] || log "could not extract ELF vmlinux; using bzImage"
    fi
    # initramfs: static busybox + the modules needed for 9p/overlay + /init
    local M=x/lib/modules/$kver R=rootfs
    busybox depmod -b x "$kver" 2>/dev/null || true
    mkdir -p $R/bin $R/dev $R/proc $R/sys $R/tmp $R/mnt $R/newroot $R/lib/modules
    cp "$(command -v busybox)" $R/bin/busybox
    for a in $($R/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
    : > $R/lib/modules/order
    add_mod() {  # $1 = module name; appends deps first
      local name=$1 rel deps d
      grep -q "/$name.ko" "$M/modules.builtin" 2>/dev/null && return 0
      grep -qx "$name" $R/lib/modules/order && return 0
      rel=$(grep -E "(^|/)$name\.ko(\.xz|\.zst|\.gz)?:" "$M/modules.dep" | head -1) \
        || die "module $name not found for $kver"
      deps=${rel#*:}; rel=${rel%%:*}
      for d in $deps; do d=${d##*/}; add_mod "${d%%.ko*}"; done
      case "$rel" in
        *.ko.xz)  xz -dc "$M/$rel" > "$R/lib/modules/$name.ko" ;;
        *.ko.zst) zstd -qdc "$M/$rel" > "$R/lib/modules/$name.ko" ;;
        *.ko.gz)  gzip -dc "$M/$rel" > "$R/lib/modules/$name.ko" ;;
        *)        cp "$M/$rel" "$R/lib/modules/$name.ko" ;;
      esac
      echo "$name" >> $R/lib/modules/order
    }
    for m in $MODS; do add_mod "$m"; done
    cat > $R/init <<'INIT'
#!/bin/busybox sh
# v2vm init (PID 1 in the initramfs): build the new root = host "/" (9p, ro)
# + tmpfs overlay, mount a cgroup-v2-only /sys/fs/cgroup, then switch_root
# (not chroot: a chrooted process may not create user namespaces) into a
# stage-2 shell that runs /.v2vm/run.sh and powers off.
export PATH=/bin
fail() { echo "v2vm-init: $*"; poweroff -f; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "v2vm-init: insmod $m failed"; done
mkdir -p /mnt/xfer /mnt/host /mnt/up
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 v2vmxfer /mnt/xfer || fail "mount xfer"
. /mnt/xfer/config
grep -q cgroup2 /proc/filesystems || fail "no cgroup2"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose v2vmroot /mnt/host || fail "mount host root"
mount -t tmpfs -o mode=755 tmpfs /mnt/up && mkdir -p /mnt/up/u /mnt/up/w
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/up/u,workdir=/mnt/up/w /newroot || fail "mount overlay"
N=/newroot
mount -t proc proc $N/proc; mount -t sysfs sysfs $N/sys
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $N/sys/fs/cgroup || fail "mount cgroup2"
[ -n "$V2VM_SUBTREE" ] && { echo "$V2VM_SUBTREE" > $N/sys/fs/cgroup/cgroup.subtree_control || echo "v2vm-init: subtree_control failed"; }
mount -t devtmpfs devtmpfs $N/dev; mkdir -p $N/dev/pts $N/dev/shm
ln -sf /proc/self/fd $N/dev/fd; ln -sf /proc/self/fd/0 $N/dev/stdin
ln -sf /proc/self/fd/1 $N/dev/stdout; ln -sf /proc/self/fd/2 $N/dev/stderr
mount -t devpts -o newinstance,ptmxmode=0666 devpts $N/dev/pts; mount -t tmpfs tmpfs $N/dev/shm
mount -t tmpfs -o mode=755 tmpfs $N/run
# a real tmpfs on /tmp (overlayfs cannot be the upper layer of a nested overlay mount)
[ "$V2VM_TMP" = tmpfs ] && mount -t tmpfs -o mode=1777 tmpfs $N/tmp
mkdir -p $N/.v2vm && mount --bind /mnt/xfer $N/.v2vm && umount /mnt/xfer
i=0; echo "$V2VM_RW" | tr ':' '\n' | while read -r d; do
  [ -n "$d" ] || continue
  mkdir -p "$N$d"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 v2vmrw$i "$N$d" || echo "v2vm-init: rw mount $d failed"
  i=$((i+1)); done
umount -l /mnt/host; umount -l /mnt/up
ip link set lo up; hostname v2vm
mkdir -p $N/run/v2vm && cp /bin/busybox $N/run/v2vm/busybox
cat > $N/run/v2vm/stage2 <<'EOS'
B=/run/v2vm/busybox
/bin/sh /.v2vm/run.sh </dev/null >/.v2vm/stdout 2>/.v2vm/stderr
echo $? > /.v2vm/rc
echo "v2vm-init: done at $($B cut -d' ' -f1 /proc/uptime)s rc=$($B cat /.v2vm/rc)"
$B sync; $B umount /.v2vm
$B poweroff -f
EOS
echo "v2vm-init: ready at $(cut -d' ' -f1 /proc/uptime)s, controllers: $(cat $N/sys/fs/cgroup/cgroup.controllers)"
exec switch_root $N /run/v2vm/busybox sh /run/v2vm/stage2
INIT
    chmod +x $R/init
    (cd $R && find . | busybox cpio -o -H newc 2>/dev/null) > out/initramfs.cpio
    rm -rf "$KDIR.new"; mv out "$KDIR.new"
  ) || { rm -rf "$T"; exit 125; }
  rm -rf "$KDIR"; mv "$KDIR.new" "$KDIR"; rm -rf "$T"
}

mkdir -p "$CACHE"
if [ ! -f "$KDIR/initramfs.cpio" ]; then
  exec 9>"$CACHE/.lock"; flock 9
  if [ ! -f "$KDIR/initramfs.cpio" ]; then
    echo "run-in-v2vm: building kernel/initramfs cache in $KDIR (one-off)" >&2
    build_cache
  fi
  flock -u 9; exec 9>&-
fi
[ $PREPARE_ONLY = 1 ] && { echo "run-in-v2vm: cache ready: $KDIR ($(cat "$KDIR/kver"))"; exit 0; }

# ------------------------------------------------------------------ run ----
BIN=$1; shift
case "$BIN" in */*) ;; *) BIN=$(command -v -- "$BIN") || die "not found in PATH: $BIN";; esac
BIN=$(realpath -e -- "$BIN" 2>/dev/null) || die "not found: $BIN"
[ -x "$BIN" ] || die "not executable: $BIN"

W=$(mktemp -d /tmp/v2vm.XXXXXX)
QPID=
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }   # POSIX sh single-quoting
{
  echo "cd $(q "$PWD") 2>/dev/null || cd /"
  echo "export PATH=$(q "$PATH") HOME=/root USER=root LOGNAME=root V2VM=1"
  for v in $(compgen -e); do
    case "$v" in
      RUST_*|CARGO_*|RUSTFLAGS|TERM|NO_COLOR|LANG|LC_*|TZ) ;;
      *) case " ${V2VM_PASS_ENV:-} " in *" $v "*) ;; *) continue;; esac ;;
    esac
    echo "export $v=$(q "${!v}")"
  done
  printf 'exec %s' "$(q "$BIN")"
  for a in "$@"; do printf ' %s' "$(q "$a")"; done
  echo
} > "$W/run.sh"
# /tmp in the VM: a fresh tmpfs, unless BINARY or $PWD live under /tmp
# (then the host's /tmp stays visible, read-only + overlay).
VTMP=${V2VM_TMP:-auto}
if [ "$VTMP" = auto ]; then
  VTMP=tmpfs
  case "$BIN/ $PWD/" in /tmp/*|*" /tmp/"*) VTMP=host;; esac
fi
RWDEV=(); RWLIST=; i=0; IFS=: read -r -a RWDIRS <<< "${V2VM_RW:-}"
for d in "${RWDIRS[@]}"; do
  [ -n "$d" ] || continue
  rd=$(realpath -e -- "$d" 2>/dev/null) && [ -d "$rd" ] || die "V2VM_RW: not a directory: $d"
  d=$rd
  RWDEV+=(-fsdev "local,id=rw$i,path=$d,security_model=passthrough,multidevs=remap"
          -device "virtio-9p-pci,fsdev=rw$i,mount_tag=v2vmrw$i")
  RWLIST=$RWLIST${RWLIST:+:}$d; i=$((i+1))
done
{
  echo "V2VM_SUBTREE=$(q "$SUBTREE")"
  echo "V2VM_RW=$(q "$RWLIST")"
  echo "V2VM_TMP=$(q "$VTMP")"
} > "$W/config"
: > "$W/stdout"; : > "$W/stderr"

ACCEL=${V2VM_ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
  ACCEL=tcg
  [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && ACCEL=kvm
fi
case "$ACCEL" in
  kvm) ACC=(-accel kvm -cpu host) ;;
  tcg) ACC=(-accel "tcg,thread=multi" -cpu max) ;;
  *) die "V2VM_ACCEL must be auto, tcg or kvm" ;;
esac
KERNEL=$KDIR/vmlinux; [ -f "$KERNEL" ] || KERNEL=$KDIR/vmlinuz
CONSOLE=${V2VM_CONSOLE_LOG:-$W/console.log}
SERIAL=(-serial "file:$CONSOLE")
[ "${V2VM_VERBOSE:-0}" = 1 ] && \
  SERIAL=(-chardev "file,id=con,path=/proc/self/fd/2,append=on" -serial chardev:con)
log "accel=$ACCEL kernel=$KERNEL ($(cat "$KDIR/kver")) mem=${MEM}M smp=$SMP"

timeout -k 5 "$TMO" qemu-system-x86_64 -nodefaults -no-user-config \
  -machine pc "${ACC[@]}" -m "$MEM" -smp "$SMP" -display none -no-reboot \
  -bios /usr/share/qemu/qboot.rom "${SERIAL[@]}" \
  -kernel "$KERNEL" -initrd "$KDIR/initramfs.cpio" \
  -append "console=ttyS0 cgroup_no_v1=all quiet panic=-1 random.trust_cpu=on i8042.noaux" \
  -fsdev "local,id=root,path=/,security_model=passthrough,readonly=on,multidevs=remap" \
  -device virtio-9p-pci,fsdev=root,mount_tag=v2vmroot \
  -fsdev "local,id=xfer,path=$W,security_model=passthrough" \
  -device virtio-9p-pci,fsdev=xfer,mount_tag=v2vmxfer \
  "${RWDEV[@]}" </dev/null &
QPID=$!
tail -n +1 -s 0.1 -f --pid=$QPID "$W/stdout" &
T1=$!
tail -n +1 -s 0.1 -f --pid=$QPID "$W/stderr" >&2 &
T2=$!
set +e
wait $QPID; QRC=$?
QPID=
wait $T1 $T2 2>/dev/null
set -e

if [ -s "$W/rc" ]; then
  exit "$(cat "$W/rc")"
fi
if [ "$QRC" = 124 ]; then echo "run-in-v2vm: VM timed out after ${TMO}s" >&2; RC=124; else RC=125; fi
echo "run-in-v2vm: no exit code from the VM (qemu rc=$QRC); console tail:" >&2
tail -n 30 "$CONSOLE" >&2 2>/dev/null || true
exit $RC
