"""Slow HTTP clients, for load tests: ``python -m tests.slow_clients PORT COUNT SECONDS [TOKEN]``.

Each client opens a connection and trickles a request that never completes: half send
a header one short line at a time; the other half send a whole header of
``POST /admin/halt`` (with ``TOKEN``, so the server reads the body) and then the body a
few bytes at a time. When the server closes a connection, the client opens another
after a pause (2.5 to 7.5 s, like slowloris's rounds; the clients start within 2 s),
so the pressure lasts the whole time. At the end it prints one JSON line: connections
opened, closed by the server, and the statuses of any answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import sys
from collections import Counter

TRICKLE_EVERY_S = 1.0
START_WITHIN_S = 2.0
REOPEN_AFTER_S = (2.5, 7.5)


class Tally:
    def __init__(self) -> None:
        self.opened = 0
        self.closed_by_server = 0
        self.statuses: Counter[str] = Counter()


def request_head(index: int, token: str | None) -> bytes:
    if index % 2 == 0 or token is None:
        return b"GET /health HTTP/1.1\r\nHost: slow\r\n"
    return (
        b"POST /admin/halt HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n".encode()
    )


async def slow_client(index: int, port: int, token: str | None, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    trickle = b"X-Slow: y\r\n" if index % 2 == 0 or token is None else b'{"a":'
    pause = random.Random(index)
    await asyncio.sleep(pause.uniform(0, START_WITHIN_S))
    while loop.time() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(pause.uniform(*REOPEN_AFTER_S))
            continue
        tally.opened += 1
        try:
            writer.write(request_head(index, token))
            while loop.time() < until:
                writer.write(trickle)
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(1024), TRICKLE_EVERY_S)
                except TimeoutError:
                    continue
                if answer.startswith(b"HTTP/1.1 "):
                    tally.statuses[answer[9:12].decode()] += 1
                tally.closed_by_server += 1
                break
        except ConnectionError:
            tally.closed_by_server += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await asyncio.sleep(pause.uniform(*REOPEN_AFTER_S))


async def main(port: int, count: int, seconds: float, token: str | None) -> Tally:
    tally = Tally()
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(slow_client(i, port, token, until, tally) for i in range(count)))
    return tally


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    result = asyncio.run(main(port, count, seconds, token))
    print(
        json.dumps(
            {
                "opened": result.opened,
                "closed_by_server": result.closed_by_server,
                "statuses": dict(result.statuses),
            }
        )
    )
