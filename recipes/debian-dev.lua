-- A Debian development image, and a static hello world compiled in it and
-- shipped alone on scratch: a multi-stage build.
--
--   nsbuild recipes/debian-dev.lua
--   nsbuild run hello
--   nsbuild --arg base=rootfs.tar recipes/debian-dev.lua   (without root)

-- debootstrap needs root. A user other than root gives a tarball of a bookworm
-- root filesystem instead: --arg base=/path/to/rootfs.tar (made by root with
-- nsbuild export IMAGE --tar FILE).
local base = args.base and tarball(args.base) or debootstrap { suite = "bookworm", variant = "minbase" }

local dev = from(base)
  -- apt reaches Debian's mirror through the build network (slirp4netns).
  :run("apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev",
       { env = { DEBIAN_FRONTEND = "noninteractive" } })
  :tag "debian-dev"

local app = dev
  :copy("hello.c", "/src/hello.c")
  :workdir "/src"
  :run "gcc -static -O2 -o /hello hello.c"

local hello = scratch()
  :copy_from(app, "/hello", "/hello")
  :entrypoint { "/hello" }
  :tag "hello"

return { ["debian-dev"] = dev, hello = hello }
