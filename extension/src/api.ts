/**
 * The server extension's HTTP API, as the sidebar uses it.
 *
 * Everything goes through the Jupyter server (`ServerConnection`), which
 * authenticates the browser and proxies to the in-kernel hosts it has
 * registered; the sidebar never talks to a kernel's port, nor to its shell channel.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A published model of a host, as `GET /microlib/hosts` lists it. */
export interface IModelInfo {
  name: string;
  endpoint: string;
  active: string | null;
  published: boolean;
  versions: string[];
  routes: Record<string, number>;
  /** The collection URL through the proxy, relative to the server's base URL. */
  url: string;
  count: number | null;
}

/** An in-kernel host that serves. */
export interface IHostInfo {
  kernel_id: string;
  pid: number;
  url: string;
  api_root: string;
  started: string;
  version: string;
  /** Paths relative to the server's base URL. */
  proxy: string;
  api: string;
  docs: string;
  events: string;
  /** Whether the server can read the host's deploy token (rollback, unpublish). */
  deploy: boolean;
  notebook: string | null;
  kernel_name: string | null;
  execution_state: string | null;
  status: 'ok' | 'unreachable' | 'error';
  error?: string;
  models: IModelInfo[];
}

/** A domain event as the host's `/events` stream sends it. */
export interface IHostEvent {
  id: string;
  name: string;
  model: string | null;
  model_id: string | null;
  time: string;
  data: unknown;
}

/** An error answered by the server or a host (`{"error": ...}` or Jupyter's `{"message": ...}`). */
export class MicrolibError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export class MicrolibAPI {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  /** An absolute URL for a path relative to the server's base URL. */
  absolute(path: string): string {
    return URLExt.join(this.settings.baseUrl, path);
  }

  /** Every live host with its models, counts and routes. */
  async hosts(): Promise<IHostInfo[]> {
    const body = await this.request<{ hosts: IHostInfo[] }>('microlib/hosts');
    return body.hosts;
  }

  /** `POST /deploy/{model}/rollback` on a host (the server adds the deploy token). */
  rollback(host: IHostInfo, model: string, version?: string): Promise<unknown> {
    return this.request(`${host.api}/deploy/${encodeURIComponent(model)}/rollback`, {
      method: 'POST',
      body: JSON.stringify(version ? { version } : {}),
      headers: { 'Content-Type': 'application/json' }
    });
  }

  /** `DELETE /deploy/{model}` on a host: its endpoints go away, its data stays. */
  unpublish(host: IHostInfo, model: string): Promise<unknown> {
    return this.request(`${host.api}/deploy/${encodeURIComponent(model)}`, {
      method: 'DELETE'
    });
  }

  async request<T = unknown>(path: string, init: RequestInit = {}): Promise<T> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.absolute(path), init, this.settings);
    } catch (error) {
      throw new MicrolibError(`cannot reach the Jupyter server: ${String(error)}`, 0);
    }
    const text = await response.text();
    let data: any = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message =
        (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
      throw new MicrolibError(String(message), response.status);
    }
    return data as T;
  }
}
