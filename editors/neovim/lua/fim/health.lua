-- :checkhealth fim: the server command, and for each running fim-server its version,
-- model state, backend, model and last latency (from fim/stats).
local M = {}

local health = vim.health
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local info = health.info or health.report_info
local warn = health.warn or health.report_warn
local fail = health.error or health.report_error

local function stats_of(client)
  local response
  if vim.fn.has('nvim-0.11') == 1 then
    response = client:request_sync('fim/stats', vim.NIL, 2000, 0)
  else
    response = client.request_sync('fim/stats', vim.NIL, 2000, 0)
  end
  return response and response.result, response and response.err
end

function M.check()
  local fim = require('fim')
  start('fim: server command')
  local cmd = fim.command()
  local program = vim.fn.exepath(cmd[1])
  if program ~= '' then
    ok('command: ' .. table.concat(cmd, ' ') .. ' (' .. program .. ')')
  else
    fail('command not found: ' .. cmd[1], { "set `cmd` in require('fim').setup{} to the fim-server program" })
  end
  info('model: ' .. (fim.config.model or 'the one shipped with the server'))
  info('completions: ' .. (fim.config.enable and 'on' or 'off (:FimToggle)'))
  if fim.last_message then
    info('last message: ' .. fim.last_message) -- in full; the command line may cut it
  end

  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  local clients = get({ name = 'fim' })
  start('fim: running servers')
  if #clients == 0 then
    warn('no fim-server is running: open a file of one of its filetypes', {
      'filetypes: ' .. table.concat(fim.config.filetypes, ', '),
    })
    return
  end
  for _, client in ipairs(clients) do
    local server = client.server_info or {}
    local name = ('client %d: %s %s'):format(client.id, server.name or 'fim-server', server.version or '')
    local state, message = fim.server_state(client.id)
    local stats, err = stats_of(client)
    if state == 'error' then
      fail(name .. ': ' .. tostring(message))
    elseif state == 'loading' then
      warn(name .. ': loading the model')
    else
      ok(name .. ': ready')
    end
    if stats then
      if type(stats.backend) == 'string' then
        info('backend: ' .. stats.backend .. (type(stats.backendDescription) == 'string' and ' (' .. stats.backendDescription .. ')' or ''))
      end
      if stats.modelReady then
        info(('model loaded in %.0f ms'):format(stats.loadMs or 0))
      end
      info(('requests: %d, completions: %d, last latency: %.0f ms'):format(
        stats.requests or 0, stats.completions or 0, stats.lastLatencyMs or 0))
    else
      fail(name .. ': fim/stats failed: ' .. vim.inspect(err))
    end
  end
end

return M
