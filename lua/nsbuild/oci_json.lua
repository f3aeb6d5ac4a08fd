--- Canonical JSON for OCI documents. Object keys are written in bytewise order
-- and without whitespace, so one value always encodes to the same bytes, and so
-- to the same digest. Lua cannot tell an empty array from an empty object, so
-- tables may be marked with M.array or M.object. An unmarked table is an array
-- when it has a [1], else an object. Decoding uses cjson.
local cjson = require "cjson"

local M = {}

local array_mt = { __name = "json array" }
local object_mt = { __name = "json object" }
local raw_mt = { __name = "json number" }

--- Mark t (default: a new table) as a JSON array and return it.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

--- Mark t (default: a new table) as a JSON object and return it.
function M.object(t)
  return setmetatable(t or {}, object_mt)
end

--- Return a number written as the given digits, for values a Lua integer cannot
-- hold, such as 18446744073709551615 (2^64 - 1).
function M.number(digits)
  assert(tostring(digits):match("^%-?%d+$"), "json.number: expected decimal digits")
  return setmetatable({ digits = tostring(digits) }, raw_mt)
end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local encode

local function encode_array(t, out)
  out[#out + 1] = "["
  for i = 1, #t do
    if i > 1 then out[#out + 1] = "," end
    encode(t[i], out)
  end
  out[#out + 1] = "]"
end

local function encode_object(t, out)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error(string.format("json: object key %s is not a string", tostring(k)), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = encode_string(k)
    out[#out + 1] = ":"
    encode(t[k], out)
  end
  out[#out + 1] = "}"
end

encode = function(v, out)
  local kind = type(v)
  if kind == "string" then
    out[#out + 1] = encode_string(v)
  elseif kind == "boolean" then
    out[#out + 1] = tostring(v)
  elseif kind == "number" then
    -- cjson decodes every number as a float, so a whole float counts as an integer.
    local n = math.tointeger(v)
    if not n then
      error(string.format("json: %s is not an integer; OCI documents use integers only", tostring(v)), 0)
    end
    out[#out + 1] = string.format("%d", n)
  elseif kind == "table" then
    local mt = getmetatable(v)
    if mt == raw_mt then
      out[#out + 1] = v.digits
    elseif mt == array_mt or (mt ~= object_mt and v[1] ~= nil) then
      encode_array(v, out)
    else
      encode_object(v, out)
    end
  else
    error("json: cannot encode a " .. kind, 0)
  end
end

--- Return the canonical JSON text of v.
function M.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

--- Decode JSON text; returns the value, or nil and a message naming what.
function M.decode(text, what)
  local ok, value = pcall(cjson.decode, text)
  if not ok then
    return nil, string.format("%s is not valid JSON: %s", what, tostring(value))
  end
  if type(value) ~= "table" then
    return nil, string.format("%s is not a JSON object", what)
  end
  return value
end

--- cjson's null, which decode gives for a JSON null.
M.null = cjson.null

return M
