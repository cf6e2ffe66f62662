"""reflexio-mcp: an MCP server for the interactions an agent keeps in Reflexio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reflexio-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
