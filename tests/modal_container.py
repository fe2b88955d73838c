"""A Modal container, as far as this machine can run one.

Modal's servers are unreachable here, so this drives a built module through the parts of
the installed `modal` SDK that run *inside* a container, and stands in only for what
lies beyond it:

- HTTP goes through Modal's own ASGI adapter (`modal._runtime.asgi.asgi_app_wrapper`),
  with the scope Modal's proxy builds (no `asgi.spec_version`, no `server`), and its
  lifespan manager. A client leaving is Modal's `http.disconnect` on the input's data
  stream, or the input's task being cancelled, as Modal cancels an input.
- `@modal.enter(snap=True)`, `@modal.enter(snap=False)` and `@modal.exit` are found with
  the SDK's own `_find_callables_for_obj` and run in the order the container runs them.
- `modal.is_local()` is False, as in a container.
- What the container reaches over the network is `Cloud`: Modal Dicts (each call awaits a
  round trip, so a write that is cancelled writes nothing), `.spawn` and `FunctionCall`s,
  and the app's other classes, each a `Container` of its own in this process, called with
  Modal's own serialization, failing with Modal's own exception classes
  (`modal.exception.*`) where a test says so.

It is written against one SDK version, `SDK`; a different installed version fails every
test that uses it, so a change in Modal's container code is read before it is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import modal.exception
import pytest
from conftest import import_file
from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags
from modal._runtime import asgi
from modal._runtime.execution_context import _set_current_context_ids
from modal._runtime.task_lifecycle_manager import _TaskLifecycleManager
from modal._serialization import deserialize, serialize
from modal._utils.async_utils import synchronizer

from endpointgen.runtime import files

SDK = "1.6.4"  # the modal release whose container code this was read against
ROUND_TRIP = 0.01  # seconds a Dict call or a remote call spends on the network


def check_sdk() -> None:
    if modal.__version__ != SDK:
        pytest.fail(
            f"tests/modal_container.py was written against modal {SDK}, and modal "
            f"{modal.__version__} is installed: read modal/_runtime/asgi.py and "
            "user_code_imports.py of the new release, update the harness, then SDK",
            pytrace=False,
        )


def over_the_wire(value: Any) -> Any:
    """What arrives on the other side of a Modal call: Modal's own pickling, both ways."""
    return deserialize(serialize(value), None)


def user_class(modal_cls: Any) -> type:
    """The class a `@app.cls` decorated, as the container instantiates it."""
    cls: type = synchronizer._translate_in(modal_cls)._user_cls
    return cls


def raw_function(modal_function: Any) -> Callable[..., Any]:
    """The function an `@app.function` decorated, as the container calls it."""
    raw: Callable[..., Any] = synchronizer._translate_in(modal_function)._raw_f
    return raw


# --- What lies beyond the container ---


class _Call:
    """A blocking Modal call with its `.aio` twin."""

    def __init__(self, run: Callable[..., Any], blocking: Callable[..., Any]) -> None:
        self._run, self._blocking = run, blocking

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._blocking(*args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run(*args, **kwargs)


class _Stream:
    """A Modal generator call: `.aio(...)` is an async iterator."""

    def __init__(self, run: Callable[..., AsyncIterator[Any]]) -> None:
        self.aio = run


class MemoryDict:
    """A `modal.Dict`: every call is a network round trip, so one cancelled while in
    flight never reaches the store."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: dict[Any, Any] = {}
        self.put = self._method(self._put)
        self.get = self._method(self.items.get)
        self.contains = self._method(self.items.__contains__)
        self.pop = self._method(self.items.pop)

    def _put(self, key: Any, value: Any) -> None:
        self.items[key] = over_the_wire(value)

    @staticmethod
    def _method(local: Callable[..., Any]) -> _Call:
        async def remote(*args: Any) -> Any:
            await asyncio.sleep(ROUND_TRIP)
            return over_the_wire(local(*over_the_wire(args)))

        def blocking(*args: Any) -> Any:
            return over_the_wire(local(*over_the_wire(args)))

        return _Call(remote, blocking)


@dataclass
class FunctionCall:
    """A spawned call, as `modal.FunctionCall.from_id` finds it."""

    object_id: str
    task: asyncio.Task[Any] | None = None
    outcome: BaseException | None = None  # a failure Modal reports instead of a result

    def fail(self, exc: BaseException) -> None:
        """From now on, Modal reports the call as failed with `exc`."""
        self.outcome = exc

    async def _get(self, timeout: float | None = None) -> Any:
        await asyncio.sleep(ROUND_TRIP)
        if self.outcome is not None:
            raise over_the_wire(self.outcome)
        assert self.task is not None
        if not self.task.done():
            if timeout == 0:
                raise modal.exception.TimeoutError()
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        if self.task.cancelled():  # Modal reports a terminated call as a bare RemoteError
            raise modal.exception.RemoteError("")
        return over_the_wire(self.task.result())

    async def _cancel(self) -> None:
        await asyncio.sleep(ROUND_TRIP)
        if self.task is not None:
            self.task.cancel()

    @property
    def get(self) -> _Call:
        return _Call(self._get, lambda *a: pytest.fail("a blocking FunctionCall.get"))

    @property
    def cancel(self) -> _Call:
        return _Call(self._cancel, lambda *a: pytest.fail("a blocking FunctionCall.cancel"))


class Cloud:
    """Modal's servers, as the containers of one built module see them.

    Each container imports the module afresh, as a process of its own does, so what one
    container's `@modal.enter` sets up is not what another sees."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        check_sdk()
        self.path = path
        self.dicts: dict[str, MemoryDict] = {}
        self.calls: dict[str, FunctionCall] = {}
        self.containers: dict[str, Container] = {}
        # Every call a container made to another, as (class, method): the round trips.
        self.log: list[tuple[str, str]] = []
        # (class, method) -> what Modal raises for every call of it, instead of running it.
        self.failing: dict[tuple[str, str], BaseException] = {}
        self._ids = itertools.count()
        monkeypatch.setattr(_TaskLifecycleManager, "_singleton", object())  # not is_local()
        monkeypatch.setattr(modal.Dict, "from_name", self.dict)
        monkeypatch.setattr(modal.FunctionCall, "from_id", self.call)
        # The image carries shipped files and folders to their `remote` place; no image is
        # built here, so a container reads them where they are.
        monkeypatch.setattr(files.Shipped, "path", property(lambda shipped: shipped.local))

    def dict(self, name: str, **_: Any) -> MemoryDict:
        return self.dicts.setdefault(name, MemoryDict(name))

    def call(self, object_id: str) -> FunctionCall:
        return self.calls[object_id]

    def process(self) -> ModuleType:
        """The module as a new container imports it; its Modal classes, called from
        here, run in their own containers."""
        module = import_file(self.path)
        for name, value in list(vars(module).items()):
            if isinstance(value, modal.Cls):
                setattr(module, f"_modal_{name}", value)
                setattr(module, name, RemoteClass(self, name))
        return module

    def start(self, name: str) -> Container:
        """A new container of the class or function `name` (its model loaded)."""
        module = self.process()
        container = Container(getattr(module, f"_modal_{name}", None) or getattr(module, name))
        container.module = module
        container.start()
        return container

    def container(self, name: str) -> Container:
        """The warm container of class `name`, started on its first call."""
        if name not in self.containers:
            self.containers[name] = self.start(name)
        return self.containers[name]

    def calls_to(self, name: str) -> list[str]:
        return [method for cls, method in self.log if cls == name]


class RemoteClass:
    """`SomeModel` as another container calls it: `SomeModel().method.remote(...)`,
    `.remote.aio`, `.remote_gen.aio` and `.spawn.aio`, run in that class's container."""

    def __init__(self, cloud: Cloud, name: str) -> None:
        self.cloud, self.name = cloud, name

    def __call__(self) -> RemoteClass:
        return self

    def __getattr__(self, method: str) -> RemoteMethod:
        return RemoteMethod(self.cloud, self.name, method)


class RemoteMethod:
    def __init__(self, cloud: Cloud, cls: str, method: str) -> None:
        self.cloud, self.cls, self.method = cloud, cls, method

    def _target(self) -> Callable[..., Any]:
        self.cloud.log.append((self.cls, self.method))
        failure = self.cloud.failing.get((self.cls, self.method))
        if failure is not None:
            raise over_the_wire(failure)
        return self.cloud.container(self.cls).method(self.method)

    async def _remote(self, *args: Any) -> Any:
        await asyncio.sleep(ROUND_TRIP)
        target = self._target()
        args = over_the_wire(args)
        async with self.cloud.container(self.cls).slot():
            if inspect.iscoroutinefunction(target):
                result = await target(*args)
            else:  # Modal runs a concurrent container's sync inputs in threads
                result = await asyncio.to_thread(target, *args)
        return over_the_wire(result)

    def _blocking(self, *args: Any) -> Any:
        return over_the_wire(self._target()(*over_the_wire(args)))

    @property
    def remote(self) -> _Call:
        return _Call(self._remote, self._blocking)

    @property
    def remote_gen(self) -> _Stream:
        return _Stream(self._remote_gen)

    async def _remote_gen(self, *args: Any) -> AsyncIterator[Any]:
        """The container's generator runs in its own thread, as an input of its own;
        closing this iterator tells it nothing, as with Modal's."""
        await asyncio.sleep(ROUND_TRIP)
        target = self._target()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        args = over_the_wire(args)

        def produce() -> None:
            try:
                for piece in target(*args):
                    with contextlib.suppress(RuntimeError):  # the caller's loop may be gone
                        loop.call_soon_threadsafe(pieces.put_nowait, ("item", piece))
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pieces.put_nowait, ("raise", exc))
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(pieces.put_nowait, ("end", None))

        threading.Thread(target=produce, daemon=True).start()
        while True:
            kind, value = await pieces.get()
            if kind == "end":
                return
            if kind == "raise":
                raise over_the_wire(value)
            yield over_the_wire(value)

    @property
    def spawn(self) -> _Call:
        return _Call(self._spawn, lambda *a: pytest.fail("a blocking spawn"))

    async def _spawn(self, *args: Any) -> FunctionCall:
        await asyncio.sleep(ROUND_TRIP)
        call = FunctionCall(f"fc-{next(self.cloud._ids)}")
        self.cloud.calls[call.object_id] = call
        failure = self.cloud.failing.get((self.cls, self.method))
        if failure is not None:
            self.cloud.log.append((self.cls, self.method))
            call.fail(failure)
            return call
        call.task = asyncio.get_running_loop().create_task(self._remote(*args))
        return call


# --- The container ---


@dataclass
class Answer:
    """What Modal's proxy sends back for one request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        return next((v.decode() for k, v in self.headers if k.lower() == wanted), None)

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class _IOManager:
    """The part of Modal's ContainerIOManager the ASGI adapter reads: an input's data
    stream (the request's body, then, when the client goes, `http.disconnect`)."""

    def __init__(self) -> None:
        self.inputs: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.get_data_in = _Stream(self._data_in)

    async def _data_in(
        self, function_call_id: str, attempt_token: str | None
    ) -> AsyncIterator[Any]:
        queue = self.inputs[function_call_id]
        while True:
            yield await queue.get()


class Container:
    """One container of a Modal class or function of a built module."""

    def __init__(self, modal_object: Any) -> None:
        check_sdk()
        self.module: ModuleType | None = None
        service = (
            modal_object._get_class_service_function()
            if isinstance(modal_object, modal.Cls)
            else modal_object
        )
        with warnings.catch_warnings():  # read locally, from the decorators: no network
            warnings.simplefilter("ignore")
            info = service.info()
        if isinstance(modal_object, modal.Cls):
            self.obj: Any = user_class(modal_object)()
            self.function: Callable[..., Any] | None = None
        else:
            self.obj = None
            self.function = raw_function(modal_object)
        # Modal runs at most `max_inputs` inputs at once in a container (one without
        # `@modal.concurrent`); the rest wait for a slot.
        concurrency = info.concurrency_info
        self.max_inputs = concurrency.max_inputs if concurrency is not None else 1
        self._slots: asyncio.Semaphore | None = None
        self.busy = 0  # inputs running now
        self.entered: list[str] = []  # lifecycle methods run, in order
        self.io = _IOManager()
        self._ids = itertools.count()
        self._web: Callable[..., Any] | None = None
        self._lifespan: Any = None
        self._lifespan_task: asyncio.Task[Any] | None = None
        self._started = False

    def _lifecycle(self, flag: int) -> list[Callable[..., Any]]:
        if self.obj is None:
            return []
        found = _find_callables_for_obj(self.obj, flag)
        self.entered.extend(found)
        return list(found.values())

    def _call_all(self, funcs: list[Callable[..., Any]]) -> None:
        for func in funcs:  # Modal's call_lifecycle_functions
            result = func()
            if inspect.iscoroutine(result):
                _run_coroutine(result)

    def start(self) -> None:
        """`@modal.enter(snap=True)` methods, (the snapshot), then `@modal.enter()` ones."""
        if self._started:
            return
        self.snapshot()
        self.restore()

    def snapshot(self) -> None:
        """What runs before Modal saves a memory snapshot: `@modal.enter(snap=True)`."""
        self._started = True
        self._call_all(self._lifecycle(_PartialFunctionFlags.ENTER_PRE_SNAPSHOT))

    def restore(self) -> None:
        """What runs in each container restored from it: `@modal.enter(snap=False)` (and
        `@modal.enter()`, which is that)."""
        self._started = True
        self._call_all(self._lifecycle(_PartialFunctionFlags.ENTER_POST_SNAPSHOT))

    def stop(self) -> None:
        """The container shuts down: its `@modal.exit` methods."""
        self._call_all(self._lifecycle(_PartialFunctionFlags.EXIT))

    def method(self, name: str) -> Callable[..., Any]:
        assert self.obj is not None, "a function has no methods"
        found = _find_callables_for_obj(self.obj, _PartialFunctionFlags.CALLABLE_INTERFACE)
        if name not in found:
            raise AttributeError(f"{type(self.obj).__name__} has no @modal.method {name}")
        return found[name]

    # --- HTTP, through Modal's ASGI adapter ---

    async def serve(self, web: str = "web") -> None:
        """Build the ASGI app as the container does, and run its lifespan startup."""
        if self._web is not None:
            return
        self.start()
        if self.obj is not None:
            found = _find_callables_for_obj(self.obj, _PartialFunctionFlags.WEB_INTERFACE)
            make = found[web]
        else:
            assert self.function is not None
            make = self.function
        self._web, self._lifespan = asgi.asgi_app_wrapper(make(), self.io)
        self._lifespan_task = asyncio.get_running_loop().create_task(
            self._lifespan.background_task()
        )
        await self._lifespan.lifespan_startup()

    async def shutdown(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.lifespan_shutdown()
            if self._lifespan_task is not None:
                self._lifespan_task.cancel()
        self.stop()

    def _scope(
        self, method: str, path: str, headers: dict[str, str] | None, body: bytes
    ) -> dict[str, Any]:
        route, _, query = path.partition("?")
        sent = {"host": "app--web.modal.run", **(headers or {})}
        if body and "content-length" not in {k.lower() for k in sent}:
            sent["content-length"] = str(len(body))
        return {  # what Modal's proxy builds: no "asgi" key, no "server"
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": route,
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
            "client": ("203.0.113.7", 40000 + next(self._ids) % 20000),
        }

    async def messages(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        body: bytes = b"",
    ) -> AsyncIterator[dict[str, Any]]:
        """One input: the ASGI messages the app sends back, as Modal relays them.

        Leave the loop early (close this generator) and the client has gone the way
        Modal's proxy reports it: `http.disconnect` on the input's data stream, while the
        app runs on until it ends (at most 5 s here). Cancel the task that reads it and
        Modal has cancelled the input."""
        await self.serve()
        if json is not None:
            import json as _json

            body = _json.dumps(json).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        async with (
            self.slot(),
            contextlib.aclosing(self._input(method, path, headers, body)) as sent,
        ):
            async for message in sent:
                yield message

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the container's `max_inputs` slots, for one input."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_inputs)
        async with self._slots:
            self.busy += 1
            try:
                yield
            finally:
                self.busy -= 1

    async def _input(
        self, method: str, path: str, headers: dict[str, str] | None, body: bytes
    ) -> AsyncIterator[dict[str, Any]]:
        assert self._web is not None
        call_id = f"fc-in-{next(self._ids)}"
        data_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.io.inputs[call_id] = data_in
        data_in.put_nowait({"type": "http.request", "body": body})
        reset = _set_current_context_ids([f"in-{call_id}"], [call_id], ["attempt"])
        sent = self._web(self._scope(method, path, headers, body))
        finished = False
        try:
            async for message in sent:
                yield message
            finished = True
        finally:
            try:
                if not finished:
                    data_in.put_nowait({"type": "http.disconnect"})
                    with contextlib.suppress(TimeoutError, StopAsyncIteration):
                        async with asyncio.timeout(5):
                            async for _ in sent:
                                pass
            finally:
                await sent.aclose()
                reset()

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        status, headers, chunks = 0, [], []
        async for message in self.messages(method, path, **kwargs):
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
        return Answer(status, headers, b"".join(chunks))

    async def read_then_leave(
        self, chunks: int, method: str, path: str, **kwargs: Any
    ) -> list[bytes]:
        """Read `chunks` non-empty body chunks of a streamed answer, then leave as a
        client does on Modal: `http.disconnect` from the proxy."""
        got: list[bytes] = []
        messages = self.messages(method, path, **kwargs)
        async for message in messages:
            if message["type"] == "http.response.body" and message.get("body"):
                got.append(message["body"])
                if len(got) >= chunks:
                    break
        await messages.aclose()
        return got

    async def read_then_cancel(
        self, chunks: int, method: str, path: str, **kwargs: Any
    ) -> list[bytes]:
        """Read `chunks` body chunks, then Modal cancels the input: its task is cancelled
        (as when the caller's request times out or the call is cancelled)."""
        got: list[bytes] = []
        enough = asyncio.Event()

        async def read() -> None:
            async for message in self.messages(method, path, **kwargs):
                if message["type"] == "http.response.body" and message.get("body"):
                    got.append(message["body"])
                    if len(got) >= chunks:
                        enough.set()

        task = asyncio.get_running_loop().create_task(read())
        waiter = asyncio.get_running_loop().create_task(enough.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return got


def _run_coroutine(coroutine: Any) -> Any:
    """An async lifecycle method, run to its end (Modal runs it on the container's loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(coroutine)))
    thread.start()
    thread.join()
    return result[0] if result else None
