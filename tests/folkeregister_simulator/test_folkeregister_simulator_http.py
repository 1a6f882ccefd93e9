"""The local Folkeregister feed simulator over real HTTP: auth, paging, documents, ETag, faults, growth."""

import asyncio
import time

import aiohttp
import pytest

from synthetic import Simulation, SyntheticConfig
from synthetic.folkeregister_simulator import Faults, run_simulator

TOKEN = "test-token"


def synthetic_feed(persons=8_000, seed=21):
    return Simulation(SyntheticConfig(persons=persons, seed=seed))


@pytest.fixture(scope="module")
def documents():
    return list(synthetic_feed().events(years=1))


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


async def test_requests_without_the_right_bearer_token_get_401(documents):
    async with run_simulator(documents[:10], token=TOKEN) as sim, aiohttp.ClientSession() as http:
        for headers in ({}, auth("wrong"), {"Authorization": TOKEN}):
            async with http.get(sim.feed_url, params={"seq": 1}, headers=headers) as response:
                assert response.status == 401
        async with http.get(sim.feed_url, params={"seq": 1}, headers=auth()) as response:
            assert response.status == 200


async def test_feed_pages_hold_at_most_1000_entries_from_and_including_seq(documents):
    assert len(documents) > 1_200
    async with run_simulator(documents, token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        async with http.get(sim.latest_url) as response:
            assert await response.json() == len(documents)
        async with http.get(sim.feed_url, params={"seq": 1}) as response:
            first = await response.json()
        async with http.get(sim.feed_url, params={"seq": 1001}) as response:
            second = await response.json()
        async with http.get(sim.feed_url, params={"seq": 500}) as response:
            middle = await response.json()
    assert [e["sekvensnummer"] for e in first] == list(range(1, 1001))
    assert [e["sekvensnummer"] for e in second] == list(range(1001, len(documents) + 1))
    assert middle[0]["sekvensnummer"] == 500 and len(middle) == 1000
    assert set(first[0]["hendelse"]) == {
        "folkeregisteridentifikator",
        "hendelsetype",
        "hendelsesdokument",
        "persondokument",
        "ajourholdstidspunkt",
    }
    assert first[41] == documents[41].feed_entry()


async def test_event_documents_are_fetched_by_their_id(documents):
    async with run_simulator(documents[:50], token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        entry = documents[17].feed_entry()
        async with http.get(sim.document_url(entry["hendelse"]["hendelsesdokument"])) as response:
            body = await response.json()
        assert body == documents[17].document()
        assert body["entitetsendring"] == "registrereNy"
        for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
            async with http.get(sim.document_url(unknown)) as response:
                assert response.status == 404


async def test_bad_seq_is_a_400(documents):
    async with run_simulator(documents[:5], token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        for params in ({}, {"seq": "x"}, {"seq": "0"}):
            async with http.get(sim.feed_url, params=params) as response:
                assert response.status == 400


async def test_etag_gives_304_until_new_events_arrive(documents):
    async with run_simulator(documents[:30], token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        async with http.get(sim.feed_url, params={"seq": 31}) as response:
            assert await response.json() == []
            etag = response.headers["ETag"]
        async with http.get(sim.feed_url, params={"seq": 31}, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        sim.append(documents[30:35])
        async with http.get(sim.feed_url, params={"seq": 31}, headers={"If-None-Match": etag}) as response:
            assert response.status == 200
            assert [e["sekvensnummer"] for e in await response.json()] == [31, 32, 33, 34, 35]
        async with http.get(sim.latest_url) as response:
            assert await response.json() == 35


async def test_throttling_and_server_errors_are_injected_deterministically(documents):
    async def statuses(faults):
        async with (
            run_simulator(documents[:5], token=TOKEN, faults=faults) as sim,
            aiohttp.ClientSession(headers=auth()) as http,
        ):
            seen = []
            for _ in range(60):
                async with http.get(sim.feed_url, params={"seq": 1}) as response:
                    seen.append(response.status)
                    if response.status == 429:
                        assert response.headers["Retry-After"] == "2"
            return seen

    faults = Faults(throttle_share=0.2, error_share=0.2, retry_after_s=2, seed=5)
    first = await statuses(faults)
    assert first == await statuses(faults)
    assert {200, 429, 500} == set(first)
    assert first != await statuses(Faults(throttle_share=0.2, error_share=0.2, retry_after_s=2, seed=6))


async def test_slow_pages_are_delayed(documents):
    async with run_simulator(documents[:5], token=TOKEN, faults=Faults(slow_share=1.0, slow_ms=300)) as sim:
        async with aiohttp.ClientSession(headers=auth()) as http:
            started = time.monotonic()
            async with http.get(sim.feed_url, params={"seq": 1}) as response:
                assert response.status == 200
            assert time.monotonic() - started >= 0.3


async def test_feed_grows_while_running_at_the_given_rate():
    simulation = synthetic_feed(persons=3_000, seed=2)
    initial = list(simulation.events(years=1 / 12))  # January
    live = simulation.events(years=None)  # February onwards
    async with (
        run_simulator(initial, token=TOKEN, live=live, rate=200) as sim,
        aiohttp.ClientSession(headers=auth()) as http,
    ):

        async def latest():
            async with http.get(sim.latest_url) as response:
                return await response.json()

        async def grown():
            while await latest() < len(initial) + 40:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(grown(), timeout=10)
        async with http.get(sim.feed_url, params={"seq": 1}) as response:
            entries = await response.json()
    assert [e["sekvensnummer"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[: len(initial)] == [d.feed_entry() for d in initial]
    assert entries[len(initial)]["hendelse"]["ajourholdstidspunkt"] >= "2024-02-01"


async def test_bulk_documents_come_back_in_order_as_json_lines_with_null_for_unknown_ids(documents):
    async with run_simulator(documents[:50], token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        ids = [documents[i].hendelsesdokument for i in (17, 3, 4, 5, 49)]
        asked = [*ids[:2], "00000000-0000-4000-8000-000000000000", *ids[2:], "not-a-uuid", ids[0]]
        async with http.post(sim.bulk_url, json=asked) as response:
            assert response.status == 200 and response.content_type == "application/x-ndjson"
            lines = (await response.read()).split(b"\n")
        assert lines.pop() == b""  # every line ends with a newline
        singles = []
        for document_id in ids:
            async with http.get(sim.document_url(document_id)) as response:
                singles.append(await response.read())
        assert lines == [singles[0], singles[1], b"null", *singles[2:], b"null", singles[0]]  # the same bytes
        async with http.post(sim.bulk_url, json=[]) as response:
            assert response.status == 200 and await response.read() == b""
        async with http.post(sim.bulk_url, json=ids, headers=auth("wrong")) as response:
            assert response.status == 401


async def test_bulk_requests_with_too_many_ids_or_a_bad_body_are_400(documents):
    async with run_simulator(documents[:5], token=TOKEN) as sim, aiohttp.ClientSession(headers=auth()) as http:
        async with http.post(sim.bulk_url, json=[documents[0].hendelsesdokument] * 1000) as response:
            assert response.status == 200 and len((await response.read()).splitlines()) == 1000
        for body in ([documents[0].hendelsesdokument] * 1001, {"ids": []}, [1, 2], "x"):
            async with http.post(sim.bulk_url, json=body) as response:
                assert response.status == 400
                assert (await response.json())["status"] == 400
        async with http.post(sim.bulk_url, data=b"[not json") as response:
            assert response.status == 400


async def test_faults_apply_to_bulk_requests(documents):
    ids = [d.hendelsesdokument for d in documents[:5]]
    faults = Faults(throttle_share=0.2, error_share=0.2, retry_after_s=2, seed=5)
    async with (
        run_simulator(documents[:5], token=TOKEN, faults=faults) as sim,
        aiohttp.ClientSession(headers=auth()) as http,
    ):
        seen = []
        for _ in range(60):
            async with http.post(sim.bulk_url, json=ids) as response:
                seen.append(response.status)
                if response.status == 429:
                    assert response.headers["Retry-After"] == "2"
    assert {200, 429, 500} == set(seen)
    async with run_simulator(documents[:5], token=TOKEN, faults=Faults(slow_share=1.0, slow_ms=300)) as sim:
        async with aiohttp.ClientSession(headers=auth()) as http:
            started = time.monotonic()
            async with http.post(sim.bulk_url, json=ids) as response:
                assert response.status == 200
            assert time.monotonic() - started >= 0.3


async def test_without_bulk_the_simulator_serves_documents_one_by_one_only(documents):
    async with (
        run_simulator(documents[:5], token=TOKEN, bulk=False) as sim,
        aiohttp.ClientSession(headers=auth()) as http,
    ):
        async with http.post(sim.bulk_url, json=[documents[0].hendelsesdokument]) as response:
            assert response.status == 405
        async with http.get(sim.document_url(documents[0].hendelsesdokument)) as response:
            assert response.status == 200
