"""A small Chrome DevTools Protocol client: headless chromium started as a process and
driven over its websocket with aiohttp, enough for a test to load a page, read it with
JavaScript, collect its console errors and take a screenshot."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import threading
import time
from typing import Any

import aiohttp

_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Chromium:
    """chromium --headless with a DevTools port of its own choosing; use as a context
    manager so that the process is killed, whatever happens."""

    def __init__(self, executable: str, profile: pathlib.Path, width: int = 1280, height: int = 900):
        self.command = [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                        "--remote-debugging-port=0", f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", "about:blank"]
        self.process: subprocess.Popen | None = None
        self.http_url = ""  # http://127.0.0.1:PORT, where /json lists the targets

    def __enter__(self) -> "Chromium":
        # a session of its own, so that close() ends chromium's helper processes too
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            self.http_url = self._wait_listening(timeout=60)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_listening(self, timeout: float) -> str:
        # chromium writes the browser's websocket address to stderr once it is ready; a
        # thread reads all of stderr, so that chromium never blocks writing to it
        assert self.process is not None and self.process.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        stderr = self.process.stderr

        def pump() -> None:
            for line in stderr:
                lines.put(line)
            lines.put("")  # the end: chromium exited

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                raise RuntimeError(f"chromium exited ({self.process.wait()}): {''.join(seen)[-2000:]}")
            seen.append(line)
            match = _LISTENING.search(line)
            if match:
                return "http://" + match.group(1)[len("ws://"):].split("/", 1)[0]
        raise RuntimeError(f"chromium did not report its DevTools address in {timeout} s")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class CDPError(Exception):
    pass


class Page:
    """One page target's DevTools session: commands answered by id, events kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self._ws = ws
        self._next_id = 0
        self._replies: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, http_url: str) -> "Page":
        """Connect to the browser's first page (the about:blank it started with)."""
        async with session.get(f"{http_url}/json") as reply:
            targets = await reply.json()
        page = next(t for t in targets if t["type"] == "page")
        ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 2**20)
        return cls(ws)

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._replies.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self.events.append(data)
        for future in self._replies.values():
            if not future.done():
                future.set_exception(CDPError("the DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        await self._ws.send_str(json.dumps({"id": self._next_id, "method": method, "params": params or {}}))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        """The page as it shows now, as PNG bytes."""
        return base64.b64decode((await self.send("Page.captureScreenshot", {"format": "png"}))["data"])

    def console_errors(self) -> list[str]:
        """Every error the page reported: console.error, uncaught exceptions and the
        browser's own log entries of level error (failed loads among them)."""
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append("console.error: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".rstrip())
        return errors

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
