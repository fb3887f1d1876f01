"""burst-agent: burst ordinary Slurm and PBS batch jobs to the Rescale cloud platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("burst-agent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
