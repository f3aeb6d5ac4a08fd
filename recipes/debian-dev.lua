-- A Debian development image, and a static hello world compiled in it and
-- shipped alone on scratch: a multi-stage build.
--
--   nsbuild recipes/debian-dev.lua
--   nsbuild run hello

local dev = from(debootstrap { suite = "bookworm", variant = "minbase" })
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
