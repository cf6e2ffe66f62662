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
    Field(description="Omit for the default user."),
]
StartTime = Annotated[
    Timestamp | None,
    Field(description="Only turns at or after it."),
]
EndTime = Annotated[
    Timestamp | None,
    Field(description="Only turns at or before it."),
]
Cursor = Annotated[
    str,
    Field(
        max_length=100_000,
        description="next_cursor, to continue a truncated result.",
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
