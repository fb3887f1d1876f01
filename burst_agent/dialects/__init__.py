"""Scheduler dialects: Slurm and PBS directive tables and the shared prologue scanner."""
