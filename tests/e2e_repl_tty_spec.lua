-- The REPL on a real terminal: tmux runs `nsbuild repl` in a pty, send-keys
-- types and capture-pane reads the screen, so libedit, completion and
-- Ctrl-C are the ones a person meets. Needs tmux and, for the live
-- container test, the busybox image in build/test-cache.
local cli = require "support.cli"
local leaks = require "support.leaks"

local cache = "build/test-cache"

describe("nsbuild repl on a terminal", function()
  leaks.guard()
  local socket, data

  local function tmux(args)
    return cli.sh("tmux -L " .. socket .. " " .. args)
  end

  local function screen()
    return (tmux("capture-pane -p -J -S -200"))
  end

  -- Wait (at most 10 s) until the screen matches pattern; return the screen.
  local function wait_for(pattern)
    local text
    for _ = 1, 100 do
      text = screen()
      if text:find(pattern) then
        return text
      end
      cli.sh("sleep 0.1")
    end
    return text
  end

  local function type_line(line)
    tmux("send-keys -l " .. cli.quote(line))
    tmux("send-keys Enter")
  end

  before_each(function()
    socket = "nsbuild-test-" .. require("nsbuild.core").getpid()
    data = cli.tmpdir("nsbuild-repl")
    -- History goes to XDG_DATA_HOME: a directory of the test, not the user's.
    local _, code = tmux("new-session -d -x 150 -y 50 " .. cli.quote(
      "env XDG_DATA_HOME=" .. data .. " " .. cli.nsbuild .. " repl"))
    assert.are.equal(0, code, "tmux cannot start")
    wait_for("nsbuild>%s*$")
  end)

  after_each(function()
    tmux("kill-server")
    cli.sh("rm -rf " .. cli.quote(data))
  end)

  it("uses a value of one line on the next", function()
    type_line("x = 40")
    type_line("x + 2")
    local text = wait_for("\n42\n")
    assert.matches("nsbuild> x %+ 2\n42\nnsbuild> ", text)
  end)

  it("prints a traceback and prompts again", function()
    type_line("error('boom')")
    local text = wait_for("stack traceback:.*\nnsbuild>%s*$")
    assert.matches("stdin:1: boom\nstack traceback:\n", text, 1, true)
    assert.matches("\nnsbuild>%s*$", text)
    type_line("1 + 1")
    assert.matches("\n2\n", wait_for("\n2\n"))
  end)

  it("completes nsbuild.st with start", function()
    tmux("send-keys -l nsbuild.st")
    tmux("send-keys Tab Tab")
    local text = wait_for("nsbuild%.start")
    assert.matches("nsbuild.start", text, 1, true)
    assert.matches("nsbuild.store", text, 1, true)
  end)

  it("shows a live container and interrupts its wait", function()
    type_line(string.format("c = nsbuild.start('busybox', nil, { store = nsbuild.store.open(%q), "
                            .. "argv = { 'sleep', '120' } })", cache))
    type_line("c")
    local text = wait_for("container %x+ %(busybox:latest%) pid %d+ running")
    assert.matches("container %x+ %(busybox:latest%) pid %d+ running", text)
    -- An exec first: the wait after it must still be interruptible.
    type_line("c:exec { 'true' }; c:wait()")
    cli.sh("sleep 0.5")
    tmux("send-keys C-c")
    text = wait_for("interrupted.*\nnsbuild>%s*$")
    assert.matches("interrupted", text, 1, true)
    type_line("c:kill('KILL'); return c:wait()")
    text = wait_for("\n137%s+{")
    assert.matches("\n137%s+{", text)
  end)
end)
