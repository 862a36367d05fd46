"""Peer exchange: a node given one peer finds the others, and keeps a target number of
outbound peers.

Every EXCHANGE_INTERVAL_S the node asks one of its peers, in turn, for the peers it
has (GET /status on the peer's address, which serves the HTTP API as well), notes
their addresses in its AddressBook, and dials the most promising addresses it is not
connected to until it dials TARGET_OUTBOUND peers.  A learned peer that is not
connected DIAL_GRACE_S after it was dialed (or after it was last seen connected)
counts a failure in the book and is no longer dialed; the configured peers are dialed
for as long as the node runs, as before.  The book is saved in the home after an
exchange that added, dropped or scored an address, and every SAVE_INTERVAL_S besides
(for the times its connected peers were last seen).
"""
from __future__ import annotations

import asyncio
import logging
import pathlib
import time

import aiohttp

from node.net.address_book import AddressBook, dialable
from node.net.p2p import PeerNetwork
from node.net.rpc_client import STATUS_PATH, AsyncRpcClient, RpcError, http_url

log = logging.getLogger(__name__)

TARGET_OUTBOUND = 8
EXCHANGE_INTERVAL_S = 5.0
FIRST_EXCHANGE_S = 1.0  # a new node asks soon after its first peer connects
DIAL_GRACE_S = 20.0
STATUS_TIMEOUT_S = 5.0
SAVE_INTERVAL_S = 60.0


class PeerExchange:
    def __init__(self, network: PeerNetwork, book_path: pathlib.Path, configured: list[str],
                 target: int = TARGET_OUTBOUND):
        self.network = network
        self.book_path = book_path
        self.configured = set(configured)
        self.target = target
        self.book = AddressBook.load(book_path, network.listen_address)
        self._learned: dict[str, float] = {}  # learned address dialed -> when last connected or dialed
        self._turn = 0
        self._saved_at = 0.0

    async def run(self) -> None:
        """Exchange addresses and dial until cancelled."""
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(FIRST_EXCHANGE_S)
            while True:
                await self.exchange(session)
                await asyncio.sleep(EXCHANGE_INTERVAL_S)

    async def exchange(self, session: aiohttp.ClientSession) -> None:
        now = time.time()
        before = self._scores()
        connected = {address for _, address in self.network.peers()}
        for address in connected:
            self.book.connected(address, now)
        self._give_up_on_silent(connected, now)
        askable = sorted(a for a in connected if dialable(a, self.book.own))
        if askable:
            await self._ask(session, askable[self._turn % len(askable)], now)
            self._turn += 1
        self.book.age(now)
        dialing = self.network.dialing()
        for address in self.book.candidates(connected | dialing, self.target - len(dialing)):
            log.info("dialing %s, a peer learned from peer exchange", address)
            await self.network.connect(address)
            self._learned[address] = now
        if self._scores() != before or now - self._saved_at > SAVE_INTERVAL_S:
            try:
                self.book.save(self.book_path)
                self._saved_at = now
            except OSError as exc:
                log.warning("cannot save the peer address book %s: %s", self.book_path, exc)

    def _scores(self) -> dict[str, tuple[int, bool]]:
        return {a: (e.failures, e.reached) for a, e in self.book.entries.items()}

    def _give_up_on_silent(self, connected: set[str], now: float) -> None:
        for address, since in list(self._learned.items()):
            if address in connected:
                self._learned[address] = now
            elif now - since > DIAL_GRACE_S and address not in self.configured:
                self.book.failed(address)
                self.network.forget(address)
                del self._learned[address]

    async def _ask(self, session: aiohttp.ClientSession, address: str, now: float) -> None:
        try:
            reply = await AsyncRpcClient(http_url(address), session, STATUS_TIMEOUT_S).get(STATUS_PATH)
        except (RpcError, ValueError) as exc:
            log.debug("peer exchange with %s: %s", address, exc)
            return
        peers = reply.get("peers") if isinstance(reply, dict) else None
        if not isinstance(peers, list):
            log.debug("peer exchange with %s: its /status lists no peers", address)
            return
        learned = self.book.learn([p.get("address") for p in peers if isinstance(p, dict)], now)
        if learned:
            log.info("learned %d peer address(es) from %s", learned, address)
