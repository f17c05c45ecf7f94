"""Messages the polling and admin workers post back to the app (workers never touch widgets)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tui.client import Reading

__all__ = ["Polled", "PollFailed", "ActionDone", "ActionFailed"]


@dataclass
class Polled(Message):
    """A poll succeeded: the server answered /health (ready or still starting)."""

    reading: Reading


@dataclass
class PollFailed(Message):
    """A poll got no answer: the server is down, slow or restarting."""

    error: str
    wall: float


@dataclass
class ActionDone(Message):
    """An admin action succeeded; ``result`` is the server's JSON answer."""

    action: str
    result: dict
    request: dict | None = None


@dataclass
class ActionFailed(Message):
    """An admin action failed; ``message`` is the server's own message when it sent one."""

    action: str
    message: str
    status: int | None = None
    code: str | None = None
