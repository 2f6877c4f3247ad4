/**
 * A live feed of one host's domain events: its `/events` Server-Sent Events
 * stream, read through the Jupyter server's proxy.
 *
 * Why not `EventSource`: the host names every frame after its domain event
 * (`event: order.created`), and an `EventSource` hands a named frame only to
 * listeners registered for that exact name. Event names are open-ended (a cell
 * may `emit("order.checked")`), so the feed reads the stream with `fetch` and
 * parses the frames itself (which also sends Jupyter's credentials as headers,
 * like every other request of JupyterLab).
 */
import { ServerConnection } from '@jupyterlab/services';

import { IHostEvent } from './api';

/** How many events a feed keeps (the oldest go first). */
const KEEP = 100;

/** Seconds between reconnection attempts while the host's stream is down. */
const RETRY = 3;

export class EventFeed {
  readonly node: HTMLElement;
  private list: HTMLOListElement;
  private state: HTMLElement;
  private count = 0;
  private abort = new AbortController();
  private disposed = false;

  /**
   * @param url absolute URL of the host's `/events` stream through the proxy.
   * @param settings the Jupyter server connection (credentials).
   * @param onEvent called for every event (the panel refreshes counts with it).
   */
  constructor(
    readonly url: string,
    private readonly settings: ServerConnection.ISettings,
    private readonly onEvent: (event: IHostEvent) => void
  ) {
    this.node = document.createElement('div');
    this.node.className = 'jp-Microlib-feed';
    const head = document.createElement('div');
    head.className = 'jp-Microlib-sectionHead';
    head.textContent = 'Events ';
    this.state = document.createElement('span');
    this.state.className = 'jp-Microlib-feedState';
    head.appendChild(this.state);
    this.list = document.createElement('ol');
    this.list.className = 'jp-Microlib-events';
    this.list.setAttribute('aria-live', 'polite');
    const empty = document.createElement('li');
    empty.className = 'jp-Microlib-empty';
    empty.textContent = 'no events yet';
    this.list.appendChild(empty);
    this.node.append(head, this.list);
    void this.run();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    this.disposed = true;
    this.abort.abort();
    this.node.remove();
  }

  private setState(state: string): void {
    this.state.textContent = state;
    this.node.dataset.state = state;
  }

  private async run(): Promise<void> {
    while (!this.disposed) {
      this.setState('connecting');
      try {
        await this.read();
      } catch (error) {
        if (this.disposed) {
          return;
        }
      }
      if (this.disposed) {
        return;
      }
      this.setState('reconnecting');
      await new Promise(resolve => setTimeout(resolve, RETRY * 1000));
    }
  }

  private async read(): Promise<void> {
    const headers = { Accept: 'text/event-stream' };
    const response = await ServerConnection.makeRequest(
      this.url,
      { headers, cache: 'no-store', signal: this.abort.signal },
      this.settings
    );
    if (!response.ok || !response.body) {
      throw new Error(`events: ${response.status}`);
    }
    this.setState('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += value.replace(/\r\n?/g, '\n');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        this.frame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  /** One SSE frame: its `data:` lines hold the event's JSON; comments start with `:`. */
  private frame(text: string): void {
    const data: string[] = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith(':')) {
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') {
        data.push(value);
      }
    }
    if (!data.length) {
      return;
    }
    let event: IHostEvent;
    try {
      event = JSON.parse(data.join('\n')) as IHostEvent;
    } catch {
      return;
    }
    this.receive(event);
  }

  private receive(event: IHostEvent): void {
    if (this.count === 0) {
      this.list.textContent = '';
    }
    this.count += 1;
    this.list.prepend(renderEvent(event));
    while (this.list.childElementCount > KEEP) {
      this.list.lastElementChild?.remove();
    }
    this.onEvent(event);
  }
}

function renderEvent(event: IHostEvent): HTMLLIElement {
  const item = document.createElement('li');
  item.className = 'jp-Microlib-event';
  item.dataset.event = event.name;
  const time = document.createElement('span');
  time.className = 'jp-Microlib-eventTime';
  const when = new Date(event.time);
  time.textContent = isNaN(when.getTime())
    ? ''
    : when.toLocaleTimeString([], { hour12: false });
  const name = document.createElement('span');
  name.className = 'jp-Microlib-eventName';
  name.textContent = event.name;
  const id = document.createElement('span');
  id.className = 'jp-Microlib-eventId';
  id.textContent = event.model_id ? event.model_id.slice(0, 6) : '';
  item.title = `${event.name} ${event.model_id ?? ''}\n${JSON.stringify(event.data, null, 1) ?? ''}`;
  item.append(time, name, id);
  return item;
}
