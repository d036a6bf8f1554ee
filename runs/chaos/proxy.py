"""A TCP proxy in front of PostgreSQL that a scenario can take down: new connections refused, open ones dropped.

The workers and the scheduler connect through it, so an outage is felt by them alone: the
shared server is never stopped, and the command itself keeps its own direct connection.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from stepwise.runs.benchmarks.processes import free_port


class DatabaseProxy:
    """Forwards ``127.0.0.1:<port>`` to the database; ``down()`` refuses and drops, ``up()`` serves again."""

    def __init__(self, *, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stepwise-chaos-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        """Start the proxy's thread and begin serving."""
        self._thread.start()
        self.up()

    def up(self) -> None:
        """Accept connections again."""
        self._call(self._listen())

    def down(self) -> None:
        """Refuse new connections and drop every open one, as a database restart does."""
        self._call(self._close())

    def stop(self) -> None:
        """Drop everything and end the proxy's thread."""
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coroutine) -> None:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close: the client sees the connection die
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        try:
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
