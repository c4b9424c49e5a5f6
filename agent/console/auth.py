"""Who is calling the console: a person of the registry (policies/people.py), signed in or bearing a token.

    pages   a session cookie (agent/console/sessions.py) made by signing in with a password (argon2, set with
            `dataops users password NAME`) or a personal token (`dataops users token NAME`)
    /api/   `Authorization: Bearer TOKEN`, a personal token; no cookie, so no CSRF to forge

Either way the caller becomes an `Actor` on channel "console", with the role the registry gives them *now*:
the people file and the ops database are read again on every request, so a person removed or demoted loses
their rights at once, even with a session open. Decisions then go through the same functions as the CLI and
Slack (agent/console/actions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.console.sessions import SessionStore
from pipelines.context import PlatformContext
from policies.passwords import PasswordStore
from policies.people import Actor, People, Person


@dataclass(frozen=True, kw_only=True)
class Caller:
    """An authenticated request: the actor, and the session when a browser made it."""

    actor: Actor
    csrf: str | None = None

    @property
    def name(self) -> str:
        return self.actor.id


class Gate:
    """Sign-in and the per-request lookup of people, over one platform's ops database."""

    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx
        self.sessions = SessionStore(ctx.ledger)
        self.passwords = PasswordStore(ctx.ledger)

    def people(self) -> People:
        return People.load(self.ctx.settings, self.ctx.ledger)

    def by_password(self, name: str, password: str) -> Person | None:
        """The person if `password` is theirs; the check costs the same for an unknown name."""
        person = self.people().get(name)
        ok = self.passwords.check(name if person else f"\0{name}", password)
        return person if ok and person is not None else None

    def by_token(self, token: str) -> Person | None:
        return self.people().by_token(token)

    def actor(self, name: str, *, by_token: bool) -> Actor | None:
        """The console actor for a person, or None when they are no longer a person of the registry."""
        people = self.people()
        if people.get(name) is None:
            return None
        return people.actor(name, channel="console", by_token=by_token)

    def bearer(self, authorization: str | None) -> Actor | None:
        """The actor of an `Authorization: Bearer TOKEN` header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        person = self.by_token(token.strip())
        return self.actor(person.name, by_token=True) if person else None

    def session_caller(self, secret: str | None) -> Caller | None:
        session = self.sessions.get(secret)
        if session is None:
            return None
        actor = self.actor(session.person, by_token=session.signed_in_by == "token")
        return Caller(actor=actor, csrf=session.csrf) if actor else None
