// fim-server for VS Code: starts `fim-server --stdio` with vscode-languageclient and gets
// ghost-text completions through LSP 3.18 `textDocument/inlineCompletion`.
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from 'vscode-languageclient/node';

const SECTION = 'fim';
const STATS_REQUEST = 'fim/stats';
const ACCEPTED_NOTIFICATION = 'fim/accepted';
// Run by VS Code when the user accepts a suggestion (InlineCompletionItem.command).
const ACCEPTED_COMMAND = 'fim.accepted';

interface Stats {
  modelReady: boolean;
  modelError: string | null;
  lastLatencyMs: number;
  accepted?: number;
  // The last request's backend failure (a remote server down, a bad key); null once one
  // answers again.
  lastError?: string | null;
}

/** The settings the server reads (initializationOptions and `settings.fim`); keys left
 * empty by the user are omitted so the server keeps its own defaults. */
export function serverSettings(config: vscode.WorkspaceConfiguration): Record<string, unknown> {
  const settings: Record<string, unknown> = {
    enable: config.get<boolean>('enable', true),
    debounceMs: config.get<number>('debounceMs', 75),
  };
  for (const key of [
    'contextTokens', 'lineTokens', 'blockTokens', 'blockMs', 'crossFile', 'minConfidence',
    'candidates', 'backend', 'endpoint', 'remoteModel', 'apiKeyEnv', 'timeoutMs', 'headers',
    'fimTemplate',
  ]) {
    const value = config.get(key);
    if (value !== null && value !== undefined) {
      settings[key] = value;
    }
  }
  return settings;
}

function sleep(ms: number, token?: vscode.CancellationToken): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      listener?.dispose();
      resolve(true);
    }, ms);
    const listener = token?.onCancellationRequested(() => {
      clearTimeout(timer);
      listener?.dispose();
      resolve(false);
    });
  });
}

class Status {
  readonly item = vscode.window.createStatusBarItem('fim.status', vscode.StatusBarAlignment.Right, 100);
  state: 'loading' | 'ready' | 'error' | 'off' = 'loading';
  latencyMs: number | undefined;
  // Completions accepted, as the server counts them (fim/stats).
  accepted: number | undefined;
  detail = '';

  constructor() {
    this.item.name = 'fim-server';
    this.item.command = 'fim.toggle';
    this.render();
    this.item.show();
  }

  set(state: Status['state'], detail = ''): void {
    this.state = state;
    this.detail = detail;
    this.render();
  }

  latency(ms: number): void {
    this.latencyMs = ms;
    this.render();
  }

  acceptedCount(count: number | undefined): void {
    this.accepted = count;
    this.render();
  }

  render(): void {
    const enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>('enable', true);
    const latency = this.latencyMs === undefined ? '' : ` ${Math.round(this.latencyMs)} ms`;
    this.item.backgroundColor = undefined;
    if (this.state === 'error') {
      this.item.text = '$(error) fim';
      this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
      this.item.tooltip = `fim-server: error: ${this.detail}`;
    } else if (this.state === 'loading') {
      this.item.text = '$(sync~spin) fim';
      this.item.tooltip = 'fim-server: loading the model';
    } else if (!enabled) {
      this.item.text = '$(circle-slash) fim';
      this.item.tooltip = 'fim-server: completions off (click to turn on)';
    } else {
      this.item.text = `$(check) fim${latency}`;
      this.item.tooltip =
        'fim-server: ready' +
        (this.latencyMs === undefined ? '' : `, last completion ${Math.round(this.latencyMs)} ms`) +
        (this.accepted === undefined ? '' : `, ${this.accepted} accepted`) +
        ' (click to turn off)';
    }
    this.item.accessibilityInformation = { label: this.item.tooltip as string };
  }
}

let client: LanguageClient | undefined;
let status: Status;
let output: vscode.LogOutputChannel;

function serverOptions(config: vscode.WorkspaceConfiguration): ServerOptions {
  // TransportKind.stdio adds `--stdio`.
  const [command, ...args] = config.get<string[]>('serverCommand', ['fim-server']).filter((a) => a !== '--stdio');
  const model = config.get<string | null>('modelPath');
  if (model) {
    args.push('--model', model);
  }
  return { command, args, transport: TransportKind.stdio };
}

function clientOptions(config: vscode.WorkspaceConfiguration): LanguageClientOptions {
  // Unset, this is package.json's default: the ten languages fim-server has grammars for.
  const languages = config.get<string[]>('languages', []);
  return {
    documentSelector: languages.flatMap((language) => [
      { scheme: 'file', language },
      { scheme: 'untitled', language },
    ]),
    initializationOptions: () => serverSettings(vscode.workspace.getConfiguration(SECTION)),
    outputChannel: output,
    middleware: {
      // Ghost text is this extension's interface; the completion-list fallback would
      // show the same text a second time in the suggest widget.
      provideCompletionItem: () => undefined,
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const settings = vscode.workspace.getConfiguration(SECTION);
        if (!settings.get<boolean>('enable', true)) {
          return undefined; // off: no request at all
        }
        const debounce = settings.get<number>('debounceMs', 75);
        if (context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic && debounce > 0) {
          if (!(await sleep(debounce, token))) {
            return undefined; // typed on meanwhile
          }
        }
        const started = Date.now();
        const result = await next(document, position, context, token);
        const items = Array.isArray(result) ? result : (result?.items ?? []);
        if (!token.isCancellationRequested) {
          status.latency(Date.now() - started);
          if (items.length === 0 || status.state === 'error') {
            await showBackendFailure();
          }
        }
        // Accepting an item (Tab) runs its command: tell the server what was accepted.
        for (const item of items) {
          const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
          item.command = {
            command: ACCEPTED_COMMAND,
            title: 'fim-server: accepted',
            arguments: [document.uri.toString(), text.length],
          };
        }
        return result;
      },
    },
  };
}

/** An empty answer may be a backend failure (a remote server down, a bad key): show it in
 * the status item until the backend answers again. */
async function showBackendFailure(): Promise<void> {
  const current = client;
  if (current?.state !== State.Running) {
    return;
  }
  try {
    const stats = await current.sendRequest<Stats>(STATS_REQUEST, null);
    if (stats.lastError) {
      status.set('error', stats.lastError);
    } else if (status.state === 'error' && stats.modelReady && !stats.modelError) {
      status.set('ready');
    }
  } catch {
    // The server is restarting or gone; the client reports that itself.
  }
}

async function waitForModel(current: LanguageClient): Promise<void> {
  status.set('loading');
  for (;;) {
    if (client !== current || current.state !== State.Running) {
      return;
    }
    try {
      const stats = await current.sendRequest<Stats>(STATS_REQUEST, null);
      if (stats.modelError) {
        status.set('error', stats.modelError);
        return;
      }
      if (stats.modelReady) {
        status.set('ready');
        // Requests made while the model loaded were answered empty and VS Code asks again
        // only on the next keystroke: ask now at the cursor of the editor being typed in.
        const editor = vscode.window.activeTextEditor;
        const languages = vscode.workspace.getConfiguration(SECTION).get<string[]>('languages', []);
        if (editor && languages.includes(editor.document.languageId)) {
          await vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
        }
        return;
      }
    } catch (error) {
      status.set('error', String(error));
      return;
    }
    await sleep(250);
  }
}

async function start(): Promise<void> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const current = new LanguageClient('fim', 'fim-server', serverOptions(config), clientOptions(config));
  client = current;
  current.onDidChangeState((event) => {
    if (client === current && event.newState === State.Stopped) {
      status.set('error', 'the server stopped (see the fim-server output)');
    }
  });
  status.set('loading');
  try {
    await current.start();
  } catch (error) {
    status.set('error', error instanceof Error ? error.message : String(error));
    return;
  }
  void waitForModel(current);
}

async function stop(): Promise<void> {
  const current = client;
  client = undefined;
  if (current) {
    try {
      await current.stop();
    } catch (error) {
      output.appendLine(`fim-server: stopping: ${String(error)}`);
    }
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('fim-server', { log: true });
  status = new Status();
  context.subscriptions.push(
    output,
    status.item,
    vscode.commands.registerCommand('fim.toggle', async () => {
      const config = vscode.workspace.getConfiguration(SECTION);
      const enabled = config.get<boolean>('enable', true);
      await config.update('enable', !enabled, vscode.ConfigurationTarget.Global);
    }),
    vscode.commands.registerCommand('fim.restart', restart),
    vscode.commands.registerCommand(ACCEPTED_COMMAND, async (uri: string, chars: number) => {
      const current = client;
      if (current?.state === State.Running) {
        await current.sendNotification(ACCEPTED_NOTIFICATION, { uri, chars, partial: false });
        const stats = await current.sendRequest<Stats>(STATS_REQUEST, null);
        status.acceptedCount(stats.accepted);
      }
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration(SECTION)) {
        return;
      }
      status.render();
      if (
        event.affectsConfiguration(`${SECTION}.serverCommand`) ||
        event.affectsConfiguration(`${SECTION}.modelPath`) ||
        event.affectsConfiguration(`${SECTION}.languages`)
      ) {
        await restart();
        return;
      }
      if (client?.state === State.Running) {
        const settings = serverSettings(vscode.workspace.getConfiguration(SECTION));
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: { [SECTION]: settings },
        });
      }
    }),
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await stop();
}
