/**
 * The MicroLib sidebar: per running kernel's host, its models (version, count,
 * endpoint), routes and a live event feed, with rollback and unpublish.
 */
import { Clipboard, Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { copyIcon, launchIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { IHostEvent, IHostInfo, IModelInfo, MicrolibAPI } from './api';
import { EventFeed } from './feed';

/** Milliseconds between a trigger and the refresh it causes (triggers meanwhile join it). */
const DEBOUNCE = 400;

export class MicrolibPanel extends Widget {
  private readonly api: MicrolibAPI;
  private readonly feeds = new Map<string, EventFeed>();
  private readonly hostsNode: HTMLElement;
  private readonly statusNode: HTMLElement;
  private timer: number | null = null;
  private running: Promise<void> | null = null;
  private again = false;

  constructor(api: MicrolibAPI) {
    super();
    this.api = api;
    this.id = 'microlib-sidebar';
    this.addClass('jp-MicrolibPanel');
    this.title.caption = 'MicroLib: in-kernel hosts';

    const header = document.createElement('header');
    header.className = 'jp-Microlib-header';
    const title = document.createElement('h2');
    title.textContent = 'MicroLib';
    const refresh = button('Refresh', 'jp-Microlib-refresh', () => this.refresh());
    refresh.title = 'Ask every host again';
    header.append(title, refresh);

    this.statusNode = document.createElement('div');
    this.statusNode.className = 'jp-Microlib-status';
    this.hostsNode = document.createElement('div');
    this.hostsNode.className = 'jp-Microlib-hosts';
    this.node.append(header, this.statusNode, this.hostsNode);
  }

  /** Refresh soon (a burst of triggers makes one request; a steady stream, one per period). */
  schedule(): void {
    if (this.timer !== null) {
      return;
    }
    this.timer = window.setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, DEBOUNCE);
  }

  /** Ask the server for the live hosts and draw them. */
  async refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.load();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
    if (this.again) {
      this.again = false;
      this.schedule();
    }
  }

  private async load(): Promise<void> {
    let hosts: IHostInfo[];
    try {
      hosts = await this.api.hosts();
    } catch (error) {
      this.statusNode.textContent = `cannot list hosts: ${(error as Error).message}`;
      this.statusNode.dataset.state = 'error';
      return;
    }
    this.statusNode.dataset.state = 'ok';
    this.statusNode.textContent = hosts.length
      ? `${hosts.length} host${hosts.length > 1 ? 's' : ''} · ${new Date().toLocaleTimeString()}`
      : 'No host serves yet: run %load_ext microlib_kernel and a %%microlib model cell in a notebook.';
    this.render(hosts);
  }

  private render(hosts: IHostInfo[]): void {
    const live = new Set(hosts.map(h => h.kernel_id));
    for (const [kernelId, feed] of this.feeds) {
      if (!live.has(kernelId)) {
        feed.dispose();
        this.feeds.delete(kernelId);
      }
    }
    this.hostsNode.textContent = '';
    for (const host of hosts) {
      this.hostsNode.appendChild(this.renderHost(host));
    }
  }

  private feedOf(host: IHostInfo): EventFeed {
    const url = this.api.absolute(`${host.events}?pattern=*`);
    let feed = this.feeds.get(host.kernel_id);
    if (feed && feed.url !== url) {
      feed.dispose(); // the kernel's host restarted (e.g. %reload_ext) elsewhere
      feed = undefined;
    }
    if (!feed) {
      feed = new EventFeed(url, this.api.settings, (event: IHostEvent) => this.onEvent(event));
      this.feeds.set(host.kernel_id, feed);
    }
    return feed;
  }

  private onEvent(_event: IHostEvent): void {
    // Counts and versions change with writes and deployments: refresh (throttled).
    this.schedule();
  }

  private renderHost(host: IHostInfo): HTMLElement {
    const section = document.createElement('section');
    section.className = 'jp-Microlib-host';
    section.dataset.kernelId = host.kernel_id;
    section.dataset.status = host.status;

    const head = document.createElement('div');
    head.className = 'jp-Microlib-hostHead';
    const name = document.createElement('span');
    name.className = 'jp-Microlib-hostName';
    name.textContent = host.notebook || `kernel ${host.kernel_id.slice(0, 8)}`;
    name.title = `kernel ${host.kernel_id}`;
    const docs = link('API docs', this.api.absolute(host.docs), 'jp-Microlib-docs');
    docs.appendChild(launchIcon.element({ tag: 'span', className: 'jp-Microlib-icon' }));
    docs.title = 'The API docs page (Swagger UI), through Jupyter';
    head.append(name, docs);
    const state = document.createElement('div');
    state.className = 'jp-Microlib-hostState';
    const local = host.url.replace(/^https?:\/\//, '');
    state.textContent = [host.kernel_name, host.execution_state, `pid ${host.pid}`, local]
      .filter(Boolean)
      .join(' · ');
    state.title = `the host serves at ${host.url}${host.api_root} inside the kernel`;
    section.append(head, state);

    const api = this.api.absolute(host.api);
    section.appendChild(urlRow('API', api, 'jp-Microlib-api'));

    if (host.status !== 'ok') {
      const error = document.createElement('div');
      error.className = 'jp-Microlib-error';
      error.textContent = host.error || host.status;
      section.appendChild(error);
    } else if (!host.models.length) {
      const empty = document.createElement('div');
      empty.className = 'jp-Microlib-empty';
      empty.textContent = 'no model published yet';
      section.appendChild(empty);
    } else {
      section.appendChild(this.renderModels(host));
      section.appendChild(renderRoutes(host.models));
    }
    section.appendChild(this.feedOf(host).node);
    return section;
  }

  private renderModels(host: IHostInfo): HTMLElement {
    const box = document.createElement('div');
    box.className = 'jp-Microlib-models';
    for (const model of host.models) {
      const item = document.createElement('div');
      item.className = 'jp-Microlib-model';
      item.dataset.model = model.name;
      item.dataset.published = String(model.published);

      const line = document.createElement('div');
      line.className = 'jp-Microlib-modelHead';
      const name = document.createElement('span');
      name.className = 'jp-Microlib-modelName';
      name.textContent = model.name;
      const version = document.createElement('span');
      version.className = 'jp-Microlib-version';
      version.textContent = model.active ?? 'unpublished';
      const count = document.createElement('span');
      count.className = 'jp-Microlib-count';
      count.textContent =
        model.count === null ? '' : `${model.count} row${model.count === 1 ? '' : 's'}`;
      const endpoint = document.createElement('span');
      endpoint.className = 'jp-Microlib-endpointName';
      endpoint.textContent = `/${model.endpoint}`;
      line.append(name, version, count, endpoint);
      item.appendChild(line);

      if (model.published) {
        item.appendChild(urlRow('', this.api.absolute(model.url), 'jp-Microlib-endpoint'));
        const actions = document.createElement('div');
        actions.className = 'jp-Microlib-actions';
        const why = host.deploy
          ? ''
          : 'the Jupyter server cannot read this host\'s deploy token (see the README)';
        const previous = model.versions.filter(v => v !== model.active);
        const rollback = button('Rollback', 'jp-Microlib-rollback', () =>
          this.rollback(host, model)
        );
        rollback.disabled = !host.deploy || previous.length === 0;
        rollback.title = why || (previous.length ? 'Make an earlier version active' : 'only one version');
        const unpublish = button('Unpublish', 'jp-Microlib-unpublish', () =>
          this.unpublish(host, model)
        );
        unpublish.disabled = !host.deploy;
        unpublish.title = why || 'Remove the endpoints; the data stays';
        actions.append(rollback, unpublish);
        item.appendChild(actions);
      }
      box.appendChild(item);
    }
    return box;
  }

  private async rollback(host: IHostInfo, model: IModelInfo): Promise<void> {
    const choices = model.versions.filter(v => v !== model.active).reverse();
    const body = new VersionPicker(choices);
    const result = await showDialog({
      title: `Roll ${model.name} back?`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Rollback' })]
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    try {
      await this.api.rollback(host, model.name, result.value);
      Notification.success(`${model.name} ${result.value} is active`, { autoClose: 3000 });
    } catch (error) {
      await showErrorMessage(`Rollback of ${model.name} failed`, (error as Error).message);
    }
    await this.refresh();
  }

  private async unpublish(host: IHostInfo, model: IModelInfo): Promise<void> {
    const result = await showDialog({
      title: `Unpublish ${model.name}?`,
      body: `/${model.endpoint} will answer 404. Its table and data stay (SQL still reads them); publishing it again serves them.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Unpublish' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await this.api.unpublish(host, model.name);
      Notification.success(`${model.name} unpublished`, { autoClose: 3000 });
    } catch (error) {
      await showErrorMessage(`Unpublishing ${model.name} failed`, (error as Error).message);
    }
    await this.refresh();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.schedule();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    for (const feed of this.feeds.values()) {
      feed.dispose();
    }
    this.feeds.clear();
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
    }
    super.dispose();
  }
}

/** The body of the rollback dialog: which version becomes active. */
class VersionPicker extends Widget implements Dialog.IBodyWidget<string> {
  private select: HTMLSelectElement;

  constructor(versions: string[]) {
    super();
    this.addClass('jp-Microlib-picker');
    const label = document.createElement('label');
    label.textContent = 'Version to make active ';
    this.select = document.createElement('select');
    for (const version of versions) {
      const option = document.createElement('option');
      option.value = option.textContent = version;
      this.select.appendChild(option);
    }
    label.appendChild(this.select);
    const note = document.createElement('p');
    note.textContent = 'All traffic goes to that version; new writes are made by it.';
    this.node.append(label, note);
  }

  getValue(): string {
    return this.select.value;
  }
}

function renderRoutes(models: IModelInfo[]): HTMLElement {
  const box = document.createElement('div');
  box.className = 'jp-Microlib-routes';
  const head = document.createElement('div');
  head.className = 'jp-Microlib-sectionHead';
  head.textContent = 'Routes';
  box.appendChild(head);
  const list = document.createElement('ul');
  for (const model of models) {
    if (!model.published) {
      continue;
    }
    const entries = Object.entries(model.routes);
    const total = entries.reduce((sum, [, w]) => sum + w, 0) || 1;
    const item = document.createElement('li');
    item.className = 'jp-Microlib-route';
    item.dataset.model = model.name;
    item.textContent = `${model.name}: ${entries
      .map(([v, w]) => `${v} ${Math.round((100 * w) / total)}%`)
      .join(', ')}`;
    list.appendChild(item);
  }
  box.appendChild(list);
  return box;
}

function button(label: string, className: string, onClick: () => unknown): HTMLButtonElement {
  const node = document.createElement('button');
  node.className = `jp-Button jp-mod-styled jp-mod-minimal ${className}`;
  node.textContent = label;
  node.addEventListener('click', () => void onClick());
  return node;
}

function link(label: string, href: string, className: string): HTMLAnchorElement {
  const node = document.createElement('a');
  node.className = className;
  node.href = href;
  node.target = '_blank';
  node.rel = 'noopener noreferrer';
  node.textContent = label;
  return node;
}

/** A URL with a copy button (the URL works from this browser: Jupyter authenticates it). */
function urlRow(label: string, url: string, className: string): HTMLElement {
  const row = document.createElement('div');
  row.className = `jp-Microlib-url ${className}`;
  if (label) {
    const name = document.createElement('span');
    name.className = 'jp-Microlib-urlLabel';
    name.textContent = label;
    row.appendChild(name);
  }
  const anchor = link(url, url, 'jp-Microlib-urlText');
  const copy = button('', 'jp-Microlib-copy', () => {
    Clipboard.copyToSystem(url);
    Notification.info('URL copied', { autoClose: 1500 });
  });
  copy.appendChild(copyIcon.element({ tag: 'span', className: 'jp-Microlib-icon' }));
  copy.title = `Copy ${url}`;
  copy.setAttribute('aria-label', 'Copy URL');
  row.append(anchor, copy);
  return row;
}
