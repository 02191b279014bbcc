-- devicepass for HAProxy 2.5 and later: ask devicepass about each request
-- with HAProxy's built-in HTTP client (core.httpclient); no other Lua
-- library is needed. Load it in `global` and call it from a frontend:
--
--   http-request lua.devicepass http://127.0.0.1:8080/auth/haproxy
--
-- It sets the variable txn.devicepass to "allow", "deny" or "error" and
-- leaves the answer to the configuration (see haproxy.cfg beside this
-- file). On "deny", txn.devicepass_challenge holds devicepass's
-- WWW-Authenticate value. The identity headers are removed from every
-- request first, so a client can never forge them, and set from
-- devicepass's answer only when it allows.

-- The identity headers devicepass sends (its header_* settings).
local IDENTITY = {
    "x-auth-user", "x-auth-email", "x-auth-sub", "x-auth-login", "x-auth-token-name",
}

-- Longest wait for devicepass, in milliseconds; past it: "error".
local TIMEOUT_MS = 5000

-- The first value of a header in a table of name -> values.
local function first(headers, name)
    local values = headers and headers[name]
    if values == nil then
        return nil
    end
    -- HAProxy numbers request header values from 0, the client's from 1.
    return values[0] or values[1]
end

-- What devicepass is told: the credentials and where the request went.
local function forwarded(txn)
    local request = txn.http:req_get_headers()
    local headers = {
        ["x-forwarded-method"] = { txn.sf:method() },
        ["x-forwarded-uri"] = { txn.sf:pathq() },
        ["x-forwarded-proto"] = { txn.sf:ssl_fc() == "1" and "https" or "http" },
        ["x-forwarded-for"] = { txn.sf:src() },
    }
    for _, name in ipairs({ "authorization", "proxy-authorization", "host" }) do
        local value = first(request, name)
        if value ~= nil then
            local sent = name == "host" and "x-forwarded-host" or name
            headers[sent] = { value }
        end
    end
    return headers
end

local function ask(txn, url)
    local client = core.httpclient()
    local request = { url = url, headers = forwarded(txn), timeout = TIMEOUT_MS }
    local ok, response = pcall(client.get, client, request)
    if not ok then
        core.Warning("devicepass: request failed: " .. tostring(response))
        return nil
    end
    return response
end

local function allow(txn, response)
    for _, name in ipairs(IDENTITY) do
        local value = first(response.headers, name)
        if value ~= nil then
            txn.http:req_set_header(name, value)
        end
    end
    txn:set_var("txn.devicepass", "allow")
end

local function deny(txn, response)
    local challenge = first(response.headers, "www-authenticate")
    txn:set_var("txn.devicepass_challenge", challenge or 'Basic realm="devicepass"')
    txn:set_var("txn.devicepass", "deny")
end

core.register_action("devicepass", { "http-req" }, function(txn, url)
    for _, name in ipairs(IDENTITY) do
        txn.http:req_del_header(name)
    end
    local response = ask(txn, url)
    local status = response and response.status
    if status == 200 then
        allow(txn, response)
    elseif status == 401 then
        deny(txn, response)
    else
        -- Unreachable, timed out, 5xx or anything unexpected: never a yes,
        -- and never a no either.
        txn:set_var("txn.devicepass", "error")
    end
end, 1)
