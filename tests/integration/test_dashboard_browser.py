"""The dashboard in a real headless chromium, against a real mining devnet: it loads with
no console error, draws a loss-chart point for every closed round, lists the rounds'
units with their statuses, keeps updating, and renders to a PNG."""
import asyncio
import json
import pathlib
import shutil
import struct
import time
import zlib

import aiohttp
import pytest

from node.types.genesis import load_genesis
from node.uPoW.rounds import RoundSchedule
from tests.integration.cdp import Chromium, Page
from tests.integration.test_devnet import _get, _wait, running_devnet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATUSES = {"committed", "accepted", "rejected", "slashed"}
WIDTH, HEIGHT = 1280, 900

# what the test reads of the page, through the hooks the dashboard gives its elements
READ_PAGE = """(() => {
  const text = sel => { const e = document.querySelector(sel); return e ? e.textContent : null; };
  return {
    points: [...document.querySelectorAll("#loss-chart circle[data-round]")].map(c => Number(c.dataset.round)),
    rows: [...document.querySelectorAll("#rounds tbody tr[data-round]")].map(tr => ({
      round: Number(tr.dataset.round),
      link: tr.querySelector("a") && tr.querySelector("a").getAttribute("href"),
      units: [...tr.querySelectorAll("[data-status]")].map(u => [u.dataset.miner, Number(u.dataset.unit),
                                                                  u.dataset.status])})),
    miners: document.querySelectorAll("#miners tbody tr[data-account]").length,
    committee: document.querySelectorAll("#committee tbody tr[data-member]").length,
    account: text("#this-node [data-field=account]"),
    height: text("#chain [data-field=height] strong"),
    error: text("#error"),
  };
})()"""


@pytest.fixture
def devnet(tmp_path):
    with running_devnet(tmp_path / "devnet", "--validators", "3") as directory:
        yield directory


def _closed_rounds(url: str) -> dict[int, dict]:
    """The rounds node-0 keeps that have closed with an eval loss, by round."""
    status = _get(url, "/status")
    views = {r: _get(url, f"/rounds/{r}") for r in range(status["round"])}
    return {r: v for r, v in views.items() if v and v.get("eval_loss") is not None}


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the filtered scanlines of an 8-bit RGB or RGBA PNG, checked as whole."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, at = {}, 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.setdefault(kind, []).append(data[at + 8:at + 8 + length])
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and color in (2, 6), f"unexpected PNG format: depth {depth}, color type {color}"
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    assert len(raw) == height * (1 + width * (3 if color == 2 else 4)), "PNG pixel data is truncated"
    return width, height, raw


async def _drive(http_url: str, page_url: str, node_url: str, shot: pathlib.Path) -> dict:
    async with aiohttp.ClientSession() as session:
        page = await Page.open(session, http_url)
        try:
            for domain in ("Runtime", "Log", "Page"):
                await page.send(f"{domain}.enable")
            await page.send("Emulation.setDeviceMetricsOverride",
                            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            await page.send("Page.navigate", {"url": page_url})

            # the page refreshes every 2 s: give it a while to read the rounds, as the node
            # closes more of them meanwhile
            deadline = time.monotonic() + 60
            seen: dict = {}
            while True:
                seen = await page.evaluate(READ_PAGE)
                closed = await asyncio.to_thread(_closed_rounds, node_url)
                if _page_matches(seen, closed):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"the page never showed the closed rounds {sorted(closed)}: it shows {seen}")
                await asyncio.sleep(1)

            first_height = int(seen["height"].replace(",", ""))
            while int((await page.evaluate(READ_PAGE))["height"].replace(",", "")) <= first_height:
                if time.monotonic() > deadline + 15:
                    pytest.fail(f"the page stopped updating at height {first_height}")
                await asyncio.sleep(0.5)

            shot.write_bytes(await page.screenshot())
            await asyncio.sleep(0.5)  # let any late error reach the log
            errors = page.console_errors()
            assert not errors, f"the page logged errors: {errors}"
            return seen
        finally:
            await page.close()


def _page_matches(seen: dict, closed: dict[int, dict]) -> bool:
    """Whether the page shows a loss point for every closed round, and lists every closed
    round's units with the statuses the API gives (a closed round's are final)."""
    if not {0, 1} <= set(closed) or sorted(seen["points"]) != sorted(closed):
        return False
    rows = {row["round"]: row for row in seen["rows"]}
    for r, view in closed.items():
        want = sorted([u["miner"], u["unit"], u["status"]] for u in view["units"])
        if r not in rows or sorted(rows[r]["units"]) != want:
            return False
    return True


def test_dashboard_in_a_browser(devnet, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    url = json.loads((devnet / "devnet.json").read_text())["nodes"][0]["url"]
    schedule = RoundSchedule.from_genesis(load_genesis(devnet / "genesis.json"))
    _wait(lambda: (_get(url, "/status") or {}).get("height", -1) >= schedule.close_height(1), 300,
          "round 1 closed on node-0")

    shot = tmp_path / "dashboard.png"
    with Chromium(chromium, tmp_path / "chromium-profile", WIDTH, HEIGHT) as browser:
        seen = asyncio.run(_drive(browser.http_url, url + "/", url, shot))

    statuses = {status for row in seen["rows"] for _, _, status in row["units"]}
    assert statuses <= STATUSES and "accepted" in statuses, statuses
    assert all(row["link"] == f"/rounds/{row['round']}" for row in seen["rows"])
    assert seen["miners"] >= 3 and seen["committee"] == 3 and seen["account"] and not seen["error"]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(set(pixels)) > 16, "the screenshot is blank"
