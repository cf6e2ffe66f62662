"""What Reflexio learns reaches the agent: search_learnings, delete_learning, the learnings
resources and the what_you_know_about_me prompt, against the real Reflexio (offline, with
MOCK_LLM_RESPONSE: a publish with force_extraction learns a canned profile, "User mentioned:
<the last turn>", and a canned user playbook quoting it). On the embedded store, each says it
needs REFLEXIO_URL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequestParams, ElicitResult
from mcp_types import PromptReference, ResourceTemplateReference, TextContent, TextResourceContents

from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings
from tests.support.reflexio_server import RunningServer
from tests.support.resource_updates import heard
from tests.support.tool_calls import call, error, text


class User:
    """Answers every consent question as told, and remembers what it was shown."""

    def __init__(self, action: Literal["accept", "decline", "cancel"] = "accept") -> None:
        self.action: Literal["accept", "decline", "cancel"] = action
        self.questions: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        self.questions.append(params.message)
        if self.action != "accept":
            return ElicitResult(action=self.action)
        return ElicitResult(action="accept", content={"agree": True})


@pytest.fixture
def settings(reflexio: RunningServer, tmp_path: Path) -> Settings:
    return Settings(url=reflexio.url, data_dir=tmp_path)


@pytest.fixture
def user() -> User:
    return User()


@pytest.fixture
async def mcp(settings: Settings, user: User) -> AsyncGenerator[Client]:
    async with Client(build_server(settings), elicitation_callback=user) as client:
        yield client


def word() -> str:
    """A word no other test's learnings hold."""
    return f"quince{uuid.uuid4().hex[:10]}"


async def learn(client: Client, user_id: str, said: str) -> dict[str, Any]:
    """Publish one exchange whose last turn is `said`, waiting for Reflexio to learn from it."""
    return await call(
        client,
        "publish_interaction",
        {
            "user_id": user_id,
            "user_message": "Remember this about me",
            "agent_response": said,
            "wait_for_response": True,
            "force_extraction": True,
        },
    )


async def read(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    assert "\n" not in content.text  # compact
    return json.loads(content.text)


async def test_a_publish_learns_and_search_learnings_finds_it_by_a_word(
    mcp: Client, user_id: str
) -> None:
    marker = word()
    published = await learn(mcp, user_id, f"I grow {marker} in my garden")
    assert published["status"] == "stored"
    assert "learned 1 profile(s), 1 playbook(s)" in published["learning"]
    status = await call(
        mcp, "get_publish_status", {"user_id": user_id, "request_id": published["request_id"]}
    )
    assert status["status"] == "delivered"
    assert status["learning"].startswith("done")
    assert "learned 1 profile(s), 1 playbook(s)" in status["learning"]

    result = await mcp.call_tool("search_learnings", {"user_id": user_id, "query": marker})
    assert not result.is_error, text(result)
    found = result.structured_content
    assert found is not None
    kinds = {hit["kind"]: hit for hit in found["learnings"]}
    assert set(kinds) == {"profile", "user_playbook"}
    profile = kinds["profile"]
    assert profile["content"] == f"User mentioned: I grow {marker} in my garden"
    assert profile["user_id"] == user_id
    assert profile["request_id"] == published["request_id"]
    assert profile["interaction_ids"]
    assert profile["learned_at"].endswith("Z")
    assert marker in kinds["user_playbook"]["content"]
    assert kinds["user_playbook"]["request_id"] == published["request_id"]
    assert found["search_mode"] == "fts"  # offline, Reflexio has no embeddings
    assert "searched with fts, not hybrid" in found["note"]
    # The text a model reads is compact: no indentation, no empty fields.
    answer = text(result)
    assert answer.startswith('{"user_id":')
    assert "\n" not in answer
    assert "null" not in answer
    assert '""' not in answer
    assert "[]" not in answer
    assert json.loads(answer)["learnings"][0]["content"]

    only = await call(
        mcp, "search_learnings", {"user_id": user_id, "query": marker, "kinds": ["profile"]}
    )
    assert [hit["kind"] for hit in only["learnings"]] == ["profile"]
    nothing = await call(mcp, "search_learnings", {"user_id": user_id, "query": word()})
    assert nothing["count"] == 0


async def test_the_current_learnings_as_a_tool_resources_and_a_prompt(
    mcp: Client, user_id: str
) -> None:
    marker = word()
    await learn(mcp, user_id, f"My cat is called {marker}")
    listed = await call(mcp, "search_learnings", {"user_id": user_id})
    assert {hit["kind"] for hit in listed["learnings"]} >= {"profile", "user_playbook"}
    assert any(marker in hit["content"] for hit in listed["learnings"])

    profile = await read(mcp, f"reflexio://users/{user_id}/profile")
    assert profile["user_id"] == user_id
    assert profile["count"] == 1
    assert profile["learnings"][0]["content"] == f"User mentioned: My cat is called {marker}"
    playbooks = await read(mcp, f"reflexio://users/{user_id}/playbooks")
    assert playbooks["count"] == 1
    assert marker in playbooks["learnings"][0]["content"]
    agent = await read(mcp, "reflexio://playbooks/agent")
    assert "user_id" not in agent
    assert isinstance(agent["learnings"], list)

    templates = {t.uri_template for t in (await mcp.list_resource_templates()).resource_templates}
    assert {
        "reflexio://users/{user_id}/profile",
        "reflexio://users/{user_id}/playbooks",
    } <= templates
    completed = await mcp.complete(
        ResourceTemplateReference(type="ref/resource", uri="reflexio://users/{user_id}/profile"),
        {"name": "user_id", "value": user_id[:8]},
    )
    assert user_id in completed.completion.values

    prompt = await mcp.get_prompt(
        "what_you_know_about_me", {"user_id": user_id, "topic": marker, "budget_chars": "600"}
    )
    message = prompt.messages[0].content
    assert isinstance(message, TextContent)
    assert f"User mentioned: My cat is called {marker}" in message.text
    assert "[user_playbook:" in message.text
    assert len(message.text) < 600 + 600  # the budget bounds the learnings, not the framing
    completed = await mcp.complete(
        PromptReference(type="ref/prompt", name="what_you_know_about_me"),
        {"name": "user_id", "value": user_id[:8]},
    )
    assert user_id in completed.completion.values


async def test_delete_learning_asks_then_deletes_and_it_is_gone(
    mcp: Client, user: User, user_id: str
) -> None:
    marker = word()
    await learn(mcp, user_id, f"I hate {marker}")
    found = await call(mcp, "search_learnings", {"user_id": user_id, "query": marker})
    ids = {hit["kind"]: hit["id"] for hit in found["learnings"]}

    user.action = "decline"
    kept = await call(
        mcp,
        "delete_learning",
        {"user_id": user_id, "learning_id": ids["profile"]},
    )
    assert kept["status"] == "declined"
    assert f"User mentioned: I hate {marker}" in user.questions[-1]

    user.action = "accept"
    for kind in ("profile", "user_playbook"):
        deleted = await call(mcp, "delete_learning", {"user_id": user_id, "learning_id": ids[kind]})
        assert deleted["status"] == "deleted"
        assert deleted["learning"]["id"] == ids[kind]
    gone = await call(mcp, "search_learnings", {"user_id": user_id, "query": marker})
    assert gone["count"] == 0
    assert (await read(mcp, f"reflexio://users/{user_id}/profile"))["count"] == 0

    again = await error(
        mcp,
        "delete_learning",
        {"user_id": user_id, "learning_id": ids["profile"]},
    )
    assert f"no profile {ids['profile']!r} of user {user_id!r}: nothing was changed" in again


async def test_delete_learning_corrects_a_wrong_one(mcp: Client, user_id: str) -> None:
    marker = word()
    await learn(mcp, user_id, f"I live in {marker}")
    found = await call(
        mcp, "search_learnings", {"user_id": user_id, "query": marker, "kinds": ["profile"]}
    )
    profile = found["learnings"][0]
    fixed = word()
    corrected = await call(
        mcp,
        "delete_learning",
        {
            "user_id": user_id,
            "learning_id": profile["id"],
            "correction": f"Lives in {fixed}",
        },
    )
    assert corrected["status"] == "corrected"
    assert corrected["learning"]["content"] == f"Lives in {fixed}"
    now = await call(mcp, "search_learnings", {"user_id": user_id, "query": fixed})
    assert [hit["id"] for hit in now["learnings"]] == [profile["id"]]


async def test_another_users_learnings_are_neither_found_nor_changed(
    mcp: Client, user_id: str
) -> None:
    marker = word()
    await learn(mcp, user_id, f"My secret hobby is {marker}")
    mine = await call(mcp, "search_learnings", {"user_id": user_id, "query": marker})
    other = f"{user_id}-other"
    theirs = await call(mcp, "search_learnings", {"user_id": other, "query": marker})
    assert theirs["count"] == 0
    for hit in mine["learnings"]:
        message = await error(
            mcp,
            "delete_learning",
            {"user_id": other, "learning_id": hit["id"], "confirm": True},
        )
        assert "nothing was changed" in message
    still = await call(mcp, "search_learnings", {"user_id": user_id, "query": marker})
    assert still["count"] == mine["count"]


async def test_agent_playbooks_are_shared_and_need_admin_to_change(
    reflexio: RunningServer, settings: Settings, user_id: str
) -> None:
    marker = word()
    added = httpx2.post(
        f"{reflexio.url}/api/add_agent_playbook",
        json={"agent_playbooks": [{"agent_version": "v1", "content": f"Offer {marker} tips"}]},
    )
    assert added.json()["success"]
    async with Client(build_server(settings), elicitation_callback=User()) as client:
        found = await call(
            client,
            "search_learnings",
            {"user_id": user_id, "query": marker, "kinds": ["agent_playbook"]},
        )
        [playbook] = found["learnings"]
        assert playbook["kind"] == "agent_playbook"
        assert playbook["user_id"] is None  # shared by every user
        shared = await read(client, "reflexio://playbooks/agent")
        assert any(marker in hit["content"] for hit in shared["learnings"])
        refused = await error(client, "delete_learning", {"learning_id": playbook["id"]})
        assert "needs role admin" in refused
    admin = settings.model_copy(update={"allow_admin": True})
    async with Client(build_server(admin), elicitation_callback=User()) as client:
        deleted = await call(client, "delete_learning", {"learning_id": playbook["id"]})
        assert deleted["status"] == "deleted"
        gone = await call(client, "search_learnings", {"query": marker})
        assert gone["count"] == 0


async def test_a_bad_learning_id_is_named(mcp: Client) -> None:
    for bad in ("abc", "user_playbook:abc", "playbook:1", "profile:"):
        message = await error(mcp, "delete_learning", {"learning_id": bad})
        assert message.startswith("Invalid input") or "learning_id:" in message, message
    message = await error(mcp, "delete_learning", {"learning_id": "user_playbook:abc"})
    assert "learning_id: a user_playbook's id is a whole number" in message
    for bad in ("abc", "playbook:1", "profile:"):
        message = await error(mcp, "delete_learning", {"learning_id": bad})
        assert "is not an id search_learnings gave; they read kind:id" in message


async def test_on_the_embedded_store_the_learnings_need_reflexio(tmp_path: Path) -> None:
    settings = Settings(backend="embedded", data_dir=tmp_path)
    async with Client(build_server(settings)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert not names & {"search_learnings", "delete_learning"}
        for tool in ("search_learnings", "delete_learning"):
            message = await error(client, tool, {})
            assert message.startswith(f"{tool} is not enabled on this server: profiles and")
            assert "REFLEXIO_URL" in message
        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
        assert "reflexio://users/{user_id}/profile" not in templates
        with pytest.raises(MCPError, match="REFLEXIO_URL"):
            await client.get_prompt("what_you_know_about_me", {})


async def test_watchers_hear_a_publish_that_learned_and_a_deleted_learning(
    mcp: Client, user_id: str
) -> None:
    profile_uri = f"reflexio://users/{user_id}/profile"
    playbooks_uri = f"reflexio://users/{user_id}/playbooks"
    others = f"reflexio://users/{user_id}-other/profile"
    watched = [profile_uri, playbooks_uri, others, "reflexio://playbooks/agent"]
    async with mcp.listen(resource_subscriptions=watched) as sub:
        await call(
            mcp,
            "publish_interaction",
            {"user_id": user_id, "user_message": "hi", "agent_response": "ok"},
        )
        assert await heard(sub) == set()  # stored, nothing learned (yet)
        marker = word()
        await learn(mcp, user_id, f"I paint {marker}")
        assert await heard(sub) == {profile_uri, playbooks_uri}
        found = await call(mcp, "search_learnings", {"user_id": user_id, "query": marker})
        assert await heard(sub) == set()  # reads tell nothing
        await call(
            mcp, "delete_learning", {"user_id": user_id, "learning_id": found["learnings"][0]["id"]}
        )
        assert await heard(sub) == {profile_uri, playbooks_uri}
