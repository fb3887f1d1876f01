"""Subcommands of `burst-agent`, one module each (see burst_agent/cli.py)."""
