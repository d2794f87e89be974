"""Start and stop a local anvil chain for tests, benchmarks and the demo.

Runs the native binary shipped by the npm package ``@foundry-rs/anvil`` (not its node
wrapper, which would put a second process between us and the PID we stop) on
127.0.0.1 and a free port, waits until it answers ``eth_chainId``, and stops it by PID:
SIGTERM, then SIGKILL if it lingers. SIGSTOP/SIGCONT helpers freeze the node to
simulate an RPC outage.

anvil dies with the process that started it, however that process ends (``kill -9``
included; :mod:`engine.child_processes`). The tie is to the parent *thread*, so every
anvil is forked from one spawner thread that lives as long as the interpreter (an
``asyncio.to_thread`` worker could exit first and take the node with it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.child_processes import dies_with
from engine.redaction import scrub_url, url_origin

ROOT = Path(__file__).resolve().parents[2]
# The repository's own node_modules; ENGINE_NODE_MODULES points elsewhere when the
# package is installed outside the checkout (the Docker image does).
NODE_MODULES = Path(os.environ.get("ENGINE_NODE_MODULES") or ROOT / "node_modules")
ANVIL_BINARY = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anvil-spawner")


class AnvilError(RuntimeError):
    """anvil is missing, did not start, or did not answer."""


def find_anvil_binary(path: Path | None = None) -> Path:
    """The anvil executable, or an error that says how to install it."""
    binary = path or Path(os.environ.get("ANVIL_BINARY", ANVIL_BINARY))
    if not binary.is_file():
        raise AnvilError(
            f"anvil not found at {binary}: the npm packages are not installed; "
            "run `make install` (or `npm ci`) in the repository root"
        )
    return binary


def spawn_tied_to_process(argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """``Popen(argv)`` whose child is SIGKILLed when this process ends, from the spawner
    thread (see the module docstring); the interpreter's exit ends that thread too."""
    preexec = dies_with(os.getpid())
    return _spawner.submit(subprocess.Popen, argv, preexec_fn=preexec, **popen_kwargs).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 2.0) -> Any:
    """One blocking JSON-RPC call; for start-up checks and test set-up, not the hot path."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


def _process_state(pid: int) -> str:
    """The one-letter state from /proc/<pid>/stat (``T`` when stopped by a signal)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[0]


@dataclass
class AnvilOptions:
    """How the chain mines: ``block_time`` None means automine (a block per tx).

    ``fork_url`` forks that chain (``--fork-url``, at ``fork_block_number`` or its latest
    block): state is fetched from it on demand, nothing is ever sent to it. The fork keeps
    ``chain_id`` (31337 unless set), so a transaction signed on it is invalid on the
    forked chain (EIP-155). The URL may carry a provider's API key: errors show only its
    origin (:func:`engine.redaction.url_origin`); on a shared machine mind that other
    users can read a process's arguments.
    """

    block_time: float | None = None
    automine: bool = True
    port: int = 0  # 0: a free port
    chain_id: int = 31337
    accounts: int = 2
    balance_eth: int = 10_000
    fork_url: str | None = None
    fork_block_number: int | None = None
    extra_args: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # the fork URL may hold an API key
        fork = url_origin(self.fork_url) if self.fork_url else None
        return (
            f"AnvilOptions(port={self.port}, chain_id={self.chain_id}, fork={fork!r}, "
            f"fork_block_number={self.fork_block_number})"
        )


class Anvil:
    """One anvil process on 127.0.0.1; a context manager (sync or async)."""

    def __init__(self, options: AnvilOptions | None = None, binary: Path | None = None) -> None:
        self.options = options or AnvilOptions()
        self.binary = find_anvil_binary(binary)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise AnvilError("anvil is not running")
        return self.proc.pid

    def _argv(self) -> list[str]:
        opts = self.options
        argv = [
            str(self.binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(opts.chain_id),
            "--accounts",
            str(opts.accounts),
            "--balance",
            str(opts.balance_eth),
            "--silent",
        ]
        if opts.fork_url is not None:
            argv += ["--fork-url", opts.fork_url]
            if opts.fork_block_number is not None:
                argv += ["--fork-block-number", str(opts.fork_block_number)]
        if opts.block_time is not None:
            argv += ["--block-time", str(opts.block_time)]
        elif not opts.automine:
            argv.append("--no-mining")
        return argv + opts.extra_args

    def start(self, timeout: float = 10.0) -> Anvil:
        """Spawn anvil and return once it answers ``eth_chainId`` (retrying a taken port)."""
        started = time.perf_counter()
        for _attempt in range(3):
            self.port = self.options.port or free_port()
            self.proc = spawn_tied_to_process(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            if self._wait_ready(timeout):
                self.startup_seconds = time.perf_counter() - started
                return self
            err = self._stop_and_read_stderr()
            if self.options.fork_url:
                err = scrub_url(err, self.options.fork_url)
            if self.options.port or "in use" not in err.lower():
                raise AnvilError(f"anvil did not answer eth_chainId within {timeout}s: {err}")
        raise AnvilError("anvil could not bind a free port after 3 attempts")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if int(rpc_call(self.url, "eth_chainId", timeout=0.5), 16) == self.options.chain_id:
                    return True
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.02)
        return False

    def _stop_and_read_stderr(self) -> str:
        proc = self.proc
        self.stop()
        if proc is None or proc.stderr is None:
            return ""
        return proc.stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID (resuming it first if frozen), SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        finally:
            if proc.stderr is not None:
                proc.stderr.close()

    def freeze(self, timeout: float = 2.0) -> None:
        """SIGSTOP: the port stays open but nothing answers (an RPC outage).

        Returns once the kernel reports the process stopped: the signal is delivered
        asynchronously, and a request sent just after ``kill`` may still be answered.
        """
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while _process_state(self.pid) not in ("T", "t"):
            if time.monotonic() > deadline:
                raise AnvilError(f"anvil (pid {self.pid}) did not stop within {timeout}s")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT: undo :meth:`freeze`."""
        os.kill(self.pid, signal.SIGCONT)

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.url, method, list(params))

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Anvil:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
