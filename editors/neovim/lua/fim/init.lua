-- fim.nvim: inline (ghost-text) completions from fim-server.
--
--   require('fim').setup{}            -- fim-server on PATH, its ten languages
--
-- The plugin requests textDocument/inlineCompletion itself and draws the suggestion with
-- extmarks (on Neovim >= 0.12, `native = true` uses the built-in
-- vim.lsp.inline_completion instead, without partial accept or the status).
local M = {}

local uv = vim.uv or vim.loop

M.defaults = {
  -- Command that starts the server; `--stdio` and `--model` are added by the plugin.
  cmd = { 'fim-server' },
  -- Checkpoint folder for `--model PATH` (nil: the model shipped with the server).
  model = nil,
  -- The languages fim-server has grammars for.
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact', 'go',
    'rust', 'java', 'c', 'cpp', 'lua', 'sh', 'bash',
  },
  -- Request completions at all; :FimToggle flips it.
  enable = true,
  -- Milliseconds without typing before a request (also sent to the server).
  debounce_ms = 75,
  -- Token budgets sent to the server; nil keeps the server's own default.
  context_tokens = nil,
  line_tokens = nil,
  block_tokens = nil,
  block_ms = nil,
  cross_file = nil,
  -- The confidence gate: suggestions scored below this are hidden; nil: the server's default.
  min_confidence = nil,
  -- How many distinct suggestions the server sends per request (keymaps.next / prev cycle
  -- through them); nil: the server's default (1 on CPU, 3 on CUDA).
  candidates = nil,
  -- The backend and its server (docs/remote.md); nil keeps the server's own choice.
  backend = nil, -- 'embedded' | 'mercury' | 'openai' | 'llama.cpp'
  endpoint = nil,
  remote_model = nil,
  api_key_env = nil, -- the name of the variable holding the key, never the key
  timeout_ms = nil,
  headers = nil,
  fim_template = nil,
  -- Request as you type; with false only keymaps.trigger asks.
  auto_trigger = true,
  -- true: the built-in vim.lsp.inline_completion on Neovim 0.12+ (no partial accept).
  native = false,
  -- The accept keys fall back to the key itself when nothing is shown.
  keymaps = {
    accept = '<Tab>',
    accept_word = '<C-Right>',
    accept_line = '<C-Down>',
    dismiss = '<C-]>',
    trigger = '<M-\\>',
    next = '<M-]>', -- the next / previous of several suggestions
    prev = '<M-[>',
  },
  -- Highlight of the ghost text (FimGhostText: grey italic; define it to override).
  hl_group = 'FimGhostText',
  -- Say once when the model is ready or fails to load (M.echo: no "Press ENTER").
  notify = true,
}

M.config = vim.deepcopy(M.defaults)

local ns = vim.api.nvim_create_namespace('fim')
local group = nil
-- Per buffer: { request = {client, id}, timer, suggestion = {row, col, text, replace},
-- items = { {text, replace}, ... }, index } where `replace` is how many bytes after the
-- cursor a suggestion replaces, `items` the suggestions of the last answer to cycle
-- through and `index` the one shown.
local state = {}
-- Per client id: { state = 'loading' | 'ready' | 'error', error = message }
local servers = {}

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

local function use_native()
  if M.config.native == false then
    return false
  end
  return M.config.native == true and vim.lsp.inline_completion ~= nil and has('0.12')
end

--- Define the highlight groups unless the user (or a colorscheme) already did.
function M.define_highlights()
  -- Both cterm and gui colours, so the ghost text stands out without 'termguicolors'.
  vim.api.nvim_set_hl(0, 'FimGhostText', { fg = '#808080', ctermfg = 244, italic = true, default = true })
  -- Text after the cursor the suggestion replaces, where the suggestion does not end with it.
  vim.api.nvim_set_hl(0, 'FimReplaced', { strikethrough = true, default = true })
end

-- The server's setting for each option sent to it: { server name, option name }.
local SETTINGS = {
  { 'enable', 'enable' },
  { 'debounceMs', 'debounce_ms' },
  { 'contextTokens', 'context_tokens' },
  { 'lineTokens', 'line_tokens' },
  { 'blockTokens', 'block_tokens' },
  { 'blockMs', 'block_ms' },
  { 'crossFile', 'cross_file' },
  { 'minConfidence', 'min_confidence' },
  { 'candidates', 'candidates' },
  { 'backend', 'backend' },
  { 'endpoint', 'endpoint' },
  { 'remoteModel', 'remote_model' },
  { 'apiKeyEnv', 'api_key_env' },
  { 'timeoutMs', 'timeout_ms' },
  { 'headers', 'headers' },
  { 'fimTemplate', 'fim_template' },
}

-- How long a request may be outstanding before the statusline says the model is working
-- (a fast answer should not make it flicker on every key).
local PENDING_MS = 250

--- The server's settings (`settings.fim` / initializationOptions), user-set keys only.
function M.server_settings()
  local settings = {}
  for _, names in ipairs(SETTINGS) do
    settings[names[1]] = M.config[names[2]]
  end
  return settings
end

--- A server message in the user's words: the server's setting names (`timeoutMs`) become
--- the options set in setup() (`timeout_ms`).
function M.user_words(message)
  return (message:gsub('%f[%w]([%a]+)%f[^%w]', function(word)
    for _, names in ipairs(SETTINGS) do
      if names[1] == word then
        return names[2]
      end
    end
  end))
end

-- How long a warning floats over the editor while the user types (insert mode).
local FLOAT_MS = 8000
local float = nil -- { win, buf, timer } of the warning shown

local function close_float()
  if float then
    pcall(vim.api.nvim_win_close, float.win, true)
    pcall(vim.api.nvim_buf_delete, float.buf, { force = true })
    float = nil
  end
end

-- A warning in a small window at the top right, over the text, that takes no keys: in
-- insert mode the command line is no place for it (Neovim redraws `-- INSERT --` over an
-- echo at once, and a long one asks for Enter).
local function show_float(message, hl)
  close_float()
  local width = math.min(vim.fn.strdisplaywidth(message), math.max(math.floor(vim.o.columns * 0.6), 20))
  local lines = {}
  local rest = message
  while rest ~= '' do
    local piece = vim.fn.strcharpart(rest, 0, width)
    if #piece < #rest then
      -- Break at the last space of the piece when there is one.
      local space = piece:match('^.*() ')
      if space and space > width / 2 then
        piece = piece:sub(1, space)
      end
    end
    table.insert(lines, (piece:gsub('%s+$', '')))
    rest = rest:sub(#piece + 1)
  end
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  local win = vim.api.nvim_open_win(buf, false, {
    relative = 'editor',
    anchor = 'NE',
    row = 0,
    col = vim.o.columns,
    width = width,
    height = #lines,
    style = 'minimal',
    focusable = false,
    zindex = 250,
    noautocmd = true,
  })
  vim.wo[win].winhighlight = 'Normal:' .. (hl or 'NormalFloat')
  vim.wo[win].wrap = false
  float = { win = win, buf = buf }
  local shown = float
  vim.defer_fn(function()
    if float == shown then
      close_float()
    end
  end, FLOAT_MS)
end

--- Tell the user something without a "Press ENTER" prompt and without taking them out of
--- what they type: on the command line cut to the room left there, or while in insert
--- mode (warnings and errors) in a small window at the top right that closes by itself.
--- The whole text stays in M.last_message and :checkhealth fim.
function M.echo(message, level)
  M.last_message = message
  local hl = ({ [vim.log.levels.ERROR] = 'ErrorMsg', [vim.log.levels.WARN] = 'WarningMsg' })[level]
  if vim.fn.mode():match('^[iR]') then
    if hl then
      show_float(message, hl)
    end
    return
  end
  local room = math.max(vim.v.echospace - 1, 10)
  if vim.fn.strdisplaywidth(message) > room then
    message = vim.fn.strcharpart(message, 0, room - 1) .. '…'
  end
  vim.api.nvim_echo({ { message, hl } }, true, {})
end

function M.command()
  local cmd = vim.deepcopy(M.config.cmd)
  if type(cmd) == 'string' then
    cmd = { cmd }
  end
  if not vim.tbl_contains(cmd, '--stdio') then
    table.insert(cmd, '--stdio')
  end
  if M.config.model then
    vim.list_extend(cmd, { '--model', vim.fn.expand(M.config.model) })
  end
  return cmd
end

local function client_for(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  local clients = get({ bufnr = bufnr, name = 'fim' })
  return clients[1]
end

local function request(client, method, params, handler, bufnr)
  if has('0.11') then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function cancel(client, id)
  if has('0.11') then
    client:cancel_request(id)
  else
    client.cancel_request(id)
  end
end

local function buf_state(bufnr)
  state[bufnr] = state[bufnr] or {}
  return state[bufnr]
end

--- The suggestion shown in a buffer: { row, col, text, replace } (0-based row, byte col;
--- `replace`: bytes after the cursor it replaces) or nil.
function M.suggestion(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local s = state[bufnr] and state[bufnr].suggestion
  if not s then
    return nil
  end
  return { row = s.row, col = s.col, text = s.text, replace = s.replace }
end

local function stop_timer(st)
  if st.timer then
    st.timer:stop()
    st.timer:close()
    st.timer = nil
  end
end

-- Forget the request in flight (cancelled on the server unless `answered`); the
-- statusline drops its pending state.
local function end_request(st, answered)
  local request = st.request
  if not request then
    return
  end
  st.request = nil
  if not answered then
    pcall(cancel, request.client, request.id)
  end
  if request.pending then
    pcall(vim.cmd, 'redrawstatus')
  end
end

--- Hide the ghost text and forget pending requests.
function M.dismiss(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local st = state[bufnr]
  if not st then
    return
  end
  stop_timer(st)
  end_request(st)
  st.suggestion = nil
  st.items, st.index = nil, nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

-- Show `text` as ghost text at (row, col), replacing `replace` bytes after the cursor;
-- false when there is nothing to show.
local function show(bufnr, row, col, text, replace)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local replaced = line:sub(col + 1, col + replace)
  local shown, strike = text, false
  if replace > 0 then
    if not text:find('\n', 1, true) and text:sub(-#replaced) == replaced then
      -- The suggestion ends with the text it replaces (a closing bracket): show the part
      -- before it, so the line reads as it will after accepting.
      shown = text:sub(1, #text - #replaced)
    else
      strike = true
    end
  end
  if shown == '' then
    return false
  end
  local lines = vim.split(shown, '\n', { plain = true })
  local hl = M.config.hl_group
  -- hl_mode 'replace' (the default, spelt out): the ghost text has its own colour only.
  -- 'combine' would mix in the highlight of the text it is drawn at, such as MatchParen's
  -- on the `)` after the cursor, and draw it like real code.
  local opts = { hl_mode = 'replace' }
  if has('0.10') then
    opts.virt_text = { { lines[1], hl } }
    opts.virt_text_pos = 'inline'
  else
    opts.virt_text = { { lines[1], hl } }
    opts.virt_text_win_col = vim.fn.virtcol({ row + 1, col }) -- after the cursor's cell
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], hl } })
    end
  end
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  vim.api.nvim_buf_set_extmark(bufnr, ns, row, col, opts)
  if strike then
    vim.api.nvim_buf_set_extmark(bufnr, ns, row, col, {
      end_col = col + replace,
      hl_group = 'FimReplaced',
    })
  end
  buf_state(bufnr).suggestion = { row = row, col = col, text = text, replace = replace }
  return true
end

-- Byte offset of an LSP character offset in `line`.
local function byte_index(line, index, encoding)
  if encoding == 'utf-8' then
    return math.min(index, #line)
  end
  if has('0.11') then
    return vim.str_byteindex(line, encoding, index, false)
  end
  local ok, byte = pcall(vim.str_byteindex, line, index, encoding == 'utf-16')
  return ok and byte or #line
end

-- The text an item adds at the cursor and how many bytes after the cursor it replaces,
-- or nil when the item does not fit the buffer.
local function item_text(bufnr, item, row, col, encoding)
  local insert = item.insertText
  if type(insert) == 'table' then
    insert = insert.value -- a snippet string; shown and inserted as plain text
  end
  if type(insert) ~= 'string' or insert == '' then
    return nil
  end
  local replace = 0
  if item.range then
    local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]
    if item.range.start.line ~= row or item.range['end'].line ~= row or line == nil then
      return nil
    end
    local start = byte_index(line, item.range.start.character, encoding)
    local finish = byte_index(line, item.range['end'].character, encoding)
    if start > col then
      return nil
    end
    -- The item replaces range.start..range.end: what is typed since range.start must
    -- match its start, and what it covers after the cursor goes when it is accepted.
    local typed = line:sub(start + 1, col)
    if insert:sub(1, #typed) ~= typed then
      return nil
    end
    insert = insert:sub(#typed + 1)
    replace = math.max(finish - col, 0)
  end
  if insert == '' then
    return nil
  end
  return insert, replace
end

--- Ask the server now for the cursor position of the current buffer.
function M.trigger(bufnr, invoked)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if not M.config.enable then
    return
  end
  local client = client_for(bufnr)
  if not client then
    return
  end
  local st = buf_state(bufnr)
  stop_timer(st) -- asked now: a debounced request would only supersede this one
  end_request(st)
  local win = vim.api.nvim_get_current_win()
  local cursor = vim.api.nvim_win_get_cursor(win)
  local row, col = cursor[1] - 1, cursor[2]
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local encoding = client.offset_encoding or 'utf-16'
  local params = vim.lsp.util.make_position_params(win, encoding)
  params.context = { triggerKind = invoked and 1 or 2 }
  local ok, id
  ok, id = request(client, 'textDocument/inlineCompletion', params, function(err, result)
    if st.request and st.request.id == id then
      end_request(st, true)
    end
    if err or not result or not vim.api.nvim_buf_is_valid(bufnr) then
      return
    end
    -- Drop answers for a buffer or cursor that moved on meanwhile.
    if vim.api.nvim_buf_get_changedtick(bufnr) ~= tick or vim.api.nvim_get_current_buf() ~= bufnr then
      return
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if now[1] - 1 ~= row or now[2] ~= col or not vim.fn.mode():match('^i') then
      return
    end
    -- The suggestions that fit here, each once (the server sends distinct texts; two may
    -- still insert the same here); the first one that shows something is shown.
    local items, seen = {}, {}
    for _, item in ipairs(result.items or result) do
      local text, replace = item_text(bufnr, item, row, col, encoding)
      local key = text and (replace .. ':' .. text)
      if key and not seen[key] then
        seen[key] = true
        table.insert(items, { text = text, replace = replace })
      end
    end
    for index, item in ipairs(items) do
      if show(bufnr, row, col, item.text, item.replace) then
        st.items, st.index = items, index
        pcall(vim.cmd, 'redrawstatus')
        return
      end
    end
  end, bufnr)
  if ok and id then
    local sent = { client = client, id = id }
    st.request = sent
    -- A slow model (a CPU model, a remote server): the statusline says it is working.
    vim.defer_fn(function()
      if st.request == sent then
        sent.pending = true
        pcall(vim.cmd, 'redrawstatus')
      end
    end, PENDING_MS)
  end
end

local function schedule_trigger(bufnr)
  local st = buf_state(bufnr)
  stop_timer(st)
  st.timer = uv.new_timer()
  st.timer:start(
    M.config.debounce_ms,
    0,
    vim.schedule_wrap(function()
      stop_timer(st)
      if vim.api.nvim_get_current_buf() == bufnr and vim.fn.mode():match('^i') then
        M.trigger(bufnr, false)
      end
    end)
  )
end

-- The start of `text` a partial accept takes: 'word' (spaces, then punctuation, then
-- word characters: `(values` of `(values)`) or 'line' (to the end of the line; a
-- leading line break and the next line).
local function next_part(text, part)
  if part == 'word' then
    return text:match('^%s*[^%w_%s]*[%w_]*')
  elseif part == 'line' then
    return text:match('^\n?[^\n]*')
  end
  return text
end

local function notify_accepted(bufnr, text, partial)
  local client = client_for(bufnr)
  if not client then
    return
  end
  local params = { uri = vim.uri_from_bufnr(bufnr), chars = vim.fn.strchars(text), partial = partial }
  if has('0.11') then
    client:notify('fim/accepted', params)
  else
    client.notify('fim/accepted', params)
  end
end

--- Insert the shown suggestion at the cursor, replacing what it replaces; with `part`
--- ('word' or 'line') only its next word or line, the rest stays shown. Returns true when
--- there was a suggestion.
function M.accept(bufnr, part)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local s = state[bufnr] and state[bufnr].suggestion
  if not s then
    return false
  end
  local piece = next_part(s.text, part)
  local whole = piece == s.text or piece == ''
  if whole then
    piece = s.text
  end
  M.dismiss(bufnr)
  local lines = vim.split(piece, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, s.row, s.col, s.row, s.col + (whole and s.replace or 0), lines)
  local end_row = s.row + #lines - 1
  local end_col = (#lines == 1 and s.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  -- The edit and cursor move are ours: do not treat them as typing.
  buf_state(bufnr).accepted_tick = vim.api.nvim_buf_get_changedtick(bufnr)
  if not whole then
    -- The rest stays shown (and still replaces the same text after the cursor).
    local rest = s.text:sub(#piece + 1)
    if show(bufnr, end_row, end_col, rest, s.replace) then
      local st = buf_state(bufnr)
      st.items, st.index = { { text = rest, replace = s.replace } }, 1
    end
  end
  notify_accepted(bufnr, piece, part ~= nil)
  return true
end

--- Show the suggestion `step` places on from the one shown (1: next, -1: previous),
--- skipping those with nothing to show here. Returns true when there was a suggestion.
function M.cycle(bufnr, step)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local st = state[bufnr]
  local s = st and st.suggestion
  if not s or not st.items then
    return false
  end
  local count = #st.items
  local index = st.index
  for _ = 1, count - 1 do
    index = (index - 1 + step) % count + 1
    local item = st.items[index]
    if show(bufnr, s.row, s.col, item.text, item.replace) then
      st.index = index
      break
    end
  end
  pcall(vim.cmd, 'redrawstatus')
  return true
end

--- Which of the suggestions is shown: index, count (nil when none is shown).
function M.position(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local st = state[bufnr]
  if not st or not st.suggestion or not st.items then
    return nil
  end
  return st.index, #st.items
end

local function map_keys(bufnr)
  local keys = M.config.keymaps
  local function feed(key)
    vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(key, true, false, true), 'n', false)
  end
  for key, part in pairs({ accept = false, accept_word = 'word', accept_line = 'line' }) do
    if keys[key] then
      vim.keymap.set('i', keys[key], function()
        if not M.accept(bufnr, part or nil) then
          feed(keys[key])
        end
      end, { buffer = bufnr, desc = 'fim: accept the suggestion' .. (part and ' (' .. part .. ')' or '') })
    end
  end
  if keys.dismiss then
    vim.keymap.set('i', keys.dismiss, function()
      if not state[bufnr] or not state[bufnr].suggestion then
        feed(keys.dismiss)
      end
      M.dismiss(bufnr)
    end, { buffer = bufnr, desc = 'fim: dismiss the suggestion' })
  end
  if keys.trigger then
    vim.keymap.set('i', keys.trigger, function()
      M.trigger(bufnr, true)
    end, { buffer = bufnr, desc = 'fim: ask for a suggestion' })
  end
  for key, step in pairs({ next = 1, prev = -1 }) do
    if keys[key] then
      vim.keymap.set('i', keys[key], function()
        -- Nothing shown: ask for suggestions here. (Fed back, an unmapped <M-]> would
        -- insert a `]`.)
        if not M.cycle(bufnr, step) then
          M.trigger(bufnr, true)
        end
      end, { buffer = bufnr, desc = 'fim: ' .. (step > 0 and 'next' or 'previous') .. ' suggestion' })
    end
  end
end

local function map_native_keys(bufnr)
  local keys = M.config.keymaps
  if keys.accept then
    vim.keymap.set('i', keys.accept, function()
      if not vim.lsp.inline_completion.get({ bufnr = bufnr }) then
        return vim.api.nvim_replace_termcodes(keys.accept, true, false, true)
      end
      return ''
    end, { buffer = bufnr, expr = true, desc = 'fim: accept the suggestion' })
  end
  if keys.trigger then
    vim.keymap.set('i', keys.trigger, function()
      vim.lsp.inline_completion.select({ bufnr = bufnr })
    end, { buffer = bufnr, desc = 'fim: next suggestion' })
  end
  for key, step in pairs({ next = 1, prev = -1 }) do
    if keys[key] then
      vim.keymap.set('i', keys[key], function()
        vim.lsp.inline_completion.select({ bufnr = bufnr, count = step })
      end, { buffer = bufnr, desc = 'fim: ' .. (step > 0 and 'next' or 'previous') .. ' suggestion' })
    end
  end
end

local function attach_fallback(bufnr)
  local st = buf_state(bufnr)
  if st.attached then
    return
  end
  st.attached = true
  map_keys(bufnr)
  vim.api.nvim_create_autocmd('TextChangedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      local tick = vim.api.nvim_buf_get_changedtick(bufnr)
      if st.accepted_tick == tick then
        return
      end
      M.dismiss(bufnr)
      if M.config.enable and M.config.auto_trigger then
        schedule_trigger(bufnr)
      end
    end,
  })
  vim.api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      local cur = vim.api.nvim_win_get_cursor(0)
      local s = st.suggestion
      if s and cur[1] - 1 == s.row and cur[2] == s.col then
        return -- still where the suggestion is (the rest of a partial accept)
      end
      if s then
        M.dismiss(bufnr)
      end
      -- Moved without typing (<Left> into the brackets an auto-pairing plugin closed):
      -- ask where the cursor is now. Not after an accept: that moved it, not the user.
      local tick = vim.api.nvim_buf_get_changedtick(bufnr)
      if M.config.enable and M.config.auto_trigger and st.accepted_tick ~= tick then
        schedule_trigger(bufnr)
      end
    end,
  })
  vim.api.nvim_create_autocmd('InsertEnter', {
    group = group,
    buffer = bufnr,
    callback = function()
      if M.config.enable and M.config.auto_trigger then
        schedule_trigger(bufnr)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
      state[bufnr] = nil
    end,
  })
end

--- The model's state in a server: 'loading', 'ready' or 'error' (and its message).
function M.server_state(client_id)
  local s = servers[client_id]
  return s and s.state or 'loading', s and s.error
end

local function set_server_state(client, new, message)
  local s = servers[client.id] or {}
  servers[client.id] = s
  local old = s.state
  s.state, s.error = new, message
  if old == new then
    return
  end
  pcall(vim.cmd, 'redrawstatus')
  if new == 'ready' then
    if M.config.notify then
      M.echo('fim: model ready', vim.log.levels.INFO)
    end
    -- A request made while the model loaded was answered empty and nothing else asks
    -- again: ask now where the user is typing.
    local bufnr = vim.api.nvim_get_current_buf()
    local current = client_for(bufnr)
    if current and current.id == client.id and vim.fn.mode():match('^i') and not use_native() then
      M.trigger(bufnr, false)
    end
  elseif new == 'error' and M.config.notify then
    M.echo('fim: ' .. tostring(message), vim.log.levels.ERROR)
  end
end

-- Ask the server how its model is (fim/stats); while it loads, the end of its $/progress
-- (LspProgress) asks again, or a timer where Neovim has no LspProgress event (0.9).
local function refresh_server_state(client)
  request(client, 'fim/stats', vim.NIL, function(err, stats)
    if err or type(stats) ~= 'table' then
      set_server_state(client, 'error', err and err.message or 'no answer to fim/stats')
    elseif type(stats.modelError) == 'string' then
      set_server_state(client, 'error', 'the model failed to load: ' .. stats.modelError)
    elseif stats.modelReady then
      set_server_state(client, 'ready')
    else
      set_server_state(client, 'loading')
      if vim.fn.exists('##LspProgress') == 0 then
        vim.defer_fn(function()
          local stopped = has('0.11') and client:is_stopped() or not has('0.11') and client.is_stopped()
          if not stopped then
            refresh_server_state(client)
          end
        end, 500)
      end
    end
  end)
end

--- Statusline component: 'fim: loading', 'fim: ready', 'fim: error', 'fim: off', or ''
--- where no fim-server serves the buffer; 'fim: working' while an answer takes longer
--- than a moment; while one of several suggestions is shown, which one: 'fim: ready 2/3'.
function M.status(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client = client_for(bufnr)
  if not client then
    return ''
  end
  if not M.config.enable then
    return 'fim: off'
  end
  local server = M.server_state(client.id)
  local st = state[bufnr]
  if server == 'ready' and st and st.request and st.request.pending then
    return 'fim: working'
  end
  local shown = 'fim: ' .. server
  local index, count = M.position(bufnr)
  if index and count > 1 then
    shown = ('%s %d/%d'):format(shown, index, count)
  end
  return shown
end

local function on_attach(client, bufnr)
  if not servers[client.id] then
    servers[client.id] = { state = 'loading' }
    refresh_server_state(client)
    -- The statusline was drawn before the server was there: show 'fim: loading' now.
    pcall(vim.cmd, 'redrawstatus!')
  end
  if use_native() then
    vim.lsp.inline_completion.enable(M.config.enable, { bufnr = bufnr })
    map_native_keys(bufnr)
  else
    attach_fallback(bufnr)
  end
end

--- Start (or reuse) the server for a buffer.
function M.start(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local name = vim.api.nvim_buf_get_name(bufnr)
  local root = name ~= '' and vim.fs.dirname(name) or vim.fn.getcwd()
  local markers = vim.fs.find({ '.git', 'pyproject.toml', 'setup.py' }, { upward = true, path = root })
  if markers[1] then
    root = vim.fs.dirname(markers[1])
  end
  local settings = M.server_settings()
  return vim.lsp.start({
    name = 'fim',
    cmd = M.command(),
    root_dir = root,
    init_options = settings,
    settings = { fim = settings },
    on_attach = on_attach,
    handlers = {
      -- The server's messages (a backend that fails) without Neovim's default
      -- "Press ENTER" for a long one, and naming this plugin's options.
      ['window/showMessage'] = function(_, result)
        local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.INFO }
        local message = 'fim: ' .. M.user_words(result.message):gsub('^fim%-server: ', '')
        M.echo(message, levels[result.type] or vim.log.levels.INFO)
        return vim.NIL
      end,
    },
    on_exit = function(code, signal, client_id)
      if code ~= 0 or signal ~= 0 then
        servers[client_id] = { state = 'error', error = ('the server exited (code %d, signal %d)'):format(code, signal) }
      else
        servers[client_id] = nil
      end
    end,
  }, { bufnr = bufnr })
end

local function notify_settings()
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  for _, client in ipairs(get({ name = 'fim' })) do
    local settings = { fim = M.server_settings() }
    client.config.settings = settings
    if has('0.11') then
      client:notify('workspace/didChangeConfiguration', { settings = settings })
    else
      client.notify('workspace/didChangeConfiguration', { settings = settings })
    end
    if use_native() then
      for bufnr in pairs(client.attached_buffers or {}) do
        vim.lsp.inline_completion.enable(M.config.enable, { bufnr = bufnr })
      end
    end
  end
end

--- Turn completions on or off (no argument: flip); tells the server too.
function M.toggle(on)
  if on == nil then
    on = not M.config.enable
  end
  M.config.enable = on
  if not on then
    for bufnr in pairs(state) do
      M.dismiss(bufnr)
    end
  end
  notify_settings()
  vim.notify('fim: completions ' .. (on and 'on' or 'off'))
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  group = vim.api.nvim_create_augroup('fim', { clear = true })
  M.define_highlights()
  -- :colorscheme clears every group: define ours again after it.
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = M.define_highlights })
  if vim.fn.exists('##LspProgress') == 1 then
    -- The server ends its model-loading progress when the model is ready or failed.
    vim.api.nvim_create_autocmd('LspProgress', {
      group = group,
      pattern = 'end',
      callback = function(args)
        local client = vim.lsp.get_client_by_id(args.data and args.data.client_id)
        if client and client.name == 'fim' then
          refresh_server_state(client)
        end
      end,
    })
  end
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.start(args.buf)
    end,
  })
  vim.api.nvim_create_user_command('FimToggle', function()
    M.toggle()
  end, { desc = 'Turn fim-server completions on or off' })
  -- Buffers already open when setup runs (lazy loading).
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
      M.start(bufnr)
    end
  end
end

return M
