-- wrk script: deposits and transfers, half each, on the accounts listed
-- in ACCOUNTS (set by bench/load/bank.sh); counts answers by status.
local accounts = ACCOUNTS
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

local function pick()
  return accounts[math.random(#accounts)]
end

function request()
  local headers = { ["Content-Type"] = "application/json" }
  if math.random() < 0.5 then
    return wrk.format("POST", "/accounts/" .. pick() .. "/deposit", headers, '{"amount": 1}')
  end
  local from, to = pick(), pick()
  while to == from do
    to = pick()
  end
  local body = string.format('{"from": "%s", "to": "%s", "amount": 1}', from, to)
  return wrk.format("POST", "/transfers", headers, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      all[status] = (all[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(all) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, table.concat(parts, ", ")))
end
