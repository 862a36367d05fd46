"""The nodes' public HTTP API (DESIGN.md §6), the only way the runner looks at a node.

Every read returns the reply's JSON, or None when the node does not answer in time or
answers with an error: a killed, paused or restarting node is an expected sight, and
the caller decides what a missing answer means.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

READ_TIMEOUT_S = 2.0
MAX_HEADERS = 1000  # per GET /headers, the API's cap


class NodeApi:
    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session = session
        self.url = url

    async def get(self, path: str, timeout: float = READ_TIMEOUT_S) -> Any:
        try:
            async with self.session.get(self.url + path,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
                if reply.status != 200:
                    return None
                return await reply.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
            return None

    async def status(self) -> dict | None:
        return await self.get("/status")

    async def block(self, height: int) -> dict | None:
        return await self.get(f"/blocks/{height}")

    async def round(self, round_: int) -> dict | None:
        return await self.get(f"/rounds/{round_}")

    async def account(self, address: str) -> dict | None:
        return await self.get(f"/accounts/{address}")

    async def first_block(self) -> int | None:
        """The lowest height of the node's unbroken run of blocks (older ones are pruned)."""
        reply = await self.get("/headers", timeout=10.0)
        return reply["headers"][0]["height"] if reply and reply["headers"] else None

    async def headers(self, first: int, last: int) -> list[dict] | None:
        """Headers first..last (as far as the node has them), in API-sized requests."""
        headers: list[dict] = []
        for start in range(first, last + 1, MAX_HEADERS):
            stop = min(last, start + MAX_HEADERS - 1)
            reply = await self.get(f"/headers?from={start}&to={stop}", timeout=10.0)
            if reply is None:
                return None
            headers.extend(reply["headers"])
        return headers

    async def post_tx(self, tx_hex: str) -> dict | None:
        """POST /txs: {"hash"} if the node took the transaction, {"error", "reason"} if it
        refused it, None if it did not answer."""
        try:
            async with self.session.post(self.url + "/txs", data=tx_hex,
                                         timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_S)) as reply:
                return await reply.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
            return None
