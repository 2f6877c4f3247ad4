/**
 * The MicroLib JupyterLab extension: a left-sidebar panel listing each running
 * kernel's in-kernel host (models, versions, counts, endpoints, routes, events).
 *
 * It refreshes when kernels start or stop, when a notebook's kernel goes idle
 * (a cell finished: it may have published), when a host emits an event, and
 * every so often while visible -- always over HTTP to the Jupyter server, never
 * through a kernel's shell channel.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { MicrolibAPI } from './api';
import { MicrolibPanel } from './panel';

/** Seconds between refreshes while the panel is visible (hosts may appear any time). */
const REFRESH_EVERY = 10;

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1.5 21.5 7v10L12 22.5 2.5 17V7L12 1.5zm0 2.3L4.5 8.1v7.8l7.5 4.3 7.5-4.3V8.1L12 3.8z"/>
    <path d="M8 8h2v5.2c0 1 .6 1.6 1.5 1.6s1.5-.6 1.5-1.6V8h2v8h-1.9v-.8c-.5.6-1.2 1-2 1-.4 0-.8-.1-1.1-.3V19H8V8z"/>
  </g>
</svg>`;

export const microlibIcon = new LabIcon({ name: 'microlib-kernel:logo', svgstr: ICON_SVG });

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'microlib-kernel:sidebar',
  description: 'A MicroLib sidebar: in-kernel hosts, their models, routes and events.',
  autoStart: true,
  optional: [ILayoutRestorer, INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null
  ) => {
    const panel = new MicrolibPanel(new MicrolibAPI(app.serviceManager.serverSettings));
    panel.title.icon = microlibIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'microlib-sidebar');

    const schedule = () => {
      if (panel.isVisible) {
        panel.schedule();
      }
    };
    app.serviceManager.kernels.runningChanged.connect(schedule);
    notebooks?.widgetAdded.connect((_, notebook) => {
      notebook.sessionContext.statusChanged.connect((_, status) => {
        if (status === 'idle') {
          schedule();
        }
      });
    });
    // The panel refreshes itself when shown; while shown, it looks again now and then.
    window.setInterval(schedule, REFRESH_EVERY * 1000);

    app.commands.addCommand('microlib:open', {
      label: 'MicroLib: Show In-Kernel Hosts',
      execute: () => {
        app.shell.activateById(panel.id);
        return panel.refresh();
      }
    });
    app.commands.addCommand('microlib:refresh', {
      label: 'MicroLib: Refresh Hosts',
      execute: () => panel.refresh()
    });
    palette?.addItem({ command: 'microlib:open', category: 'MicroLib' });
    palette?.addItem({ command: 'microlib:refresh', category: 'MicroLib' });
    void app.restored.then(() => panel.refresh());
  }
};

export default plugin;
