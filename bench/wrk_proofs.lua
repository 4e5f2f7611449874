-- wrk script for bench/e2e.py: one pre-generated DPoP proof per request, never the same one twice.
--
--   wrk -t1 -c8 -d5s -s bench/wrk_proofs.lua http://127.0.0.1:PORT -- PROOF_FILE THREADS PATH
--
-- PROOF_FILE has one request per line: "<Authorization value>\t<DPoP value>". Thread k of n takes
-- lines k, k+n, k+2n, ... so no two threads send the same proof. If a thread runs out it starts
-- over: the server then rejects the replayed proofs and they show up as non-2xx responses, which
-- bench/e2e.py reports as an invalid run (generate more proofs) rather than a figure.

local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  local file, threads = args[1], tonumber(args[2])
  req_path = args[3]
  pool = {}
  local i = 0
  for line in io.lines(file) do
    if i % threads == tid then
      local auth, proof = line:match("^([^\t]*)\t(.*)$")
      pool[#pool + 1] = { auth, proof }
    end
    i = i + 1
  end
  cursor = 0
end

function request()
  cursor = cursor % #pool + 1
  local entry = pool[cursor]
  return wrk.format("GET", req_path, { ["Authorization"] = entry[1], ["DPoP"] = entry[2] })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
