"""``%microlib dashboard``: a live ipywidgets panel of the in-kernel host.

The panel shows the published models (active version, versions, row count, endpoint)
and a feed of the latest events. It is kept up to date by a task on the *host's* loop,
not the kernel's: the task waits on the event broker's stream and writes the widgets'
values from the host thread. ipywidgets sends those changes as comm messages through
ipykernel's IOPub thread, which does not wait for the kernel's main thread -- so the
panel keeps moving while a cell runs (measured: updates arrive during ``time.sleep``).
Rendering is throttled, so a burst of thousands of events costs a few redraws.
"""

from __future__ import annotations

import asyncio
import collections
import html
import logging
import time
from typing import TYPE_CHECKING, Any

from .displays import html_table

if TYPE_CHECKING:
    from ..domain.events import Event
    from .session import NotebookSession

log = logging.getLogger("microlib_kernel.notebook")


def render_models(models: list[dict[str, Any]], api_url: str | None) -> str:
    """The models table of the panel, from ``/config`` entries with a ``count``."""
    if not models:
        return "<i>no model published yet</i>"
    rows = []
    for m in models:
        url = f"{api_url}/models/{m['endpoint']}" if api_url else None
        count = "?" if m.get("count") is None else str(m["count"])
        routes = ", ".join(f"{v}={w:g}" for v, w in m["routes"].items())
        versions = ", ".join(m["versions"])
        rows.append([m["name"], m["active"] or "-", versions, routes, count, (m["endpoint"], url)])
    return html_table(["model", "active", "versions", "routes", "count", "endpoint"], rows)


def render_feed(events: list[Event]) -> str:
    """The event feed, newest first."""
    if not events:
        return "<i>no events yet</i>"
    rows = [
        [e.time.strftime("%H:%M:%S.%f")[:-3], e.name, e.model_id or ""] for e in reversed(events)
    ]
    return html_table(["time", "event", "id"], rows)


class Dashboard:
    """A live panel of one notebook session; :meth:`close` stops it.

    Args:
        session: the notebook session whose host it shows.
        interval: most seconds between redraws while nothing happens (counts refresh).
        feed_size: how many events the feed shows.
    """

    def __init__(
        self, session: NotebookSession, *, interval: float = 1.0, feed_size: int = 25
    ) -> None:
        import ipywidgets as widgets

        self.session = session
        self.interval = interval
        self.updates = 0  # redraws so far (tests and curious users)
        self._events: collections.deque[Event] = collections.deque(maxlen=feed_size)
        self.header = widgets.HTML()
        self.models = widgets.HTML(render_models([], None))
        self.feed = widgets.HTML(render_feed([]))
        title = widgets.HTML("<b>events</b> <small>(newest first)</small>")
        self.widget = widgets.VBox([self.header, self.models, title, self.feed])
        self._closed = False
        host = session.host
        self._task = asyncio.run_coroutine_threadsafe(self._run(), host.loop.loop)

    # -- the host-loop task --------------------------------------------------------------

    async def _run(self) -> None:
        host = self.session.host
        async with host.events.stream("*", size=1000) as stream:
            await self._redraw(models=True)
            last_models = time.monotonic()
            while not self._closed:
                event = await stream.next(timeout=self.interval)
                fresh = 0
                while event is not None:
                    self._events.append(event)
                    fresh += 1
                    event = await stream.next(timeout=0)  # drain what is queued, no wait
                stale = time.monotonic() - last_models >= self.interval
                try:
                    await self._redraw(models=stale)
                except Exception:  # never let a display problem stop the feed
                    log.exception("dashboard redraw failed")
                if stale:
                    last_models = time.monotonic()
                if fresh:
                    # Let a burst accumulate: a few redraws per second are enough for eyes.
                    await asyncio.sleep(0.2)

    async def _redraw(self, *, models: bool) -> None:
        host = self.session.host
        if models:
            self.models.value = render_models(
                await self.session.local.models_async(), self.session.serving.browser_api_url()
            )
            api = host.api_url or "not serving"
            self.header.value = (
                f"<b>microlib</b> · {html.escape(host.datasource.describe())} · "
                f"API {html.escape(api)} · <small>{time.strftime('%H:%M:%S')}</small>"
            )
        self.feed.value = render_feed(list(self._events))
        self.updates += 1

    # -- display and lifecycle ----------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self)  # what papermill and terminals keep
        return bundle

    def __repr__(self) -> str:
        state = "closed" if self._closed else "live"
        return f"<microlib dashboard ({state}): {len(self._events)} recent event(s)>"

    def close(self) -> None:
        """Stop updating and close the widgets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        for child in (*self.widget.children, self.widget):
            child.close()
