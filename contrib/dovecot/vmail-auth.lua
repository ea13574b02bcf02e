-- /etc/dovecot/vmail-auth.lua: Dovecot's passdb and userdb, answered by vmail-authd.
--
-- Dovecot 2.4 has no dict passdb/userdb, so both releases run this script instead: Dovecot
-- 2.3 (Debian 12) with conf.d/auth-vmail-lua.conf.ext, Dovecot 2.4 (Debian 13) with
-- 2.4/conf.d/auth-vmail-lua.conf.ext. It needs `dovecot-auth-lua` and `lua-socket`.
--
-- Why this channel (a line protocol over a unix socket, spoken with lua-socket, in Dovecot's
-- auth worker processes):
-- - A unix socket lets authd check who connects (SO_PEERCRED): Dovecot's IMAP/POP3
--   processes and vmail-lda run as the mail user, which is authd's own user too, so file
--   modes alone cannot keep them out, the uid check can. Loopback TCP/HTTP is open to every
--   local user.
-- - lua-socket has a timeout per call and Debian packages it for both releases; the
--   protocol is a few TAB-separated lines vmail owns (no HTTP server in authd).
-- - Dovecot's own `dovecot.http` client would run in the auth master process, where a
--   synchronous request blocks every other login. Auth workers are where Dovecot allows
--   blocking calls: 2.3 `blocking=yes`, 2.4 `use_worker = yes` (the default for lua).
--
-- authd checks passwords (auth_password_verify): Dovecot never sees a hash, and every
-- scheme authd knows works, the how-to's unprefixed DES crypt included, without
-- auth_allow_weak_schemes on 2.4. A failed check looks the same whatever its reason (wrong
-- password, unknown or disabled account, service not allowed, penalty); authd's log says
-- which. authd does not sleep on this channel: Dovecot's auth_failure_delay delays the
-- answer without holding a worker.
--
-- When authd cannot answer (not running, directory down, too slow), every function returns
-- INTERNAL_FAILURE ("temporary failure"), never "unknown user" or "wrong password".
--
-- Protocol (version 1, docs in vmail's spec of the Lua channel): `VERSION\t1` once per
-- connection, then `PASS`, `LOOKUP`, `USER`, `LIST` requests, each with an id the reply
-- echoes. One connection per Lua state (each passdb and userdb has its own, in every auth
-- worker), kept open across requests, closed after any error or timeout.

local socket = require("socket")
local unix = require("socket.unix")

-- Settings. Dovecot 2.3 cannot pass its own to the script (its lua passdb/userdb `args`
-- accept only file=, blocking=, cache_key=, scheme=): edit these two lines there. Dovecot
-- 2.4 passes `lua_settings { socket = ...  timeout_ms = ... }` to script_init().
--
-- TIMEOUT_MS bounds one request (connect, send, reply) before the login gets "temporary
-- failure". While authd hangs, every request holds an auth worker that long and Dovecot
-- queues the rest behind `service auth-worker { process_limit }`, so it is short; but it
-- stays above authd's own request_timeout_ms (default 5 s, a directory lookup) plus a
-- password check, so that authd's TEMP, with its reason in authd's log, arrives first.
-- Raise both together.
local SOCKET = "/run/vmail/auth-lua"
local TIMEOUT_MS = 6000

local conn = nil -- the kept connection, nil when closed
local last_id = 0

-- Dovecot's tab-escape (lib/strescape.c), as authd's codec reads it.
local ESCAPE = { ["\1"] = "\0011", ["\t"] = "\001t", ["\r"] = "\001r", ["\n"] = "\001n" }
local UNESCAPE = { ["1"] = "\1", ["t"] = "\t", ["r"] = "\r", ["n"] = "\n", ["0"] = "\0" }

local function escape(s)
  return (s:gsub("[\1\t\r\n]", ESCAPE))
end

local function unescape(s)
  return (s:gsub("\1(.)", UNESCAPE))
end

local function split(line)
  local fields = {}
  for f in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = unescape(f)
  end
  return fields
end

local DOVECOT_24 = false

-- 2.3 calls script_init() without arguments and wants 0 back; 2.4 passes lua_settings as
-- a table (empty without them) and ignores the result. A bad value stops Dovecot at start,
-- not at a login.
function script_init(args)
  if type(args) == "table" then
    DOVECOT_24 = true
    if args.socket ~= nil and args.socket ~= "" then
      SOCKET = args.socket
    end
    if args.timeout_ms ~= nil then
      local t = tonumber(args.timeout_ms)
      if t == nil or t <= 0 then
        error("vmail-auth.lua: timeout_ms must be a positive number of milliseconds, not "
          .. tostring(args.timeout_ms))
      end
      TIMEOUT_MS = t
    end
  end
  return 0
end

function script_deinit()
  if conn ~= nil then
    conn:close()
    conn = nil
  end
end

local function close()
  if conn ~= nil then
    conn:close()
    conn = nil
  end
end

-- lua-socket's "t" timeout is the total time of one call; every call of a request gets
-- what is left of the request's deadline.
local function left(deadline)
  return math.max(deadline - socket.gettime(), 0)
end

local function connect(deadline)
  local c, err = (unix.stream or unix)()
  if c == nil then
    return nil, "socket: " .. tostring(err)
  end
  c:settimeout(left(deadline), "t")
  local ok
  ok, err = c:connect(SOCKET)
  if ok == nil then
    c:close()
    return nil, "connect " .. SOCKET .. ": " .. tostring(err)
  end
  ok, err = c:send("VERSION\t1\n")
  if ok == nil then
    c:close()
    return nil, "send to " .. SOCKET .. ": " .. tostring(err)
  end
  return c
end

-- A kept connection that is readable while idle was closed by authd (its idle timeout, a
-- restart) or carries a stray line: either way it is not used again.
local function still_open(c)
  local readable = socket.select({ c }, nil, 0)
  return readable == nil or #readable == 0
end

-- Reads the reply to `id`: the fields of one line, or for LIST (`rows`) every ROW's user up
-- to END. Returns fields, or nil, error, and whether any line came back.
local function read_reply(id, deadline, rows)
  local users = {}
  local got_line = false
  while true do
    conn:settimeout(left(deadline), "t")
    local line, err = conn:receive("*l")
    if line == nil then
      return nil, err, got_line
    end
    got_line = true
    local f = split(line)
    if f[2] ~= id then
      return nil, "reply for id " .. tostring(f[2]) .. " to request " .. id, true
    end
    if not rows or f[1] == "TEMP" then
      return f
    elseif f[1] == "ROW" and f[3] ~= nil then
      users[#users + 1] = f[3]
    elseif f[1] == "END" then
      return { "END", id, users = users }
    else
      return nil, "unexpected reply " .. tostring(f[1]) .. " to LIST", true
    end
  end
end

-- Sends one request (the command and its arguments, without the id) and returns the reply's
-- fields, or nil and why. Nothing is reused after a failure: the connection is closed.
local function call(args, rows)
  local deadline = socket.gettime() + TIMEOUT_MS / 1000
  for _ = 1, 2 do
    local fresh = false
    if conn ~= nil and not still_open(conn) then
      close()
    end
    if conn == nil then
      local err
      conn, err = connect(deadline)
      if conn == nil then
        return nil, err
      end
      fresh = true
    end
    last_id = last_id + 1
    local id = tostring(last_id)
    local line = { escape(args[1]), id }
    for i = 2, #args do
      line[#line + 1] = escape(args[i])
    end
    conn:settimeout(left(deadline), "t")
    local ok, err = conn:send(table.concat(line, "\t") .. "\n")
    local reply, answered = nil, false
    if ok ~= nil then
      reply, err, answered = read_reply(id, deadline, rows)
      if reply ~= nil then
        return reply
      end
    end
    close()
    -- Once more on a new connection only when a kept one turned out closed by authd
    -- before it answered anything (it closes idle connections); never after a timeout.
    -- (lua-socket reports EOF and EPIPE alike as "closed".)
    if fresh or answered or err ~= "closed" then
      return nil, tostring(err) .. " (" .. SOCKET .. ")"
    end
  end
end

-- Dovecot 2.3 names the service `service`, 2.4 `protocol`; both have `remote_ip`.
local function service(req)
  return req.protocol or req.service or ""
end

-- Dovecot 2.4 has no `mail` (mail_location) and no `quota_rule`: a userdb field is a
-- setting there, and those two were split into settings of their own (2.4's upgrade notes,
-- "mail_location" and "quota"). authd answers in 2.3's terms; these are the 2.4 names of
-- what it sends. A location option without a 2.4 name is a temporary failure rather than a
-- mailbox opened in the wrong place.
local LOCATION_24 = {
  INDEX = "mail_index_path",
  INDEXPVT = "mail_index_private_path",
  CONTROL = "mail_control_path",
  INBOX = "mail_inbox_path",
  ALT = "mail_alt_path",
  VOLATILEDIR = "mail_volatile_path",
  LAYOUT = "mailbox_list_layout",
  DIRNAME = "mailbox_directory_name",
  SUBSCRIPTIONS = "mailbox_subscriptions_filename",
}

local function to_24(t, prefix)
  local mail = t[prefix .. "mail"]
  if mail ~= nil then
    t[prefix .. "mail"] = nil
    local parts = {}
    for p in (mail .. ":"):gmatch("([^:]*):") do
      parts[#parts + 1] = p
    end
    t[prefix .. "mail_driver"] = parts[1]
    if parts[2] ~= nil and parts[2] ~= "" then
      t[prefix .. "mail_path"] = parts[2]
    end
    -- 2.3's location decided INBOX too (a Maildir's root); 2.4 would take Debian's stock
    -- `mail_inbox_path = /var/mail/%{user}` (conf.d/10-mail.conf) instead.
    if parts[1] == "maildir" then
      t[prefix .. "mail_inbox_path"] = "."
    end
    for i = 3, #parts do
      local k, v = parts[i]:match("^([^=]+)=(.*)$")
      local name = LOCATION_24[k or parts[i]]
      if name == nil then
        return nil, "mail location option " .. parts[i] .. " has no Dovecot 2.4 setting"
      end
      t[prefix .. name] = v or "yes"
    end
  end
  local rule = t[prefix .. "quota_rule"]
  if rule ~= nil then
    t[prefix .. "quota_rule"] = nil
    local bytes = rule:match("^%*:bytes=(%d+)$")
    if bytes == nil then
      return nil, "quota rule " .. rule .. " has no Dovecot 2.4 setting"
    end
    t[prefix .. "quota_storage_size"] = bytes
  end
  return t
end

-- `user=...` and the record fields of an OK reply, from `from` on (`prefix`: "userdb_" in a
-- passdb answer, for the prefetch userdb).
local function fields(f, from, prefix)
  local t = { user = f[3] }
  for i = from, #f do
    local k, v = f[i]:match("^([^=]+)=(.*)$")
    if k ~= nil then
      t[k] = v
    end
  end
  if DOVECOT_24 then
    return to_24(t, prefix)
  end
  return t
end

local function has_nul(...)
  for _, s in ipairs({ ... }) do
    if s:find("\0", 1, true) then
      return true
    end
  end
  return false
end

-- The reason of an INTERNAL_FAILURE: Dovecot logs it as an error of this request.
local function temp(what, err)
  return "vmail-authd " .. what .. ": " .. tostring(err)
end

-- LOOKUP: the record without any hash, or why there is none. `nopassword` adds the flag
-- that lets Dovecot accept a record without a password.
local function lookup(req, nopassword)
  local login = req.user or ""
  if has_nul(login) then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, ""
  end
  local f, err = call({ "LOOKUP", service(req), login })
  if f == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("LOOKUP", err)
  elseif f[1] == "OK" and f[3] ~= nil then
    local t
    t, err = fields(f, 4, "userdb_")
    if t == nil then
      return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("LOOKUP", err)
    end
    if nopassword then
      t.nopassword = "y"
    end
    return dovecot.auth.PASSDB_RESULT_OK, t
  elseif f[1] == "DISABLED" then
    return dovecot.auth.PASSDB_RESULT_USER_DISABLED, ""
  elseif f[1] == "NOTFOUND" then
    return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, ""
  elseif f[1] == "TEMP" then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("LOOKUP", f[3])
  end
  close()
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("LOOKUP", "unexpected " .. f[1])
end

-- Plaintext logins: authd checks the password. The password is sent, never logged.
--
-- A master user's login with `pass = yes` (2.4: `result_success = continue`) reaches here
-- for the target user with the MASTER's password and req.skip_password_check set: Dovecot
-- has checked that password already and only asks whether the target may log in. Sending
-- it as PASS would compare it with the target's hash, fail the login and count a penalty
-- failure against the webmail/admin host; it is a LOOKUP instead (no `nopassword`: Dovecot
-- skips the password check of this request).
function auth_password_verify(req, pass)
  local login = req.user or ""
  if req.skip_password_check then
    return lookup(req, false)
  end
  if has_nul(login, pass) then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  end
  local f, err = call({ "PASS", service(req), req.remote_ip or "", login, pass })
  if f == nil then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("PASS", err)
  elseif f[1] == "OK" and f[3] ~= nil then
    local t
    t, err = fields(f, 4, "userdb_")
    if t == nil then
      return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("PASS", err)
    end
    return dovecot.auth.PASSDB_RESULT_OK, t
  elseif f[1] == "FAIL" then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  elseif f[1] == "TEMP" then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("PASS", f[3])
  end
  close()
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, temp("PASS", "unexpected " .. f[1])
end

-- A passdb lookup without a password check (`doveadm auth lookup`, master-user logins
-- without `pass = yes`): the fields without any hash. A mechanism that needs the stored
-- credentials (CRAM-MD5, SCRAM) is refused: there are none.
--
-- `nopassword` (without which Dovecot refuses a record that has no password: "No password
-- returned") goes only to doveadm's own lookups (`doveadm auth lookup`: no mechanism,
-- service/protocol "doveadm" on 2.3 and 2.4). A record carrying it, once in Dovecot's auth
-- cache, lets ANY password in for that user (2.3: "Cached NULL password access"), so no
-- other request gets it: a master-user login needs none (Dovecot skips the password check
-- there), and other lookups without a mechanism (an LMTP or doveadm proxy's passdb lookup,
-- `doveadm auth lookup -x service=lmtp`) then fail: Dovecot answers the lookup with a
-- failure ("Auth PASS lookup failed", doveadm exit 75, on 2.3 and 2.4). That is harmless:
-- vmail's records carry no proxy fields, so no proxy can use them; but keep LMTP's
-- `lmtp_proxy` off (the default), as LMTP would then most likely defer every recipient
-- (not tried). Dovecot's auth cache
-- must stay off for this passdb all the same (2.3: auth_cache_size = 0, the default, and
-- the conf's cache_key never serves a login; 2.4: use_cache = no).
function auth_passdb_lookup(req)
  local doveadm = (req.protocol or req.service) == "doveadm"
  return lookup(req, doveadm and (req.mechanism or "") == "")
end

-- userdb: LMTP, dovecot-lda, `doveadm user`; a login takes its fields from the passdb
-- answer through `userdb prefetch` instead.
function auth_userdb_lookup(req)
  local login = req.user or ""
  if has_nul(login) then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, ""
  end
  local f, err = call({ "USER", login })
  if f == nil then
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, temp("USER", err)
  elseif f[1] == "OK" and f[3] ~= nil then
    local t
    t, err = fields(f, 4, "")
    if t == nil then
      return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, temp("USER", err)
    end
    return dovecot.auth.USERDB_RESULT_OK, t
  elseif f[1] == "NOTFOUND" then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, ""
  elseif f[1] == "TEMP" then
    return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, temp("USER", f[3])
  end
  close()
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, temp("USER", "unexpected " .. f[1])
end

-- `doveadm user '*'`, `doveadm -A`: every active user. Dovecot passes no request here; an
-- error raised makes the iteration fail (rows already read are discarded).
function auth_userdb_iterate()
  local f, err = call({ "LIST" }, true)
  if f == nil then
    error("vmail-authd LIST: " .. tostring(err))
  elseif f[1] == "TEMP" then
    error("vmail-authd LIST: " .. tostring(f[3]))
  end
  return f.users
end
