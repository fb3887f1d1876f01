#!/usr/bin/env bash
# CI: install burst-agent as a site would (docs/slurm.md): a venv under /opt on the system Python
# (readable by every user, unlike a root-only Python), and the unprivileged service user.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/opt/burst-agent

id burst-agent >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/burst-agent \
  --shell /usr/sbin/nologin burst-agent
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x "$prefix/venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$prefix/venv"
fi
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$repo"
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check "$repo"
chmod -R go+rX "$prefix"
echo "agent-install: $("$prefix/venv/bin/burst-agent" --version) in $prefix/venv; service user burst-agent"
