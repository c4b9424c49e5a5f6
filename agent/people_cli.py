"""Who is calling on the CLI, and `dataops users`: the people of the registry (policies/people.py).

Every CLI decision (approve, deny, incident ack|resolve|expected, monitors unsuppress) is taken by the caller
`cli_actor` authenticates: DATAOPS_TOKEN's person when it is set, else the person whose `login` is the OS
login of the process. `--as` only confirms that person. The service owner (the OS user owning DATAOPS_HOME,
who can write the ops database anyway) adds and removes people and issues tokens; a person may replace
their own token.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from config.errors import DataOpsError
from pipelines.cli_io import EXIT_USAGE, console, emit_json, open_context, out

if TYPE_CHECKING:
    from pipelines.context import PlatformContext
    from policies.people import Actor, People

USERS_HELP = "The people of the platform and their roles (viewer, operator, approver): `list`, `add`, `remove`, `token`, `password`."


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    console.print(f"[red]refused:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _people(ctx: PlatformContext) -> People:
    from policies.people import People

    try:
        return People.load(ctx.settings, ctx.ledger)
    except DataOpsError as exc:
        raise _fail(str(exc)) from None


def cli_actor(ctx: PlatformContext, as_user: str | None) -> Actor:
    """The authenticated caller; one line on stderr and exit 2 when there is none."""
    from policies.people import os_login

    if os.environ.get("DATAOPS_USER"):
        raise _fail("DATAOPS_USER no longer chooses who you are; unset it. The CLI knows you by DATAOPS_TOKEN or your OS login")
    try:
        return _people(ctx).authenticate_cli(token=ctx.settings.token, login=os_login(), as_name=as_user)
    except DataOpsError as exc:
        raise _fail(str(exc)) from None


def cli_asker(ctx: PlatformContext, as_user: str | None) -> Actor:
    """Who asks in `dataops chat`: the authenticated person, else `login:<OS login>`. Anyone may ask; what they ask for
    goes through the policy, where their role decides whether the agent may act on a write. The service owner (the OS
    user owning the home) who is no person of the registry counts as an operator: they can change the lake's files
    anyway. Anyone else who is no person gets no role, so their asked-for writes are refused."""
    from policies.people import is_service_owner, os_login

    if ctx.settings.token or as_user is not None or os.environ.get("DATAOPS_USER"):
        return cli_actor(ctx, as_user)
    login = os_login()
    people = _people(ctx)
    person = people.by_login(login)
    if person is not None:
        return people.actor(person.name, channel="cli", login=login)
    actor = people.actor(f"login:{login}", channel="cli", login=login)
    return actor.model_copy(update={"role": "operator"}) if is_service_owner(ctx.settings.home) else actor


def _owner_only(ctx: PlatformContext, what: str) -> None:
    from policies.people import is_service_owner, os_login

    if not is_service_owner(ctx.settings.home):
        raise _fail(f"only the service owner (the OS user owning {ctx.settings.home}) may {what}; you are {os_login()!r}")


def _self_or_owner(ctx: PlatformContext, name: str, what: str) -> None:
    """Refuse (exit 2) unless the caller is the service owner or, authenticated, `name` themselves."""
    from policies.people import is_service_owner

    if not is_service_owner(ctx.settings.home):
        me = cli_actor(ctx, None)
        if me.id != name:
            raise _fail(f"{me.id} may not manage the {what} of {name}; only the service owner or {name} may")


def users_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Everyone the registry knows, from config/people.yaml and the ops database, with their role and identities."""
    from policies.passwords import PasswordStore
    from policies.people import people_path

    ctx = open_context()
    people = _people(ctx)
    store = people.store
    passwords = PasswordStore(ctx.ledger)
    # "authenticates_by", not a key named like a token: `--json` output masks the values of such keys.
    rows = [
        {
            **p.model_dump(mode="json"),
            "source": p.source,
            "authenticates_by": [k for k in ("login", "slack") if getattr(p, k)]
            + (["token"] if store and store.has_token(p.name) else [])
            + (["password"] if passwords.has(p.name) else []),
        }
        for p in people
    ]
    groups = [{"slack_group": g, "role": r} for g, r in sorted(people.slack_groups.items())]
    if as_json:
        emit_json({"people": rows, "slack_groups": groups})
        return
    if not rows and not groups:
        out.print(f"nobody is declared; add people to {people_path(ctx.settings)} or with `dataops users add`", markup=False)
    for row in rows:
        known = ", ".join(f"{k} {row[k]}" for k in ("login", "slack", "email") if row[k]) or "no login or Slack id"
        out.print(
            f"{row['name']} ({row['role']}, {row['source']}): {known}{'; has a token' if 'token' in row['authenticates_by'] else ''}",
            markup=False,
        )
    for group in groups:
        out.print(f"Slack group {group['slack_group']}: members are {group['role']}s", markup=False)


def users_add(
    name: Annotated[str, typer.Argument(help="The person's name, as approvals, the audit and notes will show it.")],
    role: Annotated[str, typer.Option(help="viewer (reads), operator (+ acts on incidents) or approver (+ decides requests).")],
    slack: Annotated[str | None, typer.Option(help="Slack user id (U...) whose clicks are theirs.")] = None,
    login: Annotated[str | None, typer.Option(help="OS login that authenticates them on the CLI.")] = None,
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Also issue their personal token, and print {"name", "role", "token"} as JSON.')
    ] = False,
) -> None:
    """Add a person to the ops database (service owner only); `dataops users token NAME` gives them a token
    (--json issues it at once), `dataops users password NAME` a console password."""
    from pydantic import ValidationError

    from policies.people import ROLES, People, Person, people_path

    ctx = open_context()
    _owner_only(ctx, "add people")
    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not a role; valid: {', '.join(ROLES)}", param_hint="--role")
    try:
        person = Person(name=name, role=role, slack=slack, login=login, email=email, source="database")  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _fail("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from None
    people = _people(ctx)
    if people.get(name) is not None:
        where = people_path(ctx.settings) if people.get(name).source == "file" else "the ops database"  # type: ignore[union-attr]
        raise _fail(f"{name!r} is already a person (in {where}); `dataops users remove {name}` first, or edit {where}")
    try:
        People([*people, person], slack_groups=people.slack_groups)  # the same clash checks as at load
    except DataOpsError as exc:
        raise _fail(str(exc)) from None
    assert people.store is not None
    people.store.add(person)
    if as_json:
        token = people.store.issue_token(name)
        # Not emit_json: it masks the value of any key named like a token, and handing this one over is the point.
        sys.stdout.write(json.dumps({"name": name, "role": role, "token": token}) + "\n")
        return
    out.print(f"added {name} ({role}); give them a token with `dataops users token {name}`", markup=False)


def users_remove(name: Annotated[str, typer.Argument(help="A person added with `dataops users add`.")]) -> None:
    """Remove a person from the ops database with their token (service owner only); requests they decided keep their name."""
    from policies.people import people_path

    ctx = open_context()
    _owner_only(ctx, "remove people")
    people = _people(ctx)
    found = people.get(name)
    if found is None:
        raise _fail(f"no person {name!r}; `dataops users list` shows who there is")
    if found.source == "file":
        raise _fail(f"{name} is declared in {people_path(ctx.settings)}; delete them there (and `dataops users token {name} --revoke`)")
    assert people.store is not None
    people.store.remove(name)
    _forget_password(ctx, name)  # a person added again later under the name must not sign in with the old one
    out.print(f"removed {name} and their token", markup=False)


def _forget_password(ctx: PlatformContext, name: str) -> None:
    """Delete a person's console password and end their console sessions."""
    from agent.console.sessions import SessionStore
    from policies.passwords import PasswordStore

    PasswordStore(ctx.ledger).remove(name)
    SessionStore(ctx.ledger).close_all(name)


def users_token(
    name: Annotated[str, typer.Argument(help="The person the token authenticates.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Delete their token instead of issuing a new one.")] = False,
) -> None:
    """Issue a personal token (shown once, stored hashed), replacing any earlier one: set it as DATAOPS_TOKEN.
    Either way their console sessions end.

    The service owner may issue anyone's; a person authenticated by their OS login or token may replace their own."""
    ctx = open_context()
    people = _people(ctx)
    if people.get(name) is None:
        raise _fail(f"no person {name!r}; `dataops users list` shows who there is")
    _self_or_owner(ctx, name, "token")
    assert people.store is not None
    from agent.console.sessions import SessionStore

    SessionStore(ctx.ledger).close_all(name)  # a console session signed in with the old token ends with it
    if revoke:
        gone = people.store.revoke_token(name)
        out.print(f"{name}'s token revoked" if gone else f"{name} had no token", markup=False)
        return
    token = people.store.issue_token(name)
    # The one place a secret is printed: on purpose, to the terminal of the person who asked for it, never logged.
    out.print(f"token for {name} (shown once; set it as DATAOPS_TOKEN, and keep it secret):", markup=False)
    out.print(token, markup=False, highlight=False, soft_wrap=True)


def users_password(
    name: Annotated[str, typer.Argument(help="The person who signs in to the console with it.")],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from the first line of stdin instead of prompting twice.")
    ] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Delete their password: they sign in with a token only.")] = False,
) -> None:
    """Set a person's console password (stored as an argon2 hash; at least 12 characters), ending their console sessions.

    The service owner may set anyone's; a person authenticated by their OS login or token may set their own."""
    from policies.passwords import PasswordStore

    ctx = open_context()
    people = _people(ctx)
    if people.get(name) is None:
        raise _fail(f"no person {name!r}; `dataops users list` shows who there is")
    _self_or_owner(ctx, name, "password")
    if remove:
        gone = PasswordStore(ctx.ledger).has(name)
        _forget_password(ctx, name)
        out.print(f"{name}'s console password removed" if gone else f"{name} had no console password", markup=False)
        return
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"console password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        PasswordStore(ctx.ledger).set(name, password)
    except DataOpsError as exc:
        raise _fail(str(exc)) from None
    from agent.console.sessions import SessionStore

    ended = SessionStore(ctx.ledger).close_all(name)
    out.print(f"{name}'s console password is set" + (f"; {ended} console session(s) ended" if ended else ""), markup=False)
