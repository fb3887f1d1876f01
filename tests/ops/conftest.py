"""Fixtures for the ops tests (they live in opstools.py, importable by the test modules too)."""

from opstools import run_tool

__all__ = ["run_tool"]
