"""A job's record, wherever it runs, and the bodies the job routes answer."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

State = Literal["pending", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
EXPIRED = "the job's result has expired"


class JobUrls(BaseModel):
    status: str
    cancel: str


class JobAccepted(BaseModel):
    id: str
    status: State
    urls: JobUrls


class JobError(BaseModel):
    status: int
    message: str
    detail: list[dict[str, Any]] | None = None


class JobStatus(BaseModel):
    id: str
    status: State
    created_at: float
    finished_at: float | None = None
    expires_at: float | None = None
    result: Any = None
    error: JobError | None = None


@dataclass
class Record:
    """One job, wherever it runs."""

    id: str
    path: str
    owner: str
    ttl: int
    created_at: float = field(default_factory=time.time)
    state: State = "pending"
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    call: str | None = None  # the spawned FunctionCall's id, on Modal
    binary: bool = False  # `result` is bytes the route answered, as `work.encode` keeps them

    def finish(self, done: dict[str, Any]) -> None:
        self.state = done["status"]
        self.result = done.get("result")
        self.error = done.get("error")
        self.binary = bool(done.get("binary"))
        self.finished_at = done.get("finished_at") or time.time()

    @property
    def expires_at(self) -> float | None:
        return None if self.finished_at is None else self.finished_at + self.ttl

    def expired(self, now: float) -> bool:
        expires = self.expires_at
        return expires is not None and now > expires

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.state,
            "created_at": round(self.created_at, 3),
            "finished_at": None if self.finished_at is None else round(self.finished_at, 3),
            "expires_at": None if self.expires_at is None else round(self.expires_at, 3),
        }
        if self.state == "succeeded":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


def new_id() -> str:
    return "job-" + secrets.token_urlsafe(16)
