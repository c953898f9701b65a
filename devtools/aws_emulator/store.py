"""The emulator's state: opt-out lists by name, origination phone numbers, removal history."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

#: "Each destination phone number can only be deleted once every 30 days" (DeleteOptedOutNumber).
REMOVAL_INTERVAL_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True)
class OptedOut:
    number: str
    timestamp: float
    end_user_opted_out: bool


@dataclass(frozen=True)
class PhoneNumber:
    phone_number_id: str
    phone_number: str
    opt_out_list_name: str
    iso_country_code: str = "US"
    created: float = 0.0


class NotFound(Exception):
    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(f"{resource_type} {resource_id}")
        self.resource_type = resource_type
        self.resource_id = resource_id


class RemovedTooRecently(Exception):
    def __init__(self, removed_at: float) -> None:
        super().__init__(removed_at)
        self.removed_at = removed_at


class Store:
    def __init__(self, *, clock=time.time, removal_interval_seconds: float = REMOVAL_INTERVAL_SECONDS) -> None:
        self._clock = clock
        self.removal_interval_seconds = removal_interval_seconds
        self._lock = threading.Lock()
        self._lists: dict[str, dict[str, OptedOut]] = {}
        self._created: dict[str, float] = {}
        self._removed_at: dict[tuple[str, str], float] = {}
        self._phone_numbers: dict[str, PhoneNumber] = {}

    # -- set-up (tests, CLI) ----------------------------------------------------------------

    def create_list(self, name: str) -> None:
        with self._lock:
            self._lists.setdefault(name, {})
            self._created.setdefault(name, self._clock())

    def delete_list(self, name: str) -> None:
        with self._lock:
            self._lists.pop(name, None)

    def add_phone_number(self, phone_number: str, opt_out_list_name: str = "Default") -> PhoneNumber:
        self.create_list(opt_out_list_name)
        with self._lock:
            entry = PhoneNumber(f"phone-{secrets.token_hex(16)}", phone_number, opt_out_list_name,
                                created=self._clock())
            self._phone_numbers[entry.phone_number_id] = entry
            return entry

    def seed(self, list_name: str, numbers: Iterable[str], *, end_user: bool = True,
             timestamp: float | None = None) -> None:
        """Numbers opted out as if the end users had texted STOP (by default)."""
        self.create_list(list_name)
        when = self._clock() if timestamp is None else timestamp
        with self._lock:
            entries = self._lists[list_name]
            for number in numbers:
                entries[number] = OptedOut(number, when, end_user)

    def mark_removed(self, list_name: str, number: str, when: float | None = None) -> None:
        """Record an earlier removal, so the 30-day rule applies to the next one."""
        with self._lock:
            self._removed_at[(list_name, number)] = self._clock() if when is None else when

    # -- reads ------------------------------------------------------------------------------

    def has_list(self, name: str) -> bool:
        with self._lock:
            return name in self._lists

    def created(self, name: str) -> float:
        with self._lock:
            return self._created.get(name, 0.0)

    def numbers(self, list_name: str) -> dict[str, OptedOut]:
        with self._lock:
            return dict(self._lists.get(list_name, {}))

    def entry(self, list_name: str, number: str) -> OptedOut | None:
        with self._lock:
            entries = self._lists.get(list_name)
            if entries is None:
                raise NotFound("opt-out-list", list_name)
            return entries.get(number)

    def sorted_entries(self, list_name: str) -> list[OptedOut]:
        with self._lock:
            entries = self._lists.get(list_name)
            if entries is None:
                raise NotFound("opt-out-list", list_name)
            return [entries[number] for number in sorted(entries)]

    def phone_numbers(self) -> list[PhoneNumber]:
        with self._lock:
            return sorted(self._phone_numbers.values(), key=lambda p: p.phone_number_id)

    def phone_number(self, id_or_arn: str) -> PhoneNumber:
        key = id_or_arn.rsplit("/", 1)[-1]
        with self._lock:
            entry = self._phone_numbers.get(key)
        if entry is None:
            raise NotFound("phone-number", id_or_arn)
        return entry

    # -- writes -----------------------------------------------------------------------------

    def put(self, list_name: str, number: str) -> OptedOut:
        with self._lock:
            entries = self._lists.get(list_name)
            if entries is None:
                raise NotFound("opt-out-list", list_name)
            existing = entries.get(number)
            if existing is not None:
                return existing
            entry = OptedOut(number, self._clock(), False)
            entries[number] = entry
            return entry

    def delete(self, list_name: str, number: str) -> OptedOut:
        with self._lock:
            entries = self._lists.get(list_name)
            if entries is None:
                raise NotFound("opt-out-list", list_name)
            entry = entries.get(number)
            if entry is None:
                raise NotFound("opted-out-number", number)
            now = self._clock()
            removed_at = self._removed_at.get((list_name, number))
            if removed_at is not None and now - removed_at < self.removal_interval_seconds:
                raise RemovedTooRecently(removed_at)
            del entries[number]
            self._removed_at[(list_name, number)] = now
            return OptedOut(number, now, entry.end_user_opted_out)
