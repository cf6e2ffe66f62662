"""What one caller may do: the user it acts for and its role, and how a verified access token
carries them from the HTTP layer to the MCP surface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["read", "write", "admin"]
RANKS: dict[Role, int] = {"read": 0, "write": 1, "admin": 2}


@dataclass(frozen=True)
class Grant:
    """What one caller may do: act for `user_id` (None: any user) with `role`."""

    user_id: str | None
    role: Role

    def allows(self, needed: Role) -> bool:
        return RANKS[self.role] >= RANKS[needed]

    def claims(self) -> dict[str, Any]:
        """The grant as an access token's claims (never the token itself)."""
        return {"role": self.role, "user_id": self.user_id}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any] | None) -> Grant:
        """The grant `claims()` wrote; anything else reads as the least: role read."""
        claims = claims or {}
        role = claims.get("role")
        user_id = claims.get("user_id")
        return cls(
            user_id if isinstance(user_id, str) else None,
            role if role in ("write", "admin") else "read",
        )
