"""A function app whose queue trigger hands chunk messages to a Differ the test sets: the
diff method's chunk path, driven from Azurite's queue by the local host (snapcopy's own
queue-triggered function comes when the diff engine is wired into the app)."""

from __future__ import annotations

import azure.functions as func

from shared.chunk_messages import ChunkMessage
from shared.engine.differ import Differ

app = func.FunctionApp()
DIFFER: list[Differ] = []  # the test's Differ


@app.function_name("copy_chunk")
@app.queue_trigger(arg_name="message", queue_name="snapcopy-chunks", connection="AzureWebJobsStorage")
def copy_chunk(message: func.QueueMessage) -> None:
    DIFFER[0].copy(ChunkMessage.decode(message.get_body().decode()))
