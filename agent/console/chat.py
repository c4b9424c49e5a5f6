"""The Chat page: one thread per conversation with the agent, as `dataops chat` has in the terminal, with the
approvals a turn asks for shown inline (Approve / Deny for whoever may decide them, through the Approvals path).

    GET  /chat                the person's threads, and a form to start one
    POST /chat                start a thread with its first message → /chat/{thread_id}
    GET  /chat/{thread_id}    the thread, and the agent's tool calls in it (the audit)
    POST /chat/{thread_id}    the next message

The agent is the console's own (agent/console/actions.py `AgentDecider`): the service's when the console runs in
`dataops serve`, else one made on first use; offline, without a model key, it answers with its runbook planner.
The person signed in is the requester of any approval their turn asks for, so they cannot approve it themselves:
anyone signed in may read a thread (an approver follows the request's link to it and decides there, inline), and
only the person who started it writes in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator

from agent.console import views
from agent.console.actions import ActionRefused, may_decide
from agent.console.conversations import ConversationStore
from agent.console.pages import caller_of, checked_form, parsed, render
from agent.console.state import console_of
from policies.approvals import Approval, ApprovalStore
from policies.audit import AuditLog

if TYPE_CHECKING:
    from agent.runtime import Agent

router = APIRouter()


class ChatInput(BaseModel):
    """The chat form's body."""

    message: str = Field(min_length=1, max_length=4000, description="What to ask the agent")

    @field_validator("message", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


def _agent(request: Request) -> Agent:
    find = getattr(console_of(request).decider, "agent", None)
    if find is None:
        raise ActionRefused("the chat needs the agent, and this console decides approvals without one", status=503)
    agent: Agent = find()
    return agent


def _thread(request: Request, thread_id: str, *, writing: bool = False) -> ConversationStore:
    """The thread's store; 404 for no such thread, 403 when writing in someone else's."""
    store = ConversationStore(console_of(request).ctx.ledger)
    owner = store.owner(thread_id)
    if owner is None:
        raise ActionRefused(f"no chat thread {thread_id!r}; the Chat page lists yours", status=404)
    if writing and owner != caller_of(request).name:
        raise ActionRefused(f"only {owner}, who started this conversation, writes in it; start your own on the Chat page", status=403)
    return store


async def _ask(request: Request, store: ConversationStore, thread_id: str, message: str) -> None:
    """One turn: the question kept, the agent asked (off the event loop), its answer kept with any approval."""
    person = caller_of(request).name
    store.add(thread_id, person=person, speaker="person", text=message)
    agent = _agent(request)
    outcome = await run_in_threadpool(agent.chat, thread_id, message, user=person)
    text = outcome.message or (f"waiting for approval {outcome.approval_id}" if outcome.approval_id else outcome.outcome or outcome.status)
    store.add(thread_id, person=person, speaker="agent", text=text, status=outcome.status, approval_id=outcome.approval_id)


@router.get("/chat")
def chat_page(request: Request) -> Response:
    store = ConversationStore(console_of(request).ctx.ledger)
    threads = store.threads(caller_of(request).name)
    return render(
        request,
        "chat.html",
        threads=threads,
        owner=None,
        thread_id=None,
        turns=[],
        approvals={},
        decidable=set(),
        call_text=views.call_text,
    )


@router.post("/chat")
async def start_thread(request: Request) -> Response:
    body = parsed(ChatInput, await checked_form(request))
    store = ConversationStore(console_of(request).ctx.ledger)
    thread_id = store.new_thread_id()
    await _ask(request, store, thread_id, body.message)
    return RedirectResponse(f"/chat/{thread_id}", status_code=303)


@router.get("/chat/{thread_id}")
def thread_page(request: Request, thread_id: str) -> Response:
    store = _thread(request, thread_id)
    turns = store.turns(thread_id)
    approvals: dict[str, Approval] = {}
    requests = ApprovalStore(console_of(request).ctx.ledger)
    for turn in turns:
        if turn.approval_id and turn.approval_id not in approvals:
            approvals[turn.approval_id] = requests.get(turn.approval_id)
    actor = caller_of(request).actor
    decidable = {a.id for a in approvals.values() if may_decide(a, actor)}
    return render(
        request,
        "chat.html",
        threads=store.threads(caller_of(request).name),
        owner=store.owner(thread_id),
        thread_id=thread_id,
        turns=turns,
        approvals=approvals,
        decidable=decidable,
        steps=AuditLog(console_of(request).ctx.ledger).entries(thread_id=thread_id),
        call_text=views.call_text,
    )


@router.post("/chat/{thread_id}")
async def next_turn(request: Request, thread_id: str) -> Response:
    body = parsed(ChatInput, await checked_form(request))
    store = _thread(request, thread_id, writing=True)
    await _ask(request, store, thread_id, body.message)
    return RedirectResponse(f"/chat/{thread_id}", status_code=303)
