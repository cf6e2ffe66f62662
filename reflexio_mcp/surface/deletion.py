"""delete_interaction, which asks the user before it deletes anything.

The question is a resolver (the SDK's `Resolve`/`Elicit`), so it works on both protocol eras:
a legacy client gets an elicitation request in the middle of the call, a 2026-07-28 client an
`InputRequiredResult` it answers by calling again. A client that cannot ask its user must
pass `confirm=true`, after showing the user what the refusal showed it. `--no-confirm`
(unattended agents) deletes without asking.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
    Resolve,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field, StrictBool

from reflexio_mcp.core.fields import InteractionId
from reflexio_mcp.core.models import Interaction
from reflexio_mcp.surface.arguments import OptionalUserId, reported_to_model
from reflexio_mcp.surface.state import ToolContext, app_state

PREVIEW_CHARS = 300
ASKS_BY_RESULT = "2026-07-28"
"""From this protocol version on, a question is returned from the call (InputRequiredResult)
instead of sent to the client in the middle of it."""

Confirm = Annotated[
    bool,
    Field(description="Only if this client cannot ask the user: true once the user agreed."),
]


class Confirmation(BaseModel):
    """The user's answer to "delete this interaction?"."""

    delete: StrictBool = Field(description="Delete it permanently")
    """Strict: only a JSON true is consent ("yes" or 1 from a confused client is not)."""


class DeleteResult(BaseModel):
    """What delete_interaction did."""

    status: Literal["deleted", "declined", "cancelled", "kept"] = Field(
        description="deleted; or nothing deleted because the user declined, dismissed the "
        "question (cancelled), or answered not to delete (kept)."
    )
    deleted: Interaction | None = Field(description="The interaction removed, if any.")
    message: str


Refusal = tuple[Literal["kept", "declined", "cancelled"], str]


def not_agreed(answer: ElicitationResult[Any], change: str) -> Refusal:
    """The status, and why, of a question about a change that the user did not agree to
    (`change`: "delete it")."""
    match answer:
        case DeclinedElicitation():
            return "declined", "the user declined"
        case CancelledElicitation():
            return "cancelled", "the user dismissed the question"
        case _:
            return "kept", f"the user answered not to {change}"


async def confirm_deletion(
    ctx: ToolContext, interaction_id: int, user_id: str = "", confirm: bool = False
) -> Confirmation | Elicit[Confirmation]:
    """Resolver: the user's consent, asked with what will be deleted, unless the server
    does not confirm deletes."""
    state = app_state(ctx)
    if not state.confirm_deletes:
        return Confirmation(delete=True)
    with reported_to_model():
        target = await state.backend.find_interaction(state.user(user_id), interaction_id)
    if can_ask(ctx):
        return Elicit(f"Delete this interaction permanently?\n\n{_preview(target)}", Confirmation)
    if confirm:
        return Confirmation(delete=True)
    raise ToolError(
        "not deleted: deleting needs the user's consent and this client cannot ask for it. "
        f"Show the user what would be deleted ({_preview(target)}) and, only if they agree, "
        "call delete_interaction again with confirm=true"
    )


async def delete_interaction(
    ctx: ToolContext,
    interaction_id: Annotated[InteractionId, Field(description="From get/search_interactions.")],
    consent: Annotated[ElicitationResult[Confirmation], Resolve(confirm_deletion)],
    user_id: OptionalUserId = "",
    confirm: Confirm = False,
) -> DeleteResult:
    """Delete one stored interaction (one turn) of a user, permanently, once the user agrees.

    Use it when the user asks to forget something; the user is asked first.
    """
    state = app_state(ctx)
    match consent:
        case AcceptedElicitation(data=Confirmation(delete=True)):
            owner = state.user(user_id)
            with reported_to_model():
                deleted = await state.backend.delete_interaction(owner, interaction_id)
            return DeleteResult(
                status="deleted",
                deleted=deleted,
                message=f"deleted interaction {interaction_id} of user {deleted.user_id!r}",
            )
        case _:
            status, why = not_agreed(consent, "delete it")
    return DeleteResult(
        status=status,
        deleted=None,
        message=f"nothing deleted: {why}; interaction {interaction_id} is kept",
    )


def can_ask(ctx: ToolContext) -> bool:
    """Whether the client takes form elicitation here (the SDK's own rule), over a channel
    that can carry the question."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, ASKS_BY_RESULT):
        return True
    return ctx.request_context.session.can_send_request


def _preview(interaction: Interaction) -> str:
    text = interaction.content or interaction.expert_content or interaction.user_action_description
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + "…"
    return (
        f"interaction {interaction.interaction_id} of user {interaction.user_id!r}, "
        f"{interaction.role} at {interaction.time}: {text!r}"
    )
