"""The emulators' outbound transport lets only so many requests into the connection pool."""

from __future__ import annotations

import asyncio

import httpx

from emulators.outbound import BoundedTransport, RewriteHosts


class Pool(httpx.AsyncBaseTransport):
    """Stands in for the connection pool: counts the requests inside it, and the most seen.

    A request is inside from the moment it is handed over until its response is closed.
    """

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.inside += 1
        self.most = max(self.most, self.inside)
        # Let every other request that is free to enter do so meanwhile.
        await asyncio.sleep(0.01)
        return httpx.Response(200, stream=_Body(self))


class _Body(httpx.AsyncByteStream):
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"ok"

    async def aclose(self) -> None:
        self._pool.inside -= 1


def test_no_more_than_the_limit_are_inside_the_pool_at_once() -> None:
    pool = Pool()

    async def many() -> list[int]:
        async with httpx.AsyncClient(transport=BoundedTransport(3, pool)) as client:
            answers = await asyncio.gather(*(client.get("http://upstream/") for _ in range(12)))
        return [a.status_code for a in answers]

    assert asyncio.run(many()) == [200] * 12
    assert pool.most == 3
    assert pool.inside == 0


def test_a_slot_comes_back_when_a_streamed_response_is_closed() -> None:
    pool = Pool()

    async def rounds() -> int:
        async with httpx.AsyncClient(transport=BoundedTransport(2, pool)) as client:
            for _ in range(3):
                # Each round takes both slots and gives them back by closing its streams.
                async with (
                    client.stream("GET", "http://upstream/") as one,
                    client.stream("GET", "http://upstream/") as two,
                ):
                    await one.aread()
                    await two.aread()
            answer = await client.get("http://upstream/")
        return answer.status_code

    # Were the slots not given back, the second round would wait forever for them.
    assert asyncio.run(asyncio.wait_for(rounds(), timeout=20)) == 200
    assert pool.most == 2


def test_a_rewritten_host_is_reached_elsewhere_with_its_own_host_header() -> None:
    seen: list[tuple[str, str]] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        seen.append((f"{request.url.host}:{request.url.port}", request.headers["host"]))
        return httpx.Response(200)

    async def go() -> None:
        transport = RewriteHosts(httpx.MockTransport(answer), {"localhost:9000": "minio:9000"})
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get("http://localhost:9000/bucket/key?X-Amz-Signature=abc")
            await client.get("http://cdn.example.com/a.jpg")

    asyncio.run(go())
    assert seen == [("minio:9000", "localhost:9000"), ("cdn.example.com:None", "cdn.example.com")]
