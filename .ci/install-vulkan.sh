#!/usr/bin/env bash
# Install Mesa's lavapipe (software Vulkan) from bookworm-backports so LiteRT's GPU accelerator
# (WebGPU/Dawn on Vulkan) can run on CPU-only CI machines. bookworm's own Mesa 22.3 is rejected
# by Dawn; backports' 25.x is accepted. The mirror is taken from the main suite's existing apt
# configuration: no host name is written here.
set -euo pipefail

SOURCES=/etc/apt/sources.list.d/debian.sources
TARGET=/etc/apt/sources.list.d/edgeq-backports.sources
ICD=/usr/share/vulkan/icd.d/lvp_icd.json
SUITE=bookworm-backports
APT_ETC=${APT_ETC:-/etc/apt}  # tests point this at a fake apt configuration

# Is an apt source for suite $1 configured anywhere (one-line .list files or deb822 .sources)?
suite_configured() {
  local suite=$1 f
  for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...   (options may hold spaces inside the brackets)
    if awk -v s="$suite" '$1 == "deb" { i = 2
           if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
           if ($(i + 1) == s) found = 1 } END { exit !found }' "$f"; then
      return 0
    fi
  done
  for f in "$APT_ETC"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    if grep -Eiq "^Suites:(.*[[:space:]])?$suite([[:space:]]|\$)" "$f"; then return 0; fi
  done
  return 1
}

if [ "${1:-}" = "--check-suite" ]; then  # exit 0 when suite $2 is configured (for the tests)
  suite_configured "$2"
  exit
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-vulkan.sh: must run as root (apt-get install)" >&2
  exit 1
fi

if suite_configured "$SUITE"; then
  echo "apt: $SUITE is already configured; no source added"
else
  uri=""
  if [ -f "$SOURCES" ]; then
    # The URIs line of the stanza whose Suites include plain "bookworm".
    uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ {
                 for (i = 1; i <= NF; i++) if ($i == "URIs:") { print $(i+1); exit } }' "$SOURCES")
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "install-vulkan.sh: no apt source for the bookworm suite found in $SOURCES or /etc/apt/sources.list" >&2
    exit 1
  fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat > "$TARGET" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: $keyring
SRC
  echo "added bookworm-backports from $uri"
fi

export DEBIAN_FRONTEND=noninteractive
echo "apt: updating package lists"
apt-get update
echo "apt: installing mesa-vulkan-drivers and libvulkan1 from $SUITE"
apt-get install -y -t "$SUITE" mesa-vulkan-drivers libvulkan1

if [ ! -f "$ICD" ]; then
  echo "install-vulkan.sh: $ICD missing after install" >&2
  exit 1
fi
echo "lavapipe installed: $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers); use VK_ICD_FILENAMES=$ICD"
