"""A publish with its secrets replaced by markers, checked again: every way in (the publish
tools, `import`, the capture hook) stores the same redacted turns, or refuses the same way."""

from __future__ import annotations

from pydantic import ValidationError

from reflexio_mcp.core.errors import InvalidInput
from reflexio_mcp.core.invalid_input import invalid_input
from reflexio_mcp.core.models import PublishRequest
from reflexio_mcp.core.turn_secrets import redact_turns


def redacted(request: PublishRequest) -> tuple[PublishRequest, dict[str, int]]:
    """`request` with its secrets replaced, and how many of each kind. Blocks (the scan).

    Raises:
        InvalidInput: the redacted publish breaks a rule, or is too large.
    """
    redaction = redact_turns(request.interaction_data_list)
    if not redaction.counts:
        return request, {}
    changed = request.model_copy(update={"interaction_data_list": redaction.turns})
    fits_once_redacted(changed, redaction.total)
    return changed, redaction.counts


def fits_once_redacted(request: PublishRequest, secrets: int) -> None:
    """Markers can be longer than the secrets they replace, and can break a rule (a URL's
    password as [REDACTED:url-password] is no URL to Reflexio): say so if that is what made
    the publish one the backend would refuse.

    Raises:
        InvalidInput: the redacted publish breaks a rule, or is too large.
    """
    once = f"(once its {secrets} secret(s) were replaced by [REDACTED:...] markers)"
    try:
        PublishRequest.model_validate(request.model_dump())
        request.checked_body()
    except ValidationError as err:
        problems = invalid_input(err, {"interaction_data_list": "interactions"}).problems
        raise InvalidInput([f"{problem} {once}" for problem in problems]) from None
    except InvalidInput as err:
        raise InvalidInput([f"{err} {once}"]) from None
