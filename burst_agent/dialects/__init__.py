"""Scheduler dialects: Slurm and PBS directive tables and the shared prologue scanner."""

from burst_agent.dialects.script import parse_script

__all__ = ["parse_script"]
