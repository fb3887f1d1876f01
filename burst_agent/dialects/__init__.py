"""Scheduler dialects: one Dialect record per scheduler, the directive tables and the prologue scanner."""

from burst_agent.dialects.record import Dialect
from burst_agent.dialects.registry import DIALECTS, dialect, dialect_of_env
from burst_agent.dialects.script import parse_script

__all__ = ["DIALECTS", "Dialect", "dialect", "dialect_of_env", "parse_script"]
