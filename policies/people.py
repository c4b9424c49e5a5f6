"""People and their roles: one registry that every channel (CLI, Slack, the console later) resolves callers against.

A person is declared once, in `config/people.yaml` (checked in; `DATAOPS_PEOPLE_FILE` points elsewhere) or in
the ops database (`dataops users add`), never in both. Roles are ordered, each including the one before:

    viewer    reads: status, queries, chat questions
    operator  + acknowledges, resolves and marks incidents expected, and asks the agent for writes in chat
    approver  + approves and denies the agent's requests

How a channel knows who is calling:

    cli     DATAOPS_TOKEN (a personal token, stored hashed in the ops database), else the OS login of the
            process's effective uid, mapped by a person's `login`. Environment variables such as $USER
            cannot choose it; `--as NAME` only confirms the person already authenticated.
    slack   the user id of a signed request, mapped by `slack`; a member of a Slack user group listed under
            `slack_groups` holds the group's role as `slack:<user id>`.
    api     in-process callers (the eval runner, tests, the console's chat) name the person, whose role the registry
            gives now.

The approvers of a request are frozen into it when it is made (policies/approvals.py), from this registry as
the deciding service reads it; a decision counts only from someone in that list who is still an approver.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import DefinitionError, IdentityError, SettingsError
from config.settings import DataopsSettings
from pipelines.ledger import Base, Ledger, ensure_tables
from policies.model import PolicySpec, load_policy

Role = Literal["viewer", "operator", "approver"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver")
Channel = Literal["cli", "slack", "console", "api"]
RESERVED = frozenset({"agent", "system"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,62}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9_]+$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9_]+$")
_TOKEN = re.compile(r"^dop_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
# scrypt at n=2**14 costs ~50 ms and 16 MB per check: cheap for one CLI call, expensive for a guesser.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def _rank(role: Role | None) -> int:
    return ROLES.index(role) + 1 if role else 0


class Person(BaseModel):
    """Someone the platform knows, with the identities channels know them by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="How the audit, approvals and notes name them; letters, digits, . _ -")
    role: Role
    login: str | None = Field(default=None, description="OS login that authenticates them on the CLI")
    slack: str | None = Field(default=None, description="Slack user id (U... or W...) whose clicks are theirs")
    email: str | None = None
    source: Literal["file", "database"] = Field(default="file", exclude=True)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"name {value!r} is not valid: start with a letter; letters, digits, '.', '_' and '-' only")
        if value.lower() in RESERVED:
            raise ValueError(f"name {value!r} is reserved for the platform ({', '.join(sorted(RESERVED))})")
        return value

    @field_validator("slack")
    @classmethod
    def _valid_slack(cls, value: str | None) -> str | None:
        if value is not None and not _SLACK_USER.match(value):
            raise ValueError(f"slack {value!r} is not a Slack user id (U... or W..., as in the member's profile)")
        return value

    @field_validator("login", "email")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value != value.strip()):
            raise ValueError(f"{value!r} is blank or has spaces around it")
        return value

    def aliases(self) -> frozenset[str]:
        """Every name under which a request may record this person: a self-approval check compares all of them."""
        found = {self.name, f"person:{self.name}"}
        if self.login:
            found |= {self.login, f"login:{self.login}"}
        if self.slack:
            found |= {self.slack, f"slack:{self.slack}"}
        if self.email:
            found.add(self.email)
        return frozenset(found)


class PeopleFile(BaseModel):
    """config/people.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    people: tuple[Person, ...] = ()
    slack_groups: dict[str, Role] = Field(default_factory=dict, description="Slack user-group id (S...) -> the role its members hold")

    @field_validator("slack_groups")
    @classmethod
    def _valid_groups(cls, value: dict[str, Role]) -> dict[str, Role]:
        for group in value:
            if not _SLACK_GROUP.match(group):
                raise ValueError(f"{group!r} is not a Slack user-group id (S...)")
        return value


class Actor(BaseModel):
    """Who takes a decision, as a channel authenticated them, and the role the registry gives them now."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The person's name; `slack:<id>` for a member of a Slack group who is not a person")
    channel: Channel
    role: Role | None = Field(description="None: the registry does not know them")
    aliases: frozenset[str] = frozenset()
    groups: tuple[str, ...] = Field(default=(), description="Slack user groups with a role that they belong to")
    login: str | None = Field(default=None, description="The OS login of a CLI caller")
    by_token: bool = False

    def may(self, role: Role) -> bool:
        return _rank(self.role) >= _rank(role)


class PersonRow(Base):
    __tablename__ = "people"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    login: Mapped[str | None] = mapped_column(String(120), nullable=True)
    slack: Mapped[str | None] = mapped_column(String(40), nullable=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """One personal token per person: a new one replaces the old. Only a salted scrypt digest is kept."""

    __tablename__ = "person_tokens"

    person: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(16), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _digest(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()  # type: ignore[arg-type]


def people_path(settings: DataopsSettings) -> Path:
    return settings.people_file or settings.config_dir / "people.yaml"


def load_people_file(path: Path) -> PeopleFile:
    """Read and validate a people file; a missing file declares nobody."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return PeopleFile()
    except OSError as exc:
        raise DefinitionError(f"people file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"people file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"people file {path} is invalid: it must be a mapping with `people:`, got {type(raw).__name__}")
    try:
        return PeopleFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise DefinitionError(f"people file {path} is invalid: {problems}") from None


def os_login() -> str:
    """The login of the process's effective uid. Not getpass.getuser(): that trusts $USER and $LOGNAME."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # no pwd (Windows) or a uid without a passwd entry (containers)
        return f"uid-{os.geteuid()}" if hasattr(os, "geteuid") else os.environ.get("USERNAME", "unknown")


def is_service_owner(home: Path, uid: int | None = None) -> bool:
    """The OS user owning DATAOPS_HOME runs the service and may already write its ops database: it manages people."""
    me = os.geteuid() if uid is None else uid
    return home.exists() and home.stat().st_uid == me


class PeopleStore:
    """The people and tokens kept in the ops database."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [PersonRow.__table__, TokenRow.__table__])  # type: ignore[list-item]

    def people(self) -> list[Person]:
        with self._ledger.session() as s:
            rows = s.scalars(select(PersonRow).order_by(PersonRow.name)).all()
            return [
                Person(name=r.name, role=r.role, login=r.login, slack=r.slack, email=r.email, source="database")  # type: ignore[arg-type]
                for r in rows
            ]

    def add(self, person: Person) -> None:
        with self._ledger.session() as s, s.begin():
            s.add(
                PersonRow(
                    name=person.name,
                    role=person.role,
                    login=person.login,
                    slack=person.slack,
                    email=person.email,
                    created_at=datetime.now(UTC),
                )
            )

    def remove(self, name: str) -> bool:
        with self._ledger.session() as s, s.begin():
            s.execute(delete(TokenRow).where(TokenRow.person == name))
            return getattr(s.execute(delete(PersonRow).where(PersonRow.name == name)), "rowcount", 0) == 1

    def issue_token(self, name: str) -> str:
        """A new token for `name`, replacing any earlier one; the only time the secret exists outside the caller."""
        token_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_bytes(16)
        with self._ledger.session() as s, s.begin():
            s.execute(delete(TokenRow).where(TokenRow.person == name))
            s.add(TokenRow(person=name, token_id=token_id, salt=salt.hex(), digest=_digest(secret, salt), created_at=datetime.now(UTC)))
        return f"dop_{token_id}_{secret}"

    def revoke_token(self, name: str) -> bool:
        with self._ledger.session() as s, s.begin():
            return getattr(s.execute(delete(TokenRow).where(TokenRow.person == name)), "rowcount", 0) == 1

    def token_owner(self, token: str) -> str | None:
        """The person a token belongs to, or None; compared in constant time."""
        match = _TOKEN.match(token.strip())
        if match is None:
            return None
        token_id, secret = match.groups()
        with self._ledger.session() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.token_id == token_id)).first()
            if row is None:
                _digest(secret, b"\0" * 16)  # as slow as a real check: a wrong id is not told apart by timing
                return None
            return row.person if hmac.compare_digest(_digest(secret, bytes.fromhex(row.salt)), row.digest) else None

    def has_token(self, name: str) -> bool:
        with self._ledger.session() as s:
            return s.get(TokenRow, name) is not None


class People:
    """The registry: the people file and the ops database together, checked for clashes when it loads."""

    def __init__(
        self, people: Iterable[Person], *, slack_groups: Mapping[str, Role] | None = None, store: PeopleStore | None = None
    ) -> None:
        self.store = store
        self.slack_groups: dict[str, Role] = dict(slack_groups or {})
        self._by_name: dict[str, Person] = {}
        seen: dict[tuple[str, str], str] = {}
        for person in people:
            if person.name in self._by_name:
                raise DefinitionError(f"person {person.name!r} is declared twice ({self._by_name[person.name].source} and {person.source})")
            for key in ("login", "slack", "email"):
                value = getattr(person, key)
                if value is None:
                    continue
                if (key, value) in seen:
                    raise DefinitionError(
                        f"{key} {value!r} belongs to both {seen[(key, value)]!r} and {person.name!r}; give each person their own"
                    )
                seen[(key, value)] = person.name
            self._by_name[person.name] = person

    @classmethod
    def load(cls, settings: DataopsSettings, ledger: Ledger) -> People:
        """The registry as this process's settings declare it. DATAOPS_APPROVERS is refused: approvers are people."""
        if settings.approvers is not None:
            raise SettingsError(
                "DATAOPS_APPROVERS is no longer read: approvers are people with role approver in config/people.yaml "
                "(or `dataops users add NAME --role approver`); unset it"
            )
        declared = load_people_file(people_path(settings))
        store = PeopleStore(ledger)
        return cls([*declared.people, *store.people()], slack_groups=declared.slack_groups, store=store)

    def __iter__(self) -> Any:
        return iter(sorted(self._by_name.values(), key=lambda p: p.name))

    def get(self, name: str) -> Person | None:
        return self._by_name.get(name)

    def by_login(self, login: str) -> Person | None:
        return next((p for p in self._by_name.values() if p.login == login), None)

    def by_slack(self, user_id: str) -> Person | None:
        return next((p for p in self._by_name.values() if p.slack == user_id), None)

    def by_token(self, token: str) -> Person | None:
        owner = self.store.token_owner(token) if self.store else None
        return self._by_name.get(owner) if owner else None

    def holding(self, role: Role) -> tuple[str, ...]:
        """Names of the people, then the Slack groups, whose role is exactly `role`."""
        names = sorted(p.name for p in self._by_name.values() if p.role == role)
        return (*names, *sorted(g for g, r in self.slack_groups.items() if r == role))

    def policy(self, path: Path) -> PolicySpec:
        """The policy file with the registry's approvers and operators: who the engine names on a request."""
        return load_policy(path, approvers=list(self.holding("approver")), operators=list(self.holding("operator")))

    # -- resolving callers ----------------------------------------------------------------------------------------
    def actor(self, name: str, *, channel: Channel, groups: Iterable[str] = (), login: str | None = None, by_token: bool = False) -> Actor:
        """The actor for a name a channel already authenticated; an unknown name gets no role (and is refused later)."""
        person = self._by_name.get(name)
        held = tuple(g for g in groups if g in self.slack_groups)
        roles = [person.role] if person else []
        roles += [self.slack_groups[g] for g in held]
        role = max(roles, key=_rank) if roles else None
        aliases = person.aliases() if person else frozenset({name})
        return Actor(id=name, channel=channel, role=role, aliases=aliases, groups=held, login=login, by_token=by_token)

    def slack_actor(self, user_id: str, groups: Iterable[str] = ()) -> Actor | None:
        """A signed Slack user id as an actor: their person, or a member of a role-holding group; None if neither."""
        person = self.by_slack(user_id)
        held = [g for g in groups if g in self.slack_groups]
        if person is None and not held:
            return None
        name = person.name if person else f"slack:{user_id}"
        actor = self.actor(name, channel="slack", groups=held)
        return actor.model_copy(update={"aliases": actor.aliases | {user_id, f"slack:{user_id}"}})

    def authenticate_cli(self, *, token: str | None, login: str, as_name: str | None = None) -> Actor:
        """The CLI caller: the token's person if DATAOPS_TOKEN is set, else the person whose `login` is the OS login."""
        if token:
            person = self.by_token(token)
            if person is None:
                raise IdentityError(
                    "DATAOPS_TOKEN matches no person (mistyped, replaced, revoked, or its person was removed); "
                    "ask the service owner for a new one: dataops users token NAME"
                )
            how = "DATAOPS_TOKEN"
        else:
            person = self.by_login(login)
            if person is None:
                raise IdentityError(
                    f"OS login {login!r} is not a person of this platform and DATAOPS_TOKEN is unset; ask the service owner "
                    f"to add you (dataops users add NAME --role ROLE --login {login}) or to give you a token"
                )
            how = f"OS login {login!r}"
        if as_name is not None and as_name != person.name:
            raise IdentityError(
                f"--as {as_name} refused: {how} is {person.name}; --as only confirms who you are. "
                f"Only {as_name}'s own token (DATAOPS_TOKEN) acts as {as_name}"
            )
        return self.actor(person.name, channel="cli", login=login, by_token=bool(token))
