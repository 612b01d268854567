-- The request half of every wrk run: one request shape, given as arguments after `--`:
--
--   method=POST path=/users/achievements/progress bodyfile=/tmp/body.json
--   users=1:1000 achievements=1:10 fresh=3000001 keys=PREFIX
--
-- {{u}} and {{a}} in the path and the body become a user and an achievement id drawn uniformly
-- from users=FIRST:COUNT and achievements=FIRST:COUNT. With fresh=N, every second request takes
-- a user never used before (N, N+1, ... shared out between the threads) instead. With
-- keys=PREFIX, every request carries an Idempotency-Key never sent before: the prefix (unique to
-- the run), the thread and the request's number, as bench.workloads.key makes it.
-- bench/workloads.py renders the same shapes for the Python load generator.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local method, path, body, fixed
local headers = {}
local users, achievements = {1, 1}, {1, 1}
local fresh, lanes, taken = nil, 1, 0
local keys = nil

local function range(text)
  local first, count = text:match("^(%d+):(%d+)$")
  return {tonumber(first), tonumber(count)}
end

local function read(file)
  local handle = assert(io.open(file, "rb"))
  local text = handle:read("*a")
  handle:close()
  return text
end

local function fill(template, user, achievement)
  if template == nil then
    return nil
  end
  local text = template:gsub("{{u}}", user):gsub("{{a}}", achievement)
  return text
end

function init(args)
  local options = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([^=]+)=(.*)$")
    options[key] = value
  end
  method, path = options.method, options.path
  if options.bodyfile then
    body = read(options.bodyfile)
    headers["Content-Type"] = "application/json"
  end
  if options.users then users = range(options.users) end
  if options.achievements then achievements = range(options.achievements) end
  fresh = tonumber(options.fresh)
  keys = options.keys
  lanes = tonumber(options.threads or "1")
  math.randomseed(1000 + index)
  -- wrk calls request() once on the first thread to check it before the run: not a real send.
  if index == 0 then
    sent = -1
  end
  if not keys and not (path .. (body or "")):find("{{", 1, true) then
    fixed = wrk.format(method, path, headers, body)
  end
end

function request()
  sent = sent + 1
  if fixed then
    return fixed
  end
  local user
  if fresh and sent % 2 == 0 then
    user = fresh + taken * lanes + index
    taken = taken + 1
  else
    user = users[1] + math.random(0, users[2] - 1)
  end
  local achievement = achievements[1] + math.random(0, achievements[2] - 1)
  local u, a = string.format("%d", user), string.format("%d", achievement)
  if keys then
    headers["Idempotency-Key"] = string.format("%s-%04d-%012d", keys, index, sent)
  end
  return wrk.format(method, fill(path, u, a), headers, fill(body, u, a))
end
