#!/usr/bin/env bash
# Ferrule's toolchain root: a Debian sid root holding Bazel 7.7.1 and the
# pinned toolchains of toolchains/root/manifest.txt, named by that file's
# SHA-256.
#
#   tools/root.sh CMD [ARGS...]   run CMD inside the root, the checkout at the same path
#   tools/root.sh --build         build the root if this manifest has none yet (setup.sh does)
#   tools/root.sh --digest        print the root's name: toolchain-root=<sha256>
#   tools/root.sh --path          print the root's directory
#
# Roots live in a machine-wide directory, $FERRULE_ROOTS (default
# /var/cache/ferrule/roots), one per manifest digest, so every clone on a
# machine shares them; .ferrule/root in the checkout points at the one in use.
# A root is built under a temporary name and renamed to its digest last, so a
# failed build never leaves a root that a later run would trust.
#
# Inside, CMD runs in its own mount namespace after pivot_root: the root's
# files, the host's /proc, /dev, /sys and /tmp, and bind mounts of the
# checkout, $HOME and every directory in $FERRULE_ROOT_BIND (colon-separated)
# at their own paths. The environment is the caller's, with the root's PATH.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$repo/toolchains/root/manifest.txt"
roots="${FERRULE_ROOTS:-/var/cache/ferrule/roots}"

die() { echo "root.sh: $*" >&2; exit 1; }
say() { printf '==> root: %s\n' "$*" >&2; }

[ -f "$manifest" ] || die "manifest $manifest is missing"
digest="$(sha256sum "$manifest" | cut -d' ' -f1)"
dir="$roots/$digest"

# Checks that $1 is a complete root built from this manifest.
check_root() {
  local d="$1"
  [ -d "$d" ] || die "no toolchain root at $d (toolchain-root=$digest): run ./tools/setup.sh (or tools/root.sh --build)"
  [ -f "$d/etc/ferrule-root/digest" ] || die "$d is not a complete toolchain root (no etc/ferrule-root/digest): remove it and run tools/root.sh --build"
  local have
  have="$(cat "$d/etc/ferrule-root/digest")"
  [ "$have" = "$digest" ] || die "the root at $d was built from manifest $have, but toolchains/root/manifest.txt is $digest: run tools/root.sh --build"
  cmp -s "$d/etc/ferrule-root/manifest.txt" "$manifest" || die "the root at $d holds a different manifest than toolchains/root/manifest.txt"
}

build() {
  if [ -f "$dir/etc/ferrule-root/digest" ]; then
    check_root "$dir"
    say "toolchain-root=$digest already built ($dir)"
  else
    build_new
  fi
  mkdir -p "$repo/.ferrule"
  ln -sfn "$dir" "$repo/.ferrule/root"
}

build_new() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (step: prerequisites): apt-get install debootstrap"
  command -v unshare >/dev/null || die "unshare (util-linux) is not installed (step: prerequisites)"
  [ "$(id -u)" = 0 ] || die "building the root needs root (debootstrap, chroot): run tools/setup.sh as root or with sudo"
  . "$repo/tools/lib/apt-mirror.sh"
  local mirror suite variant
  mirror="${FERRULE_ROOT_MIRROR:-$(apt_mirror)}"
  [ -n "$mirror" ] || die "no Debian archive found in this machine's apt sources (step: mirror); set FERRULE_ROOT_MIRROR"
  suite="$(awk '$1 == "suite" { print $2 }' "$manifest")"
  variant="$(awk '$1 == "variant" { print $2 }' "$manifest")"
  local -a archs pkgs
  mapfile -t archs < <(awk '$1 == "arch" { print $2 }' "$manifest")
  mapfile -t pkgs < <(awk '$1 == "package" { print $2 "=" $3 }' "$manifest")
  [ -n "$suite" ] && [ "${#pkgs[@]}" -gt 0 ] || die "$manifest names no suite or no package"

  mkdir -p "$roots"
  # Leftovers of builds that died: never trusted, removed.
  local old
  for old in "$roots"/.build-"$digest"-*; do
    [ -e "$old" ] || continue
    if ! kill -0 "${old##*-}" 2>/dev/null; then rm -rf --one-file-system "$old"; fi
  done
  local tmp="$roots/.build-$digest-$$"
  local log="$roots/.build-$digest.log"
  : >"$log"
  trap 'rm -rf --one-file-system "$tmp"' EXIT
  local t0=$SECONDS
  say "building toolchain-root=$digest in $tmp (log: $log)"
  say "debootstrap --variant=${variant:-minbase} $suite from $mirror"
  if ! debootstrap --variant="${variant:-minbase}" "$suite" "$tmp" "$mirror" >>"$log" 2>&1; then
    tail -20 "$log" >&2
    die "step debootstrap of $suite from $mirror failed; see $log"
  fi
  # The archive is a fixed snapshot: its Release file has expired.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/90ferrule"
  printf 'deb %s %s main\ndeb-src %s %s main\n' "$mirror" "$suite" "$mirror" "$suite" >"$tmp/etc/apt/sources.list"
  mkdir -p "$tmp/.oldroot" "$tmp/etc/ferrule-root"
  local a
  for a in "${archs[@]}"; do chroot "$tmp" dpkg --add-architecture "$a"; done
  say "apt-get update ($(( SECONDS - t0 )) s)"
  in_chroot "$tmp" apt-get update -q >>"$log" 2>&1 || { tail -20 "$log" >&2; die "step apt-get update in the root failed; see $log"; }
  say "installing ${#pkgs[@]} packages ($(( SECONDS - t0 )) s)"
  if ! in_chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
    grep -E '^(E:|  [a-z0-9].*: Depends)' "$log" | tail -20 >&2 || true
    die "step package install failed (packages of $manifest above); see $log"
  fi
  in_chroot "$tmp" apt-get clean >>"$log" 2>&1 || true
  local src dst
  while read -r src dst; do
    [ -f "$tmp$src" ] || die "step copy: $src (a copy line of $manifest) is not a file of the root"
    install -D -m 0755 "$tmp$src" "$tmp$dst"
  done < <(awk '$1 == "copy" { print $2, $3 }' "$manifest")
  awk '$1 == "bazelrc" { sub(/^bazelrc /, ""); print }' "$manifest" >"$tmp/etc/bazel.bazelrc"
  in_chroot "$tmp" dpkg-query -W -f='${Package}:${Architecture} ${Version}\n' >"$tmp/etc/ferrule-root/installed.txt"
  cp "$manifest" "$tmp/etc/ferrule-root/manifest.txt"
  # Written last: only a complete root carries its digest.
  echo "$digest" >"$tmp/etc/ferrule-root/digest"
  rm -rf --one-file-system "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
  say "toolchain-root=$digest built in $(( SECONDS - t0 )) s, $(du -sh --one-file-system "$dir" | cut -f1) ($dir)"
}

# Runs a command chrooted in $1 with /proc and /dev, in a private mount namespace.
in_chroot() {
  local r="$1"; shift
  unshare --mount --propagation private -- bash -c '
    r="$1"; shift
    mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev" && exec chroot "$r" "$@"' _ "$r" "$@"
}

# Runs "$@" inside the root (after the namespace is made: see enter()).
inside() {
  local r="$1" cwd="$2"; shift 2
  mount --rbind "$r" "$r"
  local m
  for m in /proc /dev /sys /tmp; do mount --rbind "$m" "$r$m"; done
  local -a binds=("$repo")
  [ -n "${HOME:-}" ] && [ -d "$HOME" ] && binds+=("$HOME")
  local IFS=:
  for m in ${FERRULE_ROOT_BIND:-}; do [ -n "$m" ] && [ -d "$m" ] && binds+=("$m"); done
  unset IFS
  for m in "${binds[@]}"; do
    m="$(realpath "$m")"
    case "$m" in /|/tmp|/tmp/*|/proc*|/dev*|/sys*) continue ;; esac
    mkdir -p "$r$m"
    mount --rbind "$m" "$r$m"
  done
  cd "$r"
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  cd "$cwd" 2>/dev/null || cd "$repo"
  export PATH="${FERRULE_ROOT_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
  export FERRULE_TOOLCHAIN_ROOT="$digest"
  exec "$@"
}

enter() {
  [ -e "$dir" ] || die "no toolchain root for this manifest (toolchain-root=$digest, expected at $dir): run ./tools/setup.sh"
  check_root "$dir"
  local -a un=(unshare --mount --propagation private)
  [ "$(id -u)" = 0 ] || un=(unshare --user --map-root-user --mount --propagation private)
  exec "${un[@]}" -- bash "$repo/tools/root.sh" --inside "$dir" "$PWD" "$@"
}

case "${1:-}" in
  --build) build ;;
  --digest) echo "toolchain-root=$digest" ;;
  --path) echo "$dir" ;;
  --inside) shift; inside "$@" ;;
  ""|-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' ;;
  -*) die "unknown option $1 (see tools/root.sh --help)" ;;
  *) enter "$@" ;;
esac
