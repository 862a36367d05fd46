"""Transfer load: signed transfers between the devnet's funded accounts, POSTed to the
running validators' /txs at a steady rate.

Transfers stay among genesis accounts, so that the supply check can count every coin.
The transaction for (sender, nonce) is always the same bytes, so resending one after a
node lost it (killed, cut off) is harmless: the chain applies a nonce once.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Callable, Sequence

from node.types.crypto import SigningKey
from node.types.transactions import Transfer, sign_tx
from tests.e2e.api import NodeApi

WINDOW = 32  # pending nonces per sender (the mempool takes up to 64 past the committed one)
RESYNC_S = 3.0
STUCK_S = 10.0  # no nonce committed for this long: the pending ones may be lost, resend
TAKEN = ("duplicate", "nonce_pending")  # refusals that mean the pool already holds it


class TransferLoad:
    def __init__(self, apis: Sequence[NodeApi], is_running: Callable[[int], bool],
                 senders: Sequence[SigningKey], chain_id: str, fee: int, per_s: float):
        self.apis = apis
        self.is_running = is_running
        self.senders = senders
        self.chain_id = chain_id
        self.fee = fee
        self.per_s = per_s
        self.taken = 0  # transactions a node took (one resent after a loss counts again)
        self._next = [0] * len(senders)  # the next nonce to send, per sender
        self._committed = [0] * len(senders)
        self._advanced_at = [0.0] * len(senders)  # when each committed nonce last moved
        self._targets = itertools.cycle(range(len(apis)))

    def _transfer(self, sender: int, nonce: int) -> str:
        recipient = self.senders[(sender + 1) % len(self.senders)].public_key
        payload = Transfer(to=recipient, amount=1 + nonce % 1000)
        return sign_tx(self.senders[sender], self.chain_id, nonce, payload, self.fee).encode().hex()

    def _api(self) -> NodeApi | None:
        for _ in range(len(self.apis)):
            n = next(self._targets)
            if self.is_running(n):
                return self.apis[n]
        return None

    async def run(self) -> None:
        """Send until cancelled."""
        self._advanced_at = [asyncio.get_running_loop().time()] * len(self.senders)
        await asyncio.gather(self._send(), self._resync())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        for sender in itertools.cycle(range(len(self.senders))):
            due += 1.0 / self.per_s  # a schedule, so that slow replies do not lower the rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            api = self._api()
            if api is None or self._next[sender] - self._committed[sender] >= WINDOW:
                continue  # the chain is stalled for this sender: wait for it
            reply = await api.post_tx(self._transfer(sender, self._next[sender]))
            if reply is not None and ("hash" in reply or reply.get("reason") in TAKEN):
                self._next[sender] += 1
                self.taken += "hash" in reply

    async def _resync(self) -> None:
        """Follow each sender's committed nonce; rewind to it when nothing commits."""
        loop = asyncio.get_running_loop()
        while True:
            for sender, key in enumerate(self.senders):
                api = self._api()
                account = await api.account(key.public_key.hex()) if api is not None else None
                if account is None:
                    continue
                now = loop.time()
                if account["nonce"] > self._committed[sender]:
                    self._committed[sender], self._advanced_at[sender] = account["nonce"], now
                if self._next[sender] < self._committed[sender]:
                    self._next[sender] = self._committed[sender]
                elif (self._next[sender] > self._committed[sender]
                      and now - self._advanced_at[sender] > STUCK_S):
                    self._next[sender], self._advanced_at[sender] = self._committed[sender], now
            await asyncio.sleep(RESYNC_S)
