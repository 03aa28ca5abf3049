# Sourced by set-up scripts: apt_mirror prints the URI of the Debian archive
# this machine's own apt sources use for bookworm's main packages (deb822
# .sources files first, then sources.list), or nothing.
apt_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in */ferrule-*) continue ;; esac
    # The URIs of the first stanza whose Suites include plain "bookworm".
    uri="$(awk '
      /^$/ { if (suite && uris) { print uris; exit } suite = 0; uris = "" }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
      END { if (suite && uris) print uris }' "$f" | head -1)"
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)"
  fi
  printf '%s\n' "$uri"
}
