"""The console's operators: names, roles and hashed passwords, read from a setting.

``EDITQ_CONSOLE_OPERATORS`` holds one entry per operator, separated by ``;`` or new lines:
``name:role:hash``, the hash an Argon2id one (``editq console hash-password`` makes it).
Passwords are never stored or compared in the clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from worker.errors import SettingsInvalid

_HASHER = PasswordHasher()
#: A hash to verify against when the name is unknown, so a wrong name takes as long as a
#: wrong password and the answer does not say which it was.
_DECOY = _HASHER.hash("no operator has this password")


class Role(StrEnum):
    """What an operator may do."""

    #: See every page.
    READ = "read"
    #: See every page and act: retry, cancel, pause, resume, size, redeliver.
    OPERATE = "operate"


@dataclass(frozen=True, slots=True)
class Operator:
    """One person who may log in to the console."""

    name: str
    role: Role

    @property
    def may_act(self) -> bool:
        return self.role is Role.OPERATE


class Operators:
    """The operators of ``EDITQ_CONSOLE_OPERATORS``, checked by password."""

    def __init__(self, entries: str) -> None:
        self._hashes: dict[str, tuple[Role, str]] = {}
        for raw in entries.replace("\n", ";").split(";"):
            entry = raw.strip()
            if not entry:
                continue
            name, _, rest = entry.partition(":")
            role, _, hashed = rest.partition(":")
            if not name or role not in {r.value for r in Role} or not hashed.startswith("$argon2"):
                raise SettingsInvalid(
                    "invalid setting EDITQ_CONSOLE_OPERATORS: each entry is name:role:hash, "
                    "role read or operate, hash from `editq console hash-password`"
                    f" (entry {len(self._hashes) + 1} is not)"
                )
            self._hashes[name] = (Role(role), hashed)

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def check(self, name: str, password: str) -> Operator | None:
        """The operator ``name`` if ``password`` is theirs; None otherwise."""
        role, hashed = self._hashes.get(name, (Role.READ, _DECOY))
        try:
            _HASHER.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return None
        return Operator(name, role) if name in self._hashes else None

    def get(self, name: str) -> Operator | None:
        """The operator ``name`` as configured now (a session outlives a removed one)."""
        found = self._hashes.get(name)
        return None if found is None else Operator(name, found[0])


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password``, for ``EDITQ_CONSOLE_OPERATORS``."""
    return _HASHER.hash(password)
