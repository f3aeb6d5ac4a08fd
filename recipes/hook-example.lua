-- A policy with a hook at each named point of the container start. Child
-- hooks (after_mounts, after_pivot, before_exec) run inside the container's
-- process before exec and receive the context c; parent hooks (created,
-- exited) run in nsbuild. A hook that raises stops the start with its name
-- and message, and nothing of the container is left behind.
--
--   nsbuild run --policy recipes/hook-example.lua busybox -- cat /run-info
return {
  hooks = {
    created = function(c, pid)
      io.stderr:write("hook-example: container process ", pid, " for ", c.argv[1], "\n")
    end,
    -- Before pivot_root: c.root is still the root file system's host path.
    after_mounts = function(c)
      local f = assert(io.open(c.root .. "/etc/motd", "w"))
      f:write("written by the after_mounts hook\n")
      f:close()
    end,
    -- With the final user, groups and capabilities, just before seccomp and exec.
    before_exec = function(c)
      local f = assert(io.open("/run-info", "w"))
      f:write(string.format("uid %d gid %d argv %s\n", c.ids.uid, c.ids.gid,
                            table.concat(c.argv, " ")))
      f:close()
    end,
    exited = function(c, code)
      io.stderr:write("hook-example: exited with code ", code, "\n")
    end,
  },
}
