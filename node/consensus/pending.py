"""Messages for the next height, held until the driver reaches it.

A peer one block ahead already gossips the next height's proposals and votes; holding
them saves a round of timeouts.  Nothing about them can be checked against a committee
yet, so what one signer can make us hold is capped (a few rounds of votes and a proposal
or two), and so are the whole buffer's messages and bytes: a proposal carries a block of
up to a frame, and a thousand of them must not fit.
"""
from __future__ import annotations

from node.consensus.messages import ConsensusMessage, signer_of

MAX_PENDING = 1000  # messages
MAX_PENDING_BYTES = 32 * 1024 * 1024
PER_SIGNER = 16  # a validator's prevote and precommit for the next height's first 8 rounds


class PendingMessages:
    def __init__(self, max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.max_bytes = max_bytes
        self._messages: list[tuple[ConsensusMessage, int]] = []  # (message, encoded size)
        self._per_signer: dict[bytes, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def messages(self) -> list[ConsensusMessage]:
        return [message for message, _ in self._messages]

    def add(self, message: ConsensusMessage) -> bool:
        """Hold a signature-checked message; False if its signer's share or the buffer is full."""
        signer = signer_of(message)
        size = len(message.encode())
        if (self._per_signer.get(signer, 0) >= PER_SIGNER or len(self._messages) >= MAX_PENDING
                or self._bytes + size > self.max_bytes):
            return False
        self._messages.append((message, size))
        self._per_signer[signer] = self._per_signer.get(signer, 0) + 1
        self._bytes += size
        return True

    def take(self) -> list[ConsensusMessage]:
        """Everything held, oldest first; the buffer is empty after."""
        taken = self.messages
        self._messages, self._per_signer, self._bytes = [], {}, 0
        return taken
