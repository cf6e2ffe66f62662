"""reflexio-mcp: an MCP server for the interactions an agent keeps in Reflexio."""

__version__ = "0.1.0"
"""The one place the version is written: the build reads it from here (pyproject.toml), and
start-up does not pay for importlib.metadata."""

__all__ = ["__version__"]
