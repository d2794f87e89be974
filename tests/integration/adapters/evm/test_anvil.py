"""The anvil launcher and `trade-engine chain up`, on real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error

import pytest

from adapters.evm.anvil import Anvil, AnvilError, AnvilOptions, rpc_call
from tests.paths import ROOT
from tests.processes import process_alive, wait_until

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists" until reaped; Popen.wait() in stop() reaps it.
    return True


def test_anvil_answers_on_loopback_and_stops_by_pid():
    anvil = Anvil().start()
    pid, url = anvil.pid, anvil.url
    try:
        assert url.startswith("http://127.0.0.1:")
        assert int(rpc_call(url, "eth_chainId"), 16) == 31337
        assert alive(pid)
    finally:
        anvil.stop()
    assert not alive(pid)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        rpc_call(url, "eth_chainId", timeout=0.5)


def test_missing_binary_says_to_install_the_npm_packages(tmp_path):
    with pytest.raises(AnvilError, match=r"make install.*npm ci"):
        Anvil(binary=tmp_path / "node_modules" / "anvil")


async def test_async_context_manager_starts_and_stops_anvil():
    async with Anvil() as anvil:
        pid = anvil.pid
        assert int(anvil.rpc("eth_blockNumber"), 16) == 0
    assert not alive(pid)


def test_frozen_anvil_does_not_answer_until_resumed_and_stop_still_works():
    anvil = Anvil().start()
    pid = anvil.pid
    try:
        anvil.freeze()
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            rpc_call(anvil.url, "eth_chainId", timeout=0.3)
        anvil.resume()
        assert int(rpc_call(anvil.url, "eth_chainId"), 16) == 31337
        anvil.freeze()  # stop() must also end a frozen process
    finally:
        anvil.stop()
    assert not alive(pid)


def test_block_time_mines_without_transactions_and_no_mining_does_not():
    with (
        Anvil(AnvilOptions(block_time=0.2)) as ticking,
        Anvil(AnvilOptions(automine=False)) as idle,
    ):
        ticking_start = int(ticking.rpc("eth_blockNumber"), 16)
        time.sleep(0.8)
        assert int(ticking.rpc("eth_blockNumber"), 16) >= ticking_start + 2
        assert int(idle.rpc("eth_blockNumber"), 16) == 0


def test_chain_up_deploys_prints_addresses_and_stops_anvil_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "chain", "up", "--port", "0", "--json", "--price", "2500"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        for contract in ("weth", "factory", "router", "pair", "base_token", "quote_token"):
            code = rpc_call(info["rpc_url"], "eth_getCode", [info[contract], "latest"])
            assert len(code) > 2, f"no code at {contract}"
        assert info["base_decimals"] == info["quote_decimals"] == 18
        anvil_pid = info["anvil_pid"]
        assert alive(anvil_pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    deadline = time.monotonic() + 5
    while alive(anvil_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(anvil_pid)


# Starts anvil from the main thread or from a thread that has finished, checks the node
# still answers, prints its pid and URL, and waits to be killed.
STARTER = """
import json, sys, threading, time
from adapters.evm.anvil import Anvil, rpc_call
started = []
if sys.argv[1] == "main":
    started.append(Anvil().start())
else:
    worker = threading.Thread(target=lambda: started.append(Anvil().start()))
    worker.start()
    worker.join()
    time.sleep(0.2)  # a node tied to the finished thread would be dying now
anvil = started[0]
rpc_call(anvil.url, "eth_chainId")
print(json.dumps({"pid": anvil.pid, "url": anvil.url}), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("thread", ["main", "finished worker"])
def test_anvil_dies_with_the_process_that_started_it_when_that_is_killed_9(thread):
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTER, thread],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        anvil = json.loads(line)
        assert int(rpc_call(anvil["url"], "eth_chainId"), 16) == 31337
        proc.kill()  # SIGKILL: no handler, no atexit, no finally runs
        proc.wait(5)
        wait_until(lambda: not process_alive(anvil["pid"]), 5, "anvil to die with its parent")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
