// Drives the fim-server extension in real VS Code: code-server (VS Code in the browser)
// with the .vsix installed, opened in headless Chromium by Playwright. Types into a
// Python file like a person, asserts the ghost text is exactly what the server completes
// there, accepts it with Tab and checks the saved file.
//
// Environment (set by tests/editors/test_vscode.py):
//   FIM_TEST_VSIX       the extension package to install
//   FIM_TEST_SERVER     fim-server program for the extension's fim.serverCommand
//   FIM_TEST_WORKSPACE  folder to open; FIM_TEST_FILE: file in it to edit
//   FIM_TEST_LINE       1-based line to type at the end of; FIM_TEST_TYPED: what to type
//   FIM_TEST_EXPECTED   the completion the server gives there (from fim-server complete)
//   FIM_TEST_CANDIDATES the extension's fim.candidates; FIM_TEST_CANDIDATE_TEXTS: JSON list
//                       of the suggestions the server offers there with it (the first is
//                       FIM_TEST_EXPECTED), which Alt+] / Alt+[ cycle through
//   FIM_TEST_BRACKET_FILE, FIM_TEST_BRACKET_LINE
//                       file and line to type "(" at the end of, which the editor closes
//   FIM_TEST_BRACKET_SHOWN, FIM_TEST_BRACKET_ACCEPTED
//                       the ghost text expected between the brackets, and the line after Tab
//   FIM_TEST_GATE       the server's model load waits until this file exists (the test
//                       puts tests/editors/load_gate on PYTHONPATH): the e2e types while
//                       the model loads, then creates it
//   FIM_TEST_ARTIFACTS  folder for screenshots
//   FIM_TEST_CHROMIUM   browser binary (default /usr/bin/chromium)
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const env = (name) => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const vsix = env('FIM_TEST_VSIX');
const server = env('FIM_TEST_SERVER');
const workspace = env('FIM_TEST_WORKSPACE');
const file = env('FIM_TEST_FILE');
const line = Number(env('FIM_TEST_LINE'));
const typed = env('FIM_TEST_TYPED');
const expected = env('FIM_TEST_EXPECTED');
const candidates = Number(env('FIM_TEST_CANDIDATES'));
const candidateTexts = JSON.parse(env('FIM_TEST_CANDIDATE_TEXTS'));
const bracketFile = env('FIM_TEST_BRACKET_FILE');
const bracketLine = Number(env('FIM_TEST_BRACKET_LINE'));
const bracketShown = env('FIM_TEST_BRACKET_SHOWN');
const bracketAccepted = env('FIM_TEST_BRACKET_ACCEPTED');
const gate = env('FIM_TEST_GATE');
const artifacts = env('FIM_TEST_ARTIFACTS');
const browserPath = process.env.FIM_TEST_CHROMIUM || '/usr/bin/chromium';
const codeServer = join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js');

const log = (...args) => console.log('[vscode-e2e]', ...args);

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, timeoutMs, child) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer at ${url}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const home = mkdtempSync(join(tmpdir(), 'fim-vscode-'));
const userData = join(home, 'user-data');
const extensions = join(home, 'extensions');
mkdirSync(artifacts, { recursive: true });
const settings = JSON.stringify(
    {
      'fim.serverCommand': [server],
      'fim.debounceMs': 50,
      'fim.candidates': candidates,
      'security.workspace.trust.enabled': false,
      // VS Code's default: "(" types "()" (the bracket case relies on it).
      'editor.autoClosingBrackets': 'languageDefined',
      // Nothing else may claim Tab or pop up over the editor.
      'editor.quickSuggestions': { other: false, comments: false, strings: false },
      'editor.suggestOnTriggerCharacters': false,
      'editor.wordBasedSuggestions': 'off',
      'editor.parameterHints.enabled': false,
      'editor.inlineSuggest.enabled': true,
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'workbench.enableExperiments': false,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'extensions.ignoreRecommendations': true,
      'update.mode': 'none',
      'telemetry.telemetryLevel': 'off',
      'chat.disableAIFeatures': true,
      'files.autoSave': 'off',
    },
  null,
  2,
);
// User settings, and Machine settings for the machine-scoped ones (code-server is a
// remote: fim.serverCommand is read from the machine the server runs on).
for (const scope of ['User', 'Machine']) {
  mkdirSync(join(userData, scope), { recursive: true });
  writeFileSync(join(userData, scope, 'settings.json'), settings);
}

const common = ['--user-data-dir', userData, '--extensions-dir', extensions];
log('installing', vsix);
const install = spawnSync(process.execPath, [codeServer, ...common, '--install-extension', vsix], {
  encoding: 'utf8',
  timeout: 120_000,
});
if (install.status !== 0) {
  console.error(install.stdout, install.stderr);
  throw new Error(`--install-extension failed (${install.status})`);
}
log(install.stdout.trim());

const port = await freePort();
const codeServerLog = [];
const child = spawn(
  process.execPath,
  [
    codeServer,
    ...common,
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    workspace,
  ],
  // Its own process group: the extension host and the fim-server it starts end with it.
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home }, detached: true },
);
child.stdout.on('data', (chunk) => codeServerLog.push(chunk.toString()));
child.stderr.on('data', (chunk) => codeServerLog.push(chunk.toString()));

let browser;
let page;
let failed = false;
try {
  await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000, child);
  log('code-server on port', port);
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(60_000);
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
  await page.locator('.monaco-workbench').waitFor();
  await page.locator('.statusbar').waitFor();
  log('workbench loaded');

  // Open a file with Quick Open, as a person would.
  const editor = page.locator('.editor-instance .monaco-editor').first();
  const openFile = async (name) => {
    for (let attempt = 0; ; attempt++) {
      await page.keyboard.press('Control+P');
      const input = page.locator('.quick-input-widget input');
      await input.waitFor();
      await input.fill(name);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
      await page.keyboard.press('Enter');
      try {
        await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ timeout: 10_000 });
        await editor.waitFor({ timeout: 10_000 });
        break;
      } catch (error) {
        if (attempt >= 2) throw error;
        await page.keyboard.press('Escape');
      }
    }
    log('opened', name);
  };
  const goToLineEnd = async (number) => {
    await editor.locator('.view-lines').click();
    await page.keyboard.press('Control+G');
    await page.locator('.quick-input-widget input').waitFor();
    await page.keyboard.type(String(number));
    await page.keyboard.press('Enter');
    await page.keyboard.press('End');
  };
  const savedLine = async (name, number, want) => {
    await page.keyboard.press('Control+S');
    const path = join(workspace, name);
    const deadline = Date.now() + 10_000;
    let saved = readFileSync(path, 'utf8');
    while (Date.now() < deadline && saved.split('\n')[number - 1] !== want) {
      await page.waitForTimeout(100);
      saved = readFileSync(path, 'utf8');
    }
    return saved.split('\n')[number - 1];
  };
  await openFile(file);

  // The extension starts the server; its status-bar item says the model is loading (its
  // load waits for the gate file).
  const status = page.locator('.statusbar-item[aria-label^="fim-server: "]').first();
  await status.waitFor();
  await page.locator('.statusbar-item[aria-label^="fim-server: loading"]').first().waitFor();
  log('status:', await status.getAttribute('aria-label'));

  // Go to the end of the line and type while the model loads: no suggestion yet.
  await goToLineEnd(line);
  await page.keyboard.type(typed, { delay: 60 });
  const ghost = editor.locator('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text');
  await page.waitForTimeout(1500);
  if ((await ghost.count()) !== 0) throw new Error('ghost text shown before the model loaded');

  // The model loads; no key is pressed: the extension asks again and the suggestion shows.
  writeFileSync(gate, '');
  await page
    .locator('.statusbar-item[aria-label^="fim-server: ready"], .statusbar-item[aria-label^="fim-server: error"]')
    .first()
    .waitFor({ timeout: 180_000 });
  const ready = await status.getAttribute('aria-label');
  log('status:', ready);
  if (!ready.startsWith('fim-server: ready')) throw new Error(`the extension reports ${ready}`);
  await ghost.first().waitFor({ timeout: 60_000 });
  // The first line is inline decorations (one span per token); further lines, if any,
  // are a view zone of lines below.
  const readGhost = () =>
    editor.evaluate((root) => {
      const selector = '.ghost-text-decoration, .ghost-text-decoration-preview';
      const spans = [...root.querySelectorAll(`.view-lines ${selector.replace(', ', ', .view-lines ')}`)];
      const inline = spans.filter((e) => !e.parentElement.closest(selector)).map((e) => e.textContent);
      const below = [...root.querySelectorAll('.ghost-text .view-line')].map((e) => e.textContent);
      return [inline.join(''), ...below].join('\n').replace(/\u00a0/g, ' ');
    });
  // A suggestion for a shorter prefix may show while the last one is computed: wait
  // (bounded) for the shown text to settle on the expected one, then compare.
  const settle = async (want) => {
    let text = await readGhost();
    for (const until = Date.now() + 30_000; text !== want && Date.now() < until; ) {
      await page.waitForTimeout(200);
      text = await readGhost();
    }
    return text;
  };
  const shown = await settle(expected);
  await page.screenshot({ path: join(artifacts, 'vscode-ghost-text.png') });
  log('ghost text:', JSON.stringify(shown));
  if (shown !== expected) {
    throw new Error(`ghost text ${JSON.stringify(shown)} != expected ${JSON.stringify(expected)}`);
  }
  const label = await page.locator('.statusbar-item[aria-label^="fim-server: ready"]').first().getAttribute('aria-label');
  if (!/last completion \d+ ms/.test(label)) {
    throw new Error(`the status bar shows no latency: ${JSON.stringify(label)}`);
  }
  log('status:', label);

  // Several suggestions (fim.candidates): Alt+] and Alt+[ (VS Code's Show Next / Show
  // Previous Inline Suggestion) cycle through them, wrapping around.
  const cycle = async (key, want) => {
    await page.keyboard.press(key);
    const text = await settle(want);
    log(`${key}: ghost text`, JSON.stringify(text));
    if (text !== want) {
      throw new Error(`after ${key} the ghost text is ${JSON.stringify(text)}, not ${JSON.stringify(want)}`);
    }
  };
  await cycle('Alt+BracketRight', candidateTexts[1]);
  await page.screenshot({ path: join(artifacts, 'vscode-next-suggestion.png') });
  await cycle('Alt+BracketLeft', candidateTexts[0]);
  await cycle('Alt+BracketLeft', candidateTexts[candidateTexts.length - 1]);
  await cycle('Alt+BracketRight', expected);

  // Ctrl+Right accepts the next word (VS Code's own partial accept): part of the
  // suggestion goes in, the rest stays shown.
  await page.keyboard.press('Control+ArrowRight');
  let rest = await readGhost();
  for (const until = Date.now() + 10_000; rest === expected && Date.now() < until; ) {
    await page.waitForTimeout(100);
    rest = await readGhost();
  }
  if (!(rest.length > 0 && rest.length < expected.length && expected.endsWith(rest))) {
    throw new Error(`after Ctrl+Right the ghost text is ${JSON.stringify(rest)}, not the rest of ${JSON.stringify(expected)}`);
  }
  log('accepted the next word; ghost text left:', JSON.stringify(rest));

  // Tab accepts the rest; save and compare the file on disk.
  await page.keyboard.press('Tab');
  await ghost.first().waitFor({ state: 'detached', timeout: 10_000 });
  const want = process.env.FIM_TEST_LINE_BEFORE + typed + expected;
  const accepted = await savedLine(file, line, want);
  await page.screenshot({ path: join(artifacts, 'vscode-accepted.png') });
  if (accepted !== want) {
    throw new Error(`line ${line} after Tab is ${JSON.stringify(accepted)}, expected ${JSON.stringify(want)}`);
  }
  log('accepted; saved line:', JSON.stringify(accepted));
  // Accepting told the server (fim/accepted); the status shows the server's count.
  const acceptedStatus = (count) =>
    page.locator(`.statusbar-item[aria-label^="fim-server: ready"][aria-label*=", ${count} accepted"]`).first();
  await acceptedStatus(1).waitFor({ timeout: 10_000 });

  // "(" closed by the editor: the suggestion between the brackets replaces the ")", so
  // Tab leaves no ")" too many.
  await openFile(bracketFile);
  await goToLineEnd(bracketLine);
  await page.keyboard.type('(', { delay: 60 });
  await ghost.first().waitFor({ timeout: 60_000 });
  const bracketGhost = await settle(bracketShown);
  await page.screenshot({ path: join(artifacts, 'vscode-bracket.png') });
  log('ghost text between the brackets:', JSON.stringify(bracketGhost));
  if (bracketGhost !== bracketShown) {
    throw new Error(`ghost text ${JSON.stringify(bracketGhost)} != expected ${JSON.stringify(bracketShown)}`);
  }
  await page.keyboard.press('Tab');
  await ghost.first().waitFor({ state: 'detached', timeout: 10_000 });
  const bracketSaved = await savedLine(bracketFile, bracketLine, bracketAccepted);
  if (bracketSaved !== bracketAccepted) {
    throw new Error(
      `line ${bracketLine} after Tab is ${JSON.stringify(bracketSaved)}, expected ${JSON.stringify(bracketAccepted)}`,
    );
  }
  log('accepted between the brackets; saved line:', JSON.stringify(bracketSaved));
  await acceptedStatus(2).waitFor({ timeout: 10_000 });
  // Back to the first file, by its tab.
  await page.locator('.tabs-container .tab', { hasText: file }).first().click();
  await page.locator('.tabs-container .tab.active', { hasText: file }).waitFor();

  // Toggle off from the Command Palette: the status bar says so and the same typing
  // that showed the suggestion shows nothing.
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').waitFor();
  await page.keyboard.type('fim-server: Toggle completions');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Toggle completions' }).first().waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.statusbar-item[aria-label^="fim-server: completions off"]').waitFor({ timeout: 10_000 });
  await goToLineEnd(line);
  for (let i = 0; i < expected.length + 1; i++) await page.keyboard.press('Backspace');
  await page.keyboard.type(typed.slice(-1), { delay: 60 });
  await page.waitForTimeout(2000);
  if ((await ghost.count()) !== 0) throw new Error('ghost text shown while completions are off');
  log('toggled off: no ghost text');
  console.log('vscode e2e: 1 passed, 0 failed');
} catch (error) {
  failed = true;
  console.error('[vscode-e2e] FAILED:', error);
  if (page) {
    await page.screenshot({ path: join(artifacts, 'vscode-failure.png') }).catch(() => {});
  }
  console.error('[vscode-e2e] code-server log:\n' + codeServerLog.join('').slice(-4000));
} finally {
  await browser?.close().catch(() => {});
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  killGroup('SIGTERM');
  await new Promise((resolve) => setTimeout(resolve, 2000));
  killGroup('SIGKILL');
  rmSync(home, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
