"""A function app with one queue-triggered function, for tests of the local host's queue
driver (snapcopy's own chunk function comes with the diff engine)."""

from __future__ import annotations

import azure.functions as func

from shared.chunk_messages import ChunkMessage

app = func.FunctionApp()
RECEIVED: list[tuple[ChunkMessage, int]] = []  # (message, dequeue count)


@app.function_name("copy_chunk")
@app.queue_trigger(arg_name="message", queue_name="snapcopy-chunks", connection="AzureWebJobsStorage")
def copy_chunk(message: func.QueueMessage) -> None:
    chunk = ChunkMessage.decode(message.get_body().decode())
    RECEIVED.append((chunk, message.dequeue_count or 0))
    if chunk.chunk.index == 13:
        raise RuntimeError("chunk 13 always fails")
