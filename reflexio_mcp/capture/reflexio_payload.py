"""The files Reflexio's own CLI publishes (`reflexio interactions publish --file`): one JSON
object, a JSON array of them, or JSON Lines, each object
`{"user_id", "session_id", "source", "agent_version", "interactions": [turn, ...]}`.

Each object is one exchange. Its request_id is derived from its user, session and turns, so
the same object in two files, or one file read twice, is stored once. An object without
`session_id` (which Reflexio's CLI refuses) takes `import:<file name>`; one without `user_id`
is the settings' user's. Fields Reflexio's CLI reads beyond these (skip_aggregation and the
like) are not carried: every import is published as a plain publish.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from reflexio_mcp.capture.conversation import Exchange, Skipped, derived_id
from reflexio_mcp.capture.json_lines import json_lines
from reflexio_mcp.core.fields import Identifier, Source, UserIdOrDefault
from reflexio_mcp.core.invalid_input import invalid_input
from reflexio_mcp.core.limits import MAX_INTERACTIONS_PER_PUBLISH
from reflexio_mcp.core.models import InteractionData

MAX_DOCUMENT_BYTES = 64 * 2**20
"""A file that is one JSON document (not JSON Lines) is parsed whole up to this size; a larger
one is read as JSON Lines."""


def _or_empty(value: object) -> object:
    return "" if value is None else value


class _Payload(BaseModel):
    """The fields of a payload this reads; others Reflexio's CLI knows are let be."""

    model_config = ConfigDict(extra="ignore")

    user_id: Annotated[UserIdOrDefault, BeforeValidator(_or_empty)] = ""
    session_id: Identifier
    source: Annotated[Source, BeforeValidator(_or_empty)] = ""
    interactions: list[InteractionData]


def looks_like_payload(entry: dict[str, Any]) -> bool:
    return isinstance(entry.get("interactions"), list)


def read_payloads(path: Path) -> Iterator[Exchange | Skipped]:
    """Every object of one file, in order; what cannot be read is skipped and said why.

    As Reflexio's CLI reads them: one JSON document if the file is one, else JSON Lines. A
    file whose first line is JSON is JSON Lines (a one-line document reads the same either
    way); a document is parsed whole only up to MAX_DOCUMENT_BYTES."""
    first = next(json_lines(path), None)
    if first is None:
        return
    if first.problem is not None and path.stat().st_size <= MAX_DOCUMENT_BYTES:
        try:
            document = json.loads(path.read_bytes())
        except (ValueError, RecursionError):
            pass  # not one document: JSON Lines with a damaged first line
        else:
            yield from _objects(path, document, str(path))
            return
    yield from _lines(path)


def _lines(path: Path) -> Iterator[Exchange | Skipped]:
    for line in json_lines(path):
        if line.problem is not None:
            yield Skipped(line.where, line.problem)
        else:
            yield from _objects(path, line.value, line.where)


def _objects(path: Path, value: object, where: str) -> Iterator[Exchange | Skipped]:
    if isinstance(value, list):
        for index, item in enumerate(cast(list[Any], value)):
            yield _exchange(path, item, f"{where}[{index}]")
    else:
        yield _exchange(path, value, where)


def _exchange(path: Path, value: object, where: str) -> Exchange | Skipped:
    if not isinstance(value, dict) or not looks_like_payload(cast(dict[str, Any], value)):
        return Skipped(where, 'not a payload: an object with an "interactions" list is expected')
    payload = cast(dict[str, Any], value)
    raw_turns = cast(list[Any], payload["interactions"])
    if not raw_turns:
        return Skipped(where, "interactions: empty; a payload needs at least one turn")
    if len(raw_turns) > MAX_INTERACTIONS_PER_PUBLISH:
        return Skipped(
            where,
            f"interactions: {len(raw_turns)} turns; at most {MAX_INTERACTIONS_PER_PUBLISH} per "
            "payload, split it into several objects",
        )
    try:
        read = _Payload.model_validate(
            {**payload, "session_id": payload.get("session_id") or f"import:{path.name}"[:256]}
        )
    except ValidationError as err:
        return Skipped(where, str(invalid_input(err)))
    turns, user, session, source = (
        read.interactions,
        read.user_id or None,
        read.session_id,
        read.source,
    )
    version = payload.get("agent_version")
    canonical = json.dumps(raw_turns, sort_keys=True, ensure_ascii=False, default=str)
    return Exchange(
        request_id=derived_id("reflexio-cli", user or "", session, canonical),
        session_id=session,
        turns=turns,
        source=source,
        agent_version=version[:1000] if isinstance(version, str) else "",
        user_id=user,
    )
