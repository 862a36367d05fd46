"""Fixtures shared by every test folder."""
import aiohttp
import pytest_asyncio


@pytest_asyncio.fixture
async def session():
    """An aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client
