--[[
burst-agent job_submit.lua for Slurm 22.05 (Lua 5.1): jobs in the `rescale` partition run on Rescale.

For a batch job whose partition is `rescale`, this plugin
  1. records the scheduler's merged request (command line + #SBATCH) as JSON, in the schema of
     docs/translation.md "The request file";
  2. replaces the job's script with a small bash wrapper that decodes the original script and the
     request into files and execs `burst-agent relay --script FILE --request FILE [--spool DIR]
     [--agent HOST:PORT,...]`;
  3. shrinks the Slurm-side resources to what one relay needs on a proxy node (the real shape goes
     to Rescale), lets Slurm requeue it unless the user said --no-requeue (a requeued job's next run
     re-attaches to its remote job),
     sets admin_comment, and charges `rescale_cores:N` licenses: tasks x cpus per task, or, with
     SIZE_CHARGE, the cores the translation will run: the job is held (AdminComment
     burst-agent:sizing) until `burst-agent size-charges`, as SlurmUser, sets that charge and releases
     it (burst_agent/chargesize.py). Only SIZER_UIDS may change its licenses or release it.
Other partitions are untouched. Interactive jobs (salloc/srun without a script) and heterogeneous
jobs are rejected for `rescale`, and so is a mix of `rescale` with other partitions.

It runs under slurmctld's locks: string work only, no I/O. slurmctld reloads this file when it
changes. Install: docs/slurm.md. Settings below; `.ci/slurm-setup.sh` and the tests rewrite the
`local NAME = value` lines between the SETTINGS markers, so keep each on one line.
--]]

-- BEGIN SETTINGS
local BURST_AGENT = "/opt/burst-agent/venv/bin/burst-agent"  -- on the proxy nodes (docs/slurm.md)
local SPOOL_DIR = nil                              -- passed as --spool DIR when set (string)
local AGENT_ADDRESSES = nil                        -- "host:7557,host2:7557": passed as --agent (TCP + MUNGE)
local RESCALE_PARTITIONS = "rescale"               -- comma list of partitions that burst to Rescale
local CHARGE_LICENSES = true                       -- charge LICENSE_NAME:<estimated cores> per job
local SIZE_CHARGE = false                          -- hold each job until `burst-agent size-charges` sets the exact charge
local SIZER_UIDS = "0"                             -- uids that size and release held jobs: root, SlurmUser (comma list)
local LICENSE_NAME = "rescale_cores"
local PROXY_MEMORY_MB = 256                        -- memory one relay gets on the proxy node
local ADMIN_COMMENT = "burst-agent"
-- END SETTINGS

local WRAPPER_VERSION = 1

-- Slurm's "not set" values; 65534/65535 are NO_VAL16/INFINITE16 of the 16-bit fields.
local UNSET = { [65534] = true, [65535] = true }
UNSET[slurm.NO_VAL] = true
UNSET[slurm.NO_VAL64] = true
UNSET[slurm.INFINITE] = true
UNSET[slurm.INFINITE64] = true
local JOB_SHARED_NONE = 0  -- job_desc.shared for --exclusive

---------------------------------------------------------------------------------------------------
-- helpers (pure string work)

local function split_commas(text)
   local items = {}
   for item in string.gmatch(text or "", "[^,]+") do
      items[#items + 1] = item
   end
   return items
end

local function set_of(text)
   local set = {}
   for _, item in ipairs(split_commas(text)) do
      set[item] = true
   end
   return set
end

local BURST_PARTITIONS = set_of(RESCALE_PARTITIONS)
local SIZERS = set_of(SIZER_UIDS)
local SIZING_MARK = "burst-agent:sizing"  -- the AdminComment of a job held for sizing (chargesize.py)
local SIZING_HELD_MARK = "burst-agent:sizing,held"  -- the same, submitted with --hold: sized, kept held
-- The job's texts `scontrol show job -o` prints around AdminComment, which its owner writes.
local USER_TEXT_FIELDS = { "name", "work_dir", "comment", "std_out", "std_err", "std_in" }

-- A count, or nil when Slurm's value means "not set" (0 is never a valid count here).
local function count(value)
   if type(value) ~= "number" or UNSET[value] or value <= 0 then
      return nil
   end
   return value
end

local function memory(value)
   if type(value) ~= "number" or UNSET[value] then
      return nil
   end
   return value
end

local function text(value)
   if value == nil or value == "" then
      return nil
   end
   return value
end

-- The GPU count in a TRES string: "gres:gpu:2", "gres/gpu:2", "gres:gpu:a100:2", "gres/gpu=2".
local function gpu_count(tres)
   local total = nil
   for _, item in ipairs(split_commas(tres)) do
      local rest = string.gsub(item, "^gres[:/]", "")
      if rest == "gpu" or string.find(rest, "^gpu[:=]") then
         local n = tonumber(string.match(rest, "[:=](%d+)$") or "1")
         total = (total or 0) + n
      end
   end
   return total
end

local function json_string(s)
   local escaped = string.gsub(s, '[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
      return named[c] or string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. escaped .. '"'
end

local function json_value(v)
   if v == nil then
      return "null"
   elseif type(v) == "boolean" then
      return tostring(v)
   elseif type(v) == "number" then
      return string.format("%d", v)
   end
   return json_string(v)
end

-- The request keys in a fixed order (docs/translation.md "The request file").
local REQUEST_KEYS = {
   "nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "mem_per_node_mb", "mem_per_cpu_mb",
   "mem_per_gpu_mb", "gpus_per_node", "gpus_per_task", "gpus", "time_limit_minutes", "exclusive",
   "job_name", "account", "partition", "qos", "constraint", "workdir", "stdout", "stderr",
}

local function json_object(request)
   local parts = {}
   for _, key in ipairs(REQUEST_KEYS) do
      parts[#parts + 1] = json_string(key) .. ": " .. json_value(request[key])
   end
   return "{" .. table.concat(parts, ", ") .. "}\n"
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Base64 in lines of 76 characters (Lua 5.1 has no bit operations: arithmetic instead).
local function base64(data)
   local out, line = {}, {}
   for i = 1, #data, 3 do
      local a, b, c = string.byte(data, i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local quad = {}
      for k = 1, 4 do
         local index = math.floor(n / 64 ^ (4 - k)) % 64
         quad[k] = string.sub(B64, index + 1, index + 1)
      end
      if b == nil then quad[3] = "=" end
      if c == nil then quad[4] = "=" end
      line[#line + 1] = table.concat(quad)
      if #line == 19 then
         out[#out + 1] = table.concat(line)
         line = {}
      end
   end
   if #line > 0 then
      out[#out + 1] = table.concat(line)
   end
   return table.concat(out, "\n")
end

local function shell_quote(s)
   return "'" .. string.gsub(s, "'", "'\\''") .. "'"
end

---------------------------------------------------------------------------------------------------
-- the request, the wrapper, the proxy-side resources

local function time_limit(minutes)
   if minutes == slurm.INFINITE then
      return "UNLIMITED"
   end
   return count(minutes)
end

local function merged_request(job_desc, partition)
   local exclusive = nil
   if job_desc.shared == JOB_SHARED_NONE then
      exclusive = true
   end
   return {
      nodes = count(job_desc.min_nodes),
      ntasks = count(job_desc.num_tasks),
      ntasks_per_node = count(job_desc.ntasks_per_node),
      cpus_per_task = count(job_desc.cpus_per_task),
      mem_per_node_mb = memory(job_desc.min_mem_per_node),
      mem_per_cpu_mb = memory(job_desc.min_mem_per_cpu),
      mem_per_gpu_mb = gpu_count(job_desc.mem_per_tres),
      gpus_per_node = gpu_count(job_desc.tres_per_node),
      gpus_per_task = gpu_count(job_desc.tres_per_task),
      gpus = gpu_count(job_desc.tres_per_job),
      time_limit_minutes = time_limit(job_desc.time_limit),
      exclusive = exclusive,
      job_name = text(job_desc.name),
      account = text(job_desc.account),
      partition = partition,
      qos = text(job_desc.qos),  -- nil: the association's default, which the relay reads from SLURM_JOB_QOS
      constraint = text(job_desc.features),
      workdir = text(job_desc.work_dir),
      stdout = text(job_desc.std_out),
      stderr = text(job_desc.std_err),
   }
end

-- Cores the remote job is expected to use: tasks x cpus per task (the coretype may round it up).
local function estimated_cores(request)
   local tasks = request.ntasks
   if tasks == nil and request.nodes ~= nil then
      tasks = request.nodes * (request.ntasks_per_node or 1)
   end
   return (tasks or request.ntasks_per_node or 1) * (request.cpus_per_task or 1)
end

local function with_license(licenses, cores)
   local kept = {}
   for _, item in ipairs(split_commas(licenses)) do
      local name = string.match(item, "^([^:@]+)")
      if name ~= LICENSE_NAME then
         kept[#kept + 1] = item
      end
   end
   kept[#kept + 1] = LICENSE_NAME .. ":" .. string.format("%d", cores)
   return table.concat(kept, ",")
end

local function wrapper_script(script, request_json)
   local relay = shell_quote(BURST_AGENT) .. " relay --script /dev/fd/3 --request /dev/fd/4"
   if SPOOL_DIR ~= nil then
      relay = relay .. " --spool " .. shell_quote(SPOOL_DIR)
   end
   if AGENT_ADDRESSES ~= nil then
      relay = relay .. " --agent " .. shell_quote(AGENT_ADDRESSES)
   end
   return table.concat({
      "#!/bin/bash",
      "# burst-agent relay wrapper v" .. WRAPPER_VERSION .. ", written by job_submit.lua: this Slurm job",
      "# runs the original script (embedded below, base64) on Rescale through the burst-agent relay.",
      "set -eu",
      "user_umask=$(umask)",
      "umask 077",
      "burst_agent=" .. shell_quote(BURST_AGENT),
      'if [ ! -x "$burst_agent" ]; then',
      '  echo "burst-agent: the relay is not installed on $(hostname -s): $burst_agent" >&2',
      "  exit 127",
      "fi",
      'dir=$(mktemp -d "${TMPDIR:-/tmp}/burst-relay.XXXXXXXXXX" 2>/dev/null || mktemp -d /tmp/burst-relay.XXXXXXXXXX)',
      "base64 -d >\"$dir/script\" <<'BURST_AGENT_SCRIPT'",
      base64(script),
      "BURST_AGENT_SCRIPT",
      "base64 -d >\"$dir/request.json\" <<'BURST_AGENT_REQUEST'",
      base64(request_json),
      "BURST_AGENT_REQUEST",
      "# The relay reads the unlinked files through fds 3 and 4: nothing is left behind.",
      'exec 3<"$dir/script" 4<"$dir/request.json"',
      'rm -rf "$dir"',
      'umask "$user_umask"  # outputs get the modes the user would get from a local job',
      "exec " .. relay,
      "",
   }, "\n")
end

-- One relay per job on the proxy node: 1 node, 1 task, 1 cpu, a little memory, no GPUs.
local function shrink_to_proxy(job_desc)
   job_desc.min_nodes = 1
   job_desc.max_nodes = 1
   job_desc.num_tasks = 1
   job_desc.ntasks_per_node = slurm.NO_VAL16
   job_desc.cpus_per_task = 1
   job_desc.pn_min_cpus = 1
   job_desc.min_cpus = 1
   job_desc.min_mem_per_node = PROXY_MEMORY_MB
   job_desc.shared = slurm.NO_VAL16
   for _, field in ipairs({ "tres_per_node", "tres_per_job", "tres_per_task", "tres_per_socket",
                            "mem_per_tres", "cpus_per_tres", "features", "req_nodes" }) do
      if job_desc[field] ~= nil then
         job_desc[field] = ""
      end
   end
end

-- The rescale partition named in a partition list, whether other partitions are named too.
local function burst_partition(partitions)
   local found, others = nil, false
   for _, name in ipairs(split_commas(partitions)) do
      if BURST_PARTITIONS[name] then
         found = found or name
      else
         others = true
      end
   end
   return found, others
end

-- The partition a job names, else the cluster's default partition: Slurm fills the default in only
-- after this plugin, so a job without -p has no partition here yet. The default is the one partition
-- whose flag_default is set; after a runtime `scontrol update PartitionName=X Default=YES`, 22.05
-- leaves the old default flagged too, and with two flagged the job is left to Slurm (docs/slurm.md).
local function named_or_default(job_desc, part_list)
   if text(job_desc.partition) ~= nil then
      return job_desc.partition
   end
   local flagged = {}
   for key, part in pairs(part_list or {}) do  -- keyed by name
      if part.flag_default ~= nil and part.flag_default ~= 0 then
         flagged[#flagged + 1] = key
      end
   end
   return #flagged == 1 and flagged[1] or nil
end

local function reject(message)
   slurm.log_user("burst-agent: %s", message)
   return slurm.ERROR
end

-- Slurm 22.05 discards log_user() in job_modify: log for the admin, answer "access denied".
local function refuse_modify(job_id, message)
   slurm.log_info("burst-agent: update of job %s refused: %s", tostring(job_id), message)
   return slurm.ESLURM_ACCESS_DENIED
end

---------------------------------------------------------------------------------------------------
-- Slurm entry points

function slurm_job_submit(job_desc, part_list, submit_uid)
   local partition, others = burst_partition(named_or_default(job_desc, part_list))
   if partition == nil then
      return slurm.SUCCESS
   end
   job_desc.partition = partition  -- from the default: the request and the job name it
   if others then
      return reject("partition " .. partition
                    .. " runs jobs on Rescale and cannot be combined with other partitions")
   end
   if job_desc.script == nil or job_desc.script == "" then
      return reject("partition " .. partition .. " takes batch jobs only: use sbatch (salloc and srun cannot run on Rescale)")
   end
   if count(job_desc.het_job_offset) ~= nil or job_desc.het_job_offset == 0 then
      return reject("heterogeneous jobs cannot run in partition " .. partition)
   end

   if SIZE_CHARGE then  -- the sizer reads AdminComment= from `scontrol show job -o`: one must be ours
      for _, field in ipairs(USER_TEXT_FIELDS) do
         if string.find(job_desc[field] or "", "AdminComment=", 1, true) then
            return reject("partition " .. partition .. ": the job's " .. field
                          .. " cannot contain 'AdminComment=' (it would hide the job's charge sizing)")
         end
      end
   end

   local request = merged_request(job_desc, partition)
   local request_json = json_object(request)
   job_desc.script = wrapper_script(job_desc.script, request_json)
   shrink_to_proxy(job_desc)
   if job_desc.requeue == nil or UNSET[job_desc.requeue] then
      job_desc.requeue = 1  -- safe: the next run re-attaches to the remote job (burst_agent/requeue.py)
   end
   job_desc.admin_comment = ADMIN_COMMENT
   if CHARGE_LICENSES then
      job_desc.licenses = with_license(job_desc.licenses, estimated_cores(request))
      if SIZE_CHARGE then
         job_desc.admin_comment = job_desc.priority == 0 and SIZING_HELD_MARK or SIZING_MARK
         job_desc.priority = 0  -- held until size-charges releases it
         if text(job_desc.comment) == nil then
            job_desc.comment = "burst-agent: sizing its cloud-core charge"
         end
      end
   end
   slurm.log_info("burst-agent: uid %d job %s: request %s", submit_uid, request.job_name or "?",
                  (string.gsub(request_json, "\n", "")))
   return slurm.SUCCESS
end

-- Resource fields whose change would only resize the relay, not the remote job.
local FIXED_FIELDS = { "min_nodes", "num_tasks", "ntasks_per_node", "cpus_per_task", "min_mem_per_node",
                       "min_mem_per_cpu", "tres_per_node", "tres_per_job", "tres_per_task", "licenses" }

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
   local was = burst_partition(job_rec.partition)
   if job_desc.partition ~= nil and (burst_partition(job_desc.partition) ~= nil) ~= (was ~= nil) then
      return refuse_modify(job_rec.job_id, "jobs cannot move into or out of a Rescale partition")
   end
   if was ~= nil and not SIZERS[string.format("%d", modify_uid)] then
      if SIZE_CHARGE and string.find(job_desc.comment or "", "AdminComment=", 1, true) then
         return refuse_modify(job_rec.job_id, "a comment cannot contain 'AdminComment='")
      end
      local sizing = job_rec.admin_comment == SIZING_MARK or job_rec.admin_comment == SIZING_HELD_MARK
      if sizing and job_desc.priority ~= nil
         and job_desc.priority ~= slurm.NO_VAL then
         return refuse_modify(job_rec.job_id, "the job waits for its cloud-core charge to be sized "
                                              .. "(burst-agent size-charges releases it)")
      end
      for _, field in ipairs(FIXED_FIELDS) do
         local value = job_desc[field]
         if value ~= nil and value ~= "" and not UNSET[value] then
            return refuse_modify(job_rec.job_id,
                                 "the resources of a Rescale job are fixed at submission (" .. field .. ")")
         end
      end
   end
   return slurm.SUCCESS
end

slurm.log_info("burst-agent job_submit.lua loaded (relay %s, partitions %s)", BURST_AGENT, RESCALE_PARTITIONS)
return slurm.SUCCESS
