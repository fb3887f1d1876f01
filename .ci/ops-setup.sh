#!/usr/bin/env bash
# Install the tools the ops tests (tests/ops) need, from Debian packages, only where missing:
#   promtool (package prometheus), systemd-analyze (systemd), ansible-playbook (ansible-core), ansible-lint.
# Package scripts are kept from starting services (policy-rc.d): installing `prometheus` must not
# leave a Prometheus server running on the CI machine.
set -euo pipefail

declare -A need=(
  [promtool]=prometheus
  [systemd-analyze]=systemd
  [ansible-playbook]=ansible-core
  [ansible-lint]=ansible-lint
)
missing=()
for tool in "${!need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "ops-setup: promtool, systemd-analyze, ansible-playbook and ansible-lint already present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ops-setup: need root to install: ${missing[*]}" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
  saved=$(mktemp)
  cp -p "$policy" "$saved"
fi
restore_policy() {
  if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 0755 "$policy"

echo "ops-setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

for tool in "${!need[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "ops-setup: $tool still missing after installing ${need[$tool]}" >&2
    exit 1
  fi
done
echo "ops-setup: $(promtool --version 2>&1 | head -n1)"
echo "ops-setup: $(systemd-analyze --version | head -n1)"
echo "ops-setup: $(ansible-playbook --version | head -n1)"
