#!/usr/bin/env bash
# Install Mesa's lavapipe (software Vulkan) from bookworm-backports so LiteRT's GPU accelerator
# (WebGPU/Dawn on Vulkan) can run on CPU-only CI machines. bookworm's own Mesa 22.3 is rejected
# by Dawn; backports' 25.x is accepted. The mirror is taken from the main suite's existing apt
# configuration: no host name is written here.
set -euo pipefail

SOURCES=/etc/apt/sources.list.d/debian.sources
TARGET=/etc/apt/sources.list.d/edgeq-backports.sources
ICD=/usr/share/vulkan/icd.d/lvp_icd.json

if [ "$(id -u)" != 0 ]; then
  echo "install-vulkan.sh: must run as root (apt-get install)" >&2
  exit 1
fi

if [ ! -f "$TARGET" ]; then
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
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null

if [ ! -f "$ICD" ]; then
  echo "install-vulkan.sh: $ICD missing after install" >&2
  exit 1
fi
echo "lavapipe installed: $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers); use VK_ICD_FILENAMES=$ICD"
