//! The Lua scripts that make each broker operation one atomic round trip.
//!
//! Cost model (Redis 7.0, measured with the server's own CPU time over pipelined calls of these
//! scripts; `bench-broker` gives the CPU per job end to end): a `redis.call` costs about
//! 0.2–0.6 µs on top of its command, a `cjson` decode + encode of a small table about 3 µs — and
//! every string a script creates or receives costs about 1.2 ns per byte, because this Lua hashes
//! every byte of a string it interns (stock Lua 5.1 samples at most 32). So the per-run state is kept in flat strings that a pattern reads,
//! the job JSON enters Lua only twice per round trip (publish's argument, the lease's read), and
//! a job's round trip touches each structure as few times as it can: one hash per run, read
//! with one `HMGET` and written with one `HSET` or `DEL` per step.
//!
//! `P:r:RUN` (`P` = the key tag), a hash that exists while the run has a queued attempt or a
//! lease, holds the run's state:
//! * `q`: one line per queued attempt, `ATTEMPT ENTRY-ID STREAM-KEY`, lines joined by `\n`
//!   (queue names never contain a newline: `publish_many` refuses them); empty or absent = none.
//!   An entry whose line is gone (cancelled, handed back, re-published) is dropped when read.
//! * `l`: `TOKEN ATTEMPT WORKER-JSON`, the live lease (the worker id as a JSON string). The token
//!   comes first so a check is a prefix comparison; lease tokens never contain a space
//!   (`ids::new_token`). Its deadline is its score in `P:leases`.
//! * `j`: the leased job's JSON, written and deleted with `l`.
//! * `g`: the names of the leased job's gates (encoded as its route has them, see
//!   [`routing`](crate::broker::routing)), joined by `,`; written and deleted with `l`, absent
//!   for an ungated job.
//!
//! `P:g:GATE` is the set of runs whose live lease holds gate `GATE`: a claim adds the run to the
//! set of each of its gates and every step that ends a lease (release, hand back, reap, a newer
//! attempt's claim) removes it, in the same script, so a set's size is the gate's live leases.
//! A script reads that size once per gate (`SCARD`) and keeps count of its own claims; the
//! lease scripts write each set once (one `SREM` of the runs they free, one `SADD` of those they
//! claim), not once per run.
//!
//! Every script that touches runs gets the run key prefix `P:r:` as `KEYS[1]` and builds run
//! keys from it: they share the hash tag, so they sit in the slot of the declared keys and the
//! scripts work on Redis Cluster.

use ::redis::Script;

/// Helpers for the per-run hash and the gates, prepended to every script that reads it (each
/// gets the run key prefix `P:r:` as `KEYS[1]`; gate keys are `P:g:` beside it).
const LUA_STATE: &str = r#"
-- Gates: the prefix of gate keys, `P:g:`.
local gate_prefix
local function gate_key(name)
  if not gate_prefix then gate_prefix = string.sub(KEYS[1], 1, -3) .. 'g:' end
  return gate_prefix .. name
end
-- Per gate spec (`NAME=LIMIT,…`), its gates as {key, limit} and their names joined by `,`
-- (what a lease's `g` field holds), parsed once per script.
local gates_of_spec, names_of_spec = {}, {}
local function gates_in(spec)
  local gs = gates_of_spec[spec]
  if not gs then
    gs = {}
    local names = {}
    for name, limit in string.gmatch(spec, '([^,=]+)=(%d+)') do
      gs[#gs + 1] = {gate_key(name), tonumber(limit)}
      names[#names + 1] = name
    end
    gates_of_spec[spec] = gs
    names_of_spec[spec] = table.concat(names, ',')
  end
  return gs
end
-- Live leases per gate key as this script has seen and changed them.
local held = {}
-- A lease script (`batch_gates`) writes each gate's set once: the runs it frees and claims
-- wait here, per gate key, until the set is read or `flush_gates`. Frees always come before
-- claims of the same run in one script, and are written first.
local batched, frees, claims = false, {}, {}
local function batch_gates() batched = true end
local function set_call(cmd, key, runs)
  for at = 1, #runs, 1000 do
    redis.call(cmd, key, unpack(runs, at, math.min(at + 999, #runs)))
  end
end
local function flush_gates()
  for key, runs in pairs(frees) do set_call('SREM', key, runs) end
  for key, runs in pairs(claims) do set_call('SADD', key, runs) end
  frees, claims = {}, {}
end
local function push(t, key, run)
  local list = t[key]
  if not list then list = {}; t[key] = list end
  list[#list + 1] = run
end
local function held_by(key)
  local h = held[key]
  if not h then
    if frees[key] then set_call('SREM', key, frees[key]); frees[key] = nil end
    h = redis.call('SCARD', key)
    held[key] = h
  end
  return h
end
-- Free slots of the fullest of `spec`'s gates.
local function room_in(spec)
  local room
  for _, g in ipairs(gates_in(spec)) do
    local r = g[2] - held_by(g[1])
    if not room or r < room then room = r end
  end
  return room or 0
end
-- Counts `run`'s new lease under each gate of `spec`; returns the value of its `g` field.
-- A run being claimed is in none of its gates' sets: any lease it held was freed first.
local function hold(spec, run)
  for _, g in ipairs(gates_in(spec)) do
    if batched then
      held[g[1]] = held_by(g[1]) + 1
      push(claims, g[1], run)
    else
      held[g[1]] = held_by(g[1]) + redis.call('SADD', g[1], run)
    end
  end
  return names_of_spec[spec]
end
-- Frees the slots `run`'s ended lease held under the gates named in `g` (its `g` field).
local function unhold(g, run)
  for name in string.gmatch(g, '[^,]+') do
    local key = gate_key(name)
    if batched and not held[key] then
      push(frees, key, run)
    else
      local n = redis.call('SREM', key, run)
      if held[key] then held[key] = held[key] - n end
    end
  end
end
local function queued_lines(raw)
  local list = {}
  if raw then
    for a, id, s in string.gmatch(raw, '(%d+) (%S+) ([^\n]+)') do list[#list + 1] = {a, id, s} end
  end
  return list
end
local function join_queued(list)
  local lines = {}
  for i, e in ipairs(list) do lines[i] = e[1] .. ' ' .. e[2] .. ' ' .. e[3] end
  return table.concat(lines, '\n')
end
local function has_queued(raw)
  return raw and raw ~= ''
end
local function is_queued(raw, attempt)
  return raw and string.find('\n' .. raw, '\n' .. attempt .. ' ', 1, true) ~= nil
end
-- token, attempt, worker JSON of an `l` value.
local function leased_parts(raw)
  if not raw then return nil end
  return string.match(raw, '^(%S+) (%d+) (.*)$')
end
local function holds_token(raw, token)
  return raw and string.sub(raw, 1, #token + 1) == token .. ' '
end
-- Removes the lease fields of `run`'s key `rk` whose queued lines are `q` and frees the slots
-- of its gates `g`; the key goes when nothing is queued either.
local function drop_lease(rk, run, q, g)
  if g then unhold(g, run) end
  if has_queued(q) then redis.call('HDEL', rk, 'l', 'j', 'g') else redis.call('DEL', rk) end
end
-- Ends the run's lease if `token` still holds it (a stale token changes nothing).
local function release_lease(leases, cancels, run, token)
  local rk = KEYS[1] .. run
  local st = redis.call('HMGET', rk, 'l', 'q', 'g')
  if not holds_token(st[1], token) then return 0 end
  drop_lease(rk, run, st[2], st[3])
  redis.call('ZREM', leases, run)
  redis.call('ZREM', cancels, run)
  return 1
end
"#;

/// Publishes jobs, each only if its `(run, attempt)` is not already queued or leased.
/// KEYS: run key prefix, queues, cancels, then the stream of each job. ARGV: (run, attempt,
/// job JSON, queue) per job. Returns 1 (added) or 0 per job.
const LUA_PUBLISH: &str = r#"
local out = {}
for i = 1, #ARGV / 4 do
  local run, attempt, job, queue = ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]
  local rk = KEYS[1] .. run
  local st = redis.call('HMGET', rk, 'q', 'l')
  local q = st[1]
  local dup = is_queued(q, attempt)
  if not dup then
    local _, la = leased_parts(st[2])
    dup = la == attempt
  end
  if dup then
    out[i] = 0
  else
    -- XADD creates the stream; lessees create its group from id 0 (and again after a
    -- FLUSHALL), so an entry published before any lessee came is still delivered.
    local stream = KEYS[3 + i]
    local id = redis.call('XADD', stream, '*', 'run', run, 'attempt', attempt, 'job', job)
    local line = attempt .. ' ' .. id .. ' ' .. stream
    if has_queued(q) then line = q .. '\n' .. line end
    redis.call('HSET', rk, 'q', line)
    redis.call('SADD', KEYS[2], queue)
    redis.call('ZREM', KEYS[3], run)
    out[i] = 1
  end
end
return out
"#;

/// Moves each run's queued attempt to another stream, at its end: the entry is copied as it is
/// (the job with its opened secrets), the run's line points at the copy and the original is
/// deleted. KEYS: run key prefix, queues, then each job's new stream. ARGV: (run,
/// attempt, queue) per job. Returns 1 (moved) or 0 per job.
const LUA_REROUTE: &str = r#"
local out = {}
for i = 1, #ARGV / 3 do
  local run, attempt, queue = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local stream = KEYS[2 + i]
  local rk = KEYS[1] .. run
  local lines = queued_lines(redis.call('HGET', rk, 'q'))
  out[i] = 0
  for _, e in ipairs(lines) do
    if e[1] == attempt and e[3] ~= stream then
      local entry = redis.call('XRANGE', e[3], e[2], e[2])[1]
      if entry then
        local copy = redis.call('XADD', stream, '*', unpack(entry[2]))
        -- The original would linger (its secrets too) where no lessee may ever read it.
        redis.call('XDEL', e[3], e[2])
        e[2], e[3] = copy, stream
        out[i] = 1
      end
    end
  end
  if out[i] == 1 then
    redis.call('HSET', rk, 'q', join_queued(lines))
    redis.call('SADD', KEYS[2], queue)
  end
end
return out
"#;

/// Turns queue entries into leases; shared by the two scripts below.
/// KEYS: run key prefix, leases, cancels, then the streams. ARGV: group, deadline, worker id as
/// a JSON string, max, T, G, then G (route group, gate spec) pairs (none, or one per stream:
/// a number shared by the consecutive streams of one `routing::group_of`, and the route's
/// gates, empty for an ungated one), then T lease tokens, then the script's own arguments.
/// Returns (job JSON, lease token) pairs; the caller knows the worker and the deadline.
/// An entry whose attempt is no longer queued under that id is dropped; entries beyond `max`, or
/// past a full gate, go back to the tail of their stream (max = 0 requeues them all, which is
/// how orphans are recovered). No cancel check: a cancel drops the run's queued lines, publish
/// clears the cancel, and `hand_back` does not queue a cancelled run, so a line never outlives
/// a cancel.
const LUA_CLAIM_ENTRY: &str = r#"
local max = tonumber(ARGV[4])
local ntokens = tonumber(ARGV[5])
local nspecs = tonumber(ARGV[6])
-- ARGV[tok + k] is the k-th token; ARGV[own] the script's first own argument.
local tok = 6 + 2 * nspecs
local own = tok + ntokens + 1
local out = {}
local nleased = 0
-- The gate spec of the stream KEYS[i] ('' when ungated), and its route group.
local function spec_of(i)
  if nspecs == 0 then return '' end
  return ARGV[2 * i]
end
local function group_of(i)
  return ARGV[2 * i - 1]
end
-- The run's queued lines without `line`, or nil when `line` is not among them.
local function without_line(q, attempt, id)
  local list = queued_lines(q)
  for i, e in ipairs(list) do
    if e[1] == attempt and e[2] == id then
      table.remove(list, i)
      return join_queued(list)
    end
  end
  return nil
end
-- `checked`: the caller read no more entries than the gates of `spec` have room for.
local function claim_entry(skey, id, f, acked, spec, checked)
  if not acked then redis.call('XACK', skey, ARGV[1], id) end
  redis.call('XDEL', skey, id)
  if not f then return end
  local run, attempt, job
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'run' then run = f[j + 1] elseif k == 'attempt' then attempt = f[j + 1] elseif k == 'job' then job = f[j + 1] end
  end
  if not (run and attempt and job) then return end
  local rk = KEYS[1] .. run
  local st = redis.call('HMGET', rk, 'q', 'g')
  local q = st[1]
  if not q then return end
  -- The common case: the run has this one queued attempt.
  local rest = ''
  if q ~= attempt .. ' ' .. id .. ' ' .. skey then rest = without_line(q, attempt, id) end
  if not rest then return end
  if nleased >= max or nleased >= ntokens or (spec ~= '' and not checked and room_in(spec) <= 0) then
    local line = attempt .. ' ' .. redis.call('XADD', skey, '*', 'run', run, 'attempt', attempt, 'job', job) .. ' ' .. skey
    if rest ~= '' then line = rest .. '\n' .. line end
    redis.call('HSET', rk, 'q', line)
  else
    nleased = nleased + 1
    local token = ARGV[tok + nleased]
    -- A lease of an older attempt of the run is replaced: its holder learns it is lost, and
    -- its slots are freed.
    if st[2] then unhold(st[2], run) end
    local lease = token .. ' ' .. attempt .. ' ' .. ARGV[3]
    if spec ~= '' then
      redis.call('HSET', rk, 'q', rest, 'l', lease, 'j', job, 'g', hold(spec, run))
    else
      redis.call('HSET', rk, 'q', rest, 'l', lease, 'j', job)
      if st[2] then redis.call('HDEL', rk, 'g') end
    end
    redis.call('ZADD', KEYS[2], ARGV[2], run)
    out[#out + 1] = job
    out[#out + 1] = token
  end
end
"#;

/// Claims entries a lessee already read (they sit in the group's PEL until acknowledged here):
/// own arguments are (stream index, entry id) pairs.
const LUA_CLAIM: &str = r#"
batch_gates()
for i = own, #ARGV, 2 do
  local k = tonumber(ARGV[i])
  local skey = KEYS[k]
  local id = ARGV[i + 1]
  local entry = redis.call('XRANGE', skey, id, id)
  claim_entry(skey, id, entry[1] and entry[1][2], false, spec_of(k), false)
end
flush_gates()
return out
"#;

/// Reads and claims in one call (the common case: work is waiting). Own arguments: the consumer,
/// then (run, token) pairs of finished leases to release first — a runner that finished a job
/// asks for the next one in the same call. `NOACK`: read and claim are one atomic step, so no
/// entry can be stranded between them and the PEL is not needed. A script cannot block, so an
/// empty answer sends the caller to a blocking `XREADGROUP` (with a PEL) and then `LUA_CLAIM`.
///
/// Without gates every stream is read in one `XREADGROUP`. With gates the streams are read a
/// route group at a time, none past its gates' room, so a route whose gates are full is not
/// read at all and no entry of it moves. A group of several streams gives its oldest entry
/// first (the smallest head id) among the streams with room. Returns, before the pairs, when
/// there are gates and nothing was leased, one character per stream: `0` open, `1` gates full
/// and empty, `2` gates full with entries waiting.
const LUA_LEASE: &str = r#"
batch_gates()
for i = own + 1, #ARGV, 2 do
  release_lease(KEYS[2], KEYS[3], ARGV[i], ARGV[i + 1])
end
local consumer = ARGV[own]
if nspecs == 0 then
  local cmd = {'XREADGROUP', 'GROUP', ARGV[1], consumer, 'COUNT', ARGV[4], 'NOACK', 'STREAMS'}
  for i = 4, #KEYS do cmd[#cmd + 1] = KEYS[i] end
  for i = 4, #KEYS do cmd[#cmd + 1] = '>' end
  local reply = redis.call(unpack(cmd))
  if reply then
    for _, s in ipairs(reply) do
      for _, e in ipairs(s[2]) do claim_entry(s[1], e[1], e[2], true, '', true) end
    end
  end
  flush_gates()
  table.insert(out, 1, '')
  return out
end
local limit = math.min(max, ntokens)
-- How many more entries stream i may give: what the lease still wants, within its gates' room.
local function want(i)
  local n = limit - nleased
  local spec = spec_of(i)
  if spec ~= '' then n = math.min(n, room_in(spec)) end
  return n
end
local function read(i, count)
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], consumer, 'COUNT', count, 'NOACK', 'STREAMS', KEYS[i], '>')
  local entries = reply and reply[1][2] or {}
  for _, e in ipairs(entries) do claim_entry(KEYS[i], e[1], e[2], true, spec_of(i), true) end
  return #entries
end
-- The length of stream i and the id of its first entry (false when empty), each read once
-- until the stream is read again.
local lens, heads = {}, {}
local function len(i)
  if lens[i] == nil then lens[i] = redis.call('XLEN', KEYS[i]) end
  return lens[i]
end
local function head(i)
  if heads[i] == nil then
    local e = redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', 1)
    heads[i] = e[1] and e[1][1] or false
  end
  return heads[i]
end
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end
local i = 4
while i <= #KEYS and nleased < limit do
  local j = i
  while j < #KEYS and group_of(j + 1) == group_of(i) do j = j + 1 end
  if i == j then
    while true do
      local n = want(i)
      -- Fewer than asked: the stream is empty (entries of dropped attempts only cost a read).
      if n <= 0 or read(i, n) < n then break end
    end
  else
    while nleased < limit do
      -- The streams with entries and room; the oldest head among them when there are several.
      local best, others = nil, false
      for k = i, j do
        if want(k) > 0 and len(k) > 0 then
          if not best then
            best = k
          else
            others = true
            if head(k) and (not head(best) or older(head(k), head(best))) then best = k end
          end
        end
      end
      if not best then break end
      -- Alone with entries and room, a stream gives what it may at once; else one at a time.
      local n = others and 1 or want(best)
      local got = read(best, n)
      heads[best] = nil
      -- Fewer than asked: the rest were read by a lessee that has not claimed them yet.
      if got < n then lens[best] = 0 else lens[best] = lens[best] - got end
    end
  end
  i = j + 1
end
local skipped = ''
if nleased == 0 then
  local flags = {}
  for k = 4, #KEYS do
    local spec = spec_of(k)
    if spec ~= '' and room_in(spec) <= 0 then
      flags[k - 3] = redis.call('XLEN', KEYS[k]) > 0 and '2' or '1'
    else
      flags[k - 3] = '0'
    end
  end
  skipped = table.concat(flags)
end
flush_gates()
table.insert(out, 1, skipped)
return out
"#;

/// KEYS: run key prefix, leases, cancels, drain. ARGV: worker, deadline, now, then (run, token)
/// pairs.
const LUA_HEARTBEAT: &str = r#"
local cancels, lost = {}, {}
local now = tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local run, tok = ARGV[i], ARGV[i + 1]
  if holds_token(redis.call('HGET', KEYS[1] .. run, 'l'), tok) and redis.call('ZSCORE', KEYS[2], run) then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[2], run)
    local c = redis.call('ZSCORE', KEYS[3], run)
    if c and tonumber(c) > now then cancels[#cancels + 1] = run end
  else
    lost[#lost + 1] = run
  end
end
return {cancels, lost, redis.call('SISMEMBER', KEYS[4], ARGV[1])}
"#;

/// KEYS: run key prefix, leases, cancels. ARGV: run, token.
const LUA_RELEASE: &str = r#"
return release_lease(KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"#;

/// KEYS: run key prefix, leases, stream, queues, cancels. ARGV: run, token, attempt, group,
/// queue, now. A run cancelled while leased is not queued again: its lease just ends (a lease of
/// it would drop it anyway).
const LUA_HAND_BACK: &str = r#"
local rk = KEYS[1] .. ARGV[1]
local st = redis.call('HMGET', rk, 'l', 'j', 'q', 'g')
if not holds_token(st[1], ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local c = redis.call('ZSCORE', KEYS[5], ARGV[1])
if c and tonumber(c) > tonumber(ARGV[6]) then
  drop_lease(rk, ARGV[1], st[3], st[4])
  return 1
end
if st[4] then unhold(st[4], ARGV[1]) end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[3], ARGV[4], '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[3], '*', 'run', ARGV[1], 'attempt', ARGV[3], 'job', st[2])
local line = ARGV[3] .. ' ' .. id .. ' ' .. KEYS[3]
if has_queued(st[3]) then line = st[3] .. '\n' .. line end
redis.call('HDEL', rk, 'l', 'j', 'g')
redis.call('HSET', rk, 'q', line)
redis.call('SADD', KEYS[4], ARGV[5])
return 1
"#;

/// KEYS: run key prefix, leases. ARGV: now, limit. Returns (job JSON, `l` value, deadline)
/// triples. Atomic, so two reapers never both return the same lease.
const LUA_REAP: &str = r#"
local runs = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #runs, 2 do
  local run, score = runs[i], runs[i + 1]
  local rk = KEYS[1] .. run
  local st = redis.call('HMGET', rk, 'l', 'j', 'q', 'g')
  redis.call('ZREM', KEYS[2], run)
  if st[1] then drop_lease(rk, run, st[3], st[4]) end
  if st[1] and st[2] then
    out[#out + 1] = st[2]
    out[#out + 1] = st[1]
    out[#out + 1] = score
  end
end
return out
"#;

/// KEYS: run key prefix, cancels. ARGV: run, expiry, now. Returns (stream key, entry id) pairs
/// of the queued attempts it dropped, for the caller to `XDEL` (a missed delete is harmless: the
/// claim script drops entries whose attempt is no longer queued).
const LUA_CANCEL: &str = r#"
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
local rk = KEYS[1] .. ARGV[1]
local st = redis.call('HMGET', rk, 'q', 'l')
local out = {}
if not has_queued(st[1]) then return out end
for _, e in ipairs(queued_lines(st[1])) do
  out[#out + 1] = e[3]
  out[#out + 1] = e[2]
end
if st[2] then redis.call('HSET', rk, 'q', '') else redis.call('DEL', rk) end
return out
"#;

/// Moves the state of the older three-hash layout (`P:queued` run → lines, `P:leased` run →
/// `TOKEN ATTEMPT WORKER-JSON`, `P:ljobs` run → job JSON) into run hashes, once, so an upgrade
/// loses no queued attempt or live lease. KEYS: queued, leased, ljobs, run key
/// prefix. Returns the number of runs moved.
const LUA_MIGRATE: &str = r#"
local moved = 0
local q = redis.call('HGETALL', KEYS[1])
for i = 1, #q, 2 do
  -- Never over what a run hash already holds (state written by this layout wins).
  moved = moved + redis.call('HSETNX', KEYS[4] .. q[i], 'q', q[i + 1])
end
local l = redis.call('HGETALL', KEYS[2])
for i = 1, #l, 2 do
  local job = redis.call('HGET', KEYS[3], l[i])
  -- A lease without its job cannot be handed out again; the reaper drops its deadline and
  -- SQL declares the run lost, as for any lease Redis forgot.
  if job and redis.call('HEXISTS', KEYS[4] .. l[i], 'l') == 0 then
    redis.call('HSET', KEYS[4] .. l[i], 'l', l[i + 1], 'j', job)
    moved = moved + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return moved
"#;

/// KEYS: log stream. ARGV: maxlen, ttl ms, then (entry id, chunk JSON) pairs. An id at or below
/// the stream's last id is refused by XADD, which is exactly "this chunk was already stored".
const LUA_APPEND_LOG: &str = r#"
for i = 3, #ARGV, 2 do
  redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'c', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// KEYS: workers, wdata. ARGV: now. Drops expired workers, returns the JSON of the live ones.
const LUA_WORKERS: &str = r#"
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(dead) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local w = redis.call('HGET', KEYS[2], id)
  if w then out[#out + 1] = w end
end
return out
"#;

/// KEYS: lock, fence. ARGV: holder, ttl ms. The fencing token is at least the server's clock in
/// ms, so it keeps growing even after the counter is lost to a FLUSHALL (SQL remembers the last
/// token it accepted).
const LUA_ACQUIRE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = math.max(f + 1, ms)
redis.call('SET', KEYS[2], string.format('%d', n))
return string.format('%d', n)
"#;

/// KEYS: lock. ARGV: holder, ttl ms.
const LUA_RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// KEYS: lock. ARGV: holder.
const LUA_RELEASE_LEADER: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

pub(super) struct Scripts {
    pub publish: Script,
    pub reroute: Script,
    pub claim: Script,
    pub lease: Script,
    pub heartbeat: Script,
    pub release: Script,
    pub hand_back: Script,
    pub reap: Script,
    pub cancel: Script,
    pub migrate: Script,
    pub append_log: Script,
    pub workers: Script,
    pub acquire: Script,
    pub renew: Script,
    pub release_leader: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let with_state = |body: &str| Script::new(&format!("{LUA_STATE}\n{body}"));
        let with_claim =
            |body: &str| Script::new(&format!("{LUA_STATE}\n{LUA_CLAIM_ENTRY}\n{body}"));
        Scripts {
            publish: with_state(LUA_PUBLISH),
            reroute: with_state(LUA_REROUTE),
            claim: with_claim(LUA_CLAIM),
            lease: with_claim(LUA_LEASE),
            heartbeat: with_state(LUA_HEARTBEAT),
            release: with_state(LUA_RELEASE),
            hand_back: with_state(LUA_HAND_BACK),
            reap: with_state(LUA_REAP),
            cancel: with_state(LUA_CANCEL),
            migrate: Script::new(LUA_MIGRATE),
            append_log: Script::new(LUA_APPEND_LOG),
            workers: Script::new(LUA_WORKERS),
            acquire: Script::new(LUA_ACQUIRE),
            renew: Script::new(LUA_RENEW),
            release_leader: Script::new(LUA_RELEASE_LEADER),
        }
    }
}

/// The parts of a run hash's `l` value: `(token, attempt, worker id as JSON)`.
pub(super) fn leased_parts(raw: &str) -> Option<(&str, &str, &str)> {
    let mut parts = raw.splitn(3, ' ');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Whether a run hash's `q` value lists `attempt`.
pub(super) fn lists_attempt(raw: &str, attempt: u32) -> bool {
    let attempt = attempt.to_string();
    raw.lines()
        .any(|line| line.split(' ').next() == Some(attempt.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leased_values_split_into_token_attempt_and_worker() {
        let raw = r#"lt_ab 3 "worker one""#;
        assert_eq!(leased_parts(raw), Some(("lt_ab", "3", r#""worker one""#)));
        assert_eq!(leased_parts("lt_ab"), None);
    }

    #[test]
    fn queued_values_list_their_attempts() {
        let raw = "1 1700-0 {p}:q:a b\n12 1701-0 {p}:q:c";
        assert!(lists_attempt(raw, 1));
        assert!(lists_attempt(raw, 12));
        assert!(!lists_attempt(raw, 2));
        assert!(!lists_attempt("", 1));
    }
}
