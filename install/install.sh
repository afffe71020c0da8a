#!/usr/bin/env bash
# Installs gwsteer on a node: the binary into the CNI bin dir, and optionally a
# conflist, or gwsteer chained after the node's existing primary CNI.
#
# usage: install.sh [--bin FILE] [--conflist FILE] [--patch CONF|auto]
#                   [--plugin FILE] [--uninstall]
#
#   --bin FILE       the gwsteer binary to install (default: gwsteer beside
#                    this script, else target/release/gwsteer of the checkout)
#   --conflist FILE  also write FILE (a complete conflist) into the conf dir
#   --patch CONF     chain gwsteer after the primary in CONF (a file name in
#                    the conf dir, or a path in it; `auto`: the file the
#                    runtime uses, the first *.conf/*.conflist/*.json by name).
#                    A .conflist gets the plugin appended to `plugins` (or its
#                    gwsteer entry replaced, so reruns are idempotent); a
#                    single-plugin .conf/.json becomes CONF-base.conflist with
#                    the old plugin first and gwsteer second.
#   --plugin FILE    the gwsteer plugin object to chain (JSON; default
#                    {"type": "gwsteer"})
#   --uninstall      remove the binary, the conflists --conflist wrote, and
#                    undo every --patch: the original file comes back as it
#                    was if nobody changed the patched one since, else only
#                    the gwsteer entry is taken out of it
#
# Environment: CNI_BIN_DIR (default /opt/cni/bin), CNI_CONF_DIR (default
# /etc/cni/net.d). Every file is written as a temp file in its target
# directory and renamed over the target (mv -f), so kubelet and the runtime
# never see a half-written binary or conflist. JSON is edited with jq.
# What was changed is recorded in $CNI_CONF_DIR/.gwsteer-install/ (a hidden
# directory, which runtimes do not read) for --uninstall.
set -euo pipefail

BIN_DIR="${CNI_BIN_DIR:-/opt/cni/bin}"
CONF_DIR="${CNI_CONF_DIR:-/etc/cni/net.d}"
STATE="$CONF_DIR/.gwsteer-install"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "install.sh: $*" >&2
  exit 1
}
say() { echo "install.sh: $*"; }

BIN=""
CONFLIST=""
PATCH=""
PLUGIN=""
UNINSTALL=0
while (($#)); do
  case "$1" in
    --bin) BIN="${2:?--bin needs a file}"; shift 2 ;;
    --conflist) CONFLIST="${2:?--conflist needs a file}"; shift 2 ;;
    --patch) PATCH="${2:?--patch needs a conf file name or auto}"; shift 2 ;;
    --plugin) PLUGIN="${2:?--plugin needs a file}"; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
command -v jq >/dev/null || die "jq is needed to edit conflists"

# Writes stdin to "$1" atomically: a temp file in the same directory (same
# filesystem, so the rename is atomic), then mv -f over the target.
atomic_write() {
  local target="$1" mode="${2:-0644}" tmp
  tmp="$(mktemp "$(dirname -- "$target")/.gwsteer-tmp.XXXXXX")"
  if cat >"$tmp" && chmod "$mode" "$tmp"; then
    sync -- "$tmp" 2>/dev/null || true
    mv -f -- "$tmp" "$target"
  else
    rm -f -- "$tmp"
    die "writing $target failed"
  fi
}

sha() { sha256sum -- "$1" | cut -d' ' -f1; }

# The conf file the runtime uses: the first by name (libcni's order).
first_conf() {
  local f
  for f in "$CONF_DIR"/*; do
    case "$f" in
      *.conf | *.conflist | *.json) [ -f "$f" ] && { basename -- "$f"; return 0; } ;;
    esac
  done
  return 1
}

install_binary() {
  local src="$BIN"
  if [ -z "$src" ]; then
    if [ -f "$HERE/gwsteer" ]; then src="$HERE/gwsteer"; else src="$HERE/../target/release/gwsteer"; fi
  fi
  [ -f "$src" ] || die "no gwsteer binary at $src (cargo build --release, or --bin FILE)"
  mkdir -p -- "$BIN_DIR"
  atomic_write "$BIN_DIR/gwsteer" 0755 <"$src"
  say "installed $BIN_DIR/gwsteer"
}

install_conflist() {
  local name
  name="$(basename -- "$CONFLIST")"
  jq -e '.plugins | type == "array"' "$CONFLIST" >/dev/null 2>&1 ||
    die "$CONFLIST: not a conflist (JSON with a plugins list)"
  mkdir -p -- "$CONF_DIR" "$STATE"
  if [ -e "$CONF_DIR/$name" ] && ! grep -qxF -- "$name" "$STATE/added" 2>/dev/null; then
    die "$CONF_DIR/$name exists and is not gwsteer's; use --patch to chain into it"
  fi
  atomic_write "$CONF_DIR/$name" <"$CONFLIST"
  grep -qxF -- "$name" "$STATE/added" 2>/dev/null || printf '%s\n' "$name" >>"$STATE/added"
  say "wrote $CONF_DIR/$name"
}

# The plugin object to chain, checked.
plugin_json() {
  if [ -n "$PLUGIN" ]; then
    jq -ce 'if type == "object" and .type == "gwsteer" then . else error("not a gwsteer plugin object") end' \
      "$PLUGIN" || die "$PLUGIN: must be a JSON object with \"type\": \"gwsteer\""
  else
    echo '{"type":"gwsteer"}'
  fi
}

patch_conf() {
  local target="$PATCH" name base out rec plugin src
  mkdir -p -- "$CONF_DIR"
  if [ "$target" = auto ]; then
    target="$(first_conf)" || die "no conf file in $CONF_DIR to chain gwsteer into"
  fi
  name="$(basename -- "$target")"
  # A file an earlier --patch produced (X.conflist from X.conf) stands for
  # the original it came from, so the record stays the first one.
  for rec in "$STATE"/patch-*; do
    if [ -f "$rec/wrote" ] && [ "$(cat -- "$rec/wrote")" = "$name" ]; then
      name="${rec##*/patch-}"
      break
    fi
  done
  case "$name" in
    *.conflist) base="${name%.conflist}"; out="$name" ;;
    *.conf) base="${name%.conf}"; out="$base.conflist" ;;
    *.json) base="${name%.json}"; out="$base.conflist" ;;
    *) die "$name: not a .conf, .conflist or .json file" ;;
  esac
  rec="$STATE/patch-$name"
  plugin="$(plugin_json)"
  if [ -f "$CONF_DIR/$name" ]; then
    src="$CONF_DIR/$name"
  elif [ -d "$rec" ] && [ -f "$CONF_DIR/$out" ]; then
    src="$CONF_DIR/$out" # patched before: re-patch what we produced
  else
    die "$CONF_DIR/$name does not exist"
  fi
  jq -e 'type == "object"' "$src" >/dev/null 2>&1 || die "$src: not valid JSON"
  if [ ! -d "$rec" ]; then
    mkdir -p -- "$rec"
    cp -p -- "$CONF_DIR/$name" "$rec/orig"
    printf '%s\n' "$out" >"$rec/wrote"
  fi
  # A conflist: replace an existing gwsteer entry in place, else append.
  # A single plugin: a conflist with it first (its name and cniVersion
  # lifted to the list) and gwsteer second.
  jq --argjson gws "$plugin" '
    if has("plugins") then
      if any(.plugins[]; .type == "gwsteer")
      then .plugins |= map(if .type == "gwsteer" then $gws else . end)
      else .plugins += [$gws] end
    else
      {cniVersion: .cniVersion, name: .name,
       plugins: [del(.cniVersion, .name), $gws]}
    end' "$src" | atomic_write "$CONF_DIR/$out"
  jq -e '.plugins | length >= 2' "$CONF_DIR/$out" >/dev/null || die "patching $out went wrong"
  if [ "$out" != "$name" ] && [ -f "$CONF_DIR/$name" ]; then
    # The .conf would sort before the .conflist and win: it goes (kept in $rec).
    rm -f -- "$CONF_DIR/$name"
  fi
  sha "$CONF_DIR/$out" >"$rec/sha"
  say "chained gwsteer into $CONF_DIR/$out"
}

uninstall() {
  rm -f -- "$BIN_DIR/gwsteer"
  say "removed $BIN_DIR/gwsteer"
  [ -d "$STATE" ] || return 0
  local rec name out
  for rec in "$STATE"/patch-*; do
    [ -d "$rec" ] || continue
    name="${rec##*/patch-}"
    out="$(cat -- "$rec/wrote")"
    if [ -f "$CONF_DIR/$out" ] && [ "$(sha "$CONF_DIR/$out")" = "$(cat -- "$rec/sha")" ]; then
      # Untouched since: the original comes back byte for byte.
      [ "$out" = "$name" ] || rm -f -- "$CONF_DIR/$out"
      atomic_write "$CONF_DIR/$name" "$(stat -c %a -- "$rec/orig")" <"$rec/orig"
      say "restored $CONF_DIR/$name"
    elif [ -f "$CONF_DIR/$out" ]; then
      # Rewritten by someone else (the primary's agent): take out only ours.
      jq '.plugins |= map(select(.type != "gwsteer"))' "$CONF_DIR/$out" |
        atomic_write "$CONF_DIR/$out"
      say "removed the gwsteer entry from $CONF_DIR/$out"
    fi
    rm -rf -- "$rec"
  done
  if [ -f "$STATE/added" ]; then
    while IFS= read -r name; do
      [ -n "$name" ] && rm -f -- "$CONF_DIR/$name" && say "removed $CONF_DIR/$name"
    done <"$STATE/added"
    rm -f -- "$STATE/added"
  fi
  rmdir -- "$STATE" 2>/dev/null || true
}

if ((UNINSTALL)); then
  uninstall
  exit 0
fi
install_binary
[ -z "$CONFLIST" ] || install_conflist
[ -z "$PATCH" ] || patch_conf
