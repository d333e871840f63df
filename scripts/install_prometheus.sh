#!/usr/bin/env bash
# Install Debian's Prometheus (prometheus + promtool) and Alertmanager (amtool) when missing;
# with --browser also Debian's chromium (the tests check rendered pages in a headless browser).
# Idempotent and quiet: prints one line when it installs something, nothing otherwise.
# Needs root on Debian 12 (no sudo). The packages' systemd units are kept from starting
# during the install, so nothing starts listening on :9090 or :9093 behind the caller's back.
set -euo pipefail

missing=()
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install_prometheus.sh: need root to apt-get install ${missing[*]}" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
  >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
echo "install_prometheus.sh: installed ${missing[*]}" >&2
