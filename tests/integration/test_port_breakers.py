"""Circuit breakers and inbound ports on a real host (the clock is injected)."""

from __future__ import annotations

from typing import Any

import pytest

from microlib_kernel import (
    BreakerOpen,
    Host,
    Model,
    NotFound,
    PortFailed,
    PortTimeout,
    ValidationFailed,
    port,
)
from microlib_kernel.host.context import SystemClock
from tests.host_support import HostOptions
from tests.ports_support import FakeService, event_names

pytestmark = pytest.mark.anyio


class Clock(SystemClock):
    """A clock whose monotonic seconds the tests move by hand (the breakers read it)."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def host_options(clock: Clock) -> HostOptions:
    """The host's breakers read the test's clock."""
    return HostOptions("memory://", clock=clock)


@pytest.fixture
def quotes(host: Host) -> FakeService:
    journal: list[str] = []
    svc = FakeService("quotes", journal)
    host.services.register("quotes", svc)
    return svc


def quote_model(fallback: str | None = "rates.cached", **options: Any) -> type[Model]:
    breaker = {"calls": 3, "error_rate": 50, "window": 10, "cooldown": 30, "fallback": fallback}

    class Trip(Model, endpoint="trips"):
        price: str | None = None
        source: str | None = None
        quote = port("rates.live", circuit_breaker=breaker, type="inbound", **options)

    return Trip


def register(host: Host, seen_errors: list[Any]) -> None:
    async def live(trip: Any, *, quotes: FakeService, currency: str = "EUR") -> dict[str, Any]:
        return {"price": f"{await quotes.call('quote')} {currency}", "source": "live"}

    def cached(trip: Any, *, error: BaseException | None, currency: str = "EUR") -> dict[str, Any]:
        seen_errors.append(error)
        return {"price": f"cached {currency}", "source": "fallback"}

    host.adapters.register("rates.live", live)
    host.adapters.register("rates.cached", cached)


async def test_breaker_opens_uses_the_fallback_and_half_opens(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    seen: list[Any] = []
    register(host, seen)
    Trip = quote_model()
    host.publish(Trip)
    trip = await Trip.create()
    assert (await trip.quote()).source == "live"
    quotes.set("quote", "fail")
    with pytest.raises(PortFailed):
        await trip.quote()  # 1 of 2 failed: 50 % but under 3 calls
    assert host.ports.status("Trip", "quote")["breaker"]["state"] == "closed"
    # The call whose failure trips the breaker answers as that failure.
    with pytest.raises(PortFailed) as info:
        await trip.quote()
    assert type(info.value) is PortFailed and info.value.status == 502
    status = host.ports.status("Trip", "quote")["breaker"]
    assert status["state"] == "open" and status["retry_in"] == 30
    assert "quotes.quote is down" in status["last_error"]
    opened = host.events.recent("trip.port.breaker_open")
    assert len(opened) == 1 and opened[0].data["port"] == "quote"
    # Open: the fallback answers (error=None), the live service is not called.
    calls = quotes.calls("quote")
    trip = await Trip.find(trip.id)
    after = await trip.quote()
    assert after.source == "fallback" and seen == [None]
    assert quotes.calls("quote") == calls
    assert after.port_flow[-1] == "quote"  # a fallback success completes the port
    # The breaker is per (model, port): every instance sees it open.
    other = await (await Trip.create()).quote()
    assert other.source == "fallback"
    # After the cooldown, one trial call goes to the live service.
    clock.seconds += 30
    assert host.ports.status("Trip", "quote")["breaker"]["state"] == "half_open"
    quotes.set("quote", "ok")
    trial = await trip.quote()
    assert trial.source == "live"
    assert host.ports.status("Trip", "quote")["breaker"] == {
        "state": "closed",
        "calls": 0,  # a new window
        "failures": 0,
        "retry_in": 0.0,
        "times_opened": 1,
        "last_error": status["last_error"],
    }
    assert "trip.port.breaker_closed" in event_names(host)


async def test_a_failed_trial_reopens_and_serves_the_fallback_with_the_error(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    seen: list[Any] = []
    register(host, seen)
    Trip = quote_model()
    host.publish(Trip)
    trip = await Trip.create()
    quotes.set("quote", "fail")
    for _ in range(3):
        with pytest.raises(PortFailed):
            await trip.quote()
    assert host.ports.status("Trip", "quote")["breaker"]["state"] == "open"
    clock.seconds += 31
    trip = await Trip.find(trip.id)
    after = await trip.quote()
    assert after.source == "fallback"
    assert isinstance(seen[-1], PortFailed) and "quotes.quote is down" in str(seen[-1])
    status = host.ports.status("Trip", "quote")["breaker"]
    assert status["state"] == "open" and status["times_opened"] == 2


async def test_open_breaker_without_fallback_fails_fast(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    register(host, [])
    Trip = quote_model(fallback=None)
    host.publish(Trip)
    trip = await Trip.create()
    quotes.set("quote", "fail")
    for _ in range(3):
        with pytest.raises(PortFailed):
            await trip.quote()
    calls = quotes.calls("quote")
    with pytest.raises(BreakerOpen, match="circuit breaker open") as info:
        await (await Trip.find(trip.id)).quote()
    assert info.value.status == 503 and quotes.calls("quote") == calls
    assert info.value.details["retry_in"] == 30


async def test_breaker_window_forgets_old_failures(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    register(host, [])
    Trip = quote_model(fallback=None)
    host.publish(Trip)
    trip = await Trip.create()
    quotes.set("quote", "fail")
    for _ in range(2):
        with pytest.raises(PortFailed):
            await trip.quote()
    clock.seconds += 11  # both failures leave the 10 s window
    with pytest.raises(PortFailed) as info:
        await (await Trip.find(trip.id)).quote()
    assert type(info.value) is PortFailed
    assert host.ports.status("Trip", "quote")["breaker"]["state"] == "closed"


async def test_retries_stop_when_the_breaker_trips(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    register(host, [])
    Trip = quote_model(fallback=None, retries=5, backoff=0.0)
    host.publish(Trip)
    trip = await Trip.create()
    quotes.set("quote", "fail")
    with pytest.raises(PortFailed):
        await trip.quote()
    assert quotes.calls("quote") == 3  # the third failing attempt tripped it


async def test_inbound_ports_take_keyword_arguments_and_map_failures(
    host: Host, clock: Clock, quotes: FakeService
) -> None:
    register(host, [])

    class Trip(Model, endpoint="trips"):
        price: str | None = None
        source: str | None = None
        quote = port("rates.live", type="inbound", timeout=0.05)
        internal = port("rates.live")

    host.publish(Trip)
    mv = host.registry.get("Trip").pick()
    trip = await Trip.create()

    async def inbound(name: str, body: Any) -> Any:
        return await host.loop.call(host.ports.call_inbound, mv, trip, name, body)

    after = await inbound("quote", {"currency": "NOK"})
    assert after.price.endswith("NOK") and after.port_flow == ["quote"]
    with pytest.raises(NotFound, match="no inbound port 'internal'"):
        await inbound("internal", {})
    with pytest.raises(NotFound):
        await inbound("missing", {})
    with pytest.raises(ValidationFailed, match="JSON object"):
        await inbound("quote", [1, 2])
    with pytest.raises(ValidationFailed, match="quotes cannot be passed in the request"):
        await inbound("quote", {"quotes": "mine"})
    with pytest.raises(ValidationFailed, match="arguments do not fit"):
        await inbound("quote", {"colour": "red"})
    quotes.set("quote", "fail")
    with pytest.raises(PortFailed) as failed:
        await inbound("quote", {})
    assert failed.value.status == 502
    quotes.set("quote", "hang")
    with pytest.raises(PortTimeout) as timed_out:
        await inbound("quote", {})
    assert timed_out.value.status == 504
