#!/usr/bin/env bash
# CI: install burst-agent as a site would by docs/slurm.md "Set up by hand (no systemd)": the venv from
# this checkout (step 1's pip install), then the doc's own `sh` blocks, verbatim and in order, between
# the BEGIN/END lines (tests/ops/test_setup_docs.py keeps them identical to the doc). It does not start
# the agent or paste a key: the Slurm tests start their own agent with their own token and temp dirs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix=/opt/burst-agent

# Step 1, from the checkout instead of PyPI.
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x "$prefix/venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$prefix/venv"
fi
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$repo"
"$prefix/venv/bin/pip" install --quiet --disable-pip-version-check "$repo"

# BEGIN docs/slurm.md "Set up by hand (no systemd)"
chmod -R go+rX /opt/burst-agent
# ---
id burst-agent >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/burst-agent \
  --shell /usr/sbin/nologin burst-agent
# ---
install -d -o root -g root -m 0755 /etc/burst-agent
test -e /etc/burst-agent/token || install -o burst-agent -g burst-agent -m 0600 /dev/null /etc/burst-agent/token
test -e /etc/burst-agent/config.yaml || cat >/etc/burst-agent/config.yaml <<'EOF'
# burst-agent, set up by hand (docs/slurm.md); every key: config/burst-agent.example.yaml
api:
  platform: us
  token_file: /etc/burst-agent/token
agent:
  spool_dir: /var/spool/burst-agent
  state_db: /var/lib/burst-agent/state.db
translate:
  gpu_coretypes: {}    # GPU coretype code -> GPUs per core, e.g. {gpu-ampere: 0.125}
EOF
chmod 0644 /etc/burst-agent/config.yaml
# ---
install -d -o burst-agent -g burst-agent -m 0750 /var/lib/burst-agent
install -d -o burst-agent -g burst-agent -m 0755 /var/spool/burst-agent
install -d -o burst-agent -g burst-agent -m 0750 /var/log/burst-agent
# END docs/slurm.md

echo "agent-install: $("$prefix/venv/bin/burst-agent" --version) in $prefix/venv; service user burst-agent"
