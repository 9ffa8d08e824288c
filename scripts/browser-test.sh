#!/usr/bin/env bash
# Runs the viewer's browser test (logxview/browser_test.go): headless
# Chromium, driven through ChromeDriver, against a real 3-node cluster on
# 127.0.0.1. Installs Debian's chromium and chromium-driver if they are
# missing (needs root, or sudo).
#
#   scripts/browser-test.sh                 # screenshots in a temporary directory, kept
#   SHOTS=docs scripts/browser-test.sh      # and viewer.png copied to docs/ (the README's)
#
# Extra arguments go to go test (e.g. -count=3).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  echo "== installing Debian's chromium and chromium-driver"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
tmp=$(mktemp -d)
go test -count=1 -run '^TestBrowser' -v "$@" ./logxview -args -browser -browser.shots "$tmp"
echo "screenshots: $tmp"
if [ -n "${SHOTS:-}" ]; then
  cp "$tmp/viewer.png" "$SHOTS/viewer.png"
  echo "copied viewer.png to $SHOTS"
fi
