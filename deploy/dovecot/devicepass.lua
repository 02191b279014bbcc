-- devicepass passdb for Dovecot's Lua authentication (2.4, and 2.3.19+).
--
-- Dovecot 2.4 removed the checkpassword passdb; this script takes its
-- place. For each login it POSTs {"username","password","service"} to the
-- devicepass service's /verify endpoint with Dovecot's own HTTP client
-- (dovecot.http, no extra Lua modules) and maps the answer:
--
--   200 {"ok":true,"user":{"username":U}}  -> PASSDB_RESULT_OK, user=U
--   401                                     -> PASSDB_RESULT_PASSWORD_MISMATCH
--   anything else (5xx, timeout, refused)   -> PASSDB_RESULT_INTERNAL_FAILURE
--
-- user=U renames the login to the token owner's username, so the userdb
-- and the mail storage see "alice" whether she typed "alice", her email or
-- a token login such as "alice#042".
--
-- Where the service is, first found wins:
--   2.4: lua_settings { url = http://127.0.0.1:8080 } in the passdb block
--   2.3: import_environment = DEVICEPASS_URL=http://127.0.0.1:8080
--   default: http://127.0.0.1:8080
-- Plain http only (Dovecot's client needs TLS settings for https; keep the
-- service on loopback). The password is never logged.

local DEFAULT_URL = "http://127.0.0.1:8080"
local TIMEOUT_SECS = 5

local verify_url = nil
local client = nil

local function configure(settings)
  local url = nil
  if type(settings) == "table" then
    url = settings.url
  end
  if url == nil or url == "" then
    url = os.getenv("DEVICEPASS_URL")
  end
  if url == nil or url == "" then
    url = DEFAULT_URL
  end
  verify_url = url:gsub("/+$", "") .. "/verify"
end

-- 2.4 passes lua_settings here; 2.3 passes nothing.
function script_init(settings)
  configure(settings)
  return 0
end

-- Some 2.4 development versions called this one with the passdb args.
function auth_passdb_init(settings)
  configure(settings)
end

-- The setting names changed in 2.4 (they became Dovecot settings) and 2.4
-- rejects unknown names while 2.3 ignores them: so try 2.3's names first.
local function new_client()
  local ok, made = pcall(dovecot.http.client, {
    request_timeout_msecs = TIMEOUT_SECS * 1000,
    max_attempts = 1,
    max_connect_attempts = 1,
    user_agent = "dovecot-devicepass",
  })
  if ok then
    return made
  end
  return dovecot.http.client({
    request_timeout = TIMEOUT_SECS .. "s",
    request_max_attempts = "1",
    max_connect_attempts = "1",
    user_agent = "dovecot-devicepass",
  })
end

local JSON_ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n',
                       ['\r'] = '\\r', ['\t'] = '\\t' }

local function json_string(s)
  local escaped = s:gsub('[%c"\\]', function(c)
    return JSON_ESCAPES[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. escaped .. '"'
end

local JSON_UNESCAPES = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b',
                         f = '\f', n = '\n', r = '\r', t = '\t' }

-- Plain arithmetic rather than bit operators or utf8.char, so the script
-- also runs on Lua 5.1 / LuaJIT builds of Dovecot.
local function utf8_char(cp)
  local floor = math.floor
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  end
  return string.char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40,
                     0x80 + cp % 0x40)
end

-- The value of the "username" key. A quoted "username" followed by a
-- colon can only be a key: inside a JSON string every quote is escaped.
local function json_username(payload)
  local _, stop = payload:find('"username"%s*:%s*"')
  if stop == nil then
    return nil
  end
  local out, i = {}, stop + 1
  while i <= #payload do
    local c = payload:sub(i, i)
    if c == '"' then
      return table.concat(out)
    elseif c == '\\' then
      local e = payload:sub(i + 1, i + 1)
      if e == 'u' then
        local cp = tonumber(payload:sub(i + 2, i + 5), 16)
        -- The service never escapes beyond control characters; a
        -- surrogate pair would mean something else answered.
        if cp == nil or (cp >= 0xD800 and cp <= 0xDFFF) then
          return nil
        end
        out[#out + 1] = utf8_char(cp)
        i = i + 6
      elseif JSON_UNESCAPES[e] ~= nil then
        out[#out + 1] = JSON_UNESCAPES[e]
        i = i + 2
      else
        return nil
      end
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return nil
end

local function granted(payload)
  if not payload:find('"ok"%s*:%s*true') then
    return nil
  end
  local username = json_username(payload)
  -- Control characters would corrupt Dovecot's tab-separated fields.
  if username == nil or username == "" or username:find("%c") then
    return nil
  end
  return username
end

function auth_password_verify(req, pass)
  if verify_url == nil then
    configure(nil)
  end
  if client == nil then
    client = new_client()
  end
  local request = client:request({ url = verify_url, method = "POST" })
  request:add_header("Content-Type", "application/json")
  request:set_payload('{"username":' .. json_string(req.user) ..
                      ',"password":' .. json_string(pass) ..
                      ',"service":"dovecot"}')
  local response = request:submit()
  local status = response:status()
  if status == 200 then
    local username = granted(response:payload())
    if username ~= nil then
      return dovecot.auth.PASSDB_RESULT_OK, { user = username }
    end
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE,
      "devicepass: 200 without a usable answer"
  elseif status == 401 then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "wrong device password"
  end
  -- 5xx, other statuses, and Dovecot's own 9xxx connection/timeout codes.
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE,
    string.format("devicepass: %d %s", status, response:reason() or "")
end
