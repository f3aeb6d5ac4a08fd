--- The terminal of `nsbuild run -t`. The child opens a pty from the
-- container's own devpts (so the container's /dev/pts/0 is its own), makes
-- its slave the controlling terminal and standard streams, and sends the
-- master to the parent over a unix socket (SCM_RIGHTS). The parent sets the
-- pty's window size from its own terminal, puts that terminal in raw mode,
-- relays both ways until the container ends, and restores the terminal on
-- every path out of the relay.
--
-- c.tty is nil (no terminal) or { input = bool }: input relays nsbuild's
-- stdin to the pty, as `-i` does. Depends on nsbuild.core and nsbuild.log.
local core = require "nsbuild.core"
local log = require "nsbuild.log"

local M = {}

local must = require("nsbuild.errors").must

--- In the parent, before the clone: the socket pair the master travels on.
function M.prepare(c)
  if c.tty then
    local parent_end, child_end = core.socketpair()
    c.tty_parent = must("create the terminal socket", parent_end, child_end)
    c.tty_child = child_end
  end
end

--- In the parent, after the clone: only the child keeps its end, so that the
-- parent reads end of file when the child fails before sending the master.
function M.close_child_end(c)
  if c.tty_child then
    c.tty_child:close()
  end
end

--- In the child, after the user is resolved: open the pty, send its master,
-- and make the slave the controlling terminal and descriptors 0, 1 and 2.
-- The child leaves nsbuild's session (setsid), so the built-in init, a
-- session leader with the pty in its foreground, hands the foreground to the
-- command.
function M.attach_child(c)
  if not c.tty then
    return
  end
  c.tty_parent:close()
  local master, slave = core.pty_open("/", c.ids.uid, c.ids.gid)
  must("open a pty in /dev/pts", master, slave)
  must("send the pty to nsbuild", core.send_fd(c.tty_child, master))
  master:close()
  c.tty_child:close()
  must("attach the pty", core.login_tty(slave))
  slave:close()
end

--- In the parent, once the child is released: receive the master. A child
-- that failed before sending it leaves c.tty_master nil.
function M.receive(c)
  if not c.tty then
    return
  end
  c.tty_master = core.recv_fd(c.tty_parent)
  c.tty_parent:close()
  if c.tty_master and core.isatty(0) then
    local rows, cols = core.tty_get_size(0)
    if rows then
      core.tty_set_size(c.tty_master, rows, cols)
    end
  end
end

--- In the parent, while the command runs: relay between nsbuild's terminal
-- and the pty until the container's first process (pid) ends, in raw mode
-- when nsbuild's stdin is a terminal and input is relayed. The terminal's
-- settings are restored whatever the relay raises.
-- NOTE: a SIGKILL of nsbuild leaves the terminal raw: `stty sane` repairs it.
function M.relay(c, pid)
  if not c.tty_master then
    return
  end
  local input = c.tty.input and 0 or nil
  local saved
  if input and core.isatty(0) then
    saved = core.tty_raw(0)
  end
  local ok, err = pcall(core.pty_relay, c.tty_master, { input = input, output = 1, pid = pid,
                                                       size_from = 0 })
  if saved then
    local restored, rerr = core.tty_restore(0, saved)
    if not restored then
      log.warn("cannot restore the terminal: %s (run: stty sane)", rerr)
    end
  end
  if not ok then
    error(err, 0)
  end
end

--- In the parent, on every path: close what is left of the terminal.
function M.close(c)
  for _, name in ipairs({ "tty_master", "tty_parent" }) do
    if c[name] then
      c[name]:close()
    end
  end
end

return M
