"""What the tools share: argument types declared once, and failures told to the model."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Annotated

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field, ValidationError

from reflexio_mcp.core.errors import InvalidInput, ReflexioMcpError
from reflexio_mcp.core.fields import Timestamp, UserIdOrDefault
from reflexio_mcp.core.invalid_input import invalid_input_text

OptionalUserId = Annotated[
    UserIdOrDefault,
    Field(description='Whose interactions; omit (or "") for the server\'s default user.'),
]
StartTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or after this ISO 8601 time (no offset = UTC)."),
]
EndTime = Annotated[
    Timestamp | None,
    Field(description="Only interactions at or before this ISO 8601 time (no offset = UTC)."),
]
Cursor = Annotated[
    str,
    Field(
        max_length=100_000,
        description="next_cursor from a truncated result, to get the rest of that listing "
        "(the other arguments are taken from it).",
    ),
]


@contextmanager
def reported_to_model() -> Generator[None]:
    """Turn anticipated failures into ToolError, whose text the model sees and can act on."""
    try:
        yield
    except ValidationError as err:
        raise ToolError(invalid_input_text(err)) from err
    except InvalidInput as err:
        raise ToolError(invalid_input_text(err)) from err
    except ReflexioMcpError as err:
        raise ToolError(str(err)) from err
