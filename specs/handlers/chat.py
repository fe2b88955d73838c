"""A WebSocket handler: the client's messages in, answers out as they are ready."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def converse(messages: AsyncIterator[str | bytes], model: Any) -> AsyncIterator[Any]:
    """Each text message answered with its length in the model's tokens (JSON); bytes sent
    back reversed; `bye` ends the conversation, which closes the connection normally.
    The model's methods block (the tokenizer, or a model class's call over the network),
    so they run in a thread, as anything slow must: the connection's event loop is shared."""
    async for message in messages:
        if isinstance(message, bytes):
            yield message[::-1]
        elif message.strip() == "bye":
            yield "bye"
            return
        else:
            yield {"text": message, "tokens": await asyncio.to_thread(model.count, message)}
