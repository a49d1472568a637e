#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks use as real peers:
# Chromium (Playwright drives it), net-snmp's snmpd and tools, OpenSSH (the reverse-tunnel
# reference path), wrk (load generator) and nats-server (routing between portal
# replicas). Skips what is already there.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v snmpd >/dev/null 2>&1 || need+=(snmpd)
command -v snmpget >/dev/null 2>&1 || need+=(snmp)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
{ command -v nats-server || [ -x /usr/sbin/nats-server ]; } >/dev/null 2>&1 || need+=(nats-server)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
echo "installing Debian packages: ${need[*]}"
for attempt in 1 2 3 4 5 6; do
  if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt; another apt may hold the lock); retrying in 10 s" >&2
  sleep 10
done
exit 1
